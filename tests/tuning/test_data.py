"""Training data: validation with line numbers, assistant-only labels, seeded splits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ragtune.errors import InputError
from ragtune.tuning.data import (
    IGNORE_INDEX,
    check_lengths,
    encode_example,
    load_training_data,
    split_examples,
    write_training_data,
)
from ragtune.tuning.trainer import plan_batches


def _write(path: Path, rows: list[object]) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n",
                    encoding="utf-8")
    return path


def _chat(user: str, answer: str, system: str | None = None) -> dict:
    messages = [{"role": "system", "content": system}] if system else []
    return {"messages": messages + [{"role": "user", "content": user},
                                    {"role": "assistant", "content": answer}]}


def test_chat_and_prompt_completion_rows(tmp_path: Path) -> None:
    path = _write(tmp_path / "d.jsonl", [
        _chat("hi", "hello", system="be brief"),
        "",
        {"prompt": "2+2?", "completion": "4", "system": "math"},
        {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b",
                                                          "weight": 0},
                      {"role": "user", "content": "c"}, {"role": "assistant", "content": "d"}]},
    ])
    examples = load_training_data(path, min_examples=3)
    assert [e.line for e in examples] == [1, 3, 4]
    assert [e.shape for e in examples] == ["chat", "prompt-completion", "chat"]
    assert examples[1].messages == ({"role": "system", "content": "math"},
                                    {"role": "user", "content": "2+2?"},
                                    {"role": "assistant", "content": "4"})
    assert examples[2].messages[1] == {"role": "assistant", "content": "b", "weight": 0}
    # written back as chat JSONL, the same examples load again
    again = load_training_data(write_training_data(examples, tmp_path / "w.jsonl"), 3)
    assert [e.messages for e in again] == [e.messages for e in examples]


def test_every_bad_row_is_named_before_training(tmp_path: Path) -> None:
    path = _write(tmp_path / "bad.jsonl", [
        _chat("ok", "fine"),
        "{not json",
        {"messages": [{"role": "user", "content": "q"}, {"role": "bot", "content": "a"}]},
        {"messages": [{"role": "assistant", "content": "a"}]},
        {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": " "}]},
        {"messages": [{"role": "user", "content": "q"}]},
        _chat("ok", "fine"),
        {"prompt": "p"},
        {"prompt": "p", "completion": "c", "label": 3},
        [1, 2],
        {"messages": [{"role": "user", "content": "q"},
                      {"role": "assistant", "content": "a", "weight": 0}]},
        {"text": "plain"},
    ])
    with pytest.raises(InputError) as info:
        load_training_data(path, min_examples=1)
    message = str(info.value)
    expected = {
        2: "invalid JSON",
        3: "role must be system, user or assistant, got 'bot'",
        4: "expected role 'user', got 'assistant'",
        5: "content is empty",
        6: "must end with an assistant message",
        7: "duplicates line 1",
        8: "'completion' must be a non-empty string",
        9: "unknown key(s) 'label'",
        10: "expected a JSON object",
        11: "nothing to learn",
        12: "expected 'messages' (chat) or 'prompt' and 'completion'",
    }
    for line, words in expected.items():
        assert f"bad.jsonl:{line}: " in message and words in message, (line, message)
    assert "11 problem(s)" in message
    assert "bad.jsonl:1:" not in message


def test_too_few_examples_is_an_error(tmp_path: Path) -> None:
    path = _write(tmp_path / "one.jsonl", [_chat("q", "a")])
    with pytest.raises(InputError, match=r"1 example\(s\); at least 8 are needed"):
        load_training_data(path, min_examples=8)
    with pytest.raises(InputError, match="not UTF-8"):
        load_training_data(_write_bytes(tmp_path / "latin.jsonl", b'{"prompt": "caf\xe9"}'), 1)
    with pytest.raises(InputError, match="cannot read"):
        load_training_data(tmp_path / "missing.jsonl", 1)


def _write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_labels_are_exactly_the_assistant_turns(base_tokenizer) -> None:
    messages = [{"role": "system", "content": "Answer in JSON."},
                {"role": "user", "content": "Card lost?"},
                {"role": "assistant", "content": '{"intent": "lost_or_stolen_card"}'},
                {"role": "user", "content": "And the PIN?"},
                {"role": "assistant", "content": '{"intent": "pin_blocked"}'}]
    ids, labels = encode_example(base_tokenizer, messages)
    assert len(ids) == len(labels)
    learned = [i for i, t in enumerate(labels) if t != IGNORE_INDEX]
    assert all(labels[i] == ids[i] for i in learned)
    # two runs of labelled tokens, each an answer followed by the end-of-turn token
    runs = _runs(learned)
    assert [base_tokenizer.decode([ids[i] for i in run]) for run in runs] == [
        '{"intent": "lost_or_stolen_card"}<|im_end|>', '{"intent": "pin_blocked"}<|im_end|>']
    # the context before each answer is tokenized exactly as the generator tokenizes a prompt
    for run, upto in zip(runs, (2, 4), strict=True):
        prompt = base_tokenizer.apply_chat_template(messages[:upto], tokenize=False,
                                                    add_generation_prompt=True)
        alone = base_tokenizer(prompt, add_special_tokens=False)["input_ids"]
        if upto == 2:
            assert ids[:run[0]] == alone
        assert base_tokenizer.decode(ids[:run[0]]) == prompt


def test_weight_zero_turns_are_context(base_tokenizer) -> None:
    messages = [{"role": "user", "content": "example question"},
                {"role": "assistant", "content": "example answer", "weight": 0},
                {"role": "user", "content": "real question"},
                {"role": "assistant", "content": "real answer"}]
    ids, labels = encode_example(base_tokenizer, messages)
    learned = [ids[i] for i, t in enumerate(labels) if t != IGNORE_INDEX]
    assert base_tokenizer.decode(learned) == "real answer<|im_end|>"
    assert "example answer" in base_tokenizer.decode(ids)


def test_long_examples_are_named(tmp_path: Path, base_tokenizer) -> None:
    path = _write(tmp_path / "long.jsonl", [_chat("short", "ok"),
                                            _chat("word " * 300, "long")])
    examples = load_training_data(path, 1)
    with pytest.raises(InputError, match=r"long.jsonl:2: \d+ tokens, over tune.max_length \(64\)"):
        check_lengths(examples, base_tokenizer, 64, str(path))
    assert len(check_lengths(examples, base_tokenizer, 1024, str(path))) == 2


def _runs(indices: list[int]) -> list[list[int]]:
    runs: list[list[int]] = []
    for i in indices:
        if runs and runs[-1][-1] == i - 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    return runs


def test_split_is_seeded(tmp_path: Path) -> None:
    path = _write(tmp_path / "d.jsonl", [_chat(f"q{i}", f"a{i}") for i in range(40)])
    examples = load_training_data(path, 1)
    train, val = split_examples(examples, 0.1, 200, seed=3)
    again = split_examples(examples, 0.1, 200, seed=3)
    other = split_examples(examples, 0.1, 200, seed=4)
    assert (train, val) == again and len(val) == 4 and len(train) == 36
    assert other[1] != val
    assert {e.line for e in train} | {e.line for e in val} == set(range(1, 41))
    assert len(split_examples(examples, 0.5, 5, 0)[1]) == 5  # capped
    assert len(split_examples(examples[:3], 0.01, 200, 0)[1]) == 1  # at least one held out
    assert split_examples(examples, 0.0, 200, 0)[1] == []


@settings(max_examples=60, deadline=None)
@given(lengths=st.lists(st.integers(1, 500), min_size=1, max_size=300),
       batch=st.integers(1, 16), seed=st.integers(0, 10), epoch=st.integers(0, 3))
def test_batch_plan_covers_every_example_once(lengths: list[int], batch: int, seed: int,
                                              epoch: int) -> None:
    plan = plan_batches(lengths, batch, seed, epoch)
    flat = [i for b in plan for i in b]
    assert sorted(flat) == list(range(len(lengths)))
    assert all(1 <= len(b) <= batch for b in plan)
    assert plan == plan_batches(lengths, batch, seed, epoch)  # from the seed alone
    for world in (2, 3):
        shared = plan_batches(lengths, batch, seed, epoch, world)
        assert len(shared) % world == 0 or len(shared) < world


def test_early_stopping_keeps_the_best_epoch() -> None:
    from ragtune.tuning.trainer import _State

    state = _State()
    improved = []
    for epoch, loss in enumerate([2.0, 1.5, 1.6, 1.4, 1.45, 1.5]):
        state.epoch = epoch
        improved.append(state.record_epoch(loss, patience=2))
        if state.stopped_early:
            break
    assert improved == [True, True, False, True, False, False]
    assert (state.best_epoch, state.best_val, state.stopped_early) == (4, 1.4, True)
    never = _State()
    for epoch, loss in enumerate([1.0, 2.0, 3.0, 4.0]):
        never.epoch = epoch
        never.record_epoch(loss, patience=0)
    assert not never.stopped_early and never.best_epoch == 1
    blind = _State()
    assert blind.record_epoch(None, 2) and blind.record_epoch(None, 2)  # no validation set


def test_the_model_context_caps_the_length(tmp_path: Path) -> None:
    from ragtune.tuning.data import length_limit

    (tmp_path / "config.json").write_text('{"max_position_embeddings": 512}')
    assert length_limit(tmp_path, 1024) == (512, "the model's context")
    assert length_limit(tmp_path, 256) == (256, "tune.max_length")
    assert length_limit(tmp_path / "none", 300) == (300, "tune.max_length")


@pytest.mark.slow
def test_validation_report_counts_the_tokens_training_would_see(
        tmp_path: Path, model_cache: Path, base_tokenizer) -> None:
    """`tune --validate-only` in the library: the split `train_adapter` would use and the
    lengths of every example in the base model's tokens."""
    from conftest import write_code_examples
    from ragtune import Settings
    from ragtune.tuning.data import validate_training_data

    data = write_code_examples(tmp_path / "d.jsonl", 10)
    settings = Settings.load(home=tmp_path / "home", cache=model_cache)
    report = validate_training_data(data, settings)
    lengths = [len(encode_example(base_tokenizer, e.messages)[0])
               for e in load_training_data(data)]
    train, val = split_examples(load_training_data(data), 0.1, 200, 0)
    assert (report.examples, report.train, report.validation) == (10, len(train), len(val))
    assert report.to_dict() == {
        "valid": True, "examples": 10, "train": len(train), "validation": len(val),
        "tokens": {"max": max(lengths), "mean": round(sum(lengths) / 10, 1),
                   "total": sum(lengths)}}
    assert (report.limit, report.limit_name) == (1024, "tune.max_length")
    short = settings.with_overrides({"tune": {"max_length": 12}})
    with pytest.raises(InputError, match="too long for training") as failed:
        validate_training_data(data, short)
    assert "tokens, over tune.max_length (12)" in str(failed.value)
