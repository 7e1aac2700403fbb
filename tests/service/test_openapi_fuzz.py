"""Property-based run over the service's own `/openapi.json` (Schemathesis): every operation the
schema lists, whatever routes it has today, is called with generated requests (valid ones and
deliberately invalid ones) through the real app: real SQLite knowledge base, the real bundled
embedder and language model, real API keys (an admin key and a read-only tenant key).

No response may be a server error (5xx; an exception raised in the app fails the test with its
traceback), every 4xx has the service's one error shape, answer streams end properly, and
success and error bodies, status codes and content types match what the schema declares (the
error statuses 400/401/403/404/413/422/429 with their shape, and the answer routes' event
streams).

Schemathesis never generates lone surrogates, so a plain test adds them: each explicit example
with a lone surrogate in any one of its strings."""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from schemathesis.checks import CheckContext
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from live import small_lab, tenant_home
from ragtune.config import ServiceSettings
from ragtune.service import KeyStore
from ragtune.service.app import create_app

pytestmark = pytest.mark.slow

# The operations that run the language model (~1-3 s a call on a CPU) get few examples; the rest
# are cheap. The coverage phase adds its own boundary cases on top of these (not limited by
# max-examples), so the model operations skip it: their bounds are the cheap 422 cases.
GENERATING = "^/v1/(ask|chat/completions)$"
FUZZ_CONFIG: dict[str, Any] = {
    "generation": {"max-examples": 25},
    "request-timeout": 120,  # a hung request (say, a stream that never ends) fails, not stalls
    "max-stream-events": 1000,  # read a whole answer stream (max_new_tokens is far below)
    "operations": [{"include-path-regex": GENERATING, "generation": {"max-examples": 6},
                    "phases": {"coverage": {"enabled": False}}}],
}

TENANT_DOCS = {
    "acme": {"acme-sla.md": "# Acme SLA\n\nAcme's support replies within 17 minutes on the "
                            "Platinum plan. Acme invoices are due in 45 days."},
    "globex": {"globex-sla.md": "# Globex SLA\n\nGlobex support replies within 93 minutes on "
                                "the Titanium plan. Globex invoices are due in 12 days."},
    "": {"holidays.md": "# Holidays\n\nThe office is closed on the first of May."},
}


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, model_cache: Path
            ) -> Iterator[dict[str, Any]]:
    """One app for the whole module, in its own data home pinned like conftest's (float32),
    with the per-key rate limit raised so the fuzzer reaches the handlers instead of 429s."""
    from ragtune.lab.report import write_report

    root = tmp_path_factory.mktemp("openapi-fuzz")
    home = root / "home"
    settings, kb = tenant_home(root, model_cache, TENANT_DOCS, ServiceSettings(
        requests_per_minute=100_000, burst=100_000))
    # Documents only the DELETE operation aims at (the others stay for the rest of the run).
    doomed = root / "doomed"
    doomed.mkdir()
    for i in range(3):
        (doomed / f"doomed-{i}.md").write_text(f"# Doomed {i}\n\nA page to delete, number {i}.",
                                               encoding="utf-8")
    kb.ingest([doomed], groups=["acme"])
    write_report(small_lab("public lab", []), home / "labs" / "public-lab")
    write_report(small_lab("globex lab", ["globex"]), home / "labs" / "globex-lab")
    keys = KeyStore.open(settings)
    tokens = {"admin": keys.create(["admin"])[0], "acme-reader": keys.create(["read"],
                                                                             groups=["acme"])[0]}
    app = create_app(settings, keys)
    with TestClient(app) as client:  # wait for the background warm-up: /readyz is 200 after
        for _ in range(600):
            if client.get("/readyz").status_code == 200:
                break
            time.sleep(0.5)
        else:
            pytest.fail("the service never became ready")
    docs = kb.documents()
    ids = {"doc_id": [d.id for d in docs if not d.id.startswith("doomed")],
           "doomed": [d.id for d in docs if d.id.startswith("doomed")],
           "chunk_id": [c.id for d in docs for c in kb.store.chunks_of(d.id)],
           "name": ["public-lab", "globex-lab"]}
    KNOWN_IDS.update(ids)
    yield {"app": app, "tokens": tokens, "kb": kb}
    kb.close()


def _openapi() -> dict[str, Any]:
    """The app's OpenAPI document, read from an app in a throwaway home (no data, no models):
    the schema depends only on the code, so the tests below are collected per operation,
    whatever routes the app has."""
    from ragtune import Settings

    with tempfile.TemporaryDirectory() as tmp:
        spec: dict[str, Any] = create_app(Settings.load(home=tmp), KeyStore(Path(tmp) / "k.db"),
                                          warm=False).openapi()
    return spec


