"""The routes' dependencies: the app's shared state, and the calling key (authentication) with
its scope checked and its `Access` (what it may read and write: `ragtune.access`).

    >>> @router.get("/v1/documents")
    ... def list_documents(access: ReadAccess, state: State) -> dict[str, Any]: ...

Every route under `/v1/` takes one of `Caller`, `Reader`, `Ingester`, `Admin` (the key) or
`ReadAccess`, `IngestAccess`, `AdminAccess` (its `Access`); within one request the key is
checked once, whichever of them a route and its helpers ask for.
"""

from collections.abc import Callable
from typing import Annotated, cast

from fastapi import Depends, Request

from ragtune.access import Access
from ragtune.service.errors import ApiError
from ragtune.service.keys import KeyRecord, key_id_of
from ragtune.service.state import ServiceState


def service_state(request: Request) -> ServiceState:
    """The state `create_app` set on the app."""
    return cast(ServiceState, request.app.state.service)


State = Annotated[ServiceState, Depends(service_state)]


def calling_key(request: Request, state: State) -> KeyRecord:
    """The key in `Authorization: Bearer <key>` (401 without a known one; 429 when the key,
    or the failed guesses at its id or from its address, come too fast)."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "unauthorized", "missing 'Authorization: Bearer <key>'")
    client = request.client.host if request.client else "-"
    return state.verify(token, key_id_of(token) or f"address {client}")


Caller = Annotated[KeyRecord, Depends(calling_key)]


def needs(scope: str) -> Callable[[KeyRecord], KeyRecord]:
    """A dependency: the calling key, when it holds `scope` (403 otherwise)."""
    def check(key: Caller) -> KeyRecord:
        if not key.allows(scope):
            raise ApiError(403, "forbidden", f"this key lacks the {scope!r} scope")
        return key
    return check


Reader = Annotated[KeyRecord, Depends(needs("read"))]
Ingester = Annotated[KeyRecord, Depends(needs("ingest"))]
Admin = Annotated[KeyRecord, Depends(needs("admin"))]


def _reader_access(key: Reader) -> Access:
    return key.access


def _ingester_access(key: Ingester) -> Access:
    return key.access


def _admin_access(key: Admin) -> Access:
    return key.access


ReadAccess = Annotated[Access, Depends(_reader_access)]
IngestAccess = Annotated[Access, Depends(_ingester_access)]
AdminAccess = Annotated[Access, Depends(_admin_access)]
