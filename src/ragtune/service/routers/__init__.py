"""One `APIRouter` per area of the API; `create_app` includes them in this order.

Each route is a thin face: it takes its state and the caller's key or `Access` from
`ragtune.service.deps`, calls the library, and shapes the answer."""

from fastapi import APIRouter

from ragtune.service.routers import (
    answers,
    decision,
    documents,
    health,
    keys,
    openai_compat,
    search,
    traces,
    web,
)

ROUTERS: tuple[APIRouter, ...] = (
    health.router, documents.router, keys.router, search.router, answers.router,
    traces.router, decision.router, web.router, openai_compat.router,
)

__all__ = ["ROUTERS"]
