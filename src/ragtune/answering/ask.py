"""`ask`: retrieve, prompt, generate, cite, and refuse when the evidence is insufficient.

    >>> answer = ask("How often are API keys rotated?", kb)
    >>> answer.text, [c.doc_id for c in answer.citations]
    ('Every 90 days [1].', ['security.md'])

Every `Answer` keeps its whole trace: the hits, the prompt, the raw output, timings, token counts
and the refusal signals, so an answer can be audited (and evaluated) after the fact.

Retrieved text is data, and the answer a client gets has passed every check first (the
defences, measured by `bench/redteam.py`): passages are escaped, delimited and flagged in the
prompt (`ragtune.answering.prompt`); citations must name a passage of the prompt *that supports
the claim they follow*, others are removed; an answer whose only evidence is flagged passages
(instruction-like text) is refused; markup in the answer is made inert
(`ragtune.answering.markup`); and a refused answer never carries the model's draft to a client
(`Answer.client_raw_output`; with `on_token`, only the checked answer is streamed, after
generation: a draft streamed as it is written would leak what the checks then refuse).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from ragtune.answering.citations import Citation, best_supporting, parse_citations, strip_citations
from ragtune.answering.markup import neutralize_markup
from ragtune.answering.prompt import (
    REFUSAL,
    SOURCES_KEY,
    Prompt,
    PromptStyle,
    build_closed_book_prompt,
    build_prompt,
    doc_label,
    unescape_output,
)
from ragtune.answering.refusal import Calibration, RefusalPolicy, Signal, calibrate, model_refused
from ragtune.answering.schema import schema_errors
from ragtune.answering.verify import (
    ON_UNVERIFIED,
    VERIFY_META_KEY,
    RiskPoint,
    Verification,
    Verifier,
    VerifyPolicy,
    choose_threshold,
    risk_coverage,
    verifier_for,
)
from ragtune.bundled import BUNDLED_GENERATOR, reader_adapter
from ragtune.cases import EvalCase
from ragtune.config import Settings
from ragtune.errors import InputError
from ragtune.kb import KnowledgeBase
from ragtune.models.generators import (
    Generation,
    GenerationConfig,
    Generator,
    TokenCallback,
    get_generator,
)
from ragtune.retrieval import SearchResult, searcher_for
from ragtune.retrieval.filters import Filters
from ragtune.text import exact_match, token_f1

POLICY_META_KEY = "refusal_policy"


@dataclass
class Answer:
    """A grounded answer (or the refusal) with its citations and full trace."""

    question: str
    text: str
    refused: bool
    refusal_reason: str | None
    citations: list[Citation]
    invalid_citations: int
    prompt: Prompt
    search: SearchResult
    raw_output: str
    generation: Generation | None
    similarity: float | None  # best passage's cosine similarity to the question
    timings_ms: dict[str, float] = field(default_factory=dict)
    schema_errors: list[str] | None = None  # with a JSON schema: why the answer breaks it
    json_text: str | None = None  # with a JSON schema: its string values, markers removed
    unsupported_citations: int = 0  # markers naming a prompt passage that does not support them
    defences: bool = True  # False only for measurement (`Answerer(defences=False)`)
    verification: Verification | None = None  # None: closed-book, refused before, or off

    @property
    def verified(self) -> bool | None:
        """Whether the judge supported every claim (None: not judged)."""
        return None if self.verification is None else self.verification.verified

    @property
    def client_raw_output(self) -> str | None:
        """The model's raw output as clients may see it: None when the answer was refused (the
        draft is what the checks refused: it may hold what a hostile passage asked the model to
        leak). The library caller (the operator) keeps `raw_output`."""
        return None if self.refused and self.defences else self.raw_output

    @property
    def plain(self) -> str:
        """The answer without citation markers (with a JSON schema: the JSON's string values,
        which is what answer metrics score)."""
        return self.json_text if self.json_text is not None else strip_citations(self.text)

    @property
    def flagged_passages(self) -> list[int]:
        """Numbers of prompt passages whose chunks hold instruction-like text."""
        return [p.number for p in self.prompt.passages if p.flags]

    def to_dict(self, context: bool = True) -> dict[str, Any]:
        """The `ragtune ask --json` shape (PRODUCT.md's contract: `answer`, `refused`,
        `citations[]` with `n` and `quote`, `trace`, and more); `context=False` leaves out the
        prompt and hits. The trace's keys are also at the top level, where scripts written
        before `trace` existed read them."""
        trace = self.trace(context)
        out: dict[str, Any] = {
            "question": self.question,
            "answer": self.text,
            "refused": self.refused,
            "refusal_reason": self.refusal_reason,
            "citations": [c.to_dict() for c in self.citations],
            "verified": self.verified,
            "verification": None if self.verification is None
            else self.verification.to_dict(),
            "invalid_citations": self.invalid_citations,
            "unsupported_citations": self.unsupported_citations,
            "flagged_passages": self.flagged_passages,
            **trace,
            "trace": trace,
        }
        if self.schema_errors is not None:
            out["schema_errors"] = self.schema_errors
        return out

    def trace(self, context: bool = True) -> dict[str, Any]:
        """How the answer was made: refusal signals, generation, the model's raw output (null
        when refused), the passages, timings; with `context`, the prompt and the hits."""
        gen = self.generation
        out: dict[str, Any] = {
            "signals": {"similarity": self.similarity,
                        "confidence": gen.mean_logprob if gen else None},
            "generation": None if gen is None else {
                "model": gen.model, "prompt_tokens": gen.prompt_tokens,
                "output_tokens": gen.output_tokens, "finish_reason": gen.finish_reason,
                "seconds": round(gen.seconds, 3),
                "first_token_seconds": None if gen.first_token_seconds is None
                else round(gen.first_token_seconds, 3),
                "tokens_per_second": round(gen.tokens_per_second, 2),
            },
            "raw_output": self.client_raw_output,
            "passages": [
                {k: v for k, v in asdict(p).items() if context or k != "text"}
                for p in self.prompt.passages
            ],
            "dropped_passages": self.prompt.dropped,
            "timings_ms": {k: round(v, 2) for k, v in self.timings_ms.items()},
        }
        if context:
            out["prompt"] = self.prompt.messages
            out["search"] = self.search.to_dict()
        return out


@dataclass
class _Prepared:
    question: str
    search: SearchResult
    prompt: Prompt
    similarity: float | None
    started: float
    retrieve_ms: float
    prompt_ms: float


class Answerer:
    """Answers questions from one knowledge base with one generator (reuse it across calls).

    `retrieve=False` answers closed-book (the `base` architecture of an evaluation): no
    passages, no citations; the answer is refused only when the model says it cannot answer.
    `schema` (a JSON schema) constrains every answer to JSON valid for it; citation markers are
    then read from the JSON's string values, and those strings are what support is checked on.
    A schema with `answer` and `sources` properties gets document ids in `sources` (passages
    show theirs). `style` changes how the answer is asked for (system message, worked examples,
    whether the schema is stated: an adapter trained on a format needs neither); with
    `enforce_schema=False` the schema is asked for but decoding is left free (so how well a
    model keeps a format can be measured).

    `defences=False` is for measurement only (`bench/redteam.py`, the prompt-injection red
    team): it turns off what keeps retrieved text data — passage escaping, flags and the data
    rule in the prompt, citation support checks, refusal thresholds and the flagged-evidence
    refusal, markup neutralizing, withholding a refused draft — and streams the raw draft as it
    is generated, as ragtune did before those defences. Never serve with it.
    """

    def __init__(
        self,
        kb: KnowledgeBase,
        generator: Generator | None = None,
        policy: RefusalPolicy | None = None,
        settings: Settings | None = None,
        retrieve: bool = True,
        schema: dict[str, Any] | None = None,
        *,
        style: PromptStyle | None = None,
        enforce_schema: bool = True,
        defences: bool = True,
        verifier: Verifier | None = None,
        on_unverified: str | None = None,
    ) -> None:
        self.kb = kb
        self.retrieve = retrieve
        self.style = replace(style or PromptStyle(), schema=schema)
        self.schema = schema
        self.enforce_schema = enforce_schema
        self.defences = defences
        self._settings = settings
        self.generator = generator or generator_for(self.settings)
        chosen = policy or stored_policy(kb) or default_policy(self.settings)
        if not defences:
            chosen = RefusalPolicy(None, None, "defences off")
        self.policy = chosen.for_generator(self.generator.name)
        self.searcher = searcher_for(kb)
        self.on_unverified = on_unverified or self.settings.answer.verify
        if self.on_unverified not in ON_UNVERIFIED:
            raise InputError(f"on_unverified must be one of {', '.join(ON_UNVERIFIED)}, "
                             f"got {self.on_unverified!r}")
        self._verifier = verifier

    @property
    def verifier(self) -> Verifier:
        """The judge and threshold answers are verified with (built on first use)."""
        if self._verifier is None:
            self._verifier = verifier_for(self.settings, self.kb.embedder,
                                          stored_verify_policy(self.kb), self.generator.name)
        return self._verifier

    def config(self, max_new_tokens: int | None = None) -> GenerationConfig:
        return GenerationConfig(max_new_tokens=self.settings.generator.max_new_tokens
                                if max_new_tokens is None else max_new_tokens,
                                json_schema=self.schema if self.enforce_schema else None)

    @property
    def settings(self) -> Settings:
        """The settings given, else the knowledge base's own, read afresh: what it adopted
        (`tune-retrieval --apply`: k, mode) applies to a long-lived answerer (`serve`) too."""
        return self._settings or self.kb.settings

    def prepare(self, question: str, k: int | None = None, mode: str | None = None,
                groups: Iterable[str] | None = None, filters: Filters | None = None
                ) -> _Prepared:
        """Retrieve and build the prompt (no generation)."""
        if not question.strip():
            raise InputError("question is empty")
        s = self.settings.answer
        started = time.perf_counter()
        if not self.retrieve:
            prompt = build_closed_book_prompt(question, style=self.style)
            t1 = time.perf_counter()
            return _Prepared(question, SearchResult("none", []), prompt, None, started, 0.0,
                             (t1 - started) * 1000)
        if not self.kb.exists():
            raise InputError(f"knowledge base {self.kb.name!r} does not exist; ingest first")
        self.searcher.index()  # a store changed elsewhere reloads what the knowledge base adopted
        s = self.settings.answer
        result = self.searcher.search(question, k=s.k if k is None else k,
                                      mode=mode or s.mode, groups=groups, filters=filters,
                                      per_doc=self.kb.settings.retrieval.per_doc)
        t1 = time.perf_counter()
        chunks = {c.id: c for c in self.kb.store.get_chunks(h.chunk_id for h in result.hits)}
        flags = {cid: c.flags for cid, c in chunks.items() if c.flags}
        prompt = build_prompt(question, result.hits, self.generator.count_tokens,
                              s.context_tokens, flags, style=self.style, defended=self.defences)
        similarity = None
        if prompt.passages:
            vector = self.kb.embedder.embed_query(question)
            index = self.searcher.index()
            similarity = max(index.similarities(vector, [p.chunk_id for p in prompt.passages]))
        t2 = time.perf_counter()
        return _Prepared(question, result, prompt, similarity, started,
                         (t1 - started) * 1000, (t2 - t1) * 1000)

    def ask(self, question: str, *, k: int | None = None, mode: str | None = None,
            groups: Iterable[str] | None = None, filters: Filters | None = None,
            max_new_tokens: int | None = None, on_token: TokenCallback | None = None,
            on_draft: TokenCallback | None = None) -> Answer:
        """Answer one question; `on_token` streams the checked answer (`relay`), `on_draft`
        the unchecked draft as it is generated (to be shown as a draft: the verdict may refuse
        it)."""
        prep = self.prepare(question, k, mode, groups, filters)
        generation = None
        if self.should_generate(prep):
            generation = self.generator.generate(prep.prompt.messages,
                                                 self.config(max_new_tokens),
                                                 self.draft_callback(on_token, on_draft))
        answer = self.finish(prep, generation)
        self.relay(answer, on_token)
        return answer

    def draft_callback(self, on_token: TokenCallback | None,
                       on_draft: TokenCallback | None = None) -> TokenCallback | None:
        """What to hand the generator as its token callback: with the defences on, only a
        caller's `on_draft` (a draft is never streamed as the answer; `relay` streams the
        checked answer); with them off, `on_token`."""
        return on_draft if self.defences else on_token

    def relay(self, answer: Answer, on_token: TokenCallback | None) -> None:
        """Stream the checked answer (`answer.text`, the refusal when refused) to `on_token` a
        word at a time. The cost is the time to the first token: it comes once generation
        and the checks are done (the whole answer's generation time), not after the first
        generated token. Nothing with the defences off: the draft was streamed as generated."""
        if on_token is None or not self.defences:
            return
        for piece in re.findall(r"\s*\S+", answer.text):
            on_token(piece)

    def ask_batch(self, questions: Sequence[str], *, k: int | None = None,
                  mode: str | None = None, groups: Iterable[str] | None = None,
                  filters: Filters | None = None, max_new_tokens: int | None = None
                  ) -> list[Answer]:
        """Answer many questions with batched generation (evaluation throughput)."""
        groups = list(groups) if groups is not None else None
        prepared = [self.prepare(q, k, mode, groups, filters) for q in questions]
        todo = [i for i, p in enumerate(prepared) if self.should_generate(p)]
        generations: dict[int, Generation] = {}
        if todo:
            outs = self.generator.generate_batch([prepared[i].prompt.messages for i in todo],
                                                 self.config(max_new_tokens))
            generations = dict(zip(todo, outs, strict=True))
        return [self.finish(p, generations.get(i)) for i, p in enumerate(prepared)]

    def should_generate(self, prep: _Prepared) -> bool:
        """Whether the prepared question goes to the model (else it is refused unasked)."""
        return not self.retrieve or self.policy.retrieval_reason(prep.similarity) is None

    def finish(self, prep: _Prepared, generation: Generation | None) -> Answer:
        """Parse citations, apply the refusal policy, resolve citations to stored chunks."""
        raw = generation.text if generation is not None else ""
        text, cited, invalid, plain = self._parse_output(prep, raw)
        confidence = generation.mean_logprob if generation is not None else None
        if self.retrieve:
            reason = self.policy.decide(prep.similarity, plain, confidence)
        else:
            reason = "model" if model_refused(plain) or not text.strip() else None
        citations: list[Citation] = []
        unsupported: list[int] = []
        verification = None
        if reason is None and self.retrieve:
            text, citations, unsupported, reason = self._ground(prep, text, cited, plain)
        if reason is None and self.retrieve and self.defences and self.on_unverified != "off":
            verification, citations = self._verify(prep, plain, citations)
            if not verification.verified and self.on_unverified == "refuse":
                reason = "unsupported"
        if reason is not None:
            text = REFUSAL
            citations = []
        broken = None
        if self.schema is not None and reason is None:
            broken = schema_errors(text, self.schema)
        done = time.perf_counter()
        timings = {
            "retrieve": prep.retrieve_ms,
            "prompt": prep.prompt_ms,
            "generate": generation.seconds * 1000 if generation is not None else 0.0,
            "verify": verification.ms if verification is not None else 0.0,
            "total": (done - prep.started) * 1000,
        }
        return Answer(prep.question, text, reason is not None, reason, citations, len(invalid),
                      prep.prompt, prep.search, raw, generation, prep.similarity, timings,
                      broken, plain if broken is not None else None, len(unsupported),
                      self.defences, verification)

    def _parse_output(self, prep: _Prepared, raw: str
                      ) -> tuple[str, list[int], list[int], str]:
        """The answer text, the passages it cites, its invalid markers, and its plain text
        (without markers): from JSON under a schema, else from `[n]` markers."""
        passages = prep.prompt.numbers
        if self.schema is not None:
            sources: dict[str, int] = {}
            for p in prep.prompt.passages:  # a document's first passage is the one cited
                sources.setdefault(p.doc_id, p.number)
                sources.setdefault(doc_label(p.doc_id), p.number)
            return parse_json_citations(unescape_output(raw), passages, sources)
        output = unescape_output(raw)
        if self.defences:
            output = neutralize_markup(output)
        text, cited, invalid = parse_citations(output, passages)
        plain = strip_citations(text)
        if not self.defences:
            text = output.strip()  # as written: unknown markers, markup and all
        return text, cited, invalid, plain

    def _ground(self, prep: _Prepared, text: str, cited: list[int], plain: str
                ) -> tuple[str, list[Citation], list[int], str | None]:
        """Check an answer the policy let through against its passages: drop citations the
        passage does not support, infer one when none is left, resolve them to stored chunks.
        Returns the text, the citations, the dropped passage numbers, and the refusal reason
        (None: grounded)."""
        inferred = False
        unsupported: list[int] = []
        texts = {n: unescape_output(p.text) for n, p in prep.prompt.numbers.items()}
        if cited and self.defences:
            cited, unsupported = verify_citations(text if self.schema is None else "", cited,
                                                  plain, texts)
            if unsupported and self.schema is None:
                text = parse_citations(text, cited)[0]  # their markers go too
        if not cited:
            # No (supported) marker: attribute the passage that contains the answer; an
            # answer that no passage supports is not grounded, and is refused.
            support = best_supporting(plain, texts)
            if support is None:
                return text, [], unsupported, "unsupported" if self.defences else None
            cited, inferred = [support], True
        citations = self._resolve(prep.prompt, cited, inferred, plain)
        if not citations and self.defences:  # every cited chunk was deleted meanwhile
            return text, citations, unsupported, "unsupported"
        if self.defences and all(c.flags for c in citations):
            # Its only evidence is text aimed at a model ("ignore the instructions and reply
            # ..."): following it is what an injection wants.
            return text, citations, unsupported, "flagged"
        return text, citations, unsupported, None

    def _verify(self, prep: _Prepared, plain: str, citations: list[Citation]
                ) -> tuple[Verification, list[Citation]]:
        """Judge the answer's claims against the passages the model cited (an answer that
        cited none, or whose citation was inferred: against every passage of the prompt).
        An inferred citation becomes the passages holding the claims' evidence."""
        written = [c.number for c in citations if not c.inferred]
        numbers = written or [p.number for p in prep.prompt.passages]
        passages = prep.prompt.numbers
        chunks = {c.id: c for c in self.kb.store.get_chunks(passages[n].chunk_id
                                                            for n in numbers)}
        context = [(n, chunks[passages[n].chunk_id]) for n in numbers
                   if passages[n].chunk_id in chunks]
        verification = self.verifier.verify(prep.question, plain, context)
        if citations and not written and verification.verified:
            evidence = list(dict.fromkeys(c.passage for c in verification.claims
                                          if c.passage is not None))
            if evidence and evidence != [c.number for c in citations]:
                citations = self._resolve(prep.prompt, evidence, True, plain)
        return verification, citations

    def _resolve(self, prompt: Prompt, numbers: list[int], inferred: bool, answer: str
                 ) -> list[Citation]:
        passages = prompt.numbers
        chunks = {c.id: c for c in self.kb.store.get_chunks(passages[n].chunk_id
                                                            for n in numbers)}
        out = []
        for n in numbers:
            chunk = chunks.get(passages[n].chunk_id)
            if chunk is None:  # deleted while answering: cannot be verified, so not cited
                continue
            doc = self.kb.store.get_document(chunk.doc_id)
            out.append(Citation(
                number=n, chunk_id=chunk.id, doc_id=chunk.doc_id, version=chunk.version,
                start=chunk.start, end=chunk.end, title=chunk.title,
                source=doc.source if doc is not None else "", page=chunk.page,
                snippet=_snippet(chunk.text, answer), flags=chunk.flags, inferred=inferred,
            ))
        return out


