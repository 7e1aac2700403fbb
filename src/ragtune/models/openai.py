"""OpenAI-compatible endpoints: chat completions (`OpenAIGenerator`) and embeddings
(`OpenAIEmbedder`), over plain HTTP with timeouts, retries with backoff, and clear errors.

Any server that speaks the OpenAI REST shape works (OpenAI, vLLM, llama.cpp's server, Ollama,
LiteLLM, ragtune's own service). The API key is read from an environment variable (default
`OPENAI_API_KEY`), never from a file; a server that needs no key works without one.

    >>> gen = OpenAIGenerator("gpt-4o-mini", "https://api.openai.com/v1")
    >>> gen.generate([{"role": "user", "content": "Say hi"}]).text
    'Hi!'

Retried: connection errors, timeouts, HTTP 408/409/429/500/502/503/504 (honouring
`Retry-After`), with exponential backoff and jitter. Not retried: other 4xx (bad key, unknown
model, bad request), which raise `ModelError` with the server's own message. A streamed response
is never retried once text has been handed to the caller.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ragtune.errors import ModelError
from ragtune.models.generators import (
    Generation,
    GenerationConfig,
    Message,
    TokenCallback,
    check_messages,
)

RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})


class _Retryable(Exception):
    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class OpenAIClient:
    """The HTTP part both classes share: base URL, key, timeouts, retries, error messages."""

    def __init__(self, base_url: str, api_key_env: str = "OPENAI_API_KEY",
                 timeout_s: float = 60.0, max_retries: int = 3, backoff_s: float = 0.5) -> None:
        import httpx

        if not base_url.startswith(("http://", "https://")):
            raise ModelError(f"base_url must start with http:// or https://, got {base_url!r}")
        if max_retries < 0:
            raise ModelError(f"max_retries must be >= 0, got {max_retries}")
        self.base_url = base_url.rstrip("/")
        self.api_key_env = api_key_env
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.attempts = 0  # total HTTP attempts made (retries included), for traces and tests
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self._http = httpx.Client(
            timeout=httpx.Timeout(timeout_s, connect=min(10.0, timeout_s)), headers=headers
        )

    def close(self) -> None:
        self._http.close()

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST JSON and return the JSON reply, retrying transient failures."""

        def once() -> dict[str, Any]:
            response = self._send(path, body)
            try:
                return dict(response.json())
            except (json.JSONDecodeError, ValueError, TypeError) as exc:
                raise ModelError(f"{self.base_url}{path}: reply is not JSON ({exc})") from exc

        return self._with_retries(path, once)

    def stream(self, path: str, body: dict[str, Any]) -> Generator[dict[str, Any], None, None]:
        """POST with `stream: true` and yield each server-sent event's JSON."""
        import httpx

        def opened() -> Any:
            request = self._http.build_request("POST", self.base_url + path, json=body)
            self.attempts += 1
            try:
                response = self._http.send(request, stream=True)
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                raise _Retryable(f"{type(exc).__name__}: {exc}") from exc
            except httpx.RequestError as exc:
                raise ModelError(f"{self.base_url}{path}: {type(exc).__name__}: {exc}") from exc
            if response.status_code != 200:
                try:
                    response.read()
                except httpx.HTTPError as exc:
                    raise _Retryable(f"{type(exc).__name__}: {exc}") from exc
                finally:
                    response.close()
                self._raise_for(path, response)
            kind = response.headers.get("content-type", "")
            if "text/event-stream" not in kind:
                response.close()
                raise ModelError(f"{self.base_url}{path}: asked for a stream, got {kind!r} "
                                 "(does this server support stream: true?)")
            return response

        response = self._with_retries(path, opened)
        try:
            for line in response.iter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    return
                yield _stream_event(f"{self.base_url}{path}", data)
        except httpx.HTTPError as exc:
            raise ModelError(f"{self.base_url}{path}: stream broke off ({exc})") from exc
        finally:
            response.close()

    def _send(self, path: str, body: dict[str, Any]) -> Any:
        import httpx

        self.attempts += 1
        try:
            response = self._http.post(self.base_url + path, json=body)
        except (httpx.TimeoutException, httpx.TransportError) as exc:
            raise _Retryable(f"{type(exc).__name__}: {exc}") from exc
        except httpx.RequestError as exc:
            raise ModelError(f"{self.base_url}{path}: {type(exc).__name__}: {exc}") from exc
        if response.status_code != 200:
            self._raise_for(path, response)
        return response

    def _raise_for(self, path: str, response: Any) -> None:
        message = _server_message(response)
        status = response.status_code
        where = f"{self.base_url}{path}"
        if status in RETRY_STATUS:
            raise _Retryable(f"HTTP {status}: {message}", _retry_after(response))
        if status in (401, 403):
            hint = (f"set ${self.api_key_env}" if not os.environ.get(self.api_key_env)
                    else f"check the key in ${self.api_key_env}")
            raise ModelError(f"{where}: not authorized (HTTP {status}: {message}); {hint}")
        if status == 404:
            raise ModelError(f"{where}: not found (HTTP 404: {message}); check base_url "
                             "(it usually ends in /v1) and the model name")
        raise ModelError(f"{where}: HTTP {status}: {message}")

    def _with_retries(self, path: str, call: Callable[[], Any]) -> Any:
        delay = self.backoff_s
        for attempt in range(self.max_retries + 1):
            try:
                return call()
            except _Retryable as exc:
                if attempt == self.max_retries:
                    raise ModelError(
                        f"{self.base_url}{path}: failed after {attempt + 1} attempts ({exc})"
                    ) from exc
                wait = exc.retry_after if exc.retry_after is not None else delay
                time.sleep(min(wait, 30.0) * (1 + random.random() * 0.25))
                delay *= 2
        raise AssertionError("unreachable")


