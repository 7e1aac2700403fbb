"""ragtune: measure RAG, fine-tuning (LoRA) and hybrids on your own data, then build and serve one.

The public API lives here and stays put:

    >>> from ragtune import KnowledgeBase, Settings, search
    >>> kb = KnowledgeBase.open("docs", Settings.load())
    >>> kb.ingest([Path("handbook/")]).added
    >>> search(kb, "vacation policy", k=5, mode="hybrid").hits[0].text
"""

from ragtune.config import ChunkingSettings, EmbedderSettings, IngestSettings, Settings
from ragtune.documents import Chunk, Document, Page, chunk_document, load_path
from ragtune.errors import ConfigError, InputError, ModelError, RagtuneError, StoreError
from ragtune.kb import IngestReport, KnowledgeBase
from ragtune.models import Embedder, get_embedder
from ragtune.retrieval import Hit, SearchResult, reciprocal_rank_fusion, search
from ragtune.store import SQLiteStore, Store, StoredDocument

__version__ = "0.1.0"

__all__ = [
    "Chunk",
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
]