def verify_citations(text: str, cited: Sequence[int], plain: str, passages: dict[int, str]
                     ) -> tuple[list[int], list[int]]:
    """Split the cited passage numbers into (supported, unsupported). A citation is supported
    when its passage supports the claim its marker follows (the text since the previous
    marker) or the whole answer (`best_supporting`, over that passage alone): a citation must
    point at a passage that says what is cited, not just at any passage of the prompt.

        >>> verify_citations("Paris [2]", [2], "Paris", {1: "Rome is ...", 2: "Paris is ..."})
        ([2], [])
    """
    claims: dict[int, list[str]] = {}
    for claim, markers in re.findall(r"(.*?)((?:\s*\[\d+\])+)", text, re.DOTALL):
        for n in map(int, re.findall(r"\d+", markers)):
            claims.setdefault(n, []).append(claim)
    supported: list[int] = []
    unsupported: list[int] = []
    for n in cited:
        ok = any(best_supporting(claim, {n: passages[n]}) == n
                 for claim in [*claims.get(n, []), plain] if claim.strip())
        (supported if ok else unsupported).append(n)
    return supported, unsupported


def parse_json_citations(text: str, valid: Iterable[int],
                         sources: dict[str, int] | None = None
                         ) -> tuple[str, list[int], list[int], str]:
    """`parse_citations` over the string values of a JSON answer (markers elsewhere would be
    JSON syntax, such as `[1]` arrays). Returns (JSON text, cited, invalid, the string values
    without markers joined: what refusal and support are checked on). A top-level `sources`
    list names documents (`sources` maps document id -> passage number) or passage numbers; its
    entries are citations, not answer text. Text that is not JSON is read as a plain answer
    (citation markers and all)."""
    allowed = list(valid)
    try:
        data = json.loads(text)
    except ValueError:
        fixed_text, found, bad = parse_citations(text, allowed)
        return fixed_text, found, bad, strip_citations(fixed_text)
    cited: list[int] = []
    invalid: list[int] = []
    plain: list[str] = []
    if isinstance(data, dict) and isinstance(data.get(SOURCES_KEY), list):
        for item in data[SOURCES_KEY]:
            number = (sources or {}).get(item) if isinstance(item, str) else item
            if isinstance(item, str) and item.strip().isdigit():
                number = int(item)
            if isinstance(number, int) and number in allowed:
                if number not in cited:
                    cited.append(number)
            else:
                invalid.append(number if isinstance(number, int) else 0)

    def walk(value: Any) -> Any:
        if isinstance(value, str):
            fixed, c, bad = parse_citations(value, allowed)
            cited.extend(n for n in c if n not in cited)
            invalid.extend(bad)
            plain.append(strip_citations(fixed))
            return fixed
        if isinstance(value, list):
            return [walk(v) for v in value]
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items()}
        return value

    if isinstance(data, dict) and isinstance(data.get(SOURCES_KEY), list):
        fixed = {k: v if k == SOURCES_KEY else walk(v) for k, v in data.items()}
    else:
        fixed = walk(data)
    return json.dumps(fixed, ensure_ascii=False), cited, invalid, " ".join(p for p in plain if p)


