"""Documents in, chunks out: loaders for each file format, folder walking, and chunking."""

from ragtune.documents.chunking import TokenCounter, chunk_document, load_token_counter
from ragtune.documents.loaders import (
    SUPPORTED_SUFFIXES,
    LoadFailure,
    LoadResult,
    iter_source_files,
    load_path,
)
from ragtune.documents.records import Chunk, Document, Page

__all__ = [
    "SUPPORTED_SUFFIXES",
    "Chunk",
    "Document",
    "LoadFailure",
    "LoadResult",
    "Page",
    "TokenCounter",
    "chunk_document",
    "iter_source_files",
    "load_path",
    "load_token_counter",
]
