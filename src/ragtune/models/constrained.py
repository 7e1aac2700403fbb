"""JSON-schema constrained decoding for local models, on llguidance.

At every decoding step a grammar compiled from the schema says which tokens may come next; the
others get a logit of -inf, so the output is valid JSON for the schema by construction (as long
as the token budget lets it finish). This is the "orchestration" alternative to training a
behaviour: no data, no training, a little time per token.

llguidance (the Rust engine of guidance, also a structured-output backend of vLLM) compiles
JSON schemas lazily into a token-level parser; it is a 3 MB wheel with no dependencies and runs
offline. Objects that declare properties are closed to undeclared ones (`closed`), and output
whitespace is fixed to `json.dumps`' style (`", "` and `": "`, nothing else), so
an adapter trained on `json.dumps` targets and the constraint agree token for token, and a model
cannot stall by emitting endless whitespace.

    >>> constraint = SchemaConstraint.for_tokenizer(tokenizer, {"type": "object", ...})
    >>> model.generate(**enc, logits_processor=[constraint.processor(batch=1, prompt_width=n)])

An OpenAI-compatible server gets the schema as `response_format` instead
(`ragtune.models.openai`).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from ragtune.errors import InputError, ModelError

# Separators of `json.dumps` defaults; no other whitespace.
JSON_STYLE = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}

_tokenizers: dict[int, Any] = {}
_tokenizers_lock = threading.Lock()


def load_schema(path: Path) -> dict[str, Any]:
    """A JSON schema from a file, checked to be a valid schema (any draft it declares)."""
    try:
        schema = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    except ValueError as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from exc
    check_schema(schema, str(path))
    return schema


def check_schema(schema: Any, where: str = "schema") -> None:
    """A JSON schema object that `jsonschema` accepts (else an `InputError` naming `where`)."""
    if not isinstance(schema, dict):
        raise InputError(f"{where}: a JSON schema must be a JSON object")
    from jsonschema import SchemaError
    from jsonschema.validators import validator_for

    try:
        validator_for(schema).check_schema(schema)
    except SchemaError as exc:
        raise InputError(f"{where}: not a valid JSON schema ({exc.message})") from exc


def canonical(schema: Mapping[str, Any]) -> str:
    return json.dumps(schema, sort_keys=True, separators=(",", ":"))


def closed(schema: Any) -> Any:
    """The schema with every object that declares `properties` but says nothing of extra ones
    closed (`additionalProperties: false`), as OpenAI's strict mode requires.

    JSON Schema allows undeclared properties by default, and a small model given that freedom
    rambles on inventing keys until its token budget ends, mid-document. Every document valid
    for the closed schema is valid for the original one, so closing only removes the ramble.
    """
    if isinstance(schema, list):
        return [closed(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: closed(v) for k, v in schema.items()}
    if "properties" in out and not {"additionalProperties", "patternProperties",
                                    "unevaluatedProperties"} & set(out):
        out["additionalProperties"] = False
    return out


@lru_cache(maxsize=64)
def compile_schema(schema_json: str) -> str:
    """The llguidance grammar for a (canonical JSON) schema, validated once."""
    llguidance = _llguidance()
    try:
        grammar = llguidance.LLMatcher.grammar_from_json_schema(schema_json, overrides=JSON_STYLE)
    except ValueError as exc:
        raise InputError(f"schema: cannot be compiled for constrained decoding ({exc})") from exc
    error, messages = llguidance.LLMatcher.validate_grammar_with_warnings(grammar)
    if error:
        raise InputError(f"schema: not supported by the constrained decoder "
                         f"({'; '.join(messages)})")
    return str(grammar)


def _llguidance() -> Any:
    try:
        import llguidance
    except ImportError as exc:  # pragma: no cover - a core dependency
        raise ModelError("llguidance is not installed; it runs constrained decoding "
                         "(pip install llguidance)") from exc
    return llguidance


def ll_tokenizer(tokenizer: Any) -> Any:
    """llguidance's view of a Hugging Face fast tokenizer (about a second to build; kept per
    tokenizer object)."""
    key = id(tokenizer)
    with _tokenizers_lock:
        if key not in _tokenizers:
            from llguidance.hf import from_tokenizer

            try:
                _tokenizers[key] = (tokenizer, from_tokenizer(tokenizer))
            except ValueError as exc:
                raise ModelError(f"constrained decoding needs a fast tokenizer ({exc})") from exc
        return _tokenizers[key][1]


class SchemaConstraint:
    """A compiled schema for one tokenizer; `processor()` makes a fresh per-call state."""

    def __init__(self, tokenizer: Any, schema: Mapping[str, Any]) -> None:
        check_schema(dict(schema))
        self.grammar = compile_schema(canonical(closed(schema)))
        self.tokenizer = ll_tokenizer(tokenizer)
        self.eos = tokenizer.eos_token_id

    def processor(self, batch: int, prompt_width: int) -> SchemaLogitsProcessor:
        return SchemaLogitsProcessor(self, batch, prompt_width)


class SchemaLogitsProcessor:
    """A `transformers` logits processor: one llguidance matcher per row of the batch.

    On each call it feeds every row's matcher the token chosen at the previous step, then masks
    the scores to the tokens the grammar allows next. A row whose grammar is complete may only
    end (the end-of-turn token); so may a row whose matcher failed (which greedy decoding under
    the mask cannot cause, but a bug must not hang generation).
    """

    def __init__(self, constraint: SchemaConstraint, batch: int, prompt_width: int) -> None:
        llguidance = _llguidance()
        self.constraint = constraint
        self.prompt_width = prompt_width
        self.matchers = [llguidance.LLMatcher(constraint.tokenizer, constraint.grammar,
                                              log_level=0) for _ in range(batch)]
        self.finished = [False] * batch

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        if input_ids.shape[1] > self.prompt_width:
            last = input_ids[:, -1].tolist()
            for row, matcher in enumerate(self.matchers):
                if self.finished[row]:
                    continue
                if last[row] == self.constraint.eos or matcher.is_stopped():
                    self.finished[row] = True
                    continue
                matcher.consume_token(int(last[row]))
        vocab = scores.shape[-1]
        allowed = np.zeros((len(self.matchers), vocab), dtype=bool)
        for row, matcher in enumerate(self.matchers):
            if self.finished[row] or matcher.is_error() or matcher.is_stopped():
                allowed[row, self.constraint.eos] = True
                continue
            bits = np.unpackbits(np.frombuffer(matcher.compute_bitmask(), dtype=np.uint8),
                                 bitorder="little").astype(bool)
            width = min(vocab, bits.size)
            allowed[row, :width] = bits[:width]
        keep = torch.from_numpy(allowed).to(scores.device)
        return scores.masked_fill(~keep, float("-inf"))

    def errors(self) -> list[str]:
        """Matcher errors by row ('' where none)."""
        return [m.get_error() for m in self.matchers]