def _snippet(text: str, answer: str = "", limit: int = 240) -> str:
    """The chunk's sentence that shares most words with the answer (the quote a reader
    checks), or the chunk's start when none does."""
    flat = " ".join(text.split())
    words = {w for w in re.findall(r"\w+", answer.lower()) if len(w) > 2}
    best, best_overlap = flat, 0
    for piece in re.split(r"(?<=[.!?])\s+|\n+", text):
        sentence = " ".join(piece.split())
        overlap = len(words & set(re.findall(r"\w+", sentence.lower())))
        if overlap > best_overlap:
            best, best_overlap = sentence, overlap
    return best if len(best) <= limit else best[:limit].rsplit(" ", 1)[0] + " …"


def generator_for(settings: Settings) -> Generator:
    """The generator the settings name (one instance per process and settings): with the
    bundled model and no adapter, the bundled grounded reader unless `generator.reader` is
    off."""
    g = settings.generator
    return get_generator(g.name, settings.cache_dir, g.dtype, answering_adapter(settings),
                         g.batch_size, g.base_url, g.api_key_env, g.timeout_s, g.max_retries)


def answering_adapter(settings: Settings) -> Path | None:
    """The adapter answers are generated with: `generator.adapter`, else the bundled reader for
    the bundled model (when `generator.reader` is on), else none."""
    g = settings.generator
    if g.adapter is not None:
        return Path(g.adapter)
    if g.reader and g.name == BUNDLED_GENERATOR:
        return reader_adapter()
    return None


