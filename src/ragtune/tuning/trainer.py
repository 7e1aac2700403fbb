"""LoRA training: seeded, validated each epoch, stopped early, resumable after a kill.

    >>> result = train_adapter(load_training_data(path, 8), Path("adapters/support"), settings,
    ...                        data_file=path)
    >>> result.manifest.metrics["val_loss"], result.manifest.training.seconds

The loop runs under `accelerate`: on one CPU or GPU as it is, and on several GPUs unchanged under
`accelerate launch -m ragtune tune ...` (each process takes every n-th batch; gradients are
averaged by DDP; only the main process writes files or reports progress).

What makes it reproducible: the train/validation split and each epoch's batch order come from
the seed alone (`np.random.default_rng([seed, epoch])`), the LoRA weights are initialized after
`torch.manual_seed(seed)`, and a checkpoint holds the adapter weights, the optimizer, the
learning-rate schedule, the torch RNG state and the position in the epoch. Checkpoints are
written to a temporary folder and renamed, so a process killed at any moment leaves the last
complete one; rerunning the same command resumes from it (the run's fingerprint, a hash of the
examples, the base model and the hyperparameters, must match). The final adapter is the epoch
with the best validation loss.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import resource
import shutil
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ragtune.config import Settings, TuneSettings
from ragtune.errors import InputError, ModelError
from ragtune.models.generators import set_offline
from ragtune.tuning.data import (
    IGNORE_INDEX,
    Encoded,
    TrainingExample,
    check_lengths,
    examples_digest,
    length_limit,
    load_tokenizer,
    split_examples,
    write_training_data,
)
from ragtune.tuning.manifest import (
    MANIFEST_FILE,
    AdapterManifest,
    BaseModelInfo,
    DataInfo,
    KnowledgeBaseInfo,
    TrainingInfo,
    library_versions,
    now_iso,
    read_manifest,
    register_adapter,
    resolve_base,
)

CHECKPOINTS = "checkpoints"
KEEP_CHECKPOINTS = 2
OWN_FILES = {"adapter_config.json", "adapter_model.safetensors", MANIFEST_FILE, "README.md",
             CHECKPOINTS, "raft-data.jsonl", "closed-book-data.jsonl"}  # generated data kept
# Batches are drawn from shuffled pools of this many batches, sorted by length inside a pool:
# little padding, still a different mix every epoch.
POOL_BATCHES = 50


@dataclass
class TrainProgress:
    """One report from the loop: `phase` is 'start', 'step', 'validate', 'checkpoint', 'done'."""

    phase: str
    step: int
    total_steps: int
    epoch: int
    epochs: int
    loss: float | None = None
    val_loss: float | None = None
    lr: float = 0.0
    elapsed: float = 0.0
    resumed_from: int | None = None


ProgressFn = Callable[[TrainProgress], None]


@dataclass
class TrainResult:
    """The adapter folder, its manifest, and whether this call trained (or found it done)."""

    out: Path
    manifest: AdapterManifest
    resumed_from: int | None = None
    already_trained: bool = False

    def to_dict(self) -> dict[str, Any]:
        m = self.manifest
        return {"out": str(self.out), "already_trained": self.already_trained,
                "resumed_from_step": self.resumed_from, "metrics": m.metrics,
                "training": m.training.model_dump(), "data": m.data.model_dump(),
                "base_model": m.base_model.model_dump()}


@dataclass
class _State:
    """What a checkpoint must restore besides tensors."""

    step: int = 0
    epoch: int = 0  # the epoch in progress (0-based)
    batches_done: int = 0  # batches of that epoch already trained
    best_val: float | None = None
    best_epoch: int | None = None
    bad_epochs: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    train_tokens: int = 0
    seconds: float = 0.0
    resumed_from: list[int] = field(default_factory=list)
    stopped_early: bool = False
    val_before: float | None = None
    epoch_loss: float = 0.0  # token-weighted loss sum of the epoch in progress
    epoch_tokens: int = 0
    step_seconds: float = 0.0  # time in training steps alone (no validation, no checkpoints)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def record_epoch(self, val_loss: float | None, patience: int) -> bool:
        """Note the epoch just finished (`self.epoch`); True when it is the best so far (always,
        without a validation set). After `patience` epochs in a row without a better validation
        loss, `stopped_early` is set (never with patience 0)."""
        if val_loss is None or self.best_val is None or val_loss < self.best_val:
            self.best_val, self.best_epoch, self.bad_epochs = val_loss, self.epoch + 1, 0
            return True
        self.bad_epochs += 1
        if patience and self.bad_epochs >= patience:
            self.stopped_early = True
        return False


def run_fingerprint(examples: Sequence[TrainingExample], base: BaseModelInfo,
                    tune: TuneSettings) -> str:
    """A hash of everything that decides the trained weights: a checkpoint or adapter with the
    same fingerprint is the same run."""
    h = hashlib.sha256()
    h.update(examples_digest(examples).encode())
    h.update(base.sha256.encode())
    h.update(tune.model_dump_json(exclude={"save_every"}).encode())
    return h.hexdigest()


def resolve_precision(precision: str, device_type: str) -> str:
    """'bfloat16' or 'float32': auto picks bf16 on CUDA and on CPUs that compute it natively
    (elsewhere emulated bf16 is several times slower than fp32; BENCHMARKS.md)."""
    if precision != "auto":
        return precision
    from ragtune.models.generators import cpu_has_bf16

    return "bfloat16" if device_type == "cuda" or cpu_has_bf16() else "float32"


@dataclass
class _Data:
    """A run's examples, split, and encoded with the base model's tokenizer."""

    train: list[TrainingExample]
    val: list[TrainingExample]
    train_enc: list[Encoded]
    val_enc: list[Encoded]
    pad: int  # the token id batches are padded with


@dataclass
class _Run:
    """One training run in progress: what its steps share. `state` is what a checkpoint
    restores besides tensors; everything else every process builds again on each (re)start."""

    tune: TuneSettings
    out: Path
    fingerprint: str
    data: _Data
    accelerator: Any
    model: Any  # as prepared by accelerate (wrapped in DDP under several processes)
    optimizer: Any
    scheduler: Any
    trainable: list[Any]  # the LoRA parameters
    autocast: Any
    precision: str
    total_steps: int
    notify: ProgressFn
    state: _State = field(default_factory=_State)
    best_weights: dict[str, Any] | None = None  # LoRA weights of the best epoch so far
    seconds_before: float = 0.0  # time spent in the sessions before a resume
    started: float = 0.0  # perf_counter() when this session's clock started

    @property
    def unwrapped(self) -> Any:
        return self.accelerator.unwrap_model(self.model)

    @property
    def resumed_from(self) -> int | None:
        """The step this session resumed from (None: it started from scratch)."""
        return self.state.resumed_from[-1] if self.state.resumed_from else None

    def elapsed(self) -> float:
        """Seconds of training so far, over every session of the run."""
        return self.seconds_before + time.perf_counter() - self.started

    def report(self, phase: str, loss: float | None = None,
               val_loss: float | None = None) -> None:
        s = self.state
        self.notify(TrainProgress(phase, s.step, self.total_steps, s.epoch, self.tune.epochs,
                                  loss, val_loss, float(self.scheduler.get_last_lr()[0]),
                                  self.elapsed(), self.resumed_from))

    def validate(self) -> float:
        return _validate(self.unwrapped, self.data.val_enc, self.tune.batch_size,
                         self.data.pad, self.accelerator, self.autocast)


def train_adapter(
    examples: Sequence[TrainingExample],
    out: Path,
    settings: Settings,
    *,
    tune: TuneSettings | None = None,
    data_file: Path | None = None,
    shape: str | None = None,
    knowledge_base: KnowledgeBaseInfo | None = None,
    cases_file: Path | None = None,
    progress: ProgressFn | None = None,
    restart: bool = False,
    save_examples: bool = False,
) -> TrainResult:
    """Train a LoRA adapter on `examples` into `out` (PEFT files + `ragtune-adapter.json`).

    Rerunning with the same examples and settings resumes from the last checkpoint, or returns
    the finished adapter untouched; other data or settings in a used folder are an error unless
    `restart` (which discards what the folder holds). `save_examples` writes the examples to
    `data_file` (generated data, such as RAFT's, kept beside the adapter).
    """
    tune = tune or settings.tune
    _check_count(examples, tune)
    out = Path(out)
    folder, base = resolve_base(tune.base, settings.cache_dir)
    fingerprint = run_fingerprint(examples, base, tune)
    finished = _prepare_out(out, fingerprint, restart)
    if finished is not None:
        return TrainResult(out, finished, already_trained=True)
    if save_examples and data_file is not None:
        write_training_data(examples, data_file)
    data = _prepare_data(examples, folder, tune, str(data_file) if data_file else "examples")
    run = _start_run(folder, tune, data, out, fingerprint, progress)
    _resume(run)
    _validate_before(run)
    _train_epochs(run)
    info = _data_info(examples, data.train, data.val, data_file, shape, cases_file)
    manifest = _finish(run, base, info, knowledge_base, settings.home)
    return TrainResult(out, manifest, run.resumed_from)


# --- the steps of a run -------------------------------------------------------------------------


def _check_count(examples: Sequence[TrainingExample], tune: TuneSettings) -> None:
    if not examples:
        raise InputError("no training examples")
    if len(examples) < tune.min_examples:
        raise InputError(f"{len(examples)} example(s); at least {tune.min_examples} are needed "
                         "(tune.min_examples)")


def _prepare_data(examples: Sequence[TrainingExample], folder: Path, tune: TuneSettings,
                  where: str) -> _Data:
    """Split the examples (seeded) and encode them; an example over the length limit, or no
    assistant token to learn from, is an error naming `where` before any model is loaded."""
    train, val = split_examples(examples, tune.val_split, tune.max_val_examples, tune.seed)
    tokenizer = load_tokenizer(folder)
    limit, limit_name = length_limit(folder, tune.max_length)
    train_enc = check_lengths(train, tokenizer, limit, where, limit_name)
    val_enc = check_lengths(val, tokenizer, limit, where, limit_name)
    if not any(any(t != IGNORE_INDEX for t in labels) for _, labels in train_enc):
        raise InputError(f"{where}: no assistant tokens to learn from")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else \
        tokenizer.eos_token_id
    return _Data(train, val, train_enc, val_enc, pad)


def _start_run(folder: Path, tune: TuneSettings, data: _Data, out: Path, fingerprint: str,
               progress: ProgressFn | None) -> _Run:
    """Load the base model with fresh LoRA weights (initialized from the seed), its optimizer
    and learning-rate schedule, all prepared by accelerate."""
    import torch

    accelerator = _accelerator()
    precision = resolve_precision(tune.precision, accelerator.device.type)
    autocast = _autocast(accelerator, precision)
    torch.manual_seed(tune.seed)
    model = _load_lora_model(folder, tune)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=tune.learning_rate,
                                  weight_decay=tune.weight_decay)
    per_epoch = _batches_per_epoch(len(data.train_enc), tune.batch_size,
                                   accelerator.num_processes)
    total_steps = math.ceil(per_epoch / tune.grad_accum) * tune.epochs
    warmup = int(total_steps * tune.warmup_ratio)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(warmup, total_steps))
    # The schedule is not handed to accelerate: it would step it once per process per step,
    # while `total_steps` already counts the steps each process takes.
    model, optimizer = accelerator.prepare(model, optimizer)
    notify = progress if (progress is not None and accelerator.is_main_process) else _silent
    return _Run(tune, out, fingerprint, data, accelerator, model, optimizer, scheduler,
                trainable, autocast, precision, total_steps, notify)


def _silent(_: TrainProgress) -> None:
    """Progress of a process that does not report (all but the main one)."""


def _resume(run: _Run) -> None:
    """Restore the run's last checkpoint, if it has one, then start this session's clock."""
    checkpoint = _latest_checkpoint(run.out, run.fingerprint)
    if checkpoint is not None:
        run.state = _load_checkpoint(checkpoint, run.unwrapped, run.optimizer, run.scheduler)
        run.state.resumed_from.append(run.state.step)
        run.best_weights = _load_best(checkpoint)
    run.seconds_before = run.state.seconds
    run.started = time.perf_counter()


def _validate_before(run: _Run) -> None:
    """The validation loss of the untrained adapter (once per run, not again on a resume)."""
    state = run.state
    if state.step == 0 and state.val_before is None and run.data.val_enc:
        run.report("validate")
        state.val_before = run.validate()
    run.report("start", val_loss=state.val_before)


def _train_epochs(run: _Run) -> None:
    run.model.train()
    while run.state.epoch < run.tune.epochs and not run.state.stopped_early:
        _train_epoch(run)
        _end_epoch(run)


def _train_epoch(run: _Run) -> None:
    """The rest of the epoch in progress (all of it unless resumed mid-epoch): one optimizer
    step per `grad_accum` batches of this process's share, a checkpoint every `save_every`."""
    tune, state, accelerator = run.tune, run.state, run.accelerator
    world = accelerator.num_processes
    batches = plan_batches([len(ids) for ids, _ in run.data.train_enc], tune.batch_size,
                           tune.seed, state.epoch, world)
    mine = batches[accelerator.process_index::world]
    # a checkpoint is taken after a whole step, so a resumed epoch starts on a step boundary
    for start in range(state.batches_done, len(mine), tune.grad_accum):
        group = mine[start:start + tune.grad_accum]
        step_loss = _train_step(run, group)
        state.batches_done = start + len(group)
        state.seconds = run.elapsed()
        run.report("step", loss=step_loss)
        if tune.save_every and state.step % tune.save_every == 0 \
                and state.batches_done < len(mine):
            _save_checkpoint(run)
            run.report("checkpoint", loss=step_loss)


def _train_step(run: _Run, group: Sequence[list[int]]) -> float:
    """One optimizer step over `group` (batches of example indices); returns its
    token-weighted loss."""
    started = time.perf_counter()
    state = run.state
    step_loss, step_tokens = 0.0, 0
    for i, indices in enumerate(group):
        loss, tokens = _backward(run, indices, len(group), last=i == len(group) - 1)
        step_loss += loss * tokens
        step_tokens += tokens
        state.epoch_loss += loss * tokens
        state.epoch_tokens += tokens
    run.accelerator.clip_grad_norm_(run.trainable, run.tune.max_grad_norm)
    run.optimizer.step()
    run.scheduler.step()
    run.optimizer.zero_grad(set_to_none=True)
    state.step += 1
    state.step_seconds += time.perf_counter() - started
    return step_loss / max(step_tokens, 1)


def _backward(run: _Run, indices: list[int], group_len: int, last: bool) -> tuple[float, int]:
    """Forward and backward one batch, its loss scaled for accumulation over `group_len`
    batches; gradients are synchronized across processes on the `last` one only. Returns the
    loss and the number of labelled tokens it is the mean over.

    A batch of long examples runs as several micro-batches (`micro_batches`), each one's loss
    weighted by its share of the labelled tokens: the same gradient as the whole batch, without
    holding every example's attention at once (16 RAFT examples of 1,500 tokens took more than
    24 GB)."""
    rows = [run.data.train_enc[i] for i in indices]
    parts = micro_batches([len(ids) for ids, _ in rows])
    counts = [sum(_labelled(rows[j]) for j in part) for part in parts]
    total = max(1, sum(counts))
    loss_sum = 0.0
    for n, (part, count) in enumerate(zip(parts, counts, strict=True)):
        batch = _collate([rows[j] for j in part], run.data.pad, run.accelerator.device)
        final = last and n == len(parts) - 1
        sync = contextlib.nullcontext() if final else run.accelerator.no_sync(run.model)
        with sync:
            with run.autocast:
                loss = _loss(run.model, batch)
            run.accelerator.backward(loss * (count / total) / group_len)
        run.state.train_tokens += int(batch["attention_mask"].sum())
        loss_sum += float(loss.detach()) * count
    return loss_sum / total, total


MAX_BATCH_CELLS = 16 * 512 ** 2  # rows x width^2 of one forward (attention grows with width^2)


def micro_batches(lengths: Sequence[int], cells: int = MAX_BATCH_CELLS) -> list[list[int]]:
    """Positions of `lengths` in consecutive groups whose padded attention (rows x longest^2)
    stays within `cells`; one group when the whole batch does (the usual case)."""
    parts: list[list[int]] = []
    for i, length in enumerate(lengths):
        if parts:
            width = max([length] + [lengths[j] for j in parts[-1]])
            if (len(parts[-1]) + 1) * width ** 2 <= cells:
                parts[-1].append(i)
                continue
        parts.append([i])
    return parts


def _labelled(row: tuple[list[int], list[int]]) -> int:
    """Tokens `_loss` is the mean over: labels after the first position that are not ignored."""
    return sum(1 for label in row[1][1:] if label != IGNORE_INDEX)


def _end_epoch(run: _Run) -> None:
    """Validate, keep the best weights, maybe stop early; checkpoint unless the run is over."""
    state, tune = run.state, run.tune
    val_loss = run.validate() if run.data.val_enc else None
    run.model.train()
    train_loss = state.epoch_loss / state.epoch_tokens if state.epoch_tokens else None
    state.history.append({"epoch": state.epoch + 1, "step": state.step,
                          "train_loss": train_loss, "val_loss": val_loss,
                          "seconds": round(run.elapsed(), 2)})
    if state.record_epoch(val_loss, tune.patience):
        run.best_weights = _trainable_state(run.unwrapped)
    run.report("validate", val_loss=val_loss)
    state.epoch += 1
    state.batches_done = 0
    state.epoch_loss, state.epoch_tokens = 0.0, 0
    state.seconds = run.elapsed()
    if state.epoch < tune.epochs and not state.stopped_early:
        _save_checkpoint(run)


def _finish(run: _Run, base: BaseModelInfo, data: DataInfo,
            knowledge_base: KnowledgeBaseInfo | None, home: Path) -> AdapterManifest:
    """Put the best epoch's weights back, then (main process) write the adapter and its
    manifest, drop the checkpoints and register the adapter under `home`."""
    accelerator = run.accelerator
    accelerator.wait_for_everyone()
    unwrapped = run.unwrapped
    if run.best_weights is not None:
        _set_trainable_state(unwrapped, run.best_weights)
    seconds = run.elapsed()
    manifest = _build_manifest(run, _with_params(base, unwrapped), data, knowledge_base,
                               seconds)
    if accelerator.is_main_process:
        run.out.mkdir(parents=True, exist_ok=True)
        unwrapped.save_pretrained(str(run.out), safe_serialization=True)
        manifest.write(run.out)
        shutil.rmtree(run.out / CHECKPOINTS, ignore_errors=True)
        register_adapter(home, run.out)
    accelerator.wait_for_everyone()
    run.report("done", val_loss=run.state.best_val)
    return manifest


def _build_manifest(run: _Run, base: BaseModelInfo, data: DataInfo,
                    knowledge_base: KnowledgeBaseInfo | None, seconds: float
                    ) -> AdapterManifest:
    """What the adapter was trained on, how, and how it went (`ragtune-adapter.json`)."""
    state = run.state
    return AdapterManifest(
        ragtune=library_versions()["ragtune"], created_at=now_iso(), base_model=base, data=data,
        hyperparameters=json.loads(run.tune.model_dump_json()),
        knowledge_base=knowledge_base,
        metrics={"val_loss_before": state.val_before, "val_loss": state.best_val,
                 "final_train_loss": _last_loss(state), "best_epoch":
                 float(state.best_epoch) if state.best_epoch is not None else None},
        history=state.history, training=_training_info(run, seconds),
        versions=library_versions(), fingerprint=run.fingerprint)


def _training_info(run: _Run, seconds: float) -> TrainingInfo:
    import torch

    state, accelerator = run.state, run.accelerator
    return TrainingInfo(
        seconds=round(seconds, 2), steps=state.step, epochs_run=state.epoch,
        best_epoch=state.best_epoch, stopped_early=state.stopped_early,
        seconds_per_step=round(state.step_seconds / state.step, 3) if state.step else None,
        tokens_per_second=round(state.train_tokens / state.step_seconds, 1)
        if state.step_seconds else None,
        train_tokens=state.train_tokens,
        peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        peak_device_mb=round(torch.cuda.max_memory_allocated() / 2**20, 1)
        if accelerator.device.type == "cuda" else None,
        device=str(accelerator.device), precision=run.precision,
        processes=accelerator.num_processes, resumed_from_steps=state.resumed_from)


# --- pieces of the loop -----------------------------------------------------------------------


def _accelerator() -> Any:
    try:
        from accelerate import Accelerator
    except ImportError as exc:
        raise ModelError("accelerate is not installed; it runs the training loop") from exc
    return Accelerator()


def _autocast(accelerator: Any, precision: str) -> Any:
    """bf16 autocast unless `accelerate launch --mixed_precision` already does it."""
    import torch

    if precision != "bfloat16" or accelerator.mixed_precision != "no":
        return contextlib.nullcontext()
    return torch.autocast(device_type=accelerator.device.type, dtype=torch.bfloat16)


def _load_lora_model(folder: Path, tune: TuneSettings) -> Any:
    import torch
    import transformers
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    set_offline()
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    try:
        model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32)
    except (OSError, ValueError) as exc:
        raise ModelError(f"{folder}: cannot load the model ({exc})") from exc
    model.config.use_cache = False
    targets: Any = tune.target_modules if isinstance(tune.target_modules, str) \
        else list(tune.target_modules)
    config = LoraConfig(r=tune.lora_r, lora_alpha=tune.lora_alpha,
                        lora_dropout=tune.lora_dropout, target_modules=targets,
                        task_type="CAUSAL_LM")
    try:
        with warnings.catch_warnings():  # peft calls an API transformers 5 deprecates
            warnings.simplefilter("ignore", FutureWarning)
            return get_peft_model(model, config)
    except ValueError as exc:  # e.g. target modules that match nothing
        raise InputError(f"tune.target_modules {tune.target_modules!r}: {exc}") from exc


