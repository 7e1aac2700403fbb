"""Everything the routes of one app share, in one object: the settings, the keys and their rate
limits, the open knowledge bases, the shared model's queue, the trace recorder, the metrics.

    >>> state = ServiceState(settings, KeyStore.open(settings))
    >>> app.state.service = state           # what `create_app` does; routes reach it through
    >>> state.open_kb("support")            # `ragtune.service.deps`, never through globals
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from ragtune.config import Settings
from ragtune.evaluation.online import TraceRecorder
from ragtune.kb import KnowledgeBase
from ragtune.service.batching import GenerationQueue
from ragtune.service.errors import ApiError, rate_limited
from ragtune.service.keys import KeyRecord, KeyStore
from ragtune.service.metrics import Metrics
from ragtune.service.schemas import UPLOAD_PATH

if TYPE_CHECKING:
    from ragtune.answering import Answer
    from ragtune.models.generators import Generator
    from ragtune.store import Trace


class ServiceState:
    """The service's shared state for one data home. Knowledge bases open on first use and
    stay open; `start(warm=True)` loads the models in the background (`ready` says when)."""

    def __init__(self, settings: Settings, keys: KeyStore) -> None:
        limits = settings.service
        self.settings, self.keys = settings, keys
        # budgets per key, shared by the replicas that share the keys
        self.limiter = keys.rate_limiter(limits.requests_per_minute, limits.burst)
        # failed logins: per key id (a guessed secret), or per client address (no usable id)
        self.failures = keys.rate_limiter(limits.failed_logins_per_minute,
                                          limits.failed_logins_per_minute)
        self.metrics = Metrics()
        self.recorder = TraceRecorder(limits.trace_sample_rate, limits.trace_retention_days,
                                      limits.trace_max_rows, on_stored=self._stored)
        self.generations = GenerationQueue(limits.max_batch)  # the shared local model's worker
        self.ready = threading.Event()
        self._kbs: dict[str, KnowledgeBase] = {}
        self._kb_lock = threading.Lock()

    def _stored(self, trace: Trace) -> None:
        if trace.groundedness is not None:
            self.metrics.observe_groundedness(trace.groundedness)

    def body_limit(self, path: str) -> int:
        """The largest request body a path takes (uploads have their own bound)."""
        limits = self.settings.service
        return limits.max_upload_bytes if path == UPLOAD_PATH else limits.max_body_bytes

    def verify(self, token: str, who: str) -> KeyRecord:
        """The key `token` is, counted against its rate limit; `who` (its id, or the client's
        address) is limited in failed attempts. 401 or 429 as `ApiError`."""
        wait = self.failures.wait(who, count=False)
        if wait:  # too many wrong secrets for this id: not even checked
            raise rate_limited(wait, "too many failed logins")
        record = self.keys.verify(token)
        if record is None:
            self.failures.wait(who)
            raise ApiError(401, "unauthorized", "unknown or revoked key")
        wait = self.limiter.wait(record.id)
        if wait:
            raise rate_limited(wait, "too many requests for this key")
        return record

    def open_kb(self, name: str | None) -> KnowledgeBase:
        """The knowledge base `name` (default: the settings'), opened once; 404 when none."""
        name = name or self.settings.kb
        with self._kb_lock:
            kb = self._kbs.get(name)
            if kb is None:
                kb = KnowledgeBase.open(name, self.settings)
                if not kb.exists():
                    raise ApiError(404, "not_found", f"no knowledge base {name!r}")
                self._kbs[name] = kb
        return kb

    def kb_names(self) -> list[str]:
        """The knowledge bases: folders under `<home>/kb`, and those a shared database holds
        (created through another replica), sorted."""
        from ragtune.store import knowledge_base_names

        return knowledge_base_names(self.settings.home / "kb", self.settings.store)

    def start(self, warm: bool) -> None:
        """Load the models in the background (`warm`), or be ready at once."""
        if warm:
            threading.Thread(target=self.warm_up, daemon=True, name="ragtune-warm-up").start()
        else:
            self.ready.set()

    def warm_up(self) -> None:
        """Load the embedder, the generator and the default knowledge base (if built), so the
        first request waits for none of them; then `ready`."""
        from ragtune.answering.ask import generator_for
        from ragtune.models.embedders import get_embedder

        e = self.settings.embedder
        get_embedder(e.name, e.batch_size, self.settings.cache_dir, e.base_url,
                     e.api_key_env).warm_up()
        generator_for(self.settings).warm_up()
        with contextlib.suppress(ApiError):
            self.open_kb(None)
        self.ready.set()

    def answer(self, base: KnowledgeBase, question: str, key: KeyRecord, route: str,
               k: int | None = None, on_token: Callable[[str], None] | None = None,
               generator: Generator | None = None,
               on_draft: Callable[[str], None] | None = None,
               on_unverified: str | None = None) -> Answer:
        """One grounded answer: retrieval here, generation in the shared model's queue
        (batched with the answers waiting beside it), counted in the metrics and handed to
        the trace recorder (sampled, scored off the request)."""
        from ragtune.answering import Answerer

        started = time.perf_counter()
        answerer = Answerer(base, generator, on_unverified=on_unverified)
        generation = None
        with self.generations.coming():  # retrieval in parallel; the queue may wait for it
            prepared = answerer.prepare(question, k, None, key.access.view)
            if answerer.should_generate(prepared):
                generation = self.generations.generate(
                    answerer.generator, prepared.prompt.messages, answerer.config(),
                    answerer.draft_callback(on_token, on_draft))
        answer = answerer.finish(prepared, generation)
        answerer.relay(answer, on_token)  # only the checked answer is streamed
        self.metrics.observe_answer(answer.refused)
        self.recorder.record(base, answer, route=route, key_id=key.id, key_groups=key.groups,
                             latency_ms=(time.perf_counter() - started) * 1000)
        return answer
