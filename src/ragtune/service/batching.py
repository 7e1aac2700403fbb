"""The shared local model behind a queue: one worker thread generates, and the requests that
are waiting together go to the model as one batch.

    >>> queue = GenerationQueue(max_batch=8)
    >>> generation = queue.generate(generator, prompt.messages, config)    # blocks; thread-safe

Retrieval and prompt building run in the request threads, in parallel; only generation is
serialized. A streaming request (`on_token`) is generated alone, so its tokens are its own.
Batching pays on a CPU: eight answers in one batch take far less than eight times one answer.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

from ragtune.models.generators import (
    Generation,
    GenerationConfig,
    Generator,
    Message,
    TokenCallback,
)


@dataclass
class _Job:
    generator: Generator
    messages: Sequence[Message]
    config: GenerationConfig
    on_token: TokenCallback | None
    future: Future[Generation] = field(default_factory=Future)

    def joins(self, other: _Job) -> bool:
        """Whether the two can share a batch: same model and settings, neither streaming."""
        return (self.on_token is None and other.on_token is None
                and self.generator is other.generator and self.config == other.config)


class GenerationQueue:
    """Serializes generation on shared models and batches what waits together."""

    def __init__(self, max_batch: int = 8) -> None:
        self.max_batch = max(1, max_batch)
        self._jobs: deque[_Job] = deque()
        self._ready = threading.Condition()
        self._worker: threading.Thread | None = None
        self.batches: list[int] = []  # sizes of the batches generated (the last 1000)

    def generate(self, generator: Generator, messages: Sequence[Message],
                 config: GenerationConfig, on_token: TokenCallback | None = None
                 ) -> Generation:
        """Queue one completion and wait for it (errors are raised here, in the caller)."""
        job = _Job(generator, messages, config, on_token)
        with self._ready:
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._work, daemon=True,
                                                name="ragtune-generation")
                self._worker.start()
            self._jobs.append(job)
            self._ready.notify()
        return job.future.result()

    def _take(self) -> list[_Job]:
        """The oldest job and the queued ones that can join it (queue order kept)."""
        with self._ready:
            while not self._jobs:
                self._ready.wait()
            first = self._jobs.popleft()
            batch, rest = [first], deque[_Job]()
            while self._jobs:
                job = self._jobs.popleft()
                if len(batch) < self.max_batch and first.joins(job):
                    batch.append(job)
                else:
                    rest.append(job)
            self._jobs.extendleft(reversed(rest))
            return batch

    def _work(self) -> None:
        while True:
            batch = self._take()
            try:
                first = batch[0]
                if len(batch) == 1:
                    results = [first.generator.generate(first.messages, first.config,
                                                        first.on_token)]
                else:
                    results = first.generator.generate_batch([j.messages for j in batch],
                                                             first.config)
                self.batches = [*self.batches[-999:], len(batch)]
                for job, result in zip(batch, results, strict=True):
                    job.future.set_result(result)
            except BaseException as exc:  # the callers raise it; the worker goes on
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(exc)
