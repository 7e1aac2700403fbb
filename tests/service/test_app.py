"""The HTTP API through a real ASGI client: keys, scopes, the error shape, and two tenants who
see nothing of each other through documents, search or answers."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from ragtune.errors import ConfigError
from ragtune.service import KeyStore
from ragtune.service.app import MAX_BODY_BYTES, check_bind, create_app

pytestmark = [pytest.mark.slow, pytest.mark.both_stores]

TENANTS = {
    "acme": {"acme-sla.md": "# Acme SLA\n\nAcme's support replies within 17 minutes on the "
                            "Platinum plan. Acme invoices are due in 45 days."},
    "globex": {"globex-sla.md": "# Globex SLA\n\nGlobex support replies within 93 minutes on the "
                                "Titanium plan. Globex invoices are due in 12 days."},
}
PUBLIC = {"holidays.md": "# Holidays\n\nThe office is closed on the first of May."}


@pytest.fixture
def service(tmp_path: Path, settings):
    from ragtune import KnowledgeBase

    kb = KnowledgeBase.open("shared", settings)
    for tenant, docs in TENANTS.items():
        folder = tmp_path / tenant
        folder.mkdir()
        for name, text in docs.items():
            (folder / name).write_text(text)
        kb.ingest([folder], groups=[tenant])
    public = tmp_path / "public"
    public.mkdir()
    for name, text in PUBLIC.items():
        (public / name).write_text(text)
    kb.ingest([public])
    keys = KeyStore.open(settings)
    tokens = {t: keys.create(["read"], groups=[t])[0] for t in TENANTS}
    tokens["admin"] = keys.create(["admin"])[0]
    tokens["writer-acme"] = keys.create(["ingest"], groups=["acme"])[0]
    client = TestClient(create_app(settings.model_copy(update={"kb": "shared"}), keys))
    yield client, tokens, kb
    kb.close()


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_every_v1_route_needs_a_valid_key_and_errors_have_one_shape(service) -> None:
    client, tokens, _ = service
    assert client.get("/healthz").json() == {"status": "ok"}
    for response in (client.get("/v1/documents"),
                     client.get("/v1/documents", headers={"Authorization": "Bearer rt_x_y"}),
                     client.post("/v1/search", json={"query": "sla"},
                                 headers={"Authorization": "Basic abc"})):
        assert response.status_code == 401
        assert set(response.json()["error"]) == {"type", "message"}
    bad = client.post("/v1/search", json={"query": ""}, headers=auth(tokens["acme"]))
    assert bad.status_code == 422 and bad.json()["error"]["type"] == "invalid_request"
    extra = client.post("/v1/search", json={"query": "x", "path": "/etc/passwd"},
                        headers=auth(tokens["acme"]))
    assert extra.status_code == 422  # no unknown fields (and no paths) from clients
    missing = client.get("/v1/documents?kb=nope", headers=auth(tokens["acme"]))
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "not_found"
    huge = client.post("/v1/search", content=b"x" * (MAX_BODY_BYTES + 1),
                       headers=auth(tokens["acme"]) | {"content-type": "application/json"})
    assert huge.status_code == 413 and huge.json()["error"]["type"] == "too_large"
    assert client.get("/openapi.json").json()["info"]["title"] == "ragtune"


def test_two_tenants_see_nothing_of_each_other(service) -> None:
    client, tokens, kb = service
    ids = {d.title: d.id for d in kb.documents()}
    for tenant, other in (("acme", "globex"), ("globex", "acme")):
        h = auth(tokens[tenant])
        listed = {d["title"] for d in client.get("/v1/documents", headers=h).json()["documents"]}
        assert listed == {f"{tenant.title()} SLA", "Holidays"}
        hidden = client.get(f"/v1/documents/{ids[f'{other.title()} SLA']}", headers=h)
        assert hidden.status_code == 404  # the same answer as a document that does not exist
        for chunk in kb.store.chunks_of(ids[f"{other.title()} SLA"]):  # nor its passages
            assert client.get(f"/v1/chunks/{chunk.id}", headers=h).status_code == 404
        own = kb.store.chunks_of(ids[f"{tenant.title()} SLA"])[0]
        assert client.get(f"/v1/chunks/{own.id}", headers=h).json()["text"] == own.text
        hits = client.post("/v1/search", headers=h, json={"query": f"{other} support replies "
                                                          "invoices due", "k": 10}).json()["hits"]
        assert hits and all(other not in h_["doc_id"] for h_ in hits)
        assert all(other.title() not in h_["text"] for h_ in hits)
    everything = client.get("/v1/documents", headers=auth(tokens["admin"])).json()["documents"]
    assert len(everything) == 3


def test_scopes_decide_what_a_key_may_do(service) -> None:
    client, tokens, kb = service
    ids = {d.title: d.id for d in kb.documents()}
    target = ids["Acme SLA"]
    assert client.delete(f"/v1/documents/{target}",
                         headers=auth(tokens["acme"])).status_code == 403  # read only
    assert client.delete(f"/v1/documents/{ids['Globex SLA']}",
                         headers=auth(tokens["writer-acme"])).status_code == 404  # not its group
    gone = client.delete(f"/v1/documents/{target}", headers=auth(tokens["writer-acme"]))
    assert gone.status_code == 200 and gone.json() == {"deleted": [target]}
    assert client.get("/v1/documents", headers=auth(tokens["writer-acme"])).status_code == 403
    KeyStore.open(kb.settings).revoke(tokens["admin"].split("_")[1])
    assert client.get("/v1/documents", headers=auth(tokens["admin"])).status_code == 401


def test_answers_and_citations_come_only_from_the_callers_documents(service) -> None:
    client, tokens, _ = service
    body = {"question": "Within how many minutes does Globex support reply?"}
    acme = client.post("/v1/ask", json=body, headers=auth(tokens["acme"])).json()
    assert "93" not in acme["answer"]
    assert all("globex" not in c["doc_id"] for c in acme["citations"])
    assert all("globex" not in p["doc_id"] for p in acme["passages"])
    globex = client.post("/v1/ask", json=body, headers=auth(tokens["globex"])).json()
    assert any("globex" in p["doc_id"] for p in globex["passages"])


def test_without_keys_the_server_binds_loopback_only(tmp_path: Path) -> None:
    keys = KeyStore(tmp_path / "service.db")
    check_bind("127.0.0.1", keys)
    check_bind("::1", keys)
    check_bind("localhost", keys)
    with pytest.raises(ConfigError, match="refusing to listen on 0.0.0.0: no API key"):
        check_bind("0.0.0.0", keys)
    keys.create(["read"])
    check_bind("0.0.0.0", keys)


def test_ingest_over_http_writes_only_into_the_keys_groups(service) -> None:
    client, tokens, kb = service
    h = auth(tokens["writer-acme"])
    body = {"documents": [{"id": "acme-faq", "title": "Acme FAQ",
                           "text": "Acme's cafeteria opens at 7:40 every weekday.",
                           "metadata": {"team": "facilities"}}]}
    done = client.post("/v1/documents", json=body, headers=h)
    assert done.status_code == 200, done.text
    assert done.json()["added"] == 1 and done.json()["failed"] == []
    # stored under the key's namespace (its groups), the id it is stored as in the answer
    assert done.json()["documents"] == [{"id": "@acme/acme-faq", "outcome": "added"}]
    stored = kb.store.get_document("@acme/acme-faq")
    assert stored is not None and stored.groups == ("acme",)  # the key's groups by default
    assert client.post("/v1/documents", json=body, headers=h).json()["unchanged"] == 1
    # a tenant key can neither publish to everyone nor write into another tenant's group
    for groups in ([], ["globex"], ["acme", "globex"]):
        sneaky = {"documents": [{"id": "x", "text": "t", "groups": groups}]}
        refused = client.post("/v1/documents", json=sneaky, headers=h)
        assert refused.status_code == 403 and refused.json()["error"]["type"] == "forbidden"
    assert all(not d.id.endswith("/x") for d in kb.documents())
    # a key without groups sees public documents only, so it writes only those
    public = auth(KeyStore.open(kb.settings).create(["ingest"])[0])
    into_acme = {"documents": [{"id": "x", "text": "t", "groups": ["acme"]}]}
    assert client.post("/v1/documents", json=into_acme, headers=public).status_code == 403
    assert client.post("/v1/documents", json={"documents": [{"id": "x", "text": "t"}]},
                       headers=public).json()["added"] == 1
    assert kb.store.get_document("@public/x").groups == ()
    # read keys cannot ingest; ids are names, not paths
    assert client.post("/v1/documents", json=body,
                       headers=auth(tokens["acme"])).status_code == 403
    path_id = {"documents": [{"id": "/etc/passwd", "text": "t"}]}
    assert client.post("/v1/documents", json=path_id, headers=h).status_code == 422
    seen = client.post("/v1/search", json={"query": "cafeteria opens", "k": 3},
                       headers=auth(tokens["globex"])).json()["hits"]
    assert all(hit["doc_id"] != "@acme/acme-faq" for hit in seen)
    assert stored.source == "api"  # not the temporary file the records passed through


def test_uploaded_files_are_named_by_their_file_name_never_a_path(service) -> None:
    client, tokens, kb = service
    h = auth(tokens["writer-acme"])
    files = [("files", ("../../tmp/acme-notes.md", b"# Acme notes\n\nThe Acme lab opens "
                        b"at 6:15.", "text/markdown")),
             ("files", ("C:\\Users\\x\\acme-rows.jsonl",
                        b'{"_id": "row-1", "title": "Row", "text": "Acme row one."}\n',
                        "application/jsonl"))]
    done = client.post("/v1/documents/files", files=files, headers=h)
    assert done.status_code == 200, done.text
    assert done.json()["added"] == 2 and done.json()["failed"] == []
    notes = kb.store.get_document("@acme/upload:acme-notes.md")
    assert notes is not None and notes.source == "upload:acme-notes.md"
    assert notes.groups == ("acme",) and notes.metadata["path"] == "upload:acme-notes.md"
    row = kb.store.get_document("@acme/row-1")
    assert row is not None and row.source == "upload:acme-rows.jsonl"
    # the same file again is unchanged (no temporary path in its content hash); a new text
    # is a new version of the same document
    again = client.post("/v1/documents/files", files=files[:1], headers=h).json()
    assert again["unchanged"] == 1
    changed = [("files", ("acme-notes.md", b"# Acme notes\n\nThe lab opens at 6:30.",
                          "text/markdown"))]
    assert client.post("/v1/documents/files", files=changed, headers=h).json()["updated"] == 1
    shown = client.get("/v1/documents/@acme/upload:acme-notes.md?text=true",
                       headers=auth(tokens["acme"])).json()
    assert shown["text"].endswith("The lab opens at 6:30.")
    assert [v["version"] for v in shown["versions"]] == [1, 2]
    listing = client.get("/v1/documents", headers=auth(tokens["admin"])).json()["documents"]
    uploaded = [d for d in listing if d["source"].startswith("upload:")]
    assert len(uploaded) == 2
    assert "ragtune-upload-" not in str(uploaded) and "/tmp" not in str(uploaded)
    # groups: the key's own only; bad names and unsupported files
    other = client.post("/v1/documents/files", files=changed, data={"groups": "globex"},
                        headers=h)
    assert other.status_code == 403
    for name in ("..", ".hidden.md", ""):
        bad = client.post("/v1/documents/files", files=[("files", (name, b"x", "text/plain"))],
                          headers=h)
        assert bad.status_code == 422, (name, bad.text)
    unsupported = client.post("/v1/documents/files", headers=h,
                              files=[("files", ("tool.exe", b"MZ...", "application/x"))])
    assert unsupported.json()["failed"][0]["document"] == "upload:tool.exe"
    assert client.post("/v1/documents/files", files=files,
                       headers=auth(tokens["acme"])).status_code == 403  # read only


def test_body_limits_hold_for_announced_and_streamed_bodies(service, settings) -> None:
    from ragtune.config import ServiceSettings

    _, tokens, _ = service
    small = settings.model_copy(update={"kb": "shared", "service": ServiceSettings(
        max_body_bytes=2_000, max_upload_bytes=5_000)})
    client = TestClient(create_app(small, KeyStore.open(settings), warm=False))
    h = auth(tokens["writer-acme"])

    def chunks():  # no content-length: sent chunked
        yield b'{"query": "'
        for _ in range(10):
            yield b"x" * 500
        yield b'"}'

    streamed = client.post("/v1/search", content=chunks(),
                           headers=h | {"content-type": "application/json"})
    assert streamed.status_code == 413 and streamed.json()["error"]["type"] == "too_large"
    big = [("files", ("big.txt", b"word " * 2_000, "text/plain"))]
    assert client.post("/v1/documents/files", files=big, headers=h).status_code == 413
    fits = [("files", ("fits.txt", b"Acme fits. " * 300, "text/plain"))]  # > JSON limit
    assert client.post("/v1/documents/files", files=fits, headers=h).status_code == 200


def test_ask_streams_tokens_then_the_checked_answer(service) -> None:
    import json

    client, tokens, _ = service
    body = {"question": "Within how many minutes does Acme support reply?", "stream": True}
    with client.stream("POST", "/v1/ask", json=body, headers=auth(tokens["acme"])) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        raw = "".join(response.iter_text())
    events = [(block.split("\n")[0].removeprefix("event: "),
               json.loads(block.split("\n")[1].removeprefix("data: ")))
              for block in raw.strip().split("\n\n")]
    kinds = [kind for kind, _ in events]
    assert kinds[-1] == "answer" and set(kinds[:-1]) <= {"token"} and len(kinds) > 2
    final = events[-1][1]
    streamed = "".join(data["text"] for kind, data in events if kind == "token")
    assert streamed == final["answer"]  # the tokens are the checked answer, not the draft
    assert all("globex" not in p["doc_id"] for p in final["passages"])
    plain = client.post("/v1/ask", json=body | {"stream": False},
                        headers=auth(tokens["acme"])).json()
    assert plain["answer"] == final["answer"]  # greedy: the same answer either way


def test_drafts_stream_as_drafts_until_the_verdict(service) -> None:
    import json

    client, tokens, _ = service
    body = {"question": "Within how many minutes does Acme support reply?", "stream": True,
            "drafts": True}
    with client.stream("POST", "/v1/ask", json=body, headers=auth(tokens["acme"])) as response:
        raw = "".join(response.iter_text())
    events = [(block.split("\n")[0].removeprefix("event: "),
               json.loads(block.split("\n")[1].removeprefix("data: ")))
              for block in raw.strip().split("\n\n")]
    kinds = [kind for kind, _ in events]
    # every draft event comes before the first checked token, and the answer ends the stream
    assert kinds[0] == "draft" and kinds[-1] == "answer"
    first_token = kinds.index("token")
    assert set(kinds[:first_token]) == {"draft"} and "draft" not in kinds[first_token:]
    final = events[-1][1]
    streamed = "".join(data["text"] for kind, data in events if kind == "token")
    assert streamed == final["answer"]
    assert final["verified"] is (not final["refused"])  # refused: verification refused it
    if not final["refused"]:
        for claim in final["verification"]["claims"]:  # the offsets resolve, over HTTP too
            doc = client.get(f"/v1/documents/{claim['doc_id']}", params={"text": "true"},
                             headers=auth(tokens["acme"])).json()
            assert doc["text"][claim["start"]:claim["end"]] == claim["sentence"]


def test_a_caller_may_ask_for_an_unverified_answer_marked(service) -> None:
    client, tokens, _ = service
    question = "What colour is the Acme logo?"  # nothing in the documents says
    refused = client.post("/v1/ask", json={"question": question},
                          headers=auth(tokens["acme"])).json()
    marked = client.post("/v1/ask", json={"question": question, "allow_unverified": True},
                         headers=auth(tokens["acme"])).json()
    assert refused["refused"] and refused["citations"] == []
    if not marked["refused"]:  # the model wrote an answer: returned, said unverified
        assert marked["verified"] is False and marked["verification"]["claims"]


@pytest.fixture
def live_server(service):
    """The same app on a real uvicorn server on loopback (a free port), in a thread."""
    from live import serving

    client, tokens, _ = service
    with serving(client.app) as url:
        yield f"{url}/v1", tokens


def test_the_official_openai_client_gets_grounded_answers(live_server) -> None:
    import openai

    url, tokens = live_server
    acme = openai.OpenAI(base_url=url, api_key=tokens["acme"], max_retries=0)
    assert [m.id for m in acme.models.list()] == ["kb:shared"]
    question = [{"role": "user", "content": "Within how many minutes does Acme support reply?"}]
    reply = acme.chat.completions.create(model="kb:shared", messages=question)
    extra = reply.model_extra or {}
    text = reply.choices[0].message.content or ""
    assert reply.choices[0].finish_reason == "stop" and text
    if not extra["refused"]:  # a checked answer carries its sources, here and in `citations`
        assert extra["citations"] and "Sources:" in text
        assert extra["verification"]["verified"] is True  # verified before it was returned
        assert all(c["doc_id"].endswith("acme-sla.md") or c["doc_id"].endswith("holidays.md")
                   for c in extra["citations"])
    chunks = list(acme.chat.completions.create(model="kb:shared", messages=question,
                                               stream=True))
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == text  # greedy decoding: the same checked answer, streamed
    globex = openai.OpenAI(base_url=url, api_key=tokens["globex"], max_retries=0)
    other = globex.chat.completions.create(model="kb:shared", messages=question)
    assert all("acme" not in c["doc_id"] for c in (other.model_extra or {})["citations"])
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=url, api_key="rt_bad_key", max_retries=0).models.list()
    with pytest.raises(openai.NotFoundError):
        acme.chat.completions.create(model="gpt-4o", messages=question)


def test_each_key_has_its_own_rate_limit(service, settings) -> None:
    from ragtune.config import ServiceSettings

    _, tokens, _ = service
    strict = settings.model_copy(update={
        "kb": "shared", "service": ServiceSettings(requests_per_minute=6, burst=3)})
    client = TestClient(create_app(strict, KeyStore.open(settings), warm=False))
    codes = [client.get("/v1/documents", headers=auth(tokens["acme"])).status_code
             for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    limited = client.get("/v1/documents", headers=auth(tokens["acme"])).json()
    assert limited["error"]["type"] == "rate_limited" and "retry in" in limited["error"]["message"]
    assert client.get("/v1/documents", headers=auth(tokens["globex"])).status_code == 200


def test_readyz_answers_503_until_the_models_are_loaded(settings) -> None:
    import time

    client = TestClient(create_app(settings, KeyStore.open(settings)))
    first = client.get("/readyz")
    assert first.status_code in (200, 503)  # the models may be loaded by earlier tests
    if first.status_code == 503:
        assert first.json()["error"]["type"] == "not_ready"
    deadline = time.monotonic() + 120
    while client.get("/readyz").status_code != 200:
        assert time.monotonic() < deadline, "the models never became ready"
        time.sleep(0.2)
    assert client.get("/readyz").json()["status"] == "ready"


def test_metrics_in_prometheus_text_format(service) -> None:
    client, tokens, _ = service
    client.get("/v1/documents", headers=auth(tokens["acme"]))
    client.get("/v1/documents", headers=auth("rt_nope_nope"))
    client.post("/v1/documents", headers=auth(tokens["writer-acme"]),
                json={"documents": [{"id": "m1", "text": "Acme metrics doc."}]})
    assert client.get("/metrics", headers=auth(tokens["acme"])).status_code == 403
    text = client.get("/metrics", headers=auth(tokens["admin"])).text
    assert ('ragtune_requests_total{route="/v1/documents",method="GET",status="200"} 1'
            in text)
    assert 'ragtune_requests_total{route="/v1/documents",method="GET",status="401"} 1' in text
    assert 'ragtune_request_seconds_bucket{route="/v1/documents",le="+Inf"} 3' in text
    assert 'ragtune_documents_ingested_total{outcome="added"} 1' in text
    assert "# TYPE ragtune_request_seconds histogram" in text


def test_answers_are_traced_with_online_scores_and_browsed_by_admins(service, settings) -> None:
    import json

    from typer.testing import CliRunner

    from ragtune.cli import app as cli

    client, tokens, kb = service
    recorder = client.app.state.recorder
    asked = client.post("/v1/ask", headers=auth(tokens["acme"]), json={
        "question": "Within how many minutes does Acme support reply?"}).json()
    client.post("/v1/chat/completions", headers=auth(tokens["globex"]), json={
        "model": "kb:shared", "messages": [{"role": "user", "content": "When are Globex "
                                            "invoices due?"}]})
    recorder.flush()
    admin = client.get("/v1/traces", headers=auth(tokens["admin"])).json()["traces"]
    assert [t["route"] for t in admin] == ["/v1/chat/completions", "/v1/ask"]  # newest first
    acme = admin[1]
    assert acme["question"] == asked["question"] and acme["answer"] == asked["answer"]
    assert acme["refused"] == asked["refused"] and acme["latency_ms"] > 0
    assert acme["prompt_tokens"] == asked["generation"]["prompt_tokens"]
    if not acme["refused"]:
        assert 0.0 <= acme["groundedness"] <= 1.0
    detail = client.get(f"/v1/traces/{acme['id']}", headers=auth(tokens["admin"])).json()
    assert [p["chunk_id"] for p in detail["passages"]] == [
        p["chunk_id"] for p in asked["passages"]]
    assert detail["judge"] == "offline"
    assert all({"claim", "score", "supported", "evidence"} <= set(c) for c in detail["claims"])
    # read keys see no traces; an admin key limited to globex sees none of acme's passages
    assert client.get("/v1/traces", headers=auth(tokens["acme"])).status_code == 403
    globex_admin = KeyStore.open(settings).create(["admin"], groups=["globex"])[0]
    seen = client.get("/v1/traces", headers=auth(globex_admin)).json()["traces"]
    assert acme["id"] not in [t["id"] for t in seen]
    assert client.get(f"/v1/traces/{acme['id']}",
                      headers=auth(globex_admin)).status_code == 404
    # groundedness distribution and refusal rate in /metrics
    text = client.get("/metrics", headers=auth(tokens["admin"])).text
    grounded = sum(t["groundedness"] is not None for t in admin)
    assert f"ragtune_answer_groundedness_count {grounded}" in text
    refusals = sum(t["refused"] for t in admin)
    assert f"ragtune_refusal_rate {refusals / 2:.6f}" in text
    # the CLI reads the same traces from the knowledge base's database
    home = ["--home", str(settings.home), "--kb", "shared"]
    listed = CliRunner().invoke(cli, ["traces", "list", *home, "--json"])
    assert listed.exit_code == 0, listed.output
    assert [t["id"] for t in json.loads(listed.stdout)["traces"]] == [t["id"] for t in admin]
    shown = CliRunner().invoke(cli, ["traces", "show", acme["id"], *home, "--json"])
    assert json.loads(shown.stdout)["passages"] == detail["passages"]
    missing = CliRunner().invoke(cli, ["traces", "show", "nope", *home])
    assert missing.exit_code == 1 and "no trace 'nope'" in missing.output


def test_trace_sampling_and_retention(service) -> None:
    import time

    from ragtune.answering import Answerer
    from ragtune.evaluation.online import TraceRecorder

    _, _, kb = service
    answer = Answerer(kb).ask("When is the office closed?")
    never = TraceRecorder(sample_rate=0.0)
    assert not any(never.record(kb, answer, route="t", key_id=None, latency_ms=1.0)
                   for _ in range(20))
    half = TraceRecorder(sample_rate=0.5, seed=7)
    kept = sum(half.record(kb, answer, route="t", key_id=None, latency_ms=1.0)
               for _ in range(40))
    assert 10 < kept < 30  # seeded: about half
    half.flush()
    assert len(kb.store.list_traces(limit=1000)) == kept
    keep_three = TraceRecorder(max_rows=3, prune_every=1)
    for _ in range(5):
        keep_three.record(kb, answer, route="t", key_id=None, latency_ms=1.0)
    keep_three.flush()
    assert len(kb.store.list_traces(limit=1000)) == 3
    assert kb.store.prune_traces(before=time.time() + 1, keep=100) == 3  # by age
    assert kb.store.list_traces() == []


def test_evaluate_over_http_sees_only_the_keys_documents(service) -> None:
    client, tokens, kb = service
    ids = {d.title: d.id for d in kb.documents()}
    cases = [{"question": "Within how many minutes does Acme support reply?",
              "answers": ["17 minutes"], "gold_doc_ids": [ids["Acme SLA"]]},
             {"question": "Within how many minutes does Globex support reply?",
              "answers": ["93 minutes"], "gold_doc_ids": [ids["Globex SLA"]]}]
    queue = client.app.state.generations
    before = len(queue.batches)
    run = client.post("/v1/evaluate", json={"cases": cases}, headers=auth(tokens["acme"]))
    assert run.status_code == 200, run.text
    body = run.json()
    assert body["summary"]["cases"] == 2 and len(body["cases"]) == 2
    assert all("globex" not in p["doc_id"] for c in body["cases"] for p in c["passages"])
    assert body["cases"][1]["gold_rank"] is None  # the other tenant's gold is out of reach
    assert len(queue.batches) > before  # generated through the shared model's queue
    bad = client.post("/v1/evaluate", json={"cases": [{"question": "x", "bogus": 1}]},
                      headers=auth(tokens["acme"]))
    assert bad.status_code == 400 and "cases[0]: unknown key(s) 'bogus'" in bad.text
    adapter = client.post("/v1/evaluate", json={"cases": cases, "arch": "tuned"},
                          headers=auth(tokens["acme"]))
    assert adapter.status_code == 422  # no adapter paths from clients


@pytest.mark.one_store  # trains an adapter (40 s): the models' registry, not the store
def test_an_adapter_trained_for_a_knowledge_base_is_a_model_too(service, settings,
                                                                 tmp_path: Path) -> None:
    from conftest import TINY_TUNE, write_code_examples
    from ragtune import Settings
    from ragtune.tuning import load_training_data, train_adapter
    from ragtune.tuning.raft import knowledge_base_info

    client, tokens, kb = service
    data = write_code_examples(tmp_path / "codes.jsonl", 12)
    tune_settings = Settings.load(home=settings.home, cache=settings.cache_dir, tune=TINY_TUNE)
    train_adapter(load_training_data(data, 4), tmp_path / "shared-raft", tune_settings,
                  data_file=data, knowledge_base=knowledge_base_info(kb, set()))
    h = auth(tokens["acme"])
    models = [m["id"] for m in client.get("/v1/models", headers=h).json()["data"]]
    assert models == ["kb:shared", "kb:shared+shared-raft"]
    body = {"model": "kb:shared+shared-raft", "messages": [
        {"role": "user", "content": "Within how many minutes does Acme support reply?"}]}
    reply = client.post("/v1/chat/completions", json=body, headers=h)
    assert reply.status_code == 200, reply.text
    assert reply.json()["model"] == "kb:shared+shared-raft"
    assert all("globex" not in c["doc_id"] for c in reply.json()["citations"])
    client.app.state.recorder.flush()  # the trace names the model that generated
    generated_by = kb.store.list_traces(limit=1)[0].detail["generation"]["model"]
    assert "shared-raft" in generated_by, generated_by
    missing = client.post("/v1/chat/completions", headers=h,
                          json=body | {"model": "kb:shared+nope"})
    assert missing.status_code == 404 and "no adapter 'nope'" in missing.text
    # an adapter whose examples quoted globex's document learned it: not a model for acme
    globex_doc = next(d.id for d in kb.documents() if d.groups == ("globex",))
    train_adapter(load_training_data(data, 4), tmp_path / "globex-raft", tune_settings,
                  data_file=data, knowledge_base=knowledge_base_info(kb, {globex_doc}))
    seen = {t: [m["id"] for m in client.get("/v1/models", headers=auth(tokens[t])
                                            ).json()["data"]] for t in ("acme", "globex")}
    assert "kb:shared+globex-raft" not in seen["acme"]
    assert "kb:shared+globex-raft" in seen["globex"]
    hidden = client.post("/v1/chat/completions", headers=h,
                         json=body | {"model": "kb:shared+globex-raft"})
    assert hidden.status_code == 404 and "no adapter 'globex-raft'" in hidden.text