def _schedule(warmup: int, total: int) -> Callable[[int], float]:
    """Linear warm-up, then linear decay to zero at `total` steps."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (total - step) / max(1, total - warmup))

    return factor


def _batches_per_epoch(n: int, batch_size: int, world: int) -> int:
    batches = math.ceil(n / batch_size)
    return max(1, batches // world) if world > 1 else batches


def plan_batches(lengths: Sequence[int], batch_size: int, seed: int, epoch: int,
                 world: int = 1) -> list[list[int]]:
    """One epoch's batches of example indices, from the seed and epoch alone.

    Indices are shuffled, cut into pools of `POOL_BATCHES` batches, sorted by length inside a
    pool (little padding) and the batches shuffled again. With several processes the count is
    cut to a multiple of `world`, so every process runs the same number of steps.
    """
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths)).tolist()
    pool = batch_size * POOL_BATCHES
    batches: list[list[int]] = []
    for start in range(0, len(order), pool):
        part = sorted(order[start:start + pool], key=lambda i: lengths[i])
        batches += [part[j:j + batch_size] for j in range(0, len(part), batch_size)]
    shuffled = [batches[i] for i in rng.permutation(len(batches)).tolist()]
    if world > 1:
        shuffled = shuffled[:max(world, len(shuffled) - len(shuffled) % world)]
    return shuffled


def _collate(rows: Sequence[tuple[list[int], list[int]]], pad: int, device: Any
             ) -> dict[str, Any]:
    """Right-padded tensors: positions start at 0 for every row, as they do at inference."""
    import torch

    width = max(len(ids) for ids, _ in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for r, (x, y) in enumerate(rows):
        ids[r, :len(x)] = torch.tensor(x)
        labels[r, :len(y)] = torch.tensor(y)
        mask[r, :len(x)] = 1
    return {"input_ids": ids.to(device), "attention_mask": mask.to(device),
            "labels": labels.to(device)}


def _loss(model: Any, batch: dict[str, Any]) -> Any:
    """Mean cross-entropy over the labelled tokens. Logits are computed only at the positions
    that predict a labelled token: the output head over the whole vocabulary is a large share of
    a small model's compute, and most positions are context."""
    import torch

    labels = batch["labels"]
    keep = torch.zeros_like(labels, dtype=torch.bool)
    keep[:, :-1] = labels[:, 1:] != IGNORE_INDEX
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                logits_to_keep=keep)
    logits = out.logits.float().reshape(-1, out.logits.shape[-1])
    return torch.nn.functional.cross_entropy(logits, labels[:, 1:][keep[:, :-1]])