def default_policy(settings: Settings) -> RefusalPolicy:
    """The `[answer]` thresholds; the default `min_confidence` was calibrated for the bundled
    SmolLM2 and is dropped for any other generator (see `RefusalPolicy.for_generator`)."""
    s = settings.answer
    return RefusalPolicy(s.min_similarity, s.min_confidence, "settings",
                         s.min_confidence_generator)


def stored_policy(kb: KnowledgeBase) -> RefusalPolicy | None:
    """The policy `ragtune calibrate` stored in this knowledge base, if any."""
    if not kb.exists():
        return None
    raw = kb.store.get_meta().get(POLICY_META_KEY)
    return RefusalPolicy.from_json(raw) if raw else None


def stored_verify_policy(kb: KnowledgeBase) -> VerifyPolicy | None:
    """The verification threshold `ragtune calibrate` stored in this knowledge base, if any."""
    if not kb.exists():
        return None
    raw = kb.store.get_meta().get(VERIFY_META_KEY)
    return VerifyPolicy.from_json(raw) if raw else None


@dataclass(frozen=True)
class AnswerCalibration:
    """What `ragtune calibrate` chose: the refusal thresholds, then the verification threshold
    for at most `max_risk` wrong answers among those returned, with its risk–coverage curve."""

    refusal: Calibration
    verify: VerifyPolicy
    curve: list[RiskPoint]

    def to_dict(self) -> dict[str, Any]:
        return self.refusal.to_dict() | {
            "verify": asdict(self.verify),
            "risk_coverage": [asdict(p) for p in self.curve]}


