"""The bundled generator on the real SmolLM2-135M-Instruct: conversion cache, greedy decoding,
streaming, batching, stop strings, LoRA adapters, and the errors around them."""

from __future__ import annotations

from pathlib import Path

import pytest

from ragtune.errors import ConfigError, InputError, ModelError
from ragtune.models.generators import (
    CONVERSION_MARKER,
    GenerationConfig,
    LocalGenerator,
    check_messages,
    get_generator,
)

pytestmark = pytest.mark.slow

ASK = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]
SHORT = GenerationConfig(max_new_tokens=12)


def test_conversion_is_cached_and_complete(generator, model_cache: Path) -> None:
    folders = [p for p in model_cache.glob("smollm2-135m-instruct-*") if p.is_dir()]
    assert len(folders) == 1
    folder = folders[0]
    assert (folder / CONVERSION_MARKER).is_file()
    assert (folder / "model.safetensors").stat().st_size > 500_000_000  # fp32, dequantized
    assert not list(model_cache.glob(".*.tmp"))  # no half-written conversion left behind
    # A second instance over the same cache loads the converted folder (no second conversion).
    again = LocalGenerator(cache_dir=model_cache, dtype="float32")
    again.warm_up()
    assert sorted(p.name for p in model_cache.glob("smollm2-135m-instruct-*")) == [folder.name]
    assert again.generate(ASK, SHORT).text == generator.generate(ASK, SHORT).text


def test_greedy_generation_is_deterministic_and_counted(generator) -> None:
    first = generator.generate(ASK, SHORT)
    second = generator.generate(ASK, SHORT)
    assert first.text == second.text
    assert "Paris" in first.text
    assert first.output_tokens == len(first.logprobs) > 0
    assert all(lp <= 0 for lp in first.logprobs)
    assert first.prompt_tokens == len(generator.tokenizer(generator.render(ASK))["input_ids"])
    assert first.finish_reason == "stop"


def test_chat_template_is_applied(generator) -> None:
    rendered = generator.render([{"role": "system", "content": "Be brief."}, *ASK])
    assert rendered.startswith("<|im_start|>system\nBe brief.<|im_end|>")
    assert rendered.endswith("<|im_start|>assistant\n")


def test_streaming_pieces_join_to_the_text(generator) -> None:
    pieces: list[str] = []
    result = generator.generate(ASK, SHORT, on_token=pieces.append)
    assert len(pieces) > 1
    assert "".join(pieces).strip() == result.text
    assert result.first_token_seconds is not None and result.first_token_seconds > 0


def test_batch_matches_one_at_a_time(generator) -> None:
    conversations = [
        ASK,
        [{"role": "user", "content": "Name a primary colour."}],
        [{"role": "user", "content": "Write the number seven as a digit, then tell me more "
                                     "about why numbers are useful in daily life."}],
    ]
    batched = generator.generate_batch(conversations, SHORT)
    serial = [generator.generate(c, SHORT) for c in conversations]
    assert [b.text for b in batched] == [s.text for s in serial]
    assert [b.prompt_tokens for b in batched] == [s.prompt_tokens for s in serial]


def test_length_limit_and_stop_strings(generator) -> None:
    story = [{"role": "user", "content": "Tell me a long story about a dragon."}]
    capped = generator.generate(story, GenerationConfig(max_new_tokens=5))
    assert capped.output_tokens == 5 and capped.finish_reason == "length"
    full = generator.generate(story, GenerationConfig(max_new_tokens=24))
    word = full.text.split()[3]
    stopped = generator.generate(story, GenerationConfig(max_new_tokens=24, stop=(word,)))
    assert word not in stopped.text and full.text.startswith(stopped.text.strip())


def test_lora_adapter_is_applied_at_load(generator, model_cache: Path, tmp_path: Path) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    folder = next(p for p in model_cache.glob("smollm2-135m-instruct-*") if p.is_dir())
    base = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32)
    torch.manual_seed(0)
    # init_lora_weights=False: random A and B, so the adapter changes the output for sure
    peft_model = get_peft_model(base, LoraConfig(r=8, lora_alpha=64, target_modules=[
        "q_proj", "v_proj"], init_lora_weights=False))
    peft_model.save_pretrained(str(tmp_path / "adapter"))
    tuned = LocalGenerator(cache_dir=model_cache, dtype="float32", adapter=tmp_path / "adapter")
    assert tuned.name == "local:smollm2+adapter"
    assert tuned.generate(ASK, SHORT).text != generator.generate(ASK, SHORT).text


def test_bad_adapter_and_settings_are_clear_errors(model_cache: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a PEFT adapter"):
        LocalGenerator(cache_dir=model_cache, adapter=tmp_path)
    (tmp_path / "adapter_config.json").write_text('{"peft_type": "LORA", "r": 4, '
                                                  '"target_modules": ["nope"]}')
    broken = LocalGenerator(cache_dir=model_cache, adapter=tmp_path, dtype="float32")
    with pytest.raises(ModelError, match="cannot apply this adapter"):
        broken.warm_up()
    with pytest.raises(ConfigError, match="dtype"):
        LocalGenerator(cache_dir=model_cache, dtype="float16")
    with pytest.raises(ConfigError, match="unknown generator"):
        get_generator("mystery:model")
    with pytest.raises(ConfigError, match="base_url"):
        get_generator("openai:gpt-4o-mini")
    with pytest.raises(ConfigError, match="no config.json"):
        get_generator(f"local:{tmp_path}")


def test_messages_are_validated() -> None:
    with pytest.raises(InputError, match="no messages"):
        check_messages([])
    with pytest.raises(InputError, match="role"):
        check_messages([{"role": "wizard", "content": "hi"}])
    with pytest.raises(InputError, match="content"):
        check_messages([{"role": "user"}])
    with pytest.raises(InputError, match="max_new_tokens"):
        GenerationConfig(max_new_tokens=0)
