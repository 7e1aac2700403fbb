"""Attacks on tenant isolation, as a tenant would try them against `ragtune serve` over a real
socket: writes that widen groups or replace another tenant's documents, deletes outside the
key's groups, statistics that leak words, existence oracles, hostile input, slow clients, and
what the service says that it need not."""

from __future__ import annotations

import json
import socket
import time
from urllib.parse import urlparse

import httpx
import pytest

from security_stack import BODY_TIMEOUT, HEADER_TIMEOUT, SECRET, Stack

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def jsonl(*rows: dict) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def listing(stack: Stack, who: str) -> dict[str, dict]:
    with stack.client(who) as c:
        return {d["id"]: d for d in c.get("/v1/documents").json()["documents"]}


def beta_doc(stack: Stack) -> dict:
    return next(d for d in listing(stack, "admin").values() if d["title"] == "Beta secret")


def test_jsonl_rows_cannot_widen_what_the_key_may_write(stack: Stack) -> None:
    rows = jsonl({"_id": "r-beta", "text": "row into beta", "groups": ["beta"]},
                 {"_id": "r-public", "text": "row made public", "groups": []},
                 {"_id": "r-both", "text": "row into both", "groups": ["alpha", "beta"]},
                 {"_id": "r-own", "text": "row of alpha's own"})
    with stack.client("alpha") as c:
        done = c.post("/v1/documents/files",
                      files=[("files", ("rows.jsonl", rows, "application/jsonl"))]).json()
    assert done["added"] == 1 and len(done["failed"]) == 3
    assert done["documents"] == [{"id": "@alpha/r-own", "outcome": "added"}]
    stored = {d["id"]: d for d in listing(stack, "admin").values() if "/r-" in d["id"]}
    assert set(stored) == {"@alpha/r-own"} and stored["@alpha/r-own"]["groups"] == ["alpha"]
    assert not any("r-" in i for i in listing(stack, "beta"))
    # the same rows as JSON records: refused whole, nothing written
    with stack.client("alpha") as c:
        for groups in (["beta"], [], ["alpha", "beta"]):
            refused = c.post("/v1/documents", json={"documents": [
                {"id": "r-x", "text": "t", "groups": groups}]})
            assert refused.status_code == 403, refused.text
    assert not any(i.endswith("r-x") for i in listing(stack, "admin"))


def test_a_tenant_cannot_replace_another_tenants_document_by_its_id(stack: Stack) -> None:
    target = beta_doc(stack)
    with stack.client("beta") as c:
        api_doc = c.post("/v1/documents", json={"documents": [
            {"id": "beta-api", "text": "Beta's API document says 41."}]}).json()
    beta_api_id = api_doc["documents"][0]["id"]
    hidden = [target["id"], beta_api_id]
    with stack.client("alpha") as c:
        # the hidden ids, and a fresh one: the same answer ("added", never "updated")
        answers = [c.post("/v1/documents", json={"documents": [
            {"id": i, "text": "ATTACKER TEXT", "groups": ["alpha"]}]}).json()
            for i in [*hidden, "never-used-anywhere"]]
        assert [a["added"] for a in answers] == [1, 1, 1]
        assert all(a["updated"] == 0 and a["failed"] == [] for a in answers)
        # and as an upload's JSONL rows
        rows = jsonl(*({"_id": i, "text": "ATTACKER ROW"} for i in hidden))
        up = c.post("/v1/documents/files",
                    files=[("files", ("take.jsonl", rows, "application/jsonl"))]).json()
        assert up["failed"] == [] and len(up["documents"]) == 2
        assert all(d["id"].startswith("@alpha/") for d in up["documents"])
    with stack.client("beta") as c:
        for doc_id in hidden:
            shown = c.get(f"/v1/documents/{doc_id}", params={"text": "true"}).json()
            assert "ATTACKER" not in shown["text"] and shown["version"] == 1
            assert shown["groups"] == ["beta"]
        hits = c.post("/v1/search", json={"query": "ATTACKER TEXT", "k": 10}).json()["hits"]
        assert all(h["doc_id"].startswith(("beta/", "@beta/", "public/", "@public/"))
                   for h in hits)


