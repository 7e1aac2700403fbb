"""The generation queue on the real bundled model: what waits together is generated together,
a streaming request goes alone, and errors reach their callers."""

from __future__ import annotations

import threading
import time

import pytest

from ragtune.models.generators import GenerationConfig
from ragtune.service.batching import GenerationQueue

pytestmark = pytest.mark.slow

QUESTIONS = ["Name a colour.", "Name a fruit.", "Name a planet."]


def _ask(queue: GenerationQueue, generator, question: str, out: dict,
         together: threading.Barrier | None = None, **kw) -> None:
    with queue.coming():
        if together is not None:  # every request has announced itself (a loaded machine may
            together.wait(30)     # start a thread late: then it did not wait together)
        time.sleep(0.05)  # retrieval, while the first job is already queued
        out[question] = queue.generate(generator, [{"role": "user", "content": question}],
                                       GenerationConfig(max_new_tokens=6), **kw)


def test_requests_that_wait_together_are_one_batch(generator) -> None:
    queue = GenerationQueue(max_batch=8)
    out: dict = {}
    together = threading.Barrier(len(QUESTIONS))
    threads = [threading.Thread(target=_ask, args=(queue, generator, q, out, together))
               for q in QUESTIONS]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert queue.batches == [3]
    assert sorted(out) == sorted(QUESTIONS)
    assert all(g.output_tokens > 0 and g.text.strip() for g in out.values())


def test_a_stream_goes_alone_and_errors_reach_the_caller(generator) -> None:
    queue = GenerationQueue(max_batch=8)
    out: dict = {}
    pieces: list[str] = []
    _ask(queue, generator, QUESTIONS[0], out, on_token=pieces.append)
    assert queue.batches == [1] and "".join(pieces).strip()
    with pytest.raises(Exception, match="role"):
        queue.generate(generator, [{"role": "nobody", "content": "x"}], GenerationConfig())
    _ask(queue, generator, QUESTIONS[1], out)  # the worker survived the error
    assert QUESTIONS[1] in out
