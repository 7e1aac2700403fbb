"""One real `ragtune serve` stack on a loopback socket for the attacks of tests/security/: two
tenants (alpha, beta) and public documents, ingested by the operator from folders; keys of
every kind; the header-read bound `ragtune serve` applies; models loaded before the first test.
tests/security/conftest.py makes `stack` a session fixture."""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from live import serving, tenant_home
from ragtune.config import ServiceSettings
from ragtune.service import KeyStore
from ragtune.service.app import create_app

SECRET = "zebra7741"  # a word only beta's document holds
DOCS = {
    "alpha": {"alpha-plan.md": "# Alpha plan\n\nThe alpha launch window opens on 3 March. "
                               "Alpha's support line answers within 20 minutes."},
    "beta": {"beta-secret.md": f"# Beta secret\n\nThe beta launch code is {SECRET}. The beta "
                               "launch window opens on 9 April.",
             # long enough for several chunks: an answer can sit across a chunk boundary
             "beta-handbook.md": "# Beta handbook\n\n" + " ".join(
                 f"Beta rule {i} says the orbit team checks valve {i} before noon."
                 for i in range(120))},
    "": {"holidays.md": "# Holidays\n\nThe office is closed on the first of May."},
}
HEADER_TIMEOUT = 1.0
# one TLS context for every client: building one reads the CA bundle (about 20 ms), and the
# property test opens thousands of clients (the stack speaks plain HTTP on loopback anyway)
TLS = ssl.create_default_context()
BODY_TIMEOUT = 1.0


@dataclass
class Stack:
    url: str
    tokens: dict[str, str]
    kb: Any
    app: Any
    root: Path

    def client(self, who: str) -> httpx.Client:
        """An HTTP client speaking as key `who`."""
        return httpx.Client(base_url=self.url, timeout=120, verify=TLS,
                            headers={"Authorization": f"Bearer {self.tokens[who]}"})


def serve_stack(tmp_path_factory: pytest.TempPathFactory, model_cache: Path, store: str = ""
                ) -> Iterator[Stack]:
    """The stack, its knowledge base and keys on the store `store` configures (a `[store]`
    section; empty: SQLite)."""
    root = tmp_path_factory.mktemp("security")
    settings, kb = tenant_home(root, model_cache, DOCS, ServiceSettings(
        requests_per_minute=100_000, burst=10_000, failed_logins_per_minute=5,
        header_timeout_s=HEADER_TIMEOUT, body_timeout_s=BODY_TIMEOUT), store)
    keys = KeyStore.open(settings)
    tokens = {
        "alpha": keys.create(["read", "ingest"], groups=["alpha"], name="alpha")[0],
        "beta": keys.create(["read", "ingest"], groups=["beta"], name="beta")[0],
        "alphabeta": keys.create(["read", "ingest"], groups=["alpha", "beta"],
                                 name="both")[0],
        "alpha-reader": keys.create(["read"], groups=["alpha"], name="alpha reader")[0],
        "public-writer": keys.create(["read", "ingest"], name="public writer")[0],
        "alpha-admin": keys.create(["admin"], groups=["alpha"], name="alpha admin")[0],
        "admin": keys.create(["admin"], name="operator")[0],
        "victim": keys.create(["read"], groups=["alpha"], name="victim of guesses")[0],
    }
    from live import small_lab
    from ragtune.lab.report import write_report

    write_report(small_lab("beta lab", ["beta"]), settings.home / "labs" / "beta-lab")
    app = create_app(settings, keys)
    with serving(app, header_timeout=HEADER_TIMEOUT) as url:
        deadline = time.monotonic() + 300
        while httpx.get(f"{url}/readyz").status_code != 200:
            if time.monotonic() > deadline:
                pytest.fail("the service never became ready")
            time.sleep(0.5)
        yield Stack(url, tokens, kb, app, root)
    kb.close()
