"""The small error hierarchy. The CLI turns any `RagtuneError` into one line and exit status 1."""

from __future__ import annotations


class RagtuneError(Exception):
    """Base class of every error ragtune raises on purpose."""


class InputError(RagtuneError):
    """A file, row or argument the user gave is unusable (names the thing and the value)."""


class ConfigError(RagtuneError):
    """A setting is unknown or out of range, or conflicts with how a knowledge base was built."""


class StoreError(RagtuneError):
    """The knowledge store cannot be opened, read or written."""


class StoreUnavailable(StoreError):
    """The store as a whole cannot be written (or read): the disk is full, the file system is
    read-only, or the file is corrupt. Retrying document by document will not help, so a batch
    stops at the first one; what was committed before it stays. `reason` is the short cause
    ("disk full", "read-only", "corrupt", "I/O error") the service may show a client."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class ModelError(RagtuneError):
    """A model cannot be found, loaded or run."""


class AccessDenied(InputError):
    """The caller's access groups do not allow a write (the service answers 403)."""
