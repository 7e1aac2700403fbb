"""The adapter manifest format (`ragtune-adapter.json`) and model fingerprints.

The model layer reads manifests to apply an adapter only to the base it was trained on; the
tuning layer writes them (`ragtune.tuning.manifest` adds staleness against a knowledge base and
the registry of adapters under a data home). Both share these records and hashes.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from ragtune.errors import InputError

MANIFEST_FILE = "ragtune-adapter.json"
FINGERPRINTS_FILE = "fingerprints.json"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".pth")


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BaseModelInfo(_Record):
    """The model the adapter was trained on."""

    name: str
    path: str
    sha256: str
    parameters: int | None = None


class DataInfo(_Record):
    """The examples the adapter learned from."""

    path: str | None
    sha256: str  # of the file when there is one, else of the examples' content
    bytes: int
    examples: int
    train: int
    validation: int
    shape: str  # chat | prompt-completion | mixed | raft
    cases_path: str | None = None  # RAFT: the evaluation cases the examples were built from
    cases_sha256: str | None = None


class KnowledgeBaseInfo(_Record):
    """The knowledge base a (RAFT) adapter was trained against."""

    name: str
    generation: int
    documents: int
    embedder: str
    document_hashes: dict[str, str] = {}  # the documents its examples quoted -> content hash


class TrainingInfo(_Record):
    """How the training went."""

    seconds: float
    steps: int
    epochs_run: int
    best_epoch: int | None
    stopped_early: bool
    seconds_per_step: float | None
    tokens_per_second: float | None
    train_tokens: int
    peak_rss_mb: float
    peak_device_mb: float | None = None
    device: str
    precision: str
    processes: int
    resumed_from_steps: list[int] = []


class AdapterManifest(_Record):
    """`ragtune-adapter.json`; derived from the typed model and round-tripped in the tests."""

    format_version: int = 1
    ragtune: str
    created_at: str
    base_model: BaseModelInfo
    data: DataInfo
    hyperparameters: dict[str, Any]
    knowledge_base: KnowledgeBaseInfo | None = None
    metrics: dict[str, float | None]
    history: list[dict[str, Any]] = []
    training: TrainingInfo
    versions: dict[str, str]
    fingerprint: str
    command: str | None = None  # the one command that trains it again, where one was recorded

    def write(self, folder: Path) -> Path:
        path = folder / MANIFEST_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(self.model_dump_json(indent=2) + "\n", encoding="utf-8")
        tmp.replace(path)
        return path


def read_manifest(folder: Path) -> AdapterManifest:
    """The manifest of an adapter folder; a clear error when it is missing or unreadable."""
    path = Path(folder) / MANIFEST_FILE
    if not path.is_file():
        what = "a PEFT adapter without a ragtune manifest" if (
            Path(folder) / "adapter_config.json").is_file() else "not an adapter folder"
        raise InputError(f"{folder}: {what} (no {MANIFEST_FILE})")
    try:
        return AdapterManifest.model_validate_json(path.read_text(encoding="utf-8"))
    except (OSError, ValidationError, ValueError) as exc:
        raise InputError(f"{path}: unreadable manifest ({exc})") from exc


def file_sha256(path: Path, cache_dir: Path | None = None) -> str:
    """SHA-256 of a file, remembered in `<cache_dir>/fingerprints.json` by path, size and
    modification time (base checkpoints are hundreds of MB to GBs)."""
    stat = path.stat()
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    cache_file = cache_dir / FINGERPRINTS_FILE if cache_dir is not None else None
    known: dict[str, str] = {}
    if cache_file is not None and cache_file.is_file():
        try:
            known = json.loads(cache_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            known = {}
    if key in known:
        return known[key]
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    digest = h.hexdigest()
    if cache_file is not None:
        known[key] = digest
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(known, indent=1), encoding="utf-8")
        tmp.replace(cache_file)
    return digest


def folder_sha256(folder: Path, cache_dir: Path | None = None) -> str:
    """One SHA-256 for a model folder: its config and weight files, by name and content."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and (
        p.name == "config.json" or p.name.endswith(WEIGHT_SUFFIXES)))
    if not files:
        raise InputError(f"{folder}: no config.json or weight files to fingerprint")
    h = hashlib.sha256()
    for p in files:
        h.update(f"{p.name}:{file_sha256(p, cache_dir)}\n".encode())
    return h.hexdigest()
