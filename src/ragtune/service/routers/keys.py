"""The calling key, as the web page needs it to adapt (which tabs, which actions)."""

from typing import Any

from fastapi import APIRouter

from ragtune.service.deps import Caller

router = APIRouter(tags=["keys"])


@router.get("/v1/whoami")
def whoami(key: Caller) -> dict[str, Any]:
    """The calling key: its id, name, scopes and access groups (the web page adapts)."""
    return {"id": key.id, "name": key.name, "scopes": list(key.scopes),
            "groups": list(key.groups), "sees_everything": key.sees_everything}
