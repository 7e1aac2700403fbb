"""Test suites shipped with ragtune for what plugs into it (needs pytest).

`ragtune.testing.store`: the store conformance suite, capability mixins a backend's tests
subclass (`StoreTests` for all of them).
"""

import pytest

# the suites are plain `assert`s: let pytest explain a failure as it does in a test module
pytest.register_assert_rewrite("ragtune.testing.store")
