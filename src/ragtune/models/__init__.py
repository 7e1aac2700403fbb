"""Embedders and generators: the bundled local models and OpenAI-compatible endpoints."""

from ragtune.models.embedders import Embedder, LocalEmbedder, get_embedder, minilm_path
from ragtune.models.generators import (
    Generation,
    GenerationConfig,
    Generator,
    LocalGenerator,
    get_generator,
)
from ragtune.models.openai import OpenAIEmbedder, OpenAIGenerator

__all__ = [
    "Embedder",
    "Generation",
    "GenerationConfig",
    "Generator",
    "LocalEmbedder",
    "LocalGenerator",
    "OpenAIEmbedder",
    "OpenAIGenerator",
    "get_embedder",
    "get_generator",
    "minilm_path",
]
