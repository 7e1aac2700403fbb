"""Contrastive fine-tuning of a sentence-transformers embedder on a team's own questions.

Each training pair is a question and the text of a passage that answers it, optionally with hard
negatives (passages the current retrieval ranks high that do not answer it). The loss is the
multiple-negatives ranking loss (van den Oord et al. 2018; Henderson et al. 2017): for each
question, a softmax over its positive, the other questions' positives in the batch and every
hard negative in the batch, with the passages that also answer the question masked out (a
batch can hold two questions about one document). A plain PyTorch loop, on the CPU or CUDA.

The result is a full sentence-transformers folder with a manifest (`ragtune-embedder.json`)
naming the base, the data hash, the training settings and the metrics; a knowledge base uses it
as `embedder.name = "local:FOLDER"`.

    >>> pairs = [EmbedderPair("how fast is a sev1 acked?", "Sev1 pages ... within 5 minutes")]
    >>> manifest = tune_embedder(pairs, Path("embedders/support"), epochs=1)
    >>> manifest.data.sha256, manifest.training.loss_first, manifest.training.loss_last
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from ragtune.bundled import minilm_path
from ragtune.documents.records import sha256_text
from ragtune.errors import InputError, ModelError

EMBEDDER_MANIFEST = "ragtune-embedder.json"
SCALE = 20.0  # cosine similarities are multiplied by this before the softmax (the usual choice)


@dataclass(frozen=True)
class EmbedderPair:
    """A question, a passage that answers it, and passages that do not (hard negatives).

    `also_positive` lists other passages that answer the question too: they are never used as
    its negatives."""

    query: str
    positive: str
    negatives: tuple[str, ...] = ()
    also_positive: frozenset[str] = field(default_factory=frozenset)


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EmbedderBase(_Record):
    name: str
    path: str


class EmbedderData(_Record):
    sha256: str  # of the pairs' content, in order
    pairs: int
    queries: int
    hard_negatives: int


class EmbedderTraining(_Record):
    epochs: int
    batch_size: int
    learning_rate: float
    seed: int
    device: str
    steps: int
    seconds: float
    loss_first: float
    loss_last: float


class EmbedderManifest(_Record):
    """`ragtune-embedder.json`: what a fine-tuned embedder is, what it learned from, and how it
    measured."""

    kind: str = "ragtune-embedder"
    base: EmbedderBase
    data: EmbedderData
    training: EmbedderTraining
    metrics: dict[str, Any] = {}
    command: str | None = None
    created_at: str = ""

    def write(self, folder: Path) -> None:
        (folder / EMBEDDER_MANIFEST).write_text(self.model_dump_json(indent=2) + "\n")


def read_embedder_manifest(folder: Path) -> EmbedderManifest:
    """The manifest of a fine-tuned embedder folder; `InputError` when missing or malformed."""
    path = folder / EMBEDDER_MANIFEST
    try:
        return EmbedderManifest.model_validate_json(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{folder}: no {EMBEDDER_MANIFEST} (not a tuned embedder)") from None
    except ValidationError as exc:
        raise InputError(f"{path}: {exc.errors()[0]['msg']}") from None


def record_metrics(folder: Path, metrics: Mapping[str, Any]) -> EmbedderManifest:
    """Add measured figures (recall, nDCG on held-out questions) to a tuned embedder's
    manifest."""
    manifest = read_embedder_manifest(folder)
    manifest.metrics.update(metrics)
    manifest.write(folder)
    return manifest


def pairs_sha256(pairs: Sequence[EmbedderPair]) -> str:
    """A hash of the training pairs' content (order included): same pairs, same hash."""
    rows = [json.dumps([p.query, p.positive, list(p.negatives)], ensure_ascii=False)
            for p in pairs]
    return sha256_text(*rows)


