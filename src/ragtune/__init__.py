"""ragtune: measure RAG, fine-tuning (LoRA) and hybrids on your own data, then build and serve one.

The public API lives here and stays put:

    >>> from ragtune import KnowledgeBase, Settings, search
    >>> kb = KnowledgeBase.open("docs", Settings.load())
    >>> kb.ingest([Path("handbook/")]).added
    >>> search(kb, "vacation policy", k=5, mode="hybrid").hits[0].text
    >>> answer = ask("How many vacation days do I get?", kb)
    >>> answer.text, [(c.doc_id, c.start, c.end) for c in answer.citations]
    >>> run = Evaluator(kb, arch="rag").run(load_cases(Path("cases.jsonl")))
    >>> run.summary["metrics"]["faithfulness"], run.summary["failure_causes"]
    >>> train, heldout = split_cases(load_cases(Path("cases.jsonl")), heldout=0.3)
    >>> tuning = tune_retrieval(kb, train, heldout)   # retrieval levers, chosen on train
    >>> apply_tuning(kb, tuning)                      # adopted by search, ask and serve
"""

from ragtune.answering import (
    REFUSAL,
    Answer,
    Answerer,
    Citation,
    RefusalPolicy,
    Verification,
    Verifier,
    ask,
)
from ragtune.answering.judges import Claim, Judge, LLMJudge, OfflineJudge, Verdict
from ragtune.cases import EvalCase, load_cases
from ragtune.config import (
    AnswerSettings,
    ChunkingSettings,
    EmbedderSettings,
    EvalSettings,
    GeneratorSettings,
    IngestSettings,
    PriceSettings,
    RetrievalSettings,
    Settings,
)
from ragtune.documents import Chunk, Document, Page, chunk_document, load_path
from ragtune.errors import ConfigError, InputError, ModelError, RagtuneError, StoreError
from ragtune.evaluation.runner import CaseResult, EvalRun, Evaluator, compare_runs, load_run
from ragtune.evaluation.testset import generate_testset
from ragtune.kb import IngestReport, KnowledgeBase
from ragtune.lab.levers import (
    EmbedderTuning,
    RetrievalTuning,
    apply_tuning,
    split_cases,
    tune_retrieval,
)
from ragtune.models import (
    Embedder,
    Generation,
    GenerationConfig,
    Generator,
    LocalGenerator,
    OpenAIEmbedder,
    OpenAIGenerator,
    get_embedder,
    get_generator,
)
from ragtune.retrieval import Hit, SearchResult, reciprocal_rank_fusion, search
from ragtune.store import SQLiteStore, Store, StoredDocument
from ragtune.tuning.embedder import EmbedderPair, tune_embedder
from ragtune.version import __version__

__all__ = [
    "CaseResult",
    "Claim",
    "EvalCase",
    "EvalRun",
    "EvalSettings",
    "Evaluator",
    "Judge",
    "LLMJudge",
    "OfflineJudge",
    "PriceSettings",
    "Verdict",
    "Verification",
    "Verifier",
    "compare_runs",
    "generate_testset",
    "load_cases",
    "load_run",
    "REFUSAL",
    "Answer",
    "AnswerSettings",
    "Answerer",
    "Chunk",
    "Citation",
    "Generation",
    "GenerationConfig",
    "Generator",
    "GeneratorSettings",
    "LocalGenerator",
    "OpenAIEmbedder",
    "OpenAIGenerator",
    "RefusalPolicy",
    "ask",
    "get_generator",
    "ChunkingSettings",
    "ConfigError",
    "Document",
    "EmbedderSettings",
    "Embedder",
    "Hit",
    "IngestReport",
    "IngestSettings",
    "InputError",
    "KnowledgeBase",
    "ModelError",
    "Page",
    "RagtuneError",
    "SQLiteStore",
    "SearchResult",
    "Settings",
    "Store",
    "StoreError",
    "StoredDocument",
    "__version__",
    "chunk_document",
    "get_embedder",
    "load_path",
    "reciprocal_rank_fusion",
    "search",
    "EmbedderPair",
    "EmbedderTuning",
    "RetrievalSettings",
    "RetrievalTuning",
    "apply_tuning",
    "split_cases",
    "tune_embedder",
    "tune_retrieval",
]