def _stream_event(where: str, data: str) -> dict[str, Any]:
    """One server-sent event's JSON; `ModelError` for a malformed event or an error event."""
    try:
        event = json.loads(data)
    except json.JSONDecodeError as exc:
        raise ModelError(f"{where}: bad stream event {data!r}") from exc
    if isinstance(event, dict) and event.get("error"):
        error = event["error"]
        message = error.get("message", error) if isinstance(error, dict) else error
        raise ModelError(f"{where}: error in the stream: {message}")
    return event  # type: ignore[no-any-return]


def _server_message(response: Any) -> str:
    try:
        data = response.json()
        error = data.get("error", data)
        if isinstance(error, dict):
            return str(error.get("message") or error)
        return str(error)
    except (ValueError, AttributeError):
        return (response.text or "").strip()[:300] or response.reason_phrase


def _retry_after(response: Any) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


class OpenAIGenerator:
    """Chat completions from an OpenAI-compatible server (implements `Generator`)."""

    def __init__(self, model: str, base_url: str, api_key_env: str = "OPENAI_API_KEY",
                 timeout_s: float = 60.0, max_retries: int = 3, backoff_s: float = 0.5) -> None:
        self.model = model
        self.name = f"openai:{model}"
        self.client = OpenAIClient(base_url, api_key_env, timeout_s, max_retries, backoff_s)
        self._counter: Callable[[str], int] | None = None

    def warm_up(self) -> None:
        """Nothing to load; the server is asked on the first call."""

    def count_tokens(self, text: str) -> int:
        """An estimate for prompt budgets: the bundled embedder's WordPiece tokenizer (a
        remote model's own tokenizer is not available offline); it runs close to GPT-style
        BPE counts on English prose."""
        if self._counter is None:
            from ragtune.documents.chunking import count_tokens, load_token_counter

            counter = load_token_counter()
            self._counter = lambda t: count_tokens(counter, t)
        return self._counter(text)

    def _body(self, messages: Sequence[Message], config: GenerationConfig, stream: bool
              ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": check_messages(messages),
            "max_tokens": config.max_new_tokens,
            "temperature": config.temperature,
            "logprobs": True,
            "stream": stream,
        }
        if config.temperature > 0:
            body.update(top_p=config.top_p, seed=config.seed)
        if config.stop:
            body["stop"] = list(config.stop)
        if config.json_schema is not None:
            body["response_format"] = {"type": "json_schema", "json_schema": {
                "name": "answer", "schema": config.json_schema, "strict": True}}
        if stream:
            body["stream_options"] = {"include_usage": True}
        return body

    def generate(self, messages: Sequence[Message], config: GenerationConfig | None = None,
                 on_token: TokenCallback | None = None) -> Generation:
        config = config or GenerationConfig()
        started = time.perf_counter()
        if on_token is None:
            reply = self.client.post("/chat/completions", self._body(messages, config, False))
            try:
                choice = reply["choices"][0]
                text = choice["message"]["content"] or ""
            except (KeyError, IndexError, TypeError) as exc:
                raise ModelError(f"{self.client.base_url}: unexpected reply shape {reply!r:.300}"
                                 ) from exc
            usage = reply.get("usage") or {}
            return Generation(
                text=text.strip(),
                prompt_tokens=int(usage.get("prompt_tokens") or 0),
                output_tokens=int(usage.get("completion_tokens") or 0),
                finish_reason=str(choice.get("finish_reason") or "stop"),
                seconds=time.perf_counter() - started,
                logprobs=_logprobs(choice),
                model=self.name,
            )
        stream = _Stream(started)
        events = self.client.stream("/chat/completions", self._body(messages, config, True))
        with contextlib.closing(events):  # closed even when on_token raises
            for event in events:
                stream.take(event, on_token)
        return Generation(
            text="".join(stream.pieces).strip(),
            prompt_tokens=int(stream.usage.get("prompt_tokens") or 0),
            output_tokens=int(stream.usage.get("completion_tokens")
                              or len(stream.logprobs) or len(stream.pieces)),
            finish_reason=stream.finish,
            seconds=time.perf_counter() - started,
            first_token_seconds=stream.first,
            logprobs=stream.logprobs,
            model=self.name,
        )

    def generate_batch(self, conversations: Sequence[Sequence[Message]],
                       config: GenerationConfig | None = None) -> list[Generation]:
        """One request per conversation (the chat API has no batch call), in order."""
        return [self.generate(m, config) for m in conversations]


