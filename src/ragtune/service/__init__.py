"""The HTTP service (in progress): API keys with scopes and access groups, and the first routes
(health, documents, search, ask) with those groups enforced.

    >>> from ragtune.service import KeyStore
    >>> secret, record = KeyStore.open(Settings.load()).create(["read"], groups=["support"])
"""

from ragtune.service.keys import SCOPES, KeyRecord, KeyStore, parse_scopes

__all__ = ["SCOPES", "KeyRecord", "KeyStore", "parse_scopes"]
