"""The generators' own tests exercise the plain bundled model: a chat model answering anything,
not the grounded reader `ask` applies by default (which answers from passages or says it does
not know)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def generator(plain_generator):
    return plain_generator