def test_uploads_of_one_file_name_by_two_tenants_never_collide(stack: Stack) -> None:
    ids = {}
    for tenant in ("alpha", "beta"):
        with stack.client(tenant) as c:
            done = c.post("/v1/documents/files", files=[(
                "files", ("notes.md", f"# Notes\n\n{tenant} notes: room {tenant}-12.".encode(),
                          "text/markdown"))]).json()
            assert done["added"] == 1, done
            ids[tenant] = done["documents"][0]["id"]
    assert ids == {"alpha": "@alpha/upload:notes.md", "beta": "@beta/upload:notes.md"}
    for tenant in ("alpha", "beta"):
        with stack.client(tenant) as c:
            text = c.get(f"/v1/documents/{ids[tenant]}", params={"text": "true"}).json()["text"]
            assert f"room {tenant}-12" in text
            other = ids["beta" if tenant == "alpha" else "alpha"]
            assert c.get(f"/v1/documents/{other}").status_code == 404


def test_deletes_outside_the_keys_groups_read_exactly_as_missing(stack: Stack) -> None:
    docs = listing(stack, "admin")
    public = next(i for i, d in docs.items() if d["title"] == "Holidays")
    beta = beta_doc(stack)["id"]
    with stack.client("alpha") as c:
        answers = {i: c.delete(f"/v1/documents/{i}") for i in (public, beta, "no-such-doc")}
    for doc_id, answer in answers.items():
        assert answer.status_code == 404
        assert answer.json() == {"error": {"type": "not_found",
                                           "message": f"no document {doc_id!r}"}}
    assert {public, beta} <= set(listing(stack, "admin"))
    with stack.client("alpha-reader") as c:  # a read key cannot delete even its own
        own = next(i for i, d in docs.items() if d["title"] == "Alpha plan")
        assert c.delete(f"/v1/documents/{own}").status_code == 403
    # a key without groups writes public documents, so it may delete one (here its own)
    with stack.client("public-writer") as c:
        made = c.post("/v1/documents", json={"documents": [{"id": "p", "text": "public p"}]})
        doc_id = made.json()["documents"][0]["id"]
        assert doc_id == "@public/p"
        assert c.delete(f"/v1/documents/{doc_id}").json() == {"deleted": [doc_id]}
        assert c.delete(f"/v1/documents/{beta}").status_code == 404


def test_bm25_statistics_do_not_tell_a_tenant_what_another_tenant_holds(stack: Stack) -> None:
    """alpha writes two documents that differ only in one word: beta's secret, or a word
    nobody has. With statistics over every chunk, the secret's lower idf (beta holds it too)
    scored it lower: a word-by-word oracle. For alpha both words must not exist elsewhere."""
    decoy = "quokka9913"
    with stack.client("alpha") as c:
        c.post("/v1/documents", json={"documents": [
            {"id": "probe-1", "text": f"probe note {SECRET}"},
            {"id": "probe-2", "text": f"probe note {decoy}"}]}).raise_for_status()
        scores = {}
        for word in (SECRET, decoy):
            hits = c.post("/v1/search", json={"query": f"probe {word}", "mode": "bm25",
                                              "k": 3}).json()["hits"]
            scores[word] = [h["score"] for h in hits]
            assert hits[0]["doc_id"] == "@alpha/probe-" + ("1" if word == SECRET else "2")
    # (dense scores differ with the query's words; that every statistic of hybrid search is
    # the visible documents' own is tests/retrieval/test_search.py's oracle)
    assert scores[SECRET] == pytest.approx(scores[decoy], abs=1e-6)
    with stack.client("admin") as c:  # the operator's statistics do count beta's document
        ops = {w: c.post("/v1/search", json={"query": f"probe {w}", "mode": "bm25", "k": 5}
                         ).json()["hits"] for w in (SECRET, decoy)}
    top = {w: hits[0]["score"] for w, hits in ops.items()}
    assert top[SECRET] < top[decoy]  # the probe works where the statistics do cross


