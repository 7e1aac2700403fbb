"""Training data for LoRA: chat or prompt/completion JSONL, validated before any training.

Each line is one example, in one of two shapes:

    {"messages": [{"role": "system", "content": "..."}, {"role": "user", "content": "..."},
                  {"role": "assistant", "content": "..."}]}
    {"prompt": "...", "completion": "...", "system": "optional system message"}

An assistant message may carry `"weight": 0` (as in OpenAI's fine-tuning format): it stays in the
context but is not learned (worked examples in a prompt, say).

Every bad line is reported with its number before a model is loaded: invalid JSON, unknown keys,
wrong or misordered roles, empty content, a conversation that does not end with the assistant,
duplicates (naming the earlier line), and fewer examples than `tune.min_examples`. Examples longer
than `tune.max_length` tokens are reported once the tokenizer is available (`check_lengths`).
`validate_training_data` runs every check on a file without training (`tune --validate-only`).

The loss is on assistant tokens only: `encode_example` renders the conversation with the model's
own chat template and tokenizes the context and each assistant turn separately, so the prompt
tokens are exactly those the model sees at inference (`LocalGenerator.render`), and the labels
are the assistant's tokens plus its end-of-turn token.

    >>> examples = load_training_data(Path("tickets.jsonl"), min_examples=8)
    >>> train, val = split_examples(examples, val_split=0.1, max_val=200, seed=0)
    >>> ids, labels = encode_example(tokenizer, train[0].messages)
    >>> report = validate_training_data(Path("tickets.jsonl"), Settings.load())
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ragtune.config import Settings
from ragtune.errors import InputError, ModelError
from ragtune.jsonl import errors_found, parse_lines, write_jsonl
from ragtune.models.generators import set_offline
from ragtune.tuning.manifest import resolve_base

IGNORE_INDEX = -100
"""Label of a token the loss ignores (context, padding)."""
CHAT_KEYS = {"messages", "id", "metadata"}
PROMPT_KEYS = {"prompt", "completion", "system", "id", "metadata"}
MESSAGE_KEYS = {"role", "content", "weight"}
ROLES = ("system", "user", "assistant")

Message = dict[str, Any]
Encoded = tuple[list[int], list[int]]
"""An example as token ids and their labels (`encode_example`)."""


@dataclass(frozen=True)
class TrainingExample:
    """One conversation to learn from; it ends with the assistant turn the loss is on."""

    messages: tuple[Message, ...]
    line: int = 0
    shape: str = "chat"  # "chat" | "prompt-completion"

    def to_dict(self) -> dict[str, Any]:
        return {"messages": [dict(m) for m in self.messages]}


def parse_example(row: Any, where: str, line: int = 0) -> TrainingExample:
    """One example from a decoded JSON object; `where` prefixes error messages."""
    if not isinstance(row, dict):
        raise InputError(f"{where}: expected a JSON object")
    if "messages" in row:
        unknown = sorted(set(row) - CHAT_KEYS)
        if unknown:
            raise InputError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))} in a "
                             f"chat example; allowed: {', '.join(sorted(CHAT_KEYS))}")
        return TrainingExample(check_conversation(row["messages"], where), line, "chat")
    if "prompt" in row or "completion" in row:
        unknown = sorted(set(row) - PROMPT_KEYS)
        if unknown:
            raise InputError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))} in a "
                             "prompt/completion example; allowed: "
                             f"{', '.join(sorted(PROMPT_KEYS))}")
        messages: list[Any] = []
        if "system" in row:
            messages.append({"role": "system", "content": row["system"]})
        messages += [{"role": "user", "content": row.get("prompt")},
                     {"role": "assistant", "content": row.get("completion")}]
        names = {"system": "system", "user": "prompt", "assistant": "completion"}
        for m in messages:
            if not isinstance(m["content"], str) or not m["content"].strip():
                raise InputError(f"{where}: {names[m['role']]!r} must be a non-empty string")
        return TrainingExample(tuple(messages), line, "prompt-completion")
    raise InputError(f"{where}: expected 'messages' (chat) or 'prompt' and 'completion'")


def check_conversation(messages: Any, where: str) -> tuple[Message, ...]:
    """Roles in order (optional system, then user/assistant alternating, ending with the
    assistant) and non-empty string content."""
    if not isinstance(messages, list) or not messages:
        raise InputError(f"{where}: 'messages' must be a non-empty list")
    out = [_check_message(m, i, where) for i, m in enumerate(messages)]
    system = 1 if out[0]["role"] == "system" else 0
    _check_turns(out[system:], system, where)
    return tuple(out)


def _check_message(m: Any, i: int, where: str) -> Message:
    """Message `i` on its own: known keys, a known role, content, and a `weight` of 0 or 1 on
    an assistant message only (kept when it is 0: the turn is context, not learned)."""
    if not isinstance(m, dict):
        raise InputError(f"{where}: message {i} must be an object with role and content")
    extra = sorted(set(m) - MESSAGE_KEYS)
    if extra:
        raise InputError(f"{where}: message {i} has unknown key(s) "
                         f"{', '.join(map(repr, extra))}")
    role, content = m.get("role"), m.get("content")
    if role not in ROLES:
        raise InputError(f"{where}: message {i}: role must be system, user or assistant, "
                         f"got {role!r}")
    if not isinstance(content, str) or not content.strip():
        raise InputError(f"{where}: message {i} ({role}): content is empty or not a string")
    message: Message = {"role": role, "content": content}
    if "weight" in m:
        if role != "assistant" or m["weight"] not in (0, 1) or isinstance(m["weight"], bool):
            raise InputError(f"{where}: message {i}: 'weight' is 0 or 1, on assistant "
                             "messages only")
        if m["weight"] == 0:
            message["weight"] = 0
    return message


def _check_turns(turns: Sequence[Message], offset: int, where: str) -> None:
    """The turns after the optional system message (`offset` of them) alternate user and
    assistant, end with the assistant, and leave at least one assistant turn to learn."""
    for i, m in enumerate(turns):
        expected = "user" if i % 2 == 0 else "assistant"
        if m["role"] != expected:
            raise InputError(f"{where}: message {i + offset}: expected role {expected!r}, got "
                             f"{m['role']!r} (a conversation is an optional system message, then "
                             "user and assistant turns alternating)")
    if not turns or turns[-1]["role"] != "assistant":
        raise InputError(f"{where}: the conversation must end with an assistant message "
                         "(the loss is on assistant turns)")
    if all(m.get("weight") == 0 for m in turns if m["role"] == "assistant"):
        raise InputError(f"{where}: every assistant message has weight 0; nothing to learn")


def learned(message: Message) -> bool:
    """Whether the loss is on this message (an assistant turn without weight 0)."""
    return message["role"] == "assistant" and message.get("weight", 1) != 0


def load_training_data(path: Path, min_examples: int = 1) -> list[TrainingExample]:
    """Read and validate a training file; every bad line is reported, not just the first."""
    parsed, errors = parse_lines(path, parse_example)
    examples: list[TrainingExample] = []
    seen: dict[str, int] = {}
    for number, example in parsed:
        key = json.dumps(example.messages, sort_keys=True)
        if key in seen:
            errors.append(f"{path}:{number}: duplicates line {seen[key]}")
            continue
        seen[key] = number
        examples.append(example)
    errors.sort(key=lambda e: _line_of(e, str(path)))
    if not errors and len(examples) < min_examples:
        errors.append(f"{path}: {len(examples)} example(s); at least {min_examples} are needed "
                      "(tune.min_examples)")
    if errors:
        raise errors_found(f"{path}: invalid training data ({len(errors)} problem(s))", errors)
    return examples


def _line_of(error: str, path: str) -> int:
    """The line number an error message starts with ('{path}:{line}: ...'), for ordering."""
    head = error[len(path) + 1:].split(":", 1)[0] if error.startswith(path + ":") else ""
    return int(head) if head.isdigit() else 0


def write_training_data(examples: Sequence[TrainingExample], path: Path) -> Path:
    """Write examples as chat JSONL (the file `load_training_data` reads back)."""
    return write_jsonl((e.to_dict() for e in examples), path)


def examples_digest(examples: Sequence[TrainingExample]) -> str:
    """SHA-256 of the examples' content (what the adapter learned from, in order)."""
    h = hashlib.sha256()
    for e in examples:
        h.update(json.dumps(e.messages, sort_keys=True, ensure_ascii=False).encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()


# --- tokenization -----------------------------------------------------------------------------


def load_tokenizer(folder: Path) -> Any:
    """The base model's tokenizer (it must have a chat template: data is rendered with it)."""
    set_offline()
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
    except (OSError, ValueError) as exc:
        raise ModelError(f"{folder}: cannot load the tokenizer ({exc})") from exc
    if not tokenizer.chat_template:
        raise ModelError(f"{folder}: the tokenizer has no chat template; training data is "
                         "rendered with it (as answers are)")
    return tokenizer


def length_limit(folder: Path, max_length: int) -> tuple[int, str]:
    """The longest example allowed and what sets it: `tune.max_length`, or the model's context
    (`max_position_embeddings` in its config) when that is shorter."""
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        config = {}
    context = config.get("max_position_embeddings")
    if isinstance(context, int) and context < max_length:
        return context, "the model's context"
    return max_length, "tune.max_length"


def render(tokenizer: Any, messages: Sequence[Message], generation_prompt: bool) -> str:
    return str(tokenizer.apply_chat_template(list(messages), tokenize=False,
                                             add_generation_prompt=generation_prompt))


def encode_example(tokenizer: Any, messages: Sequence[Message]) -> tuple[list[int], list[int]]:
    """Token ids and labels of one conversation; labels are `IGNORE_INDEX` except on learned
    assistant turns (their text and end-of-turn token; `weight: 0` turns are context).

    The context before each assistant turn is rendered with the generation prompt and tokenized
    on its own, exactly as `LocalGenerator` tokenizes a prompt, so training never sees a token
    boundary that inference would not.
    """
    ids: list[int] = []
    labels: list[int] = []
    plain = [{"role": m["role"], "content": m["content"]} for m in messages]
    full = render(tokenizer, plain, False)
    done = 0
    for i, message in enumerate(messages):
        if not learned(message):
            continue
        prefix = render(tokenizer, plain[:i], True)
        upto = render(tokenizer, plain[:i + 1], False)
        if not (upto.startswith(prefix) and full.startswith(upto)) or len(prefix) < done:
            raise ModelError("the chat template does not render conversations incrementally; "
                             "cannot locate the assistant turns")
        context = _tokens(tokenizer, prefix[done:])
        answer_text = upto[len(prefix):].rstrip()
        answer = _tokens(tokenizer, answer_text)
        ids += context + answer
        labels += [IGNORE_INDEX] * len(context) + answer
        done = len(prefix) + len(answer_text)
    return ids, labels


def _tokens(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"]) if text else []


def check_lengths(examples: Sequence[TrainingExample], tokenizer: Any, max_length: int,
                  source: str, limit_name: str = "tune.max_length") -> list[Encoded]:
    """Encode every example; an example over `max_length` tokens is an error naming its line
    (and `limit_name`, the limit it broke)."""
    encoded = []
    errors = []
    for e in examples:
        ids, labels = encode_example(tokenizer, e.messages)
        if len(ids) > max_length:
            errors.append(f"{source}:{e.line}: {len(ids)} tokens, over {limit_name} "
                          f"({max_length})")
        encoded.append((ids, labels))
    if errors:
        raise errors_found(f"{source}: {len(errors)} example(s) too long for training", errors)
    return encoded


def split_examples(examples: Sequence[TrainingExample], val_split: float, max_val: int,
                   seed: int) -> tuple[list[TrainingExample], list[TrainingExample]]:
    """A seeded train/validation split: the same seed gives the same split. With a non-zero
    `val_split` at least one example is held out and at least one is trained on."""
    n = len(examples)
    n_val = min(int(round(n * val_split)), max_val) if val_split > 0 else 0
    if val_split > 0 and max_val > 0:
        n_val = min(max(n_val, 1), n - 1)
    order = np.random.default_rng(seed).permutation(n)
    held = set(order[:n_val].tolist())
    train = [e for i, e in enumerate(examples) if i not in held]
    val = [e for i, e in enumerate(examples) if i in held]
    return train, val


# --- checking a file without training ---------------------------------------------------------


@dataclass(frozen=True)
class ValidationReport:
    """A training file that passed every check, in numbers; `to_dict()` is the
    `ragtune tune --validate-only --json` shape."""

    path: Path
    examples: int
    train: int
    validation: int
    max_tokens: int
    mean_tokens: float  # rounded to one decimal, as reported
    total_tokens: int
    limit: int
    """The longest example allowed, and what sets it (`limit_name`)."""
    limit_name: str

    def to_dict(self) -> dict[str, Any]:
        return {"valid": True, "examples": self.examples, "train": self.train,
                "validation": self.validation,
                "tokens": {"max": self.max_tokens, "mean": self.mean_tokens,
                           "total": self.total_tokens}}


def validate_training_data(path: Path, settings: Settings) -> ValidationReport:
    """Every check `train_adapter` makes on a training file before it trains (rows, roles,
    duplicates, count, lengths in the base model's tokens), and the split it would use.

    Raises `InputError` listing every problem; returns the numbers when there is none.
    """
    tune = settings.tune
    examples = load_training_data(path, tune.min_examples)
    folder, _ = resolve_base(tune.base, settings.cache_dir)
    limit, limit_name = length_limit(folder, tune.max_length)
    encoded = check_lengths(examples, load_tokenizer(folder), limit, str(path), limit_name)
    train, val = split_examples(examples, tune.val_split, tune.max_val_examples, tune.seed)
    lengths = [len(ids) for ids, _ in encoded]
    return ValidationReport(
        path=path, examples=len(examples), train=len(train), validation=len(val),
        max_tokens=max(lengths), mean_tokens=round(sum(lengths) / len(lengths), 1),
        total_tokens=sum(lengths), limit=limit, limit_name=limit_name)
