"""A real uvicorn server on loopback, in a thread, for tests that need HTTP on a socket (the
official OpenAI client, the browser, concurrent clients).

    from live import serving

    with serving(app) as base_url:       # "http://127.0.0.1:PORT"
        httpx.get(f"{base_url}/healthz")
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def serving(app: Any, timeout: float = 30.0, header_timeout: float | None = None
            ) -> Iterator[str]:
    """Serve `app` on a free loopback port until the block ends; yields the base URL.
    `header_timeout`: the header-read bound `ragtune serve` applies (its HTTP protocol)."""
    import uvicorn

    from ragtune.service.app import header_timeout_protocol

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    extra: dict[str, Any] = {} if header_timeout is None else {
        "http": header_timeout_protocol(header_timeout)}
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", **extra))
    thread = threading.Thread(target=server.run, daemon=True, name="uvicorn-test")
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started and time.monotonic() < deadline:
        if not thread.is_alive():
            raise RuntimeError("the test server stopped while starting")
        time.sleep(0.05)
    if not server.started:
        raise RuntimeError(f"the test server did not start within {timeout:.0f} s")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def tenant_home(root: Any, model_cache: Any, docs: dict[str, dict[str, str]],
                service: Any, store: str = "") -> tuple[Any, Any]:
    """A data home of its own under `root` (for module-scoped servers; pinned like conftest's:
    float32), its knowledge base "shared" holding `docs` ({group: {file name: text}}, group ""
    = public), `service` settings and `store` (a `[store]` section: `conftest.store_config`);
    returns (settings, knowledge base)."""
    from conftest import TEST_CONFIG
    from ragtune import KnowledgeBase, Settings

    home = root / "home"
    home.mkdir()
    (home / "config.toml").write_text(TEST_CONFIG + store, encoding="utf-8")
    settings = Settings.load(home=home, cache=model_cache).model_copy(update={
        "service": service, "kb": "shared"})
    kb = KnowledgeBase.open("shared", settings)
    for group, files in docs.items():
        folder = root / (group or "public")
        folder.mkdir()
        for name, text in files.items():
            (folder / name).write_text(text, encoding="utf-8")
        kb.ingest([folder], groups=[group] if group else ())
    return settings, kb


def small_lab(name: str, groups: list[str]) -> dict[str, Any]:
    """A small lab result in the shape `ragtune compare` writes (for the report routes and
    `/v1/assess` with a `report`; write it with `ragtune.lab.report.write_report`)."""
    return {"ragtune": "test", "created_at": "2025-01-01T00:00:00Z",
            "experiment": {"name": name, "groups": groups},
            "recommendation": {"recommendation": "rag"}, "order": ["rag", "base"],
            "architectures": {"rag": {"metrics": {"correct": 0.8, "recall@k": 0.9,
                                                  "faithfulness": 0.95}},
                              "base": {"metrics": {"correct": 0.3}}}}