def _validate(model: Any, encoded: Sequence[tuple[list[int], list[int]]], batch_size: int,
              pad: int, accelerator: Any, autocast: Any) -> float:
    """Token-weighted mean validation loss, shared out across processes. `model` is the
    unwrapped model: a DDP forward is a collective (it syncs buffers), and processes may run
    different numbers of validation batches."""
    import torch

    model.eval()
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i][0]))
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    total = torch.zeros(2, dtype=torch.float64, device=accelerator.device)
    with torch.no_grad():
        for b in batches[accelerator.process_index::accelerator.num_processes]:
            batch = _collate([encoded[i] for i in b], pad, accelerator.device)
            with autocast:
                loss = _loss(model, batch)
            tokens = int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
            total[0] += float(loss) * tokens
            total[1] += tokens
    total = accelerator.reduce(total, reduction="sum")
    return float(total[0] / total[1]) if float(total[1]) else float("nan")


def _trainable_state(model: Any) -> dict[str, Any]:
    from peft import get_peft_model_state_dict

    return {k: v.detach().clone().cpu() for k, v in get_peft_model_state_dict(model).items()}


def _set_trainable_state(model: Any, weights: dict[str, Any]) -> None:
    from peft import set_peft_model_state_dict

    set_peft_model_state_dict(model, weights)