def test_evaluate_gives_no_cause_that_depends_on_a_hidden_document(stack: Stack) -> None:
    """An answer that occurs in a hidden document only across a chunk boundary made the cause
    "chunking split" (a missing document gives another): a way to test guesses of its text."""
    hidden = next(d for d in listing(stack, "admin").values() if d["title"] == "Beta handbook")
    text = stack.kb.store.document_text(hidden["id"])
    c0, c1 = stack.kb.store.chunks_of(hidden["id"])[:2]
    # whole words from before the second chunk's start to after the first one's end: in the
    # document, in no single chunk
    across = text[text.rfind(" ", 0, c1.start - 8) + 1:text.find(" ", c0.end + 8)]
    assert across not in c0.text and across not in c1.text
    case = {"question": "Which valve does the orbit team check?", "answers": [across]}
    with stack.client("alpha") as c:
        run = c.post("/v1/evaluate", json={"cases": [
            case | {"gold_doc_ids": [hidden["id"]]},
            case | {"gold_doc_ids": ["no-such-document"]}]})
    assert run.status_code == 200, run.text
    first, second = run.json()["cases"]
    assert first["attribution"] == second["attribution"]  # e.g. not "chunking split"
    assert first["gold_rank"] == second["gold_rank"] is None
    assert first["metrics"] == second["metrics"]
    assert not any(p["doc_id"].startswith("beta/") for case in (first, second)
                   for p in case["passages"])
    assert (first["attribution"] or {}).get("cause") != "chunking split"


def test_a_hidden_passage_reads_exactly_as_a_missing_one(stack: Stack) -> None:
    with stack.client("beta") as c:
        hit = c.post("/v1/search", json={"query": "beta launch code", "k": 1}).json()["hits"][0]
    assert hit["doc_id"].startswith("beta/")
    with stack.client("alpha") as c:
        hidden = c.get(f"/v1/chunks/{hit['chunk_id']}")
        missing = c.get(f"/v1/chunks/{hit['chunk_id']}x")
    assert hidden.status_code == missing.status_code == 404
    assert hidden.json()["error"]["message"] == f"no passage {hit['chunk_id']!r}"
    assert missing.json()["error"]["message"] == f"no passage {hit['chunk_id'] + 'x'!r}"
    assert hit["doc_id"] not in hidden.text


def test_traces_and_metrics_stay_inside_a_tenant(stack: Stack) -> None:
    with stack.client("beta") as c:
        asked = c.post("/v1/ask", json={"question": "What does the beta launch code unlock?"})
        assert asked.status_code == 200
    stack.app.state.recorder.flush()
    with stack.client("admin") as c:
        everything = c.get("/v1/traces").json()["traces"]
        assert any(t["question"].startswith("What does the beta launch") for t in everything)
        assert c.get("/metrics").status_code == 200
    with stack.client("alpha-admin") as c:
        mine = c.get("/v1/traces").json()["traces"]
        assert not any("beta" in t["question"] for t in mine)
        for t in everything:
            if "beta" in t["question"]:
                assert c.get(f"/v1/traces/{t['id']}").status_code == 404
        assert c.get("/metrics").status_code == 403  # figures over every tenant


@pytest.mark.parametrize("body", [
    '{"query": "x", "k": ' + "[" * 500 + "]" * 500 + "}",
    '{"documents": ' + "[" * 100_000 + "]" * 100_000 + "}",
    '{"query": "x", "k": ' + "9" * 5000 + "}",
    '{"query": "x", "k": 99999999999999999999999}',
    '{"documents": [{"id": "a", "text": "t", "metadata": {"m": NaN}}]}',
    '{"documents": [{"id": "a", "text": "t", "metadata": {"m": 1e999}}]}',
    '{"documents": [{"id": "a\\u0000b", "text": "t"}]}',
    '{"documents": [{"id": "a", "text": "t", "groups": ["al\\u0000pha"]}]}',
    '{"documents": [{"id": "a", "text": "t", "metadata": {"m": "\\ud800"}}]}',
], ids=["nested-500", "nested-100000", "int-5000-digits", "int-huge", "nan", "inf",
        "nul-id", "nul-group", "lone-surrogate"])
