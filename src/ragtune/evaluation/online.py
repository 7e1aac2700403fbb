"""Production evaluation: every served answer's trace (sampled), scored online and kept in the
knowledge base's own database with a retention limit.

    >>> recorder = TraceRecorder(sample_rate=0.2, retention_days=30, max_rows=100_000)
    >>> recorder.record(kb, answer, route="/v1/ask", key_id="k1", latency_ms=812.0)
    >>> recorder.flush()                                   # scored and stored
    >>> kb.store.list_traces(below=0.5)                    # the poorly grounded ones

Online scores are the ones that need no reference answer: groundedness (the offline judge,
the same one `ragtune eval` uses for faithfulness: the share of the answer's claims supported
by the passages it was given), refusal, latency and tokens. Scoring runs on a worker thread,
so it never adds to a request's latency; a trace that cannot be scored or stored is logged and
dropped, never an error for the caller.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections.abc import Callable
from queue import Queue
from typing import Any

from ragtune.answering.ask import Answer
from ragtune.answering.judges import Claim, Judge, OfflineJudge
from ragtune.answering.prompt import unescape_output
from ragtune.evaluation.metrics import faithfulness, split_claims
from ragtune.kb import KnowledgeBase
from ragtune.store import Trace

log = logging.getLogger("ragtune.traces")

PRUNE_EVERY = 50  # traces written between two retention passes
DAY = 86_400.0


def judge_answer(judge: Judge, question: str, answer: Answer
                 ) -> tuple[float | None, list[dict[str, Any]]]:
    """The answer's claims judged against the passages it was given: (share supported, the
    claims with their scores and evidence); (None, []) without passages."""
    passages = [unescape_output(p.text) for p in answer.prompt.passages]
    if not passages:
        return None, []
    plain = answer.plain
    # a JSON answer's claims are in its string values, not in its syntax
    pieces = split_claims(answer.text if answer.json_text is None else plain) or [plain]
    verdicts = judge.judge([Claim(question, c, tuple(passages)) for c in pieces])
    claims = [{"claim": c, "score": round(v.score, 4), "supported": v.supported,
               "evidence": v.evidence} for c, v in zip(pieces, verdicts, strict=True)]
    return faithfulness([v.supported for v in verdicts]), claims


def build_trace(kb: KnowledgeBase, answer: Answer, judge: Judge, *, route: str,
                key_id: str | None, latency_ms: float, created_at: float | None = None,
                key_groups: tuple[str, ...] = ()) -> Trace:
    """One served answer as a trace, with its online scores. Its `doc_groups` are its
    passages' documents' groups and the asking key's (`key_groups`): a reader must hold them
    all, so a tenant's question is never shown to another tenant's admin."""
    groundedness, claims = (None, []) if answer.refused else judge_answer(
        judge, answer.question, answer)
    doc_groups: set[str] = set(key_groups)
    for doc_id in {p.doc_id for p in answer.prompt.passages}:
        doc = kb.store.get_document(doc_id)
        if doc is not None:
            doc_groups.update(doc.groups)
    gen = answer.generation
    return Trace(
        id=uuid.uuid4().hex, created_at=created_at or time.time(), route=route, key_id=key_id,
        question=answer.question, answer=answer.text, refused=answer.refused,
        refusal_reason=answer.refusal_reason, groundedness=groundedness,
        latency_ms=round(latency_ms, 2),
        prompt_tokens=gen.prompt_tokens if gen else 0,
        output_tokens=gen.output_tokens if gen else 0,
        doc_groups=tuple(sorted(doc_groups)),
        detail={
            "citations": [c.to_dict() for c in answer.citations],
            "passages": [{"number": p.number, "chunk_id": p.chunk_id, "doc_id": p.doc_id,
                          "title": p.title, "text": unescape_output(p.text),
                          "score": round(p.score, 4)} for p in answer.prompt.passages],
            "claims": claims,
            "judge": judge.name,
            "signals": {"similarity": answer.similarity,
                        "confidence": gen.mean_logprob if gen else None},
            "generation": None if gen is None else {
                "model": gen.model, "seconds": round(gen.seconds, 3),
                "finish_reason": gen.finish_reason},
            "timings_ms": {k: round(v, 2) for k, v in answer.timings_ms.items()},
            # readable over HTTP by admin keys: a refused draft is not kept (Answer docs)
            "raw_output": answer.client_raw_output,
        },
    )


def trace_to_dict(trace: Trace, detail: bool = True) -> dict[str, Any]:
    """The JSON shape of `ragtune traces --json` and `GET /v1/traces`."""
    out: dict[str, Any] = {
        "id": trace.id, "created_at": _iso(trace.created_at), "route": trace.route,
        "key_id": trace.key_id, "question": trace.question, "answer": trace.answer,
        "refused": trace.refused, "refusal_reason": trace.refusal_reason,
        "groundedness": trace.groundedness, "latency_ms": trace.latency_ms,
        "prompt_tokens": trace.prompt_tokens, "output_tokens": trace.output_tokens,
        "citations": list(trace.detail.get("citations", [])),
    }
    if detail:
        out.update({k: v for k, v in trace.detail.items() if k != "citations"})
    return out


class TraceRecorder:
    """Samples served answers, scores them on a worker thread and stores them in their
    knowledge base, pruning by age and count. `on_stored` sees every stored trace (metrics)."""

    def __init__(self, sample_rate: float = 1.0, retention_days: float = 30.0,
                 max_rows: int = 100_000, on_stored: Callable[[Trace], None] | None = None,
                 seed: int | None = None, prune_every: int = PRUNE_EVERY) -> None:
        self.sample_rate = sample_rate
        self.retention_days = retention_days
        self.max_rows = max_rows
        self.on_stored = on_stored
        self.prune_every = prune_every
        self._rng = random.Random(seed)
        self._rng_lock = threading.Lock()
        self._queue: Queue[tuple[KnowledgeBase, Answer, str, str | None, tuple[str, ...],
                                 float, float]] = Queue()
        self._judges: dict[str, Judge] = {}
        self._written: dict[str, int] = {}
        self._worker: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def record(self, kb: KnowledgeBase, answer: Answer, *, route: str,
               key_id: str | None, latency_ms: float, key_groups: tuple[str, ...] = ()
               ) -> bool:
        """Queue the answer's trace if it is sampled; True when it is. `key_groups` (the
        asking key's) join its documents' groups: who may read the trace holds them all."""
        with self._rng_lock:
            if self.sample_rate <= 0 or self._rng.random() >= self.sample_rate:
                return False
        self._ensure_worker()
        self._queue.put((kb, answer, route, key_id, key_groups, latency_ms, time.time()))
        return True

    def flush(self) -> None:
        """Wait until every queued trace is scored and stored (tests, shutdown)."""
        self._queue.join()

    def _ensure_worker(self) -> None:
        with self._start_lock:
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._work, daemon=True,
                                                name="ragtune-traces")
                self._worker.start()

    def _work(self) -> None:
        while True:
            kb, answer, route, key_id, key_groups, latency_ms, created_at = self._queue.get()
            try:
                judge = self._judges.get(kb.name)
                if judge is None:
                    judge = self._judges[kb.name] = OfflineJudge(kb.embedder)
                trace = build_trace(kb, answer, judge, route=route, key_id=key_id,
                                    latency_ms=latency_ms, created_at=created_at,
                                    key_groups=key_groups)
                kb.store.add_trace(trace)
                written = self._written[kb.name] = self._written.get(kb.name, 0) + 1
                if (written - 1) % self.prune_every == 0:  # the first too: after a restart
                    kb.store.prune_traces(time.time() - self.retention_days * DAY,
                                          self.max_rows)
                if self.on_stored is not None:
                    self.on_stored(trace)
            except Exception:  # a trace is never worth failing the service for
                log.exception("could not store the trace of %r", answer.question[:80])
            finally:
                self._queue.task_done()


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))
