"""The shared local model behind a queue: one worker thread generates, and the requests that
are waiting together go to the model as one batch.

    >>> queue = GenerationQueue(max_batch=8)
    >>> generation = queue.generate(generator, prompt.messages, config)    # blocks; thread-safe

Retrieval and prompt building run in the request threads, in parallel; only generation is
serialized. A streaming request (`on_token`) is generated alone, so its tokens are its own.
Requests announce themselves before they retrieve (`with queue.coming(): retrieve; generate`),
and the worker waits for those (at most `gather_s`) before it starts a batch that is not full:
otherwise the first question of a wave would always go alone while the rest were still
retrieving. An announced request stops counting as coming in the same step that queues its job
(or when it leaves `coming()` without one), so no request is between the two states unseen.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

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
    batch: Sequence[Sequence[Message]] | None = None  # a caller's own batch: runs as it is
    future: Future[Any] = field(default_factory=Future)

    def joins(self, other: _Job) -> bool:
        """Whether the two can share a batch: same model and settings, neither streaming."""
        return (self.on_token is None and other.on_token is None
                and self.batch is None and other.batch is None
                and self.generator is other.generator and self.config == other.config)


class GenerationQueue:
    """Serializes generation on shared models and batches what waits together."""

    def __init__(self, max_batch: int = 8, gather_s: float = 0.5) -> None:
        self.max_batch = max(1, max_batch)
        self.gather_s = gather_s
        self._coming = 0  # requests retrieving now: they will queue a job soon
        self._jobs: deque[_Job] = deque()
        self._ready = threading.Condition()
        self._worker: threading.Thread | None = None
        self._announced = threading.local()  # .active: this thread is counted in _coming
        self.batches: list[int] = []  # sizes of the batches generated (the last 1000)

    @contextmanager
    def coming(self) -> Iterator[None]:
        """Around a request's retrieval and its `generate` call: the worker may wait for its
        job to join a batch."""
        with self._ready:
            self._coming += 1
        self._announced.active = True
        try:
            yield
        finally:
            with self._ready:
                if self._announced.active:  # left without queuing a job (a refusal)
                    self._coming -= 1
                    self._ready.notify_all()
                self._announced.active = False

    def generate(self, generator: Generator, messages: Sequence[Message],
                 config: GenerationConfig, on_token: TokenCallback | None = None
                 ) -> Generation:
        """Queue one completion and wait for it (errors are raised here, in the caller)."""
        result: Generation = self._submit(_Job(generator, messages, config, on_token))
        return result

    def generate_batch(self, generator: Generator,
                       conversations: Sequence[Sequence[Message]], config: GenerationConfig
                       ) -> list[Generation]:
        """Queue a batch of the caller's own (an evaluation) and wait for it."""
        result: list[Generation] = self._submit(
            _Job(generator, [], config, None, batch=conversations))
        return result

    def proxy(self, generator: Generator) -> QueuedGenerator:
        """`generator` with its generation going through this queue (for library code that
        takes a Generator, such as the evaluator)."""
        return QueuedGenerator(self, generator)

    def _submit(self, job: _Job) -> Any:
        with self._ready:
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._work, daemon=True,
                                                name="ragtune-generation")
                self._worker.start()
            self._jobs.append(job)
            if getattr(self._announced, "active", False):  # it has arrived: no longer coming
                self._coming -= 1
                self._announced.active = False
            self._ready.notify_all()
        return job.future.result()

    def _take(self) -> list[_Job]:
        """The oldest job and the queued ones that can join it (queue order kept)."""
        with self._ready:
            while not self._jobs:
                self._ready.wait()
            if self._jobs[0].joins(self._jobs[0]):  # a batch may form: wait for the retrieving
                deadline = time.monotonic() + self.gather_s
                while (self._coming and len(self._jobs) < self.max_batch
                       and (left := deadline - time.monotonic()) > 0):
                    self._ready.wait(left)
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
                results: list[Any]  # one result per job: a Generation, or a caller's batch
                if first.batch is not None:
                    results = [first.generator.generate_batch(first.batch, first.config)]
                elif len(batch) == 1:
                    results = [first.generator.generate(first.messages, first.config,
                                                        first.on_token)]
                else:
                    results = first.generator.generate_batch([j.messages for j in batch],
                                                             first.config)
                self.batches = [*self.batches[-999:], len(first.batch or batch)]
                for job, result in zip(batch, results, strict=True):
                    job.future.set_result(result)
            except BaseException as exc:  # the callers raise it; the worker goes on
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(exc)


class QueuedGenerator:
    """A `Generator` whose generation waits its turn in a `GenerationQueue`."""

    def __init__(self, queue: GenerationQueue, generator: Generator) -> None:
        self.queue, self.generator = queue, generator
        self.name = generator.name

    def warm_up(self) -> None:
        self.generator.warm_up()

    def count_tokens(self, text: str) -> int:
        return self.generator.count_tokens(text)

    def generate(self, messages: Sequence[Message], config: GenerationConfig | None = None,
                 on_token: TokenCallback | None = None) -> Generation:
        return self.queue.generate(self.generator, messages, config or GenerationConfig(),
                                   on_token)

    def generate_batch(self, conversations: Sequence[Sequence[Message]],
                       config: GenerationConfig | None = None) -> list[Generation]:
        return self.queue.generate_batch(self.generator, conversations,
                                         config or GenerationConfig())
