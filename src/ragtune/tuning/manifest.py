"""Adapter manifests: what an adapter is, what it learned from, and whether it is stale.

Every adapter folder `ragtune tune` writes holds the standard PEFT files (`adapter_config.json`,
`adapter_model.safetensors`) and `ragtune-adapter.json`, the manifest: the base model (name,
path, SHA-256), the training data (path, SHA-256, size, example counts), the hyperparameters,
the knowledge base it was trained against (name, generation, and the content hashes of the
documents its examples quoted), validation metrics, timings, peak memory and library versions.

    >>> manifest = read_manifest(Path("adapters/support"))
    >>> check_staleness(manifest, kb).stale
    False

A knowledge base's generation goes up with every document change; an adapter trained at an
older generation is stale, and the report names the documents it saw that changed since.
Adapters trained under a data home are recorded in `<home>/adapters.json` (`ragtune adapters
list`).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from ragtune.errors import InputError, RagtuneError

MANIFEST_FILE = "ragtune-adapter.json"
REGISTRY_FILE = "adapters.json"
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


# --- staleness --------------------------------------------------------------------------------


@dataclass
class Staleness:
    """Whether the knowledge base moved on since the adapter was trained against it."""

    stale: bool
    reason: str
    generation_then: int | None = None
    generation_now: int | None = None
    changed: list[str] = field(default_factory=list)  # seen documents whose content changed
    removed: list[str] = field(default_factory=list)  # seen documents no longer there

    def to_dict(self) -> dict[str, Any]:
        return {"stale": self.stale, "reason": self.reason,
                "generation_then": self.generation_then, "generation_now": self.generation_now,
                "changed": self.changed, "removed": self.removed}


def check_staleness(manifest: AdapterManifest, kb: Any | None) -> Staleness:
    """Compare the manifest's knowledge-base record with `kb` (a `KnowledgeBase`, or None when
    it cannot be opened)."""
    info = manifest.knowledge_base
    if info is None:
        return Staleness(False, "trained without a knowledge base")
    if kb is None or not kb.exists():
        return Staleness(True, f"knowledge base {info.name!r} is gone", info.generation)
    now = kb.store.generation()
    if now == info.generation:
        return Staleness(False, f"knowledge base {info.name!r} unchanged since training "
                         f"(generation {now})", info.generation, now)
    hashes = kb.store.document_hashes()
    changed = sorted(d for d, h in info.document_hashes.items() if d in hashes and hashes[d] != h)
    removed = sorted(d for d in info.document_hashes if d not in hashes)
    detail = (f"{len(changed)} of the {len(info.document_hashes)} documents it was trained on "
              f"changed, {len(removed)} removed" if info.document_hashes else "")
    reason = (f"knowledge base {info.name!r} changed since training (generation "
              f"{info.generation} -> {now})" + (f"; {detail}" if detail else ""))
    return Staleness(True, reason, info.generation, now, changed, removed)


# --- fingerprints of base models ----------------------------------------------------------------


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


# --- the registry of adapters under a data home -------------------------------------------------


def register_adapter(home: Path, folder: Path) -> None:
    """Remember an adapter folder in `<home>/adapters.json` (for `ragtune adapters list`)."""
    path = home / REGISTRY_FILE
    entries = registered_adapters(home)
    resolved = str(Path(folder).resolve())
    if resolved not in entries:
        entries.append(resolved)
    home.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"adapters": entries}, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)


def registered_adapters(home: Path) -> list[str]:
    path = home / REGISTRY_FILE
    if not path.is_file():
        return []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return [str(p) for p in data.get("adapters", [])]
    except (OSError, ValueError, AttributeError) as exc:
        raise InputError(f"{path}: unreadable adapter registry ({exc})") from exc


def library_versions() -> dict[str, str]:
    """Versions of what the training depended on."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in ("ragtune", "torch", "transformers", "peft", "accelerate"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def resolve_base(name: str, cache_dir: Path) -> tuple[Path, BaseModelInfo]:
    """The checkpoint folder of a base model name and its identity.

    `local:smollm2` is the bundled model (its safetensors conversion; identified by the SHA-256
    of the GGUF it came from); `local:PATH` or `PATH` a Hugging Face causal-LM folder
    (identified by its config and weight files).
    """
    from ragtune.models.generators import converted_checkpoint, smollm2_gguf

    if name == "local:smollm2":
        gguf = smollm2_gguf()
        return converted_checkpoint(cache_dir, gguf), BaseModelInfo(
            name=name, path=str(gguf), sha256=file_sha256(gguf, cache_dir))
    folder = Path(name.removeprefix("local:")).expanduser()
    if not (folder / "config.json").is_file():
        raise InputError(f"{folder}: not a Hugging Face model folder (no config.json); use "
                         "local:smollm2 or the path of a local checkpoint")
    return folder, BaseModelInfo(name=name, path=str(folder.resolve()),
                                 sha256=folder_sha256(folder, cache_dir))


@dataclass
class AdapterEntry:
    """An adapter as `ragtune adapters list|show` reports it."""

    path: str
    manifest: AdapterManifest | None
    staleness: Staleness | None
    error: str | None = None  # the folder is gone or its manifest unreadable

    @property
    def status(self) -> str:
        if self.error is not None:
            return "missing" if "not an adapter folder" in self.error else "unreadable"
        assert self.staleness is not None
        return "stale" if self.staleness.stale else "ok"

    def to_dict(self, full: bool = False) -> dict[str, Any]:
        m = self.manifest
        out: dict[str, Any] = {"path": self.path, "status": self.status, "error": self.error}
        if m is not None:
            kb = m.knowledge_base
            out |= {"base_model": m.base_model.name, "created_at": m.created_at,
                    "examples": m.data.examples, "data_shape": m.data.shape,
                    "val_loss": m.metrics.get("val_loss"),
                    "training_seconds": m.training.seconds,
                    "knowledge_base": None if kb is None else {"name": kb.name,
                                                               "generation": kb.generation}}
        if self.staleness is not None:
            out["staleness"] = self.staleness.to_dict()
        if full and m is not None:
            out["manifest"] = json.loads(m.model_dump_json())
        return out


def describe_adapter(folder: Path, settings: Any) -> AdapterEntry:
    """Read an adapter's manifest and check it against its knowledge base under `settings`'
    data home (a `Settings`)."""
    from ragtune.kb import KnowledgeBase

    try:
        manifest = read_manifest(folder)
    except InputError as exc:
        return AdapterEntry(str(folder), None, None, str(exc))
    kb = None
    if manifest.knowledge_base is not None:
        try:
            kb = KnowledgeBase.open(manifest.knowledge_base.name, settings)
        except RagtuneError:
            kb = None
    try:
        return AdapterEntry(str(folder), manifest, check_staleness(manifest, kb))
    finally:
        if kb is not None:
            kb.close()


def list_adapters(settings: Any) -> list[AdapterEntry]:
    """Every adapter trained under the data home (`<home>/adapters.json`), with its status."""
    return [describe_adapter(Path(p), settings) for p in registered_adapters(settings.home)]