@dataclass
class _Stream:
    """A streamed answer as its events arrive."""

    started: float
    pieces: list[str] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    usage: dict[str, Any] = field(default_factory=dict)
    finish: str = "stop"
    first: float | None = None

    def take(self, event: dict[str, Any], on_token: TokenCallback) -> None:
        self.usage = event.get("usage") or self.usage
        for choice in event.get("choices") or []:
            piece = (choice.get("delta") or {}).get("content") or ""
            if piece:
                if self.first is None:
                    self.first = time.perf_counter() - self.started
                self.pieces.append(piece)
                on_token(piece)
            self.logprobs.extend(_logprobs(choice))
            self.finish = str(choice.get("finish_reason") or self.finish)


def _logprobs(choice: dict[str, Any]) -> list[float]:
    content = (choice.get("logprobs") or {}).get("content") or []
    return [float(t["logprob"]) for t in content if isinstance(t, dict) and "logprob" in t]


class OpenAIEmbedder:
    """Embeddings from an OpenAI-compatible server (implements `Embedder`); vectors are
    L2-normalized so they mix with the rest of ragtune's cosine scoring."""

    def __init__(self, model: str, base_url: str, api_key_env: str = "OPENAI_API_KEY",
                 timeout_s: float = 60.0, max_retries: int = 3, batch_size: int = 64,
                 backoff_s: float = 0.5) -> None:
        self.model = model
        self.name = f"openai:{model}"
        self.batch_size = batch_size
        self.client = OpenAIClient(base_url, api_key_env, timeout_s, max_retries, backoff_s)
        self._dim: int | None = None

    @property
    def dim(self) -> int:
        if self._dim is None:
            self._dim = int(self.embed(["dimension probe"]).shape[1])
        return self._dim

    def warm_up(self) -> None:
        _ = self.dim

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out: list[np.ndarray] = []
        for start in range(0, len(texts), self.batch_size):
            batch = list(texts[start:start + self.batch_size])
            reply = self.client.post("/embeddings", {"model": self.model, "input": batch})
            try:
                rows = sorted(reply["data"], key=lambda r: r["index"])
                matrix = np.asarray([r["embedding"] for r in rows], dtype=np.float32)
            except (KeyError, TypeError, ValueError) as exc:
                raise ModelError(f"{self.client.base_url}/embeddings: unexpected reply "
                                 f"{reply!r:.300}") from exc
            if matrix.shape[0] != len(batch):
                raise ModelError(f"{self.client.base_url}/embeddings: asked for {len(batch)} "
                                 f"vectors, got {matrix.shape[0]}")
            norms = np.linalg.norm(matrix, axis=1, keepdims=True)
            out.append(matrix / np.maximum(norms, 1e-12))
        if not out:
            return np.zeros((0, self._dim or 0), dtype=np.float32)
        result = np.vstack(out)
        self._dim = int(result.shape[1])
        return result

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed([text])[0]
