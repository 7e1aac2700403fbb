"""The OpenAI-compatible client against a real local server (tests/openai_server.py) that runs
the bundled models: completions, streaming, embeddings, retries, timeouts and errors."""

from __future__ import annotations

import socket
import time

import numpy as np
import pytest

from openai_server import OpenAIServer
from ragtune.errors import ModelError
from ragtune.models.generators import GenerationConfig
from ragtune.models.openai import OpenAIEmbedder, OpenAIGenerator

pytestmark = [pytest.mark.slow, pytest.mark.integration]

ASK = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]
SHORT = GenerationConfig(max_new_tokens=12)


@pytest.fixture(scope="module")
def server(generator, embedder):
    srv = OpenAIServer(generator, embedder, model="smollm2", api_key="sk-test").start()
    yield srv
    srv.stop()


@pytest.fixture
def client_env(monkeypatch: pytest.MonkeyPatch, server: OpenAIServer) -> OpenAIServer:
    monkeypatch.setenv("RAGTUNE_TEST_KEY", "sk-test")
    server.fail_next.clear()
    server.delay_s = 0.0
    server.retry_after = "0"
    return server


def make(server: OpenAIServer, **kw) -> OpenAIGenerator:
    options = {"api_key_env": "RAGTUNE_TEST_KEY", "backoff_s": 0.01} | kw
    return OpenAIGenerator("smollm2", server.base_url, **options)


def test_completion_matches_the_local_model(client_env: OpenAIServer, generator) -> None:
    remote = make(client_env).generate(ASK, SHORT)
    local = generator.generate(ASK, SHORT)
    assert remote.text == local.text
    assert (remote.prompt_tokens, remote.output_tokens) == (local.prompt_tokens,
                                                            local.output_tokens)
    assert remote.logprobs == pytest.approx(local.logprobs, abs=1e-5)
    assert remote.model == "openai:smollm2"


def test_streaming_delivers_pieces_then_usage(client_env: OpenAIServer, generator) -> None:
    pieces: list[str] = []
    remote = make(client_env).generate(ASK, SHORT, on_token=pieces.append)
    assert len(pieces) > 1
    assert "".join(pieces).strip() == remote.text == generator.generate(ASK, SHORT).text
    assert remote.output_tokens > 0 and remote.first_token_seconds is not None


def test_transient_failures_are_retried_with_backoff(client_env: OpenAIServer) -> None:
    client_env.fail_next.extend([503, 429])
    gen = make(client_env)
    result = gen.generate(ASK, SHORT)
    assert "Paris" in result.text
    assert gen.client.attempts == 3


def test_retry_after_is_honoured(client_env: OpenAIServer) -> None:
    client_env.fail_next.append(429)
    client_env.retry_after = "1"
    gen = make(client_env)  # its own backoff is 0.01 s
    started = time.perf_counter()
    gen.generate(ASK, GenerationConfig(max_new_tokens=1))
    assert time.perf_counter() - started >= 1.0 and gen.client.attempts == 2


def test_streams_are_retried_before_the_first_token(client_env: OpenAIServer) -> None:
    client_env.fail_next.append(502)
    gen = make(client_env)
    pieces: list[str] = []
    assert "Paris" in gen.generate(ASK, SHORT, on_token=pieces.append).text
    assert gen.client.attempts == 2


def test_retries_give_up_with_a_clear_error(client_env: OpenAIServer) -> None:
    client_env.fail_next.extend([503] * 5)
    gen = make(client_env, max_retries=2)
    with pytest.raises(ModelError, match=r"failed after 3 attempts .*HTTP 503"):
        gen.generate(ASK, SHORT)


def test_bad_key_unknown_model_and_no_server(client_env: OpenAIServer, monkeypatch) -> None:
    monkeypatch.setenv("RAGTUNE_TEST_KEY", "sk-wrong")
    unauthorized = make(client_env)
    with pytest.raises(ModelError, match=r"not authorized \(HTTP 401.*RAGTUNE_TEST_KEY"):
        unauthorized.generate(ASK, SHORT)
    assert unauthorized.client.attempts == 1  # a bad key is not retried
    monkeypatch.setenv("RAGTUNE_TEST_KEY", "sk-test")
    unknown = OpenAIGenerator("gpt-9", client_env.base_url, "RAGTUNE_TEST_KEY")
    with pytest.raises(ModelError, match="not found.*does not exist"):
        unknown.generate(ASK, SHORT)
    assert unknown.client.attempts == 1
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dead = OpenAIGenerator("smollm2", f"http://127.0.0.1:{port}/v1", max_retries=1,
                           backoff_s=0.01)
    with pytest.raises(ModelError, match="failed after 2 attempts.*ConnectError"):
        dead.generate(ASK, SHORT)
    with pytest.raises(ModelError, match="http"):
        OpenAIGenerator("smollm2", "localhost:8000")


def test_timeouts_are_enforced(client_env: OpenAIServer) -> None:
    client_env.delay_s = 1.5
    gen = make(client_env, timeout_s=0.3, max_retries=1)
    started = time.perf_counter()
    with pytest.raises(ModelError, match="ReadTimeout"):
        gen.generate(ASK, SHORT)
    assert time.perf_counter() - started < 1.5 * 2  # gave up on time, did not wait it out


def test_embeddings_match_the_local_embedder(client_env: OpenAIServer, embedder) -> None:
    remote = OpenAIEmbedder("minilm", client_env.base_url, "RAGTUNE_TEST_KEY", batch_size=2)
    texts = ["green tea steeps for two minutes", "Jupiter is large", "risotto", "kettles"]
    vectors = remote.embed(texts)
    assert vectors.shape == (4, 384) and remote.dim == 384
    assert np.allclose(vectors, embedder.embed(texts), atol=1e-5)
    # the local query path runs ONNX Runtime, the server's batch path PyTorch: same vector
    assert float(remote.embed_query("risotto") @ embedder.embed_query("risotto")) > 0.9999


def test_json_schema_goes_as_response_format(client_env: OpenAIServer) -> None:
    import json

    import jsonschema

    schema = {"type": "object", "properties": {"city": {"enum": ["Paris", "Lyon"]}},
              "required": ["city"], "additionalProperties": False}
    config = GenerationConfig(max_new_tokens=16, json_schema=schema)
    body = make(client_env)._body(ASK, config, False)
    assert body["response_format"] == {"type": "json_schema", "json_schema": {
        "name": "answer", "schema": schema, "strict": True}}
    reply = make(client_env).generate(ASK, config)  # the server constrains like vLLM
    jsonschema.validate(json.loads(reply.text), schema)
