"""What the HTTP API takes and answers: the request bodies, the error shape, the API's bounds.

    >>> SearchRequest(query="refund policy", k=3)          # what POST /v1/search takes

Every body is checked before a route sees it: bounded nesting, finite numbers, Unicode text
(422 otherwise, never a server error); unknown fields are refused, except in the OpenAI chat
body (OpenAI clients send many). The class names are the OpenAPI schema names.
"""

import math
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ragtune.lab.checklist import ChecklistAnswers

MAX_BODY_BYTES = 1_000_000  # the schema's bound on a text; service.max_body_bytes limits bodies
MAX_JSON_DEPTH = 32  # no request of this API nests deeper; a deeper body is refused
MAX_QUESTION_CHARS = 2000  # /v1/ask's question; the chat endpoint's last user message too
MAX_MESSAGE_CHARS = 32_000
MODEL_PREFIX = "kb:"  # OpenAI model names: kb:<knowledge base>
UPLOAD_PATH = "/v1/documents/files"  # the one route limited by service.max_upload_bytes


def _json_problem(value: Any) -> str | None:
    """What makes a parsed JSON body unusable, or None. Walked without recursion, so a body
    nested thousands deep is refused, not a crash: nesting over `MAX_JSON_DEPTH`, a string
    with a lone surrogate (`"\\ud800"` is valid JSON but no Unicode text: nothing downstream
    can encode it), a number that is not finite (`NaN`, `1e999`) or an integer too large to
    use."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if any("\ud800" <= c <= "\udfff" for c in item):
                return "text holds a lone surrogate (not valid Unicode)"
        elif isinstance(item, bool):
            continue
        elif isinstance(item, float):
            if not math.isfinite(item):
                return "numbers must be finite"
        elif isinstance(item, int):
            if abs(item) >= 2**63:
                return "integer out of range"
        elif isinstance(item, dict | list):
            if depth > MAX_JSON_DEPTH:
                return f"JSON nested deeper than {MAX_JSON_DEPTH} levels"
            children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return None


class _Body(BaseModel):
    """A request body: bounded nesting, finite numbers, Unicode text (422 otherwise, never a
    server error)."""

    @model_validator(mode="before")
    @classmethod
    def _usable(cls, data: Any) -> Any:
        problem = _json_problem(data)
        if problem:
            raise ValueError(problem)
        return data


class ErrorBody(BaseModel):
    """Every error: `{"error": {"type": "...", "message": "..."}}`."""

    error: dict[str, str] = Field(description="type (stable: invalid_request, unauthorized, "
                                  "forbidden, not_found, too_large, rate_limited, ...) and a "
                                  "message for people")


ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": text} for status, text in (
        (400, "bad request"), (401, "no or unknown key"),
        (403, "the key lacks the scope, or may not write there"),
        (404, "not found (or not visible to the key)"), (408, "body not received in time"),
        (413, "body too large"), (422, "invalid request"),
        (429, "rate limited (see Retry-After)"))}
STREAMED: dict[int | str, dict[str, Any]] = {200: {
    "description": "JSON, or server-sent events with `\"stream\": true`",
    "content": {"application/json": {}, "text/event-stream": {}}}}


class SearchRequest(_Body):
    model_config = ConfigDict(extra="forbid")
    query: str = Field(min_length=1, max_length=2000)
    kb: str | None = None
    k: int = Field(5, ge=1, le=50)
    mode: str = Field("hybrid", pattern="^(hybrid|bm25|dense)$")


class DocumentIn(_Body):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1, max_length=300,
                    pattern=r"^[^\s/\\\x00-\x1f\x7f][^\\\x00-\x1f\x7f]*$",
                    description="the document's id (stored under the key's namespace, see "
                    "the README's security section)")
    text: str = Field(min_length=1, max_length=MAX_BODY_BYTES)
    title: str = Field("", max_length=500)
    groups: list[str] | None = Field(None, description="access groups (default: the key's)")
    metadata: dict[str, str | int | float | bool] = Field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        """The document as a JSONL record (`KnowledgeBase.ingest_records`); a `groups` key in
        its metadata is dropped: only the `groups` field names groups."""
        return ({**{k: v for k, v in self.metadata.items() if k != "groups"}, "_id": self.id,
                 "title": self.title, "text": self.text}
                | ({} if self.groups is None else {"groups": self.groups}))


class IngestRequest(_Body):
    model_config = ConfigDict(extra="forbid")
    kb: str | None = None
    documents: list[DocumentIn] = Field(min_length=1, max_length=1000)


class ChatMessage(_Body):
    model_config = ConfigDict(extra="ignore")
    role: str = Field(max_length=32)
    content: str | list[dict[str, Any]] | None = Field(None, max_length=MAX_MESSAGE_CHARS)

    def text(self) -> str:
        if isinstance(self.content, list):  # content parts: keep the text ones
            return " ".join(str(p.get("text", "")) for p in self.content
                            if p.get("type") == "text")
        return self.content or ""


class ChatRequest(_Body):
    """The OpenAI chat-completions body; fields this service does not use are ignored, as
    OpenAI clients send many (temperature, user, ...)."""

    model_config = ConfigDict(extra="ignore")
    model: str = Field(max_length=300)
    messages: list[ChatMessage] = Field(min_length=1, max_length=256)
    stream: bool = False


class AssessRequest(_Body):
    model_config = ConfigDict(extra="forbid")
    answers: ChecklistAnswers
    report: str | None = Field(None, max_length=200, description="a lab report's name "
                               "(GET /v1/reports): its measurements as evidence")


class EvaluateRequest(_Body):
    model_config = ConfigDict(extra="forbid")
    kb: str | None = None
    arch: str = Field("rag", pattern="^(base|rag)$", description="rag: retrieval + answer; "
                      "base: the model alone (adapters are chosen server-side, by `ragtune "
                      "eval`, never by path from a client)")
    k: int | None = Field(None, ge=1, le=20)
    cases: list[dict[str, Any]] = Field(min_length=1, max_length=50, description="evaluation "
                                        "cases as in a cases.jsonl file: question, answers, "
                                        "gold_docs, ...")


class AskRequest(_Body):
    model_config = ConfigDict(extra="forbid")
    question: str = Field(min_length=1, max_length=MAX_QUESTION_CHARS)
    kb: str | None = None
    k: int | None = Field(None, ge=1, le=20)
    stream: bool = Field(False, description="server-sent events: `token` events with the "
                         "checked answer (sent once generation and the checks are done: a "
                         "refused draft is never sent), then one `answer` event (the answer "
                         "with its citations: the one to show)")
    drafts: bool = Field(False, description="with `stream`: also `draft` events, the "
                         "unchecked draft as it is generated, to be shown as a draft (plain "
                         "text) until the checked `token` events and the `answer` replace it: "
                         "verification may refuse it")
    allow_unverified: bool = Field(False, description="return an answer the judge cannot "
                                   "support marked `verified: false` instead of refusing it")
