"""A minimal, real OpenAI-compatible HTTP server for the tests, running the bundled models.

It listens on 127.0.0.1 (a free port), speaks `/v1/chat/completions` (JSON and server-sent-event
streaming, with logprobs and usage; `response_format` JSON schemas constrain the output, as vLLM
does), `/v1/embeddings` and `/v1/models`, and checks a bearer key when one is set. Knobs let
tests exercise the client's failure handling on real sockets: `fail_next` (status codes to
answer the next requests with, e.g. [503, 429]), `delay_s` (sleep before answering, for
timeouts). Until ragtune's own service exists, this is the server the
OpenAI-compatible client is tested against.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ragtune.models.generators import GenerationConfig


class OpenAIServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, generator: Any, embedder: Any, model: str = "smollm2",
                 api_key: str | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.generator = generator
        self.embedder = embedder
        self.model = model
        self.api_key = api_key
        self.fail_next: list[int] = []
        self.retry_after = "0"  # the Retry-After header sent with 429/503
        self.delay_s = 0.0
        self.requests = 0
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def start(self) -> OpenAIServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()

    def take_failure(self) -> int | None:
        with self._lock:
            self.requests += 1
            return self.fail_next.pop(0) if self.fail_next else None


class _Handler(BaseHTTPRequestHandler):
    server: OpenAIServer
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:  # keep test output clean
        pass

    def handle(self) -> None:
        # the client may give up first (the timeout tests do this on purpose)
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            super().handle()

    def _json(self, status: int, data: Any, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, message: str, kind: str = "invalid_request_error") -> None:
        headers = {"Retry-After": self.server.retry_after} if status in (429, 503) else None
        self._json(status, {"error": {"message": message, "type": kind}}, headers)

    def _authorized(self) -> bool:
        if self.server.api_key is None:
            return True
        if self.headers.get("Authorization") == f"Bearer {self.server.api_key}":
            return True
        self._error(401, "Incorrect API key provided", "authentication_error")
        return False

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        if not self._authorized():
            return
        if self.path == "/v1/models":
            self._json(200, {"object": "list", "data": [
                {"id": self.server.model, "object": "model", "owned_by": "ragtune-tests"}]})
        else:
            self._error(404, f"no route {self.path}")

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length", 0))
        raw = self.rfile.read(length)
        failure = self.server.take_failure()
        if failure is not None:
            self._error(failure, "temporarily unavailable (test knob)", "server_error")
            return
        if self.server.delay_s:
            time.sleep(self.server.delay_s)
        if not self._authorized():
            return
        try:
            body = json.loads(raw)
        except json.JSONDecodeError:
            self._error(400, "body is not JSON")
            return
        if self.path == "/v1/embeddings":
            self._embeddings(body)
        elif self.path == "/v1/chat/completions":
            self._chat(body)
        else:
            self._error(404, f"no route {self.path}")

    def _embeddings(self, body: dict[str, Any]) -> None:
        texts = body.get("input")
        texts = [texts] if isinstance(texts, str) else texts
        vectors = self.server.embedder.embed(texts)
        self._json(200, {"object": "list", "model": body.get("model"), "data": [
            {"object": "embedding", "index": i, "embedding": v.tolist()}
            for i, v in enumerate(vectors)]})

    def _chat(self, body: dict[str, Any]) -> None:
        if body.get("model") != self.server.model:
            self._error(404, f"The model '{body.get('model')}' does not exist",
                        "model_not_found")
            return
        response_format = body.get("response_format") or {}
        schema = (response_format.get("json_schema") or {}).get("schema") \
            if response_format.get("type") == "json_schema" else None
        config = GenerationConfig(max_new_tokens=int(body.get("max_tokens") or 64),
                                  stop=tuple(body.get("stop") or ()), json_schema=schema)
        messages = body["messages"]
        created = int(time.time())
        if not body.get("stream"):
            gen = self.server.generator.generate(messages, config)
            self._json(200, {
                "id": "chatcmpl-test", "object": "chat.completion", "created": created,
                "model": self.server.model,
                "choices": [{"index": 0, "finish_reason": gen.finish_reason,
                             "message": {"role": "assistant", "content": gen.text},
                             "logprobs": {"content": [{"token": "", "logprob": lp}
                                                      for lp in gen.logprobs]}}],
                "usage": {"prompt_tokens": gen.prompt_tokens,
                          "completion_tokens": gen.output_tokens,
                          "total_tokens": gen.prompt_tokens + gen.output_tokens},
            })
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()

        def event(data: Any) -> None:
            self.wfile.write(f"data: {json.dumps(data)}\n\n".encode())
            self.wfile.flush()

        def chunk(delta: dict[str, str], finish: str | None = None) -> dict[str, Any]:
            return {"id": "chatcmpl-test", "object": "chat.completion.chunk",
                    "created": created, "model": self.server.model,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

        event(chunk({"role": "assistant"}))
        gen = self.server.generator.generate(
            messages, config, on_token=lambda piece: event(chunk({"content": piece})))
        event(chunk({}, gen.finish_reason))
        event({"id": "chatcmpl-test", "object": "chat.completion.chunk", "choices": [],
               "usage": {"prompt_tokens": gen.prompt_tokens,
                         "completion_tokens": gen.output_tokens}})
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()
        self.close_connection = True
