"""Search: the passages the key may read, ranked over what it may read (`ragtune.retrieval`)."""

from typing import Any

from fastapi import APIRouter

from ragtune.service.deps import ReadAccess, State
from ragtune.service.schemas import SearchRequest

router = APIRouter(tags=["search"])


@router.post("/v1/search")
def search_route(body: SearchRequest, access: ReadAccess, state: State) -> dict[str, Any]:
    from ragtune.retrieval import search

    base = state.open_kb(body.kb)
    return search(base, body.query, k=body.k, mode=body.mode, groups=access.view).to_dict()
