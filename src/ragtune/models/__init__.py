"""Embedders and (later) generators: the bundled local models and OpenAI-compatible endpoints."""

from ragtune.models.embedders import Embedder, LocalEmbedder, get_embedder, minilm_path

__all__ = ["Embedder", "LocalEmbedder", "get_embedder", "minilm_path"]
