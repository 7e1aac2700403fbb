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
    TrainingExample,
    check_lengths,
    examples_digest,
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
    if not examples:
        raise InputError("no training examples")
    if len(examples) < tune.min_examples:
        raise InputError(f"{len(examples)} example(s); at least {tune.min_examples} are needed "
                         "(tune.min_examples)")
    out = Path(out)
    folder, base = resolve_base(tune.base, settings.cache_dir)
    fingerprint = run_fingerprint(examples, base, tune)
    finished = _prepare_out(out, fingerprint, restart)
    if finished is not None:
        return TrainResult(out, finished, already_trained=True)
    if save_examples and data_file is not None:
        write_training_data(examples, data_file)
    train, val = split_examples(examples, tune.val_split, tune.max_val_examples, tune.seed)

    import torch

    tokenizer = load_tokenizer(folder)
    where = str(data_file) if data_file else "examples"
    limit, limit_name = length_limit(folder, tune.max_length)
    train_enc = check_lengths(train, tokenizer, limit, where, limit_name)
    val_enc = check_lengths(val, tokenizer, limit, where, limit_name)
    if not any(any(t != IGNORE_INDEX for t in labels) for _, labels in train_enc):
        raise InputError(f"{where}: no assistant tokens to learn from")

    accelerator = _accelerator()
    device_type = accelerator.device.type
    precision = resolve_precision(tune.precision, device_type)
    autocast = _autocast(accelerator, precision)
    torch.manual_seed(tune.seed)
    model = _load_lora_model(folder, tune)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=tune.learning_rate,
                                  weight_decay=tune.weight_decay)
    world, rank = accelerator.num_processes, accelerator.process_index
    per_epoch = _batches_per_epoch(len(train_enc), tune.batch_size, world)
    steps_per_epoch = math.ceil(per_epoch / tune.grad_accum)
    total_steps = steps_per_epoch * tune.epochs
    warmup = int(total_steps * tune.warmup_ratio)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(warmup, total_steps))
    # The schedule is not handed to accelerate: it would step it once per process per step,
    # while `total_steps` already counts the steps each process takes.
    model, optimizer = accelerator.prepare(model, optimizer)

    state = _State()
    checkpoint = _latest_checkpoint(out, fingerprint)
    if checkpoint is not None:
        state = _load_checkpoint(checkpoint, accelerator.unwrap_model(model), optimizer,
                                 scheduler)
        state.resumed_from.append(state.step)
    resumed_from = state.resumed_from[-1] if state.resumed_from else None
    main = accelerator.is_main_process
    notify = progress if (progress is not None and main) else (lambda p: None)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else \
        tokenizer.eos_token_id
    session_started = time.perf_counter()
    seconds_before = state.seconds

    def elapsed() -> float:
        return seconds_before + time.perf_counter() - session_started

    def report(phase: str, loss: float | None = None, val_loss: float | None = None) -> None:
        notify(TrainProgress(phase, state.step, total_steps, state.epoch, tune.epochs, loss,
                             val_loss, float(scheduler.get_last_lr()[0]), elapsed(),
                             resumed_from))

    if state.step == 0 and state.val_before is None and val_enc:
        report("validate")
        state.val_before = _validate(accelerator.unwrap_model(model), val_enc,
                                     tune.batch_size, pad, accelerator, autocast)
    report("start", val_loss=state.val_before)
    best_weights = _load_best(checkpoint) if checkpoint is not None else None

    model.train()
    while state.epoch < tune.epochs and not state.stopped_early:
        batches = plan_batches([len(ids) for ids, _ in train_enc], tune.batch_size, tune.seed,
                               state.epoch, world)
        mine = batches[rank::world]
        group_loss, group_tokens = 0.0, 0
        for index in range(state.batches_done, len(mine)):
            if index % tune.grad_accum == 0:
                step_started = time.perf_counter()
            group_start = index - index % tune.grad_accum
            group_len = min(tune.grad_accum, len(mine) - group_start)
            group_end = index == group_start + group_len - 1
            batch = _collate([train_enc[i] for i in mine[index]], pad, accelerator.device)
            sync = contextlib.nullcontext() if group_end else accelerator.no_sync(model)
            with sync:
                with autocast:
                    loss = _loss(model, batch)
                accelerator.backward(loss / group_len)
            tokens = int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
            group_loss += float(loss.detach()) * tokens
            group_tokens += tokens
            state.epoch_loss += float(loss.detach()) * tokens
            state.epoch_tokens += tokens
            state.train_tokens += int(batch["attention_mask"].sum())
            if not group_end:
                continue
            accelerator.clip_grad_norm_(trainable, tune.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            state.step += 1
            state.step_seconds += time.perf_counter() - step_started
            state.batches_done = index + 1
            step_loss = group_loss / max(group_tokens, 1)
            group_loss, group_tokens = 0.0, 0
            state.seconds = elapsed()
            report("step", loss=step_loss)
            if tune.save_every and state.step % tune.save_every == 0 \
                    and state.batches_done < len(mine):
                _save_checkpoint(out, fingerprint, state, accelerator, model, optimizer,
                                 scheduler, best_weights)
                report("checkpoint", loss=step_loss)
        # end of the epoch: validate, keep the best weights, maybe stop
        val_loss = _validate(accelerator.unwrap_model(model), val_enc, tune.batch_size, pad,
                             accelerator, autocast) if val_enc else None
        model.train()
        train_loss = state.epoch_loss / state.epoch_tokens if state.epoch_tokens else None
        state.history.append({"epoch": state.epoch + 1, "step": state.step,
                              "train_loss": train_loss, "val_loss": val_loss,
                              "seconds": round(elapsed(), 2)})
        if state.record_epoch(val_loss, tune.patience):
            best_weights = _trainable_state(accelerator.unwrap_model(model))
        report("validate", val_loss=val_loss)
        state.epoch += 1
        state.batches_done = 0
        state.epoch_loss, state.epoch_tokens = 0.0, 0
        state.seconds = elapsed()
        if state.epoch < tune.epochs and not state.stopped_early:
            _save_checkpoint(out, fingerprint, state, accelerator, model, optimizer, scheduler,
                             best_weights)

    accelerator.wait_for_everyone()
    unwrapped = accelerator.unwrap_model(model)
    if best_weights is not None:
        _set_trainable_state(unwrapped, best_weights)
    seconds = elapsed()
    manifest = AdapterManifest(
        ragtune=library_versions()["ragtune"], created_at=now_iso(), base_model=_with_params(
            base, unwrapped),
        data=_data_info(examples, train, val, data_file, shape, cases_file),
        hyperparameters=json.loads(tune.model_dump_json()),
        knowledge_base=knowledge_base,
        metrics={"val_loss_before": state.val_before, "val_loss": state.best_val,
                 "final_train_loss": _last_loss(state), "best_epoch":
                 float(state.best_epoch) if state.best_epoch is not None else None},
        history=state.history,
        training=TrainingInfo(
            seconds=round(seconds, 2), steps=state.step, epochs_run=state.epoch,
            best_epoch=state.best_epoch, stopped_early=state.stopped_early,
            seconds_per_step=round(state.step_seconds / state.step, 3) if state.step else None,
            tokens_per_second=round(state.train_tokens / state.step_seconds, 1)
            if state.step_seconds else None,
            train_tokens=state.train_tokens,
            peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            peak_device_mb=round(torch.cuda.max_memory_allocated() / 2**20, 1)
            if device_type == "cuda" else None,
            device=str(accelerator.device), precision=precision, processes=world,
            resumed_from_steps=state.resumed_from),
        versions=library_versions(), fingerprint=fingerprint)
    if main:
        out.mkdir(parents=True, exist_ok=True)
        unwrapped.save_pretrained(str(out), safe_serialization=True)
        manifest.write(out)
        shutil.rmtree(out / CHECKPOINTS, ignore_errors=True)
        register_adapter(settings.home, out)
    accelerator.wait_for_everyone()
    report("done", val_loss=state.best_val)
    return TrainResult(out, manifest, resumed_from)


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


def length_limit(folder: Path, max_length: int) -> tuple[int, str]:
    """The longest example allowed and what sets it: `tune.max_length`, or the model's context
    (`max_position_embeddings` in its config) when that is shorter."""
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        config = {}
    context = config.get("max_position_embeddings")
    if isinstance(context, int) and context < max_length:
        return context, "the model's context"
    return max_length, "tune.max_length"


def load_tokenizer(folder: Path) -> Any:
    """The base model's tokenizer (it must have a chat template: data is rendered with it)."""
    set_offline()
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
    except (OSError, ValueError) as exc:
        raise ModelError(f"{folder}: cannot load the tokenizer ({exc})") from exc
    if not tokenizer.chat_template:
        raise ModelError(f"{folder}: the tokenizer has no chat template; training data is "
                         "rendered with it (as answers are)")
    return tokenizer


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


def _save_checkpoint(out: Path, fingerprint: str, state: _State, accelerator: Any, model: Any,
                     optimizer: Any, scheduler: Any, best: dict[str, Any] | None) -> None:
    """Write the checkpoint to a temporary folder, then rename it: a kill at any moment
    leaves the previous checkpoint complete."""
    import torch
    from safetensors.torch import save_file

    accelerator.wait_for_everyone()
    if not accelerator.is_main_process:
        return
    root = out / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    name = f"step-{state.step:07d}"
    tmp = root / f".{name}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_file(_trainable_state(accelerator.unwrap_model(model)),
              str(tmp / "adapter.safetensors"))
    if best is not None:
        save_file(best, str(tmp / "best.safetensors"))
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
    torch.save({"torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None},
               tmp / "rng.pt")
    (tmp / "state.json").write_text(json.dumps(state.to_dict() | {"fingerprint": fingerprint},
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