def test_hostile_bodies_are_a_4xx_never_a_500(stack: Stack, body: str) -> None:
    path = "/v1/search" if '"query"' in body else "/v1/documents"
    with stack.client("alpha") as c:
        r = c.post(path, content=body, headers={"content-type": "application/json"})
    assert 400 <= r.status_code < 500, r.text
    assert set(r.json()["error"]) == {"type", "message"}
    with stack.client("alpha") as c:
        assert c.get("/v1/whoami").status_code == 200  # still up


def test_oversized_chat_messages_are_refused(stack: Stack) -> None:
    with stack.client("alpha") as c:
        long_question = c.post("/v1/chat/completions", json={
            "model": "kb:shared", "messages": [{"role": "user", "content": "why " * 600}]})
        huge = c.post("/v1/chat/completions", json={
            "model": "kb:shared", "messages": [{"role": "system", "content": "x" * 40_000},
                                               {"role": "user", "content": "hi"}]})
        many = c.post("/v1/chat/completions", json={
            "model": "kb:shared", "messages": [{"role": "user", "content": "hi"}] * 300})
    for r in (long_question, huge, many):
        assert r.status_code == 422, r.text


def test_failed_logins_are_limited_per_key_id_with_retry_after(stack: Stack) -> None:
    key_id = stack.tokens["victim"].split("_")[1]
    codes = []
    for _ in range(8):
        r = httpx.get(f"{stack.url}/v1/whoami",
                      headers={"Authorization": f"Bearer rt_{key_id}_wrong-secret"})
        codes.append(r.status_code)
    assert codes[:5] == [401] * 5 and codes[-1] == 429
    assert int(r.headers["Retry-After"]) >= 1
    assert r.json()["error"]["type"] == "rate_limited"
    # other keys are not affected
    with stack.client("alpha") as c:
        assert c.get("/v1/whoami").status_code == 200


def test_rate_limited_answers_carry_retry_after(stack: Stack, tmp_path, settings) -> None:
    from live import serving
    from ragtune.config import ServiceSettings
    from ragtune.service import KeyStore
    from ragtune.service.app import create_app

    keys = KeyStore.open(settings)
    token = keys.create(["read"])[0]
    app = create_app(settings.model_copy(update={"service": ServiceSettings(
        requests_per_minute=1, burst=2)}), keys, warm=False)
    with serving(app) as url:
        h = {"Authorization": f"Bearer {token}"}
        codes = [httpx.get(f"{url}/v1/whoami", headers=h) for _ in range(3)]
    assert [r.status_code for r in codes] == [200, 200, 429]
    assert 1 <= int(codes[-1].headers["Retry-After"]) <= 60


def _raw(stack: Stack) -> socket.socket:
    u = urlparse(stack.url)
    return socket.create_connection((u.hostname, u.port), timeout=10)


def test_slow_headers_are_cut_off(stack: Stack) -> None:
    with _raw(stack) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # never ends the head
        started = time.monotonic()
        data = s.recv(1024)  # the server closes the connection
        assert data == b"" and time.monotonic() - started < HEADER_TIMEOUT + 5


def test_slow_bodies_get_408(stack: Stack) -> None:
    with _raw(stack) as s:
        s.sendall(b"POST /v1/search HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Authorization: Bearer " + stack.tokens["alpha"].encode() +
                  b"\r\nContent-Length: 100\r\n\r\n{\"query\":")
        started = time.monotonic()
        reply = s.recv(4096).decode()
        assert reply.startswith("HTTP/1.1 408"), reply
        assert time.monotonic() - started < BODY_TIMEOUT + 5


def test_nothing_said_that_need_not_be(stack: Stack) -> None:
    ready = httpx.get(f"{stack.url}/readyz").json()
    assert ready == {"status": "ready"}  # no knowledge base names without a key
    assert httpx.get(f"{stack.url}/docs").status_code == 404  # no CDN-loaded Swagger UI
    assert httpx.get(f"{stack.url}/redoc").status_code == 404
    root = str(stack.root)
    for who in ("admin", "alpha"):
        shown = json.dumps(listing(stack, who))
        assert root not in shown and "/tmp/" not in shown
    with stack.client("alpha") as c:
        answer = c.post("/v1/ask", json={"question": "When does the alpha launch window "
                                                     "open?"}).json()
        cited = json.dumps(answer)
        hits = json.dumps(c.post("/v1/search", json={"query": "alpha launch"}).json())
    assert root not in cited and root not in hits
    assert "alpha/alpha-plan.md" in hits  # named by its path under the ingest root


