"""The service under concurrent load on a real socket: many questions while another client
ingests, the shared model batching what waits together, readers never blocked by the ingest."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

FACTS = {
    "support.md": "# Support hours\n\nThe Zephyr help desk answers calls from 8:00 to 18:00 on "
                  "weekdays. Weekend calls go to voicemail.",
    "shipping.md": "# Shipping\n\nZephyr parcels ship within 2 business days. Express delivery "
                   "costs EUR 12.",
    "returns.md": "# Returns\n\nZephyr accepts returns within 45 days of delivery, unused and in "
                  "the original box.",
}
QUESTIONS = ["When does the Zephyr help desk answer calls?", "How fast do Zephyr parcels ship?",
             "How much does express delivery cost?", "Within how many days can I return it?",
             "What happens to weekend calls?"]


def test_fifty_questions_while_another_client_ingests_two_hundred_documents(
        tmp_path: Path, settings) -> None:
    import httpx

    from live import serving
    from ragtune import KnowledgeBase
    from ragtune.config import ServiceSettings
    from ragtune.service import KeyStore
    from ragtune.service.app import create_app

    folder = tmp_path / "docs"
    folder.mkdir()
    for name, text in FACTS.items():
        (folder / name).write_text(text)
    kb = KnowledgeBase.open("load", settings)
    kb.ingest([folder])
    keys = KeyStore.open(settings)
    reader, writer = keys.create(["read"])[0], keys.create(["ingest"])[0]
    roomy = settings.model_copy(update={"kb": "load", "service": ServiceSettings(
        requests_per_minute=100_000, burst=10_000)})
    app = create_app(roomy, keys)
    new_ids = [f"memo-{i:03d}" for i in range(200)]
    windows: dict[str, list[tuple[float, float]]] = {"ask": [], "ingest": []}
    lock = threading.Lock()

    with serving(app) as url, httpx.Client(base_url=url, timeout=600) as http:
        def timed(kind: str, method: str, path: str, token: str, body: dict) -> httpx.Response:
            started = time.monotonic()
            response = http.request(method, path, json=body,
                                    headers={"Authorization": f"Bearer {token}"})
            with lock:
                windows[kind].append((started, time.monotonic()))
            return response

        def ingest() -> list[httpx.Response]:
            out = []
            for start in range(0, len(new_ids), 10):  # 20 requests of 10 documents
                docs = [{"id": d, "title": f"Memo {d}", "text": f"Memo {d}: the Zephyr team "
                         f"meets in room {i} on day {i % 28 + 1}."}
                        for i, d in enumerate(new_ids[start:start + 10], start)]
                out.append(timed("ingest", "POST", "/v1/documents", writer,
                                 {"documents": docs}))
            return out

        with ThreadPoolExecutor(max_workers=51) as pool:
            ingesting = pool.submit(ingest)
            asks = [pool.submit(timed, "ask", "POST", "/v1/ask", reader,
                                {"question": QUESTIONS[i % len(QUESTIONS)]}) for i in range(50)]
            answers = [a.result() for a in asks]
            ingests = ingesting.result()

        assert [r.status_code for r in ingests] == [200] * 20, [r.text for r in ingests]
        assert sum(r.json()["added"] for r in ingests) == 200
        assert all(r.json()["failed"] == [] for r in ingests)
        assert [r.status_code for r in answers] == [200] * 50, [r.text for r in answers]
        stored = {d["id"] for d in http.get(
            "/v1/documents", headers={"Authorization": f"Bearer {reader}"}).json()["documents"]}
        # a key without groups writes public documents, under the public namespace
        assert {f"@public/{d}" for d in new_ids} <= stored and len(stored) == 203

    for response in answers:  # every answer valid: a cited answer or a refusal with its reason
        body = response.json()
        assert isinstance(body["answer"], str) and body["answer"].strip()
        if body["refused"]:
            assert body["refusal_reason"]
        for citation in body["citations"]:
            assert citation["doc_id"] in stored
            assert citation["number"] in {p["number"] for p in body["passages"]}
    answered = [r.json() for r in answers if not r.json()["refused"]]
    assert answered, "every question was refused: the load test checked no answer"
    # the ingest really ran while questions were waiting or being answered
    asking = (min(s for s, _ in windows["ask"]), max(e for _, e in windows["ask"]))
    assert any(asking[0] < end < asking[1] for _, end in windows["ingest"])
    # the shared model batched the questions that waited together
    assert max(app.state.generations.batches) > 1
    assert sum(app.state.generations.batches) <= 50
    kb.close()
