"""The served stack every attack here runs against (tests/security_stack.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from security_stack import Stack, serve_stack


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory, model_cache: Path) -> Iterator[Stack]:
    yield from serve_stack(tmp_path_factory, model_cache)