# Every operation of the API and the attacks on it in this file; a new route fails the sweep
# below until its attack is written here.
COVERED = {
    ("get", "/healthz"): "no data",
    ("get", "/readyz"): "test_nothing_said_that_need_not_be",
    ("get", "/v1/documents"): "test_jsonl_rows_cannot_widen_..., property test listings",
    ("post", "/v1/documents"): "test_a_tenant_cannot_replace_..., property test",
    ("post", "/v1/documents/files"): "test_uploads_of_one_file_name_..., property test",
    ("get", "/v1/documents/{doc_id}"): "the sweep below",
    ("delete", "/v1/documents/{doc_id}"): "test_deletes_outside_the_keys_groups_...",
    ("get", "/v1/chunks/{chunk_id}"): "test_a_hidden_passage_reads_exactly_as_a_missing_one",
    ("get", "/v1/whoami"): "test_failed_logins_...",
    ("post", "/v1/search"): "test_bm25_statistics_..., property test",
    ("post", "/v1/ask"): "test_nothing_said_that_need_not_be (citations)",
    ("post", "/v1/evaluate"): "test_evaluate_gives_no_cause_...",
    ("get", "/v1/traces"): "test_traces_and_metrics_stay_inside_a_tenant",
    ("get", "/v1/traces/{trace_id}"): "test_traces_and_metrics_stay_inside_a_tenant",
    ("get", "/v1/checklist"): "no data",
    ("post", "/v1/assess"): "the sweep below (a hidden report as evidence)",
    ("get", "/v1/reports"): "the sweep below",
    ("get", "/v1/reports/{name}"): "the sweep below",
    ("get", "/v1/reports/{name}/lab.json"): "the sweep below",
    ("get", "/v1/models"): "tests/service/test_app.py (adapters over hidden documents)",
    ("post", "/v1/chat/completions"): "test_oversized_chat_messages_are_refused; test_app",
    ("get", "/metrics"): "test_traces_and_metrics_stay_inside_a_tenant",
}
CHECKLIST = {"changing_knowledge": True, "tied_to_sources": True, "update_frequency": "weekly",
             "internal_documents": True, "auditability": True, "stable_task_pattern": False,
             "structure_matters": False, "prompting_inconsistent_or_costly": False,
             "main_challenge": "knowledge"}


def test_every_route_is_attacked_and_a_hidden_thing_reads_as_a_missing_one(stack: Stack
                                                                           ) -> None:
    paths = stack.app.openapi()["paths"]
    operations = {(method, path) for path, ops in paths.items() for method in ops}
    assert operations == set(COVERED), operations ^ set(COVERED)
    hidden = {"doc": beta_doc(stack)["id"], "report": "beta-lab"}
    missing = {"doc": "beta/no-such.md", "report": "no-such-lab"}

    def answers(ids: dict[str, str]) -> list[tuple[int, str]]:
        with stack.client("alpha") as c:
            got = [c.get(f"/v1/documents/{ids['doc']}"),
                   c.get(f"/v1/reports/{ids['report']}"),
                   c.get(f"/v1/reports/{ids['report']}/lab.json"),
                   c.post("/v1/assess", json={"answers": CHECKLIST,
                                              "report": ids["report"]})]
        return [(r.status_code, r.json()["error"]["message"].replace(
            ids["doc"], "ID").replace(ids["report"], "ID")) for r in got]

    assert answers(hidden) == answers(missing)
    assert all(status == 404 for status, _ in answers(hidden))
    with stack.client("alpha") as c:
        assert "beta-lab" not in json.dumps(c.get("/v1/reports").json())
    with stack.client("beta") as c:
        assert c.get("/v1/reports/beta-lab").status_code == 200