# Explicit examples: Schemathesis' examples phase sends each once before fuzzing, so the happy
# paths (the model operations streamed and not, ingest with metadata and groups, assess with a
# report) run on every run whatever the fuzzer draws; `test_a_lone_surrogate_...` mutates them.
EXAMPLES: dict[str, list[dict[str, Any]]] = {
    "/v1/documents": [{"documents": [{"id": "example-doc", "title": "Example",
                                      "text": "Parking is free after six in the evening.",
                                      "groups": ["acme"], "metadata": {"team": "facilities",
                                                                       "floor": 2}}]}],
    "/v1/search": [{"query": "support replies", "k": 3, "mode": "hybrid"}],
    "/v1/ask": [{"question": "When is the office closed?"},
                {"question": "How fast does Acme support reply?", "stream": True}],
    "/v1/chat/completions": [
        {"model": "kb:shared", "messages": [{"role": "user", "content": "When is the office "
                                                                        "closed?"}]},
        {"model": "kb:shared", "stream": True, "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "How fast does Acme "
                                                                  "support reply?"}]}]}],
    "/v1/assess": [{"report": "public-lab", "answers": {
        "changing_knowledge": True, "tied_to_sources": True, "update_frequency": "weekly",
        "internal_documents": True, "auditability": True, "stable_task_pattern": False,
        "structure_matters": False, "prompting_inconsistent_or_costly": False,
        "main_challenge": "knowledge"}}],
}


def _with_examples(spec: dict[str, Any]) -> dict[str, Any]:
    for path, bodies in EXAMPLES.items():
        media = spec["paths"].get(path, {}).get("post", {}).get("requestBody", {}).get(
            "content", {}).get("application/json")
        if media is not None:
            media["examples"] = {f"example-{i}": {"value": b} for i, b in enumerate(bodies)}
    return spec


SPEC = _with_examples(_openapi())
schema = schemathesis.openapi.from_dict(SPEC, config=schemathesis.Config.from_dict(FUZZ_CONFIG))
KNOWN_IDS: dict[str, list[str]] = {}  # path parameter -> existing values (filled by `service`)


@schema.hook
def before_generate_path_parameters(context: Any, strategy: st.SearchStrategy
                                    ) -> st.SearchStrategy:
    """Random ids mostly miss (404); mix in ids that exist so the found paths run too (DELETE
    gets documents of its own)."""
    operation = context.operation
    names = [p.name for p in operation.path_parameters] if operation is not None else []
    if len(names) != 1:
        return strategy
    name = names[0]
    known = "doomed" if operation.method.upper() == "DELETE" else name
    return st.one_of(strategy, st.deferred(
        lambda: st.sampled_from(KNOWN_IDS.get(known) or ["missing"]).map(lambda v: {name: v})))


def error_shape(ctx: CheckContext, response: Any, case: schemathesis.Case) -> bool | None:
    """Every error answer is `{"error": {"type": "...", "message": "..."}}`."""
    if response.status_code < 400:
        return None
    body = json.loads(response.content)
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"type", "message"}, body
    assert all(isinstance(v, str) and v for v in body["error"].values()), body
    return None


def complete_stream(ctx: CheckContext, response: Any, case: schemathesis.Case) -> bool | None:
    """A server-sent-event answer ends: with an `answer` event or a client-side `error` (an
    `error` of type `server_error` is a 500 that arrived after the headers)."""
    if not response.headers.get("content-type", [""])[0].startswith("text/event-stream"):
        return None
    text = response.content.decode("utf-8")
    assert text.endswith("\n\n"), f"stream cut short: {text[-300:]!r}"
    last = text.rstrip("\n").rsplit("\n\n", 1)[-1]
    if "event:" in last:  # /v1/ask: named events
        event = last.split("\n", 1)[0].removeprefix("event: ")
        data = json.loads(last.split("data: ", 1)[1])
        assert event in ("answer", "error"), f"stream ended on {event!r}: {last!r}"
        if event == "error":
            assert data["type"] != "server_error", f"server error in the stream: {data}"
    else:  # /v1/chat/completions: OpenAI chunks, then [DONE]
        assert last == "data: [DONE]", f"stream ended without [DONE]: {last!r}"
    return None


CHECKS = [schemathesis.checks.not_a_server_error, error_shape, complete_stream,
          response_schema_conformance, status_code_conformance, content_type_conformance]


QUESTIONS = ["When is the office closed?", "How fast does Acme support reply?"]


