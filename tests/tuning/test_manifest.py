"""Adapter manifests: the round trip, staleness against a real knowledge base, the registry."""

from __future__ import annotations

from pathlib import Path

import pytest

from ragtune.errors import InputError
from ragtune.tuning.manifest import (
    AdapterManifest,
    BaseModelInfo,
    DataInfo,
    KnowledgeBaseInfo,
    TrainingInfo,
    check_staleness,
    describe_adapter,
    file_sha256,
    folder_sha256,
    list_adapters,
    read_manifest,
    register_adapter,
)
from ragtune.tuning.raft import knowledge_base_info


def _manifest(kb: KnowledgeBaseInfo | None = None) -> AdapterManifest:
    return AdapterManifest(
        ragtune="0.1.0", created_at="2026-11-27T12:00:00+0000",
        base_model=BaseModelInfo(name="local:smollm2", path="/m.gguf", sha256="ab" * 32,
                                 parameters=134_515_008),
        data=DataInfo(path="/d.jsonl", sha256="cd" * 32, bytes=1234, examples=20, train=18,
                      validation=2, shape="chat"),
        hyperparameters={"lora_r": 8, "target_modules": "all-linear"},
        knowledge_base=kb,
        metrics={"val_loss_before": 3.1, "val_loss": 0.4},
        history=[{"epoch": 1, "step": 3, "train_loss": 1.2, "val_loss": 0.4}],
        training=TrainingInfo(seconds=12.5, steps=3, epochs_run=1, best_epoch=1,
                              stopped_early=False, seconds_per_step=2.0,
                              tokens_per_second=300.0, train_tokens=900, peak_rss_mb=2000.0,
                              device="cpu", precision="float32", processes=1),
        versions={"torch": "2.13.0"}, fingerprint="ef" * 32)


def test_manifest_round_trip(tmp_path: Path) -> None:
    manifest = _manifest(KnowledgeBaseInfo(name="six", generation=4, documents=6,
                                           embedder="local:minilm",
                                           document_hashes={"a": "1"}))
    manifest.write(tmp_path)
    assert read_manifest(tmp_path) == manifest
    (tmp_path / "ragtune-adapter.json").write_text('{"format_version": 1, "extra": 1}')
    with pytest.raises(InputError, match="unreadable manifest"):
        read_manifest(tmp_path)
    with pytest.raises(InputError, match="not an adapter folder"):
        read_manifest(tmp_path / "nothing")


def test_staleness_names_the_documents_that_changed(six_kb, six_docs: Path) -> None:
    seen = {d.id for d in six_kb.documents() if d.source.endswith(("kettle.md", "bikes.txt"))}
    manifest = _manifest(knowledge_base_info(six_kb, seen))
    assert set(manifest.knowledge_base.document_hashes) == seen
    fresh = check_staleness(manifest, six_kb)
    assert not fresh.stale and "unchanged" in fresh.reason

    (six_docs / "kettle.md").write_text("# Kettle manual\n\nDescale every week now.\n")
    (six_docs / "astronomy.txt").write_text("Mars is red.")  # not one the adapter saw
    (six_docs / "bikes.txt").unlink()
    six_kb.ingest([six_docs], sync=True)
    stale = check_staleness(manifest, six_kb)
    assert stale.stale and stale.generation_now > stale.generation_then
    assert [Path(d).name for d in stale.changed] == ["kettle.md"]
    assert [Path(d).name for d in stale.removed] == ["bikes.txt"]
    assert "1 of the 2 documents it was trained on changed, 1 removed" in stale.reason

    assert not check_staleness(_manifest(None), six_kb).stale
    assert check_staleness(manifest, None).stale


def test_registry_lists_adapters_with_status(tmp_path: Path, settings) -> None:
    good, gone = tmp_path / "good", tmp_path / "gone"
    good.mkdir()
    _manifest().write(good)
    register_adapter(settings.home, good)
    register_adapter(settings.home, gone)
    register_adapter(settings.home, good)  # once only
    entries = list_adapters(settings)
    assert [(Path(e.path).name, e.status) for e in entries] == [("good", "ok"), ("gone",
                                                                                  "missing")]
    assert entries[0].to_dict()["examples"] == 20
    assert describe_adapter(good, settings).manifest == _manifest()


def test_fingerprints_are_content_hashes_and_cached(tmp_path: Path) -> None:
    import hashlib

    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "model.safetensors").write_bytes(b"weights")
    (model / "notes.txt").write_text("ignored")
    cache = tmp_path / "cache"
    assert file_sha256(model / "model.safetensors", cache) == hashlib.sha256(b"weights"
                                                                           ).hexdigest()
    assert (cache / "fingerprints.json").is_file()
    first = folder_sha256(model, cache)
    (model / "notes.txt").write_text("changed")
    assert folder_sha256(model, cache) == first
    (model / "model.safetensors").write_bytes(b"other weights")
    assert folder_sha256(model, cache) != first