def _last_loss(state: _State) -> float | None:
    return state.history[-1].get("train_loss") if state.history else None


def _with_params(base: BaseModelInfo, model: Any) -> BaseModelInfo:
    params = sum(p.numel() for n, p in model.named_parameters() if "lora_" not in n)
    return base.model_copy(update={"parameters": int(params)})


def _data_info(examples: Sequence[TrainingExample], train: Sequence[TrainingExample],
               val: Sequence[TrainingExample], data_file: Path | None, shape: str | None,
               cases_file: Path | None) -> DataInfo:
    from ragtune.tuning.manifest import file_sha256

    shapes = {e.shape for e in examples}
    return DataInfo(
        path=str(data_file.resolve()) if data_file else None,
        sha256=file_sha256(data_file) if data_file else examples_digest(examples),
        bytes=data_file.stat().st_size if data_file else sum(
            len(json.dumps(e.to_dict())) + 1 for e in examples),
        examples=len(examples), train=len(train), validation=len(val),
        shape=shape or (shapes.pop() if len(shapes) == 1 else "mixed"),
        cases_path=str(cases_file.resolve()) if cases_file else None,
        cases_sha256=file_sha256(cases_file) if cases_file else None)


# --- the output folder and checkpoints ----------------------------------------------------------


def _prepare_out(out: Path, fingerprint: str, restart: bool) -> AdapterManifest | None:
    """Check what `out` holds. Returns the manifest when this very run already finished there."""
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder")
    if not out.exists():
        return None
    foreign = sorted(p.name for p in out.iterdir() if p.name not in OWN_FILES)
    if foreign:
        raise InputError(f"{out}: not empty and not an adapter folder (holds "
                         f"{', '.join(foreign[:3])}); choose another --out")
    if restart:
        for name in OWN_FILES - {"raft-data.jsonl", "closed-book-data.jsonl"}:
            target = out / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
        return None
    if (out / MANIFEST_FILE).is_file():
        manifest = read_manifest(out)
        if manifest.fingerprint == fingerprint:
            return manifest
        raise InputError(f"{out}: holds an adapter trained from other data or settings; pass "
                         "--restart to replace it, or choose another --out")
    for checkpoint in _checkpoints(out):
        saved = json.loads((checkpoint / "state.json").read_text(encoding="utf-8"))
        if saved.get("fingerprint") != fingerprint:
            raise InputError(f"{out}: holds a checkpoint of a run with other data or settings; "
                             "pass --restart to discard it, or choose another --out")
    return None


