"""A throwaway PostgreSQL 16 server with pgvector for tests and benchmarks (needs the PyPI
package `pgserver`, which bundles both): started in a temporary folder, stopped and deleted
afterwards. Nothing is downloaded at run time.

    >>> with temporary_postgres() as server:
    ...     settings = Settings.load(store={"backend": "postgres", "dsn": server.dsn})
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


class TemporaryPostgres:
    """One server in its own folder; `kill` and `start` stage an outage."""

    def __init__(self, folder: Path, durable: bool = True) -> None:
        os.environ.setdefault("XDG_RUNTIME_DIR", str(folder))  # pgserver's lock files
        import pgserver

        self.folder = folder
        self._server: Any = pgserver.get_server(folder / "data", cleanup_mode=None)
        self.dsn: str = self._server.get_uri()
        if not durable:  # a test server: commits reach the OS, not the disk (a killed
            import psycopg  # server loses nothing; a machine crash could)

            with psycopg.connect(self.dsn, autocommit=True) as conn:
                for setting in ("fsync", "full_page_writes"):
                    conn.execute(f"ALTER SYSTEM SET {setting} = off")
                conn.execute("SELECT pg_reload_conf()")

    def kill(self) -> None:
        """Stop the server at once, as a crash would (SIGKILL to the postmaster; its
        backends exit when they notice), and wait until it no longer answers."""
        pid = self._server.get_pid()
        if pid:
            os.kill(pid, signal.SIGKILL)
            for _ in range(100):
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.05)
        time.sleep(0.2)  # the backends of the killed postmaster leave too

    def start(self) -> None:
        """Start it again on the same folder (crash recovery replays the WAL)."""
        self._server.ensure_postgres_running()

    def stop(self) -> None:
        """Stop it now (no waiting for clients to leave)."""
        from pgserver._commands import pg_ctl  # type: ignore[attr-defined]

        with contextlib.suppress(subprocess.CalledProcessError):  # not running
            pg_ctl(["-m", "immediate", "-w", "stop"], pgdata=self.folder / "data",
                   user=self._server.system_user)


@contextmanager
def temporary_postgres(durable: bool = True) -> Iterator[TemporaryPostgres]:
    """A fresh server (a short folder under the temp dir: its Unix socket path must stay under
    108 bytes), stopped and deleted on exit. `durable=False`: no fsync (tests; benchmarks keep
    PostgreSQL's defaults)."""
    folder = Path(tempfile.mkdtemp(prefix="rtpg", dir="/tmp" if os.path.isdir("/tmp") else None))
    server = TemporaryPostgres(folder, durable)
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)
