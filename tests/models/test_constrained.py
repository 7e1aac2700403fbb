"""JSON-schema constrained decoding on the real bundled model (llguidance token masks)."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from ragtune.errors import InputError
from ragtune.models.constrained import load_schema
from ragtune.models.generators import GenerationConfig

INTENT = {
    "type": "object",
    "properties": {
        "intent": {"enum": ["card_arrival", "pin_blocked", "exchange_rate"]},
        "urgent": {"type": "boolean"},
        "amount": {"type": "integer", "minimum": 0, "maximum": 100000},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 12},
                 "maxItems": 2},
    },
    "required": ["intent", "urgent", "amount", "tags"],
    "additionalProperties": False,
}
QUERIES = ["My card has not arrived yet, it has been two weeks.",
           "I typed the wrong PIN three times and now it is blocked!",
           "What rate do you use to convert 200 euros into dollars?"]


def _ask(query: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": "Classify the banking query. Reply with JSON."},
            {"role": "user", "content": query}]


@pytest.mark.slow
def test_every_output_is_valid_for_the_schema(generator) -> None:
    config = GenerationConfig(max_new_tokens=64, json_schema=INTENT)
    unconstrained = generator.generate_batch([_ask(q) for q in QUERIES],
                                             GenerationConfig(max_new_tokens=64))
    outputs = generator.generate_batch([_ask(q) for q in QUERIES], config)
    for out in outputs:
        data = json.loads(out.text)
        jsonschema.validate(data, INTENT)
        assert out.finish_reason == "stop"
        assert out.text == json.dumps(data)  # json.dumps' separators, no other whitespace
    # the prompt alone does not give this structure
    assert any(_invalid(o.text) for o in unconstrained)
    # one at a time and streamed (padding in a batch may tip a near-tie, so the text can
    # differ from the batched one; it is valid all the same)
    pieces: list[str] = []
    single = generator.generate(_ask(QUERIES[1]), config, on_token=pieces.append)
    assert "".join(pieces).strip() == single.text
    jsonschema.validate(json.loads(single.text), INTENT)


def _invalid(text: str) -> bool:
    try:
        jsonschema.validate(json.loads(text), INTENT)
    except (ValueError, jsonschema.ValidationError):
        return True
    return False


@pytest.mark.slow
def test_free_text_fields_stay_in_the_grammar(generator) -> None:
    # objects with undeclared properties allowed are closed for decoding (else the model
    # invents keys until the budget ends); bounded fields keep a small model from running on
    schema = {"type": "object", "properties": {"answer": {"type": "string", "maxLength": 30},
                                               "confidence": {"type": "integer", "minimum": 0,
                                                              "maximum": 100}},
              "required": ["answer", "confidence"]}
    out = generator.generate(_ask("Where do I see my card's PIN?"),
                             GenerationConfig(max_new_tokens=48, json_schema=schema))
    jsonschema.validate(json.loads(out.text), schema)


def test_schema_files_are_checked(tmp_path: Path) -> None:
    good = tmp_path / "good.json"
    good.write_text(json.dumps(INTENT))
    assert load_schema(good) == INTENT
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(InputError, match="bad.json: not valid JSON"):
        load_schema(tmp_path / "bad.json")
    (tmp_path / "wrong.json").write_text('{"type": "objekt"}')
    with pytest.raises(InputError, match="wrong.json: not a valid JSON schema"):
        load_schema(tmp_path / "wrong.json")
    (tmp_path / "list.json").write_text("[1]")
    with pytest.raises(InputError, match="must be a JSON object"):
        load_schema(tmp_path / "list.json")
    with pytest.raises(InputError, match="cannot read"):
        load_schema(tmp_path / "missing.json")


def test_closing_objects_keeps_outputs_valid_for_the_original() -> None:
    from ragtune.models.constrained import closed

    schema = {"type": "object", "properties": {
        "a": {"type": "object", "properties": {"b": {"type": "string"}}},
        "c": {"type": "object", "additionalProperties": True, "properties": {}},
        "d": {"type": "array", "items": {"anyOf": [{"type": "object", "properties": {}}]}}}}
    tight = closed(schema)
    assert tight["additionalProperties"] is False
    assert tight["properties"]["a"]["additionalProperties"] is False
    assert tight["properties"]["c"]["additionalProperties"] is True  # said explicitly: kept
    assert tight["properties"]["d"]["items"]["anyOf"][0]["additionalProperties"] is False
    assert "additionalProperties" not in schema  # the original is untouched
    document = {"a": {"b": "x"}, "c": {"z": 1}}
    jsonschema.validate(document, tight)
    jsonschema.validate(document, schema)


@pytest.mark.slow
def test_bf16_generation_is_constrained_too(model_cache) -> None:
    """The product default on CPUs with native bf16 (`dtype = "auto"`): the same guarantees."""
    from ragtune.models.generators import LocalGenerator

    bf16 = LocalGenerator(cache_dir=model_cache, dtype="bfloat16")
    outputs = bf16.generate_batch([_ask(q) for q in QUERIES],
                                  GenerationConfig(max_new_tokens=64, json_schema=INTENT))
    for out in outputs:
        jsonschema.validate(json.loads(out.text), INTENT)
    assert bf16.model.dtype.is_floating_point and str(bf16.model.dtype) == "torch.bfloat16"