def _checkpoints(out: Path) -> list[Path]:
    folder = out / CHECKPOINTS
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir()
                  if p.is_dir() and p.name.startswith("step-") and (p / "state.json").is_file())


def _latest_checkpoint(out: Path, fingerprint: str) -> Path | None:
    found = [p for p in _checkpoints(out) if json.loads(
        (p / "state.json").read_text(encoding="utf-8")).get("fingerprint") == fingerprint]
    return found[-1] if found else None


def _save_checkpoint(run: _Run) -> None:
    """Write the checkpoint to a temporary folder, then rename it: a kill at any moment
    leaves the previous checkpoint complete."""
    import torch
    from safetensors.torch import save_file

    run.accelerator.wait_for_everyone()
    if not run.accelerator.is_main_process:
        return
    state, out = run.state, run.out
    root = out / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    name = f"step-{state.step:07d}"
    tmp = root / f".{name}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_file(_trainable_state(run.unwrapped), str(tmp / "adapter.safetensors"))
    if run.best_weights is not None:
        save_file(run.best_weights, str(tmp / "best.safetensors"))
    torch.save(run.optimizer.state_dict(), tmp / "optimizer.pt")
    torch.save(run.scheduler.state_dict(), tmp / "scheduler.pt")
    torch.save({"torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None},
               tmp / "rng.pt")
    (tmp / "state.json").write_text(json.dumps(state.to_dict() | {"fingerprint":
                                                                  run.fingerprint},
                                               indent=1), encoding="utf-8")
    target = root / name
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    for old in _checkpoints(out)[:-KEEP_CHECKPOINTS]:
        shutil.rmtree(old, ignore_errors=True)


def _load_checkpoint(folder: Path, model: Any, optimizer: Any, scheduler: Any) -> _State:
    import torch
    from safetensors.torch import load_file

    try:
        _set_trainable_state(model, load_file(str(folder / "adapter.safetensors")))
        optimizer.load_state_dict(torch.load(folder / "optimizer.pt", weights_only=True))
        scheduler.load_state_dict(torch.load(folder / "scheduler.pt", weights_only=True))
        rng = torch.load(folder / "rng.pt", weights_only=False)
        saved = json.loads((folder / "state.json").read_text(encoding="utf-8"))
    except (OSError, RuntimeError, ValueError, KeyError) as exc:
        raise InputError(f"{folder}: unreadable checkpoint ({exc}); pass --restart") from exc
    torch.set_rng_state(rng["torch"])
    if rng.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    saved.pop("fingerprint", None)
    return _State(**saved)


def _load_best(folder: Path) -> dict[str, Any] | None:
    from safetensors.torch import load_file

    path = folder / "best.safetensors"
    return load_file(str(path)) if path.is_file() else None
