"""The conformance suite itself (`ragtune.testing.store`): every method of every store role has
a test, so a method added to a protocol without one fails here."""

from __future__ import annotations

import inspect

import pytest

from ragtune.store.base import OPTIONAL_ROLES, ROLES, Store
from ragtune.testing import store as suite


def methods(protocol: type) -> list[str]:
    """The methods a protocol itself declares (not those of the roles it inherits)."""
    return [name for name, value in vars(protocol).items()
            if inspect.isfunction(value) and not name.startswith("_")]


SUITES = (suite.StoreTests, suite.VectorSearchTests)  # the whole suite; optional roles'


def suite_tests() -> set[str]:
    return {name for whole in SUITES for cls in whole.__mro__
            for name in vars(cls) if name.startswith("test_")}


def test_every_role_is_part_of_store_and_declares_methods() -> None:
    assert set(Store.__mro__) >= set(ROLES)
    assert not set(Store.__mro__) & set(OPTIONAL_ROLES)
    assert all(methods(role) for role in (*ROLES, *OPTIONAL_ROLES))
    declared = sorted(m for role in (*ROLES, *OPTIONAL_ROLES) for m in methods(role))
    assert len(declared) == len(set(declared)), "a method declared by two roles"


@pytest.mark.parametrize("method", sorted(m for role in (*ROLES, *OPTIONAL_ROLES)
                                          for m in methods(role)))
def test_every_store_method_has_a_conformance_test(method: str) -> None:
    named = [t for t in suite_tests() if t == f"test_{method}" or t.startswith(f"test_{method}_")]
    assert named, f"no test_{method}_... in ragtune.testing.store"


def test_every_mixin_is_in_store_tests() -> None:
    mixins = [cls for _, cls in inspect.getmembers(suite, inspect.isclass)
              if cls.__module__ == suite.__name__ and issubclass(cls, suite.StoreFixtures)]
    assert set(mixins) <= {cls for whole in SUITES for cls in whole.__mro__}