def calibrate_answers(
    kb: KnowledgeBase,
    cases: Sequence[EvalCase],
    generator: Generator | None = None,
    keep_answerable: float = 0.97,
    max_risk: float = 0.10,
    batch: int = 16,
    progress: Callable[[int, int | None], None] | None = None,
    save: bool = True,
) -> AnswerCalibration:
    """Answer `cases` (answerable and unanswerable) once with no thresholds and every answer
    judged, then choose (1) the refusal thresholds (`refusal.calibrate`) and (2) among the
    answers those let through, the lowest verification threshold at which at most `max_risk`
    of the returned answers are wrong (an answer to an unanswerable question is wrong; an
    answer is right by exact match or token F1 >= `eval.correct_f1`). Both are stored in the
    knowledge base (`save`), the threshold for this judge and generator."""
    answerer = Answerer(kb, generator, RefusalPolicy(None, None, "none"), on_unverified="mark")
    notify = progress or (lambda done, total: None)
    notify(0, len(cases))
    answers: list[Answer] = []
    for start in range(0, len(cases), batch):
        part = cases[start:start + batch]
        answers.extend(answerer.ask_batch([c.question for c in part]))
        notify(len(part), None)
    signals = [Signal(case.answerable, a.similarity, a.raw_output,
                      a.generation.mean_logprob if a.generation else None)
               for case, a in zip(cases, answers, strict=True)]
    name = answerer.generator.name
    refusal = calibrate(signals, keep_answerable, label=f"{len(cases)} cases", generator=name)
    scores: list[float | None] = []
    wrong: list[bool] = []
    good_f1 = kb.settings.eval.correct_f1
    for case, answer, signal in zip(cases, answers, signals, strict=True):
        let_through = answer.verification is not None and refusal.policy.decide(
            signal.similarity, signal.output, signal.confidence) is None
        scores.append(answer.verification.score if let_through and answer.verification
                      else None)
        wrong.append(not case.answerable or not (
            exact_match(answer.plain, case.answers) or
            token_f1(answer.plain, case.answers) >= good_f1))
    curve = risk_coverage(scores, wrong)
    point = choose_threshold(curve, max_risk)
    policy = VerifyPolicy(point.threshold, answerer.verifier.judge.name, name, max_risk,
                          point.risk, point.coverage, len(cases))
    if save:
        kb.store.set_meta({POLICY_META_KEY: refusal.policy.to_json(),
                           VERIFY_META_KEY: policy.to_json()})
    return AnswerCalibration(refusal, policy, curve)


def ask(question: str, kb: KnowledgeBase, **options: Any) -> Answer:
    """One-call convenience: `Answerer(kb).ask(question, **options)` with a cached generator."""
    return Answerer(kb).ask(question, **options)
