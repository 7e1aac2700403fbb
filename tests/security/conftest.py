"""The served stack every attack here runs against (tests/security_stack.py), once on each
store backend: the access rules must hold whichever store enforces them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import store_config
from security_stack import Stack, serve_stack


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
          model_cache: Path) -> Iterator[Stack]:
    where = tmp_path_factory.mktemp(f"stack-{request.param}")
    yield from serve_stack(tmp_path_factory, model_cache,
                           store_config(request.param, request, where))