@schema.hook
def flatmap_body(context: Any, body: Any) -> st.SearchStrategy:
    """Random model names never start with `kb:` and random roles are rarely `user`, so the
    chat operation would only ever answer 404/400: some bodies are steered onto the real
    knowledge base and a real question. `/v1/ask` streams more often. (The rest of each
    generated body, invalid parts included, is kept.)"""
    path = context.operation.path if context.operation is not None else ""
    if not isinstance(body, dict):
        return st.just(body)
    if path == "/v1/chat/completions":
        def steer(choice: tuple[str | None, str | None, bool]) -> dict[str, Any]:
            model, question, stream = choice
            out = dict(body) | ({"stream": True} if stream else {})
            if model is not None:
                out["model"] = model
            if question is not None and isinstance(out.get("messages"), list):
                out["messages"] = [*out["messages"], {"role": "user", "content": question}]
            return out
        return st.tuples(st.sampled_from(["kb:shared", "kb:shared", None, "kb:missing"]),
                         st.sampled_from([*QUESTIONS, None]), st.booleans()).map(steer)
    if path == "/v1/ask" and isinstance(body.get("question"), str):
        return st.sampled_from([body, {**body, "stream": True}])
    return st.just(body)


# `ragtune_home` (conftest, autouse) is function-scoped; these tests use the module's own home.
FIXTURES_OK = hypothesis_settings(deadline=None,
                                  suppress_health_check=[HealthCheck.function_scoped_fixture])


@schema.parametrize()
@FIXTURES_OK
def test_admin_key_gets_no_server_error(case: schemathesis.Case, service: dict[str, Any]) -> None:
    headers = {"Authorization": f"Bearer {service['tokens']['admin']}"}
    case.call_and_validate(headers=headers, checks=CHECKS, app=service["app"])


@schema.parametrize()
@FIXTURES_OK
def test_tenant_read_key_gets_no_server_error(case: schemathesis.Case,
                                              service: dict[str, Any]) -> None:
    headers = {"Authorization": f"Bearer {service['tokens']['acme-reader']}"}
    case.call_and_validate(headers=headers, checks=CHECKS, app=service["app"])


def _lone_surrogate_variants(value: Any) -> Iterator[tuple[str, Any]]:
    """(where, copy) for every string in a JSON value, object keys included: the copy with
    that one string ending in a lone surrogate. `"\\ud800"` is valid JSON text that Python's
    parser accepts, but no UTF-8 encoder (SQLite, the tokenizers) takes it; Schemathesis never
    generates one."""
    bad = "\ud800"
    if isinstance(value, str):
        yield "", value + bad
    elif isinstance(value, dict):
        for key, item in value.items():
            yield f".{key}(key)", {(k + bad if k == key else k): v for k, v in value.items()}
            for where, new in _lone_surrogate_variants(item):
                yield f".{key}{where}", {**value, key: new}
    elif isinstance(value, list):
        for i, item in enumerate(value):
            for where, new in _lone_surrogate_variants(item):
                yield f"[{i}]{where}", [*value[:i], new, *value[i + 1:]]


JSON_EXAMPLES = [(path, body) for path, bodies in EXAMPLES.items() for body in bodies
                 if "application/json" in SPEC["paths"].get(path, {}).get("post", {}).get(
                     "requestBody", {}).get("content", {})]


@pytest.mark.parametrize(("path", "body"), JSON_EXAMPLES,
                         ids=[f"{p}-{i}" for i, (p, _) in enumerate(JSON_EXAMPLES)])
def test_a_lone_surrogate_in_any_json_string_is_refused_not_a_server_error(
        service: dict[str, Any], path: str, body: dict[str, Any]) -> None:
    """Each example as is must succeed (so the example still fits the schema); with a lone
    surrogate in any one of its strings, the answer must be a 4xx in the error shape (or a
    success: a string the service only compares may keep it), never a server error."""
    headers = {"Authorization": f"Bearer {service['tokens']['admin']}"}
    with TestClient(service["app"], raise_server_exceptions=True) as client:
        assert client.post(path, json=body, headers=headers).status_code == 200
        failures = []
        for where, variant in _lone_surrogate_variants(body):
            # requests-style ASCII JSON: the surrogate travels as the escape `\ud800`
            content = json.dumps(variant).encode()
            try:
                response = client.post(path, content=content, headers=headers | {
                    "content-type": "application/json"})
            except Exception as exc:  # the server raised: what a client sees as a 500
                failures.append(f"{where}: 500 ({type(exc).__name__}: {exc}) for {content!r}")
                continue
            if response.status_code >= 500:
                failures.append(f"{where}: {response.status_code} for {content!r}")
            elif response.status_code >= 400:
                assert set(response.json()["error"]) == {"type", "message"}, response.text
        assert not failures, "\n".join(failures)
