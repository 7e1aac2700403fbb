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

import json
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ragtune.config import Settings
from ragtune.errors import InputError, RagtuneError
from ragtune.kb import KnowledgeBase
from ragtune.models.adapter_manifest import (
    MANIFEST_FILE,
    AdapterManifest,
    BaseModelInfo,
    DataInfo,
    KnowledgeBaseInfo,
    TrainingInfo,
    file_sha256,
    folder_sha256,
    read_manifest,
)

REGISTRY_FILE = "adapters.json"

__all__ = [  # the manifest records and fingerprints come from the model layer, which reads them
    "MANIFEST_FILE", "REGISTRY_FILE", "AdapterEntry", "AdapterManifest", "BaseModelInfo",
    "DataInfo", "KnowledgeBaseInfo", "Staleness", "TrainingInfo", "adapter_staleness",
    "check_staleness", "describe_adapter", "file_sha256", "folder_sha256", "library_versions",
    "list_adapters", "now_iso", "read_manifest", "register_adapter", "registered_adapters",
    "resolve_base",
]

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


def check_staleness(manifest: AdapterManifest, kb: KnowledgeBase | None) -> Staleness:
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


def adapter_staleness(settings: Settings, kb: KnowledgeBase) -> Staleness | None:
    """Whether the adapter `settings` answer with (`generator.adapter`) lags behind `kb`; None
    when there is no adapter, it has no manifest, or it was trained against another knowledge
    base (or none)."""
    adapter = settings.generator.adapter
    if adapter is None or not (Path(adapter) / MANIFEST_FILE).is_file():
        return None
    manifest = read_manifest(Path(adapter))
    if manifest.knowledge_base is None or manifest.knowledge_base.name != kb.name:
        return None
    return check_staleness(manifest, kb)


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


def describe_adapter(folder: Path, settings: Settings) -> AdapterEntry:
    """Read an adapter's manifest and check it against its knowledge base under `settings`'
    data home."""
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


def list_adapters(settings: Settings) -> list[AdapterEntry]:
    """Every adapter trained under the data home (`<home>/adapters.json`), with its status."""
    return [describe_adapter(Path(p), settings) for p in registered_adapters(settings.home)]
