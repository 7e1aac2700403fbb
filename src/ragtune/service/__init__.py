"""The HTTP service: API keys with scopes and access groups, and the FastAPI app
(`ragtune.service.app.create_app`: one router per area, state and the caller's access as
dependencies).

    >>> from ragtune.service import KeyStore
    >>> secret, record = KeyStore.open(Settings.load()).create(["read"], groups=["support"])
"""

from ragtune.service.keys import SCOPES, KeyRecord, KeyStore, parse_scopes

__all__ = ["SCOPES", "KeyRecord", "KeyStore", "parse_scopes"]
