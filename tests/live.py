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
def serving(app: Any, timeout: float = 30.0) -> Iterator[str]:
    """Serve `app` on a free loopback port until the block ends; yields the base URL."""
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning"))
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