def resolve_device(device: str = "auto") -> str:
    """`auto` is CUDA where PyTorch sees a GPU, else the CPU."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError(f"device {device!r} asked for, but PyTorch sees no CUDA GPU")
    return device


def tune_embedder(
    pairs: Sequence[EmbedderPair],
    out: Path,
    *,
    base: Path | None = None,
    base_name: str = "local:minilm",
    epochs: int = 1,
    batch_size: int = 16,
    learning_rate: float = 2e-5,
    seed: int = 0,
    device: str = "auto",
    max_seq_length: int | None = None,
    command: str | None = None,
    progress: Callable[[int, int, float], None] | None = None,
) -> EmbedderManifest:
    """Fine-tune `base` (default: the bundled all-MiniLM-L6-v2) on `pairs`; save it to `out`.

    `progress(step, steps, loss)` is called after each optimizer step. Deterministic for a
    seed on the CPU (the batches are shuffled by `seed`, torch is seeded with it). A folder
    whose manifest names the same pairs (by hash) and settings is reused, not retrained."""
    if len(pairs) < 2:
        raise InputError(f"embedder tuning needs at least 2 question-passage pairs, got "
                         f"{len(pairs)}")
    if epochs < 1 or batch_size < 2:
        raise InputError("embedder tuning needs epochs >= 1 and batch_size >= 2")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import torch
    from sentence_transformers import SentenceTransformer

    base = base or minilm_path()
    where = resolve_device(device)
    digest = pairs_sha256(pairs)
    done = _trained_before(out, digest, base_name, epochs, batch_size, learning_rate, seed)
    if done is not None:
        return done  # the same pairs and settings: the folder already holds the result
    torch.manual_seed(seed)
    model = SentenceTransformer(str(base), device=where)
    if max_seq_length is not None:
        model.max_seq_length = max_seq_length
    model.train()
    order = list(range(len(pairs)))
    batches_per_epoch = (len(order) + batch_size - 1) // batch_size
    steps = epochs * batches_per_epoch
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.01)
    warmup = max(1, steps // 10)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, max(0.0, (steps - s) / max(1, steps - warmup))))
    rng = random.Random(seed)
    losses: list[float] = []
    started = time.perf_counter()
    for _ in range(epochs):
        rng.shuffle(order)
        for b in range(batches_per_epoch):
            batch = [pairs[i] for i in order[b * batch_size:(b + 1) * batch_size]]
            if len(batch) < 2:
                continue  # one question has no in-batch negatives
            loss = _batch_loss(model, batch, where)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            losses.append(float(loss.detach()))
            if progress is not None:
                progress(len(losses), steps, losses[-1])
    model.eval()
    out.mkdir(parents=True, exist_ok=True)
    model.save(str(out))
    from ragtune.tuning.manifest import now_iso

    head = losses[: max(1, len(losses) // 10)]
    tail = losses[-max(1, len(losses) // 10):]
    manifest = EmbedderManifest(
        base=EmbedderBase(name=base_name, path=str(base)),
        data=EmbedderData(sha256=digest, pairs=len(pairs),
                          queries=len({p.query for p in pairs}),
                          hard_negatives=sum(len(p.negatives) for p in pairs)),
        training=EmbedderTraining(
            epochs=epochs, batch_size=batch_size, learning_rate=learning_rate, seed=seed,
            device=where, steps=len(losses), seconds=round(time.perf_counter() - started, 1),
            loss_first=round(sum(head) / len(head), 4), loss_last=round(sum(tail) / len(tail), 4)),
        command=command, created_at=now_iso())
    manifest.write(out)
    return manifest


def _trained_before(out: Path, digest: str, base_name: str, epochs: int, batch_size: int,
                    learning_rate: float, seed: int) -> EmbedderManifest | None:
    """The manifest in `out` when it was trained from the same pairs with the same settings
    (and the weights are there), else None."""
    try:
        manifest = read_embedder_manifest(out)
    except InputError:
        return None
    t = manifest.training
    same = (manifest.data.sha256 == digest and manifest.base.name == base_name
            and (t.epochs, t.batch_size, t.learning_rate, t.seed)
            == (epochs, batch_size, learning_rate, seed))
    weights = any((out / name).is_file() for name in ("model.safetensors", "pytorch_model.bin"))
    return manifest if same and weights else None


def _batch_loss(model: Any, batch: Sequence[EmbedderPair], device: str) -> Any:
    """Multiple-negatives ranking loss of one batch: every question against every passage of
    the batch (positives first, then hard negatives), its own positive the target."""
    import torch

    passages = [p.positive for p in batch] + [n for p in batch for n in p.negatives]
    queries = _encode(model, [p.query for p in batch], device)
    docs = _encode(model, passages, device)
    scores = SCALE * queries @ docs.T
    answers = torch.zeros_like(scores, dtype=torch.bool)
    for i, pair in enumerate(batch):
        good = pair.also_positive | {pair.positive}
        for j, text in enumerate(passages):
            if j != i and text in good:
                answers[i, j] = True  # another copy of a right passage is not a negative
    scores = scores.masked_fill(answers, float("-inf"))
    target = torch.arange(len(batch), device=scores.device)
    return torch.nn.functional.cross_entropy(scores, target)


def _encode(model: Any, texts: list[str], device: str) -> Any:
    import torch

    prepare = getattr(model, "preprocess", None) or model.tokenize  # renamed in ST 6
    features = {k: v.to(device) if isinstance(v, torch.Tensor) else v
                for k, v in prepare(texts).items()}
    vectors = model(features)["sentence_embedding"]
    return torch.nn.functional.normalize(vectors, dim=-1)


__all__ = ["EMBEDDER_MANIFEST", "EmbedderManifest", "EmbedderPair", "pairs_sha256",
           "read_embedder_manifest", "record_metrics", "resolve_device", "tune_embedder"]
