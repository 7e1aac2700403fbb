"""The HTTP service (in progress): API keys with scopes and access groups so far.

    >>> from ragtune.service import KeyStore
    >>> secret, record = KeyStore.open(Settings.load()).create(["read"], groups=["support"])
"""

from ragtune.service.keys import SCOPES, KeyRecord, KeyStore, parse_scopes

__all__ = ["SCOPES", "KeyRecord", "KeyStore", "parse_scopes"]
