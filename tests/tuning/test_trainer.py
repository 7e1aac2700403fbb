"""LoRA training on the real bundled model: save, reload, manifest, reruns, kill and resume."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import CODE_PROMPT, TINY_TUNE, write_code_examples
from ragtune import Settings
from ragtune.cli import app
from ragtune.errors import InputError
from ragtune.models.generators import GenerationConfig, LocalGenerator, smollm2_gguf
from ragtune.tuning import load_training_data, read_manifest, train_adapter
from ragtune.tuning.manifest import list_adapters

runner = CliRunner()


@pytest.mark.slow
def test_tiny_adapter_changes_the_output_and_its_manifest_is_complete(
        tiny_adapter, generator, model_cache: Path) -> None:
    result, data, reports, settings = tiny_adapter
    out = result.out
    assert {"adapter_config.json", "adapter_model.safetensors",
            "ragtune-adapter.json"} <= {p.name for p in out.iterdir()}
    assert not (out / "checkpoints").exists()  # removed once the adapter is written

    manifest = read_manifest(out)
    assert manifest == result.manifest
    gguf = smollm2_gguf()
    assert manifest.base_model.name == "local:smollm2"
    assert manifest.base_model.sha256 == hashlib.sha256(gguf.read_bytes()).hexdigest()
    assert manifest.base_model.parameters and manifest.base_model.parameters > 100_000_000
    raw = data.read_bytes()
    assert (manifest.data.sha256, manifest.data.bytes) == (hashlib.sha256(raw).hexdigest(),
                                                           len(raw))
    assert (manifest.data.examples, manifest.data.train, manifest.data.validation) == (20, 16, 4)
    assert manifest.data.shape == "prompt-completion"
    assert manifest.hyperparameters == json.loads(settings.tune.model_dump_json())
    assert manifest.knowledge_base is None
    m = manifest.metrics
    assert m["val_loss"] is not None and m["val_loss_before"] is not None
    assert m["val_loss"] < m["val_loss_before"]
    assert [h["epoch"] for h in manifest.history] == [1, 2]
    t = manifest.training
    assert t.steps == 2 * 4 and t.epochs_run == 2 and t.seconds > 0
    assert t.seconds_per_step and t.seconds_per_step > 0 and t.tokens_per_second
    assert t.peak_rss_mb > 500 and t.device == "cpu" and t.precision == "float32"
    assert {"torch", "transformers", "peft", "accelerate", "ragtune"} <= set(manifest.versions)
    assert len(manifest.fingerprint) == 64

    phases = [r.phase for r in reports]
    assert phases[0] == "validate" and phases[1] == "start" and phases[-1] == "done"
    assert [r.step for r in reports if r.phase == "step"] == list(range(1, 9))
    assert all(r.loss is not None for r in reports if r.phase == "step")
    assert [Path(e.path) for e in list_adapters(settings)] == [out.resolve()]

    prompt = [{"role": "user", "content": CODE_PROMPT.format(i=7)}]
    config = GenerationConfig(max_new_tokens=12)
    tuned = LocalGenerator(cache_dir=model_cache, adapter=out, dtype="float32")
    before = generator.generate(prompt, config).text
    after = tuned.generate(prompt, config).text
    assert "QX-" in after and "QX-" not in before, (before, after)


@pytest.mark.slow
def test_reruns_are_idempotent_and_other_settings_need_restart(tmp_path: Path,
                                                                model_cache: Path) -> None:
    data = write_code_examples(tmp_path / "codes.jsonl", 8)
    tune = TINY_TUNE | {"epochs": 1, "val_split": 0.0}
    settings = Settings.load(home=tmp_path / "home", cache=model_cache, tune=tune)
    examples = load_training_data(data, 4)
    first = train_adapter(examples, tmp_path / "a", settings, data_file=data)
    again = train_adapter(examples, tmp_path / "a", settings, data_file=data)
    assert again.already_trained and again.manifest == first.manifest
    other = Settings.load(home=tmp_path / "home", cache=model_cache, tune=tune | {"lora_r": 2})
    with pytest.raises(InputError, match="trained from other data or settings; pass --restart"):
        train_adapter(examples, tmp_path / "a", other, data_file=data)
    redone = train_adapter(examples, tmp_path / "a", other, data_file=data, restart=True)
    assert not redone.already_trained and redone.manifest.hyperparameters["lora_r"] == 2
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="not empty and not an adapter folder"):
        train_adapter(examples, tmp_path / "busy", settings, data_file=data)


def test_bad_rows_fail_before_any_training(tmp_path: Path) -> None:
    data = write_code_examples(tmp_path / "d.jsonl", 9)
    with data.open("a") as fh:
        fh.write('{"prompt": "x"}\n{"messages": [{"role": "user", "content": "q"}]}\n')
    out = tmp_path / "adapter"
    result = runner.invoke(app, ["tune", str(data), "--out", str(out)])
    assert result.exit_code == 1
    assert "d.jsonl:10: 'completion' must be a non-empty string" in result.stderr
    assert "d.jsonl:11: the conversation must end with an assistant message" in result.stderr
    assert not out.exists()
    one = write_code_examples(tmp_path / "one.jsonl", 1)
    result = runner.invoke(app, ["tune", str(one), "--out", str(out)])
    assert result.exit_code == 1 and "at least 8 are needed" in result.stderr


@pytest.mark.slow
def test_validate_only_reports_lengths_without_training(tmp_path: Path) -> None:
    data = write_code_examples(tmp_path / "d.jsonl", 10)
    result = runner.invoke(app, ["tune", str(data), "--out", str(tmp_path / "a"),
                                 "--validate-only", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["valid"] and report["examples"] == 10 and report["validation"] == 1
    assert 10 < report["tokens"]["max"] < 80
    assert not (tmp_path / "a").exists()
    result = runner.invoke(app, ["tune", str(data), "--out", str(tmp_path / "a"),
                                 "--validate-only", "--max-length", "12"])
    assert result.exit_code == 1 and "over tune.max_length (12)" in result.stderr


@pytest.mark.slow
def test_killed_run_resumes_from_its_last_checkpoint(tmp_path: Path, ragtune_home: Path,
                                                     model_cache: Path) -> None:
    """SIGKILL after the first checkpoint; the same command resumes from it and ends with the
    same weights as a run that was never interrupted."""
    from safetensors.torch import load_file

    data = write_code_examples(tmp_path / "codes.jsonl", 24)
    out = tmp_path / "adapter"
    command = [sys.executable, "-m", "ragtune", "tune", str(data), "--out", str(out),
               "--epochs", "2", "--batch-size", "4", "--lr", "0.005", "--rank", "4",
               "--alpha", "8", "--val-split", "0.2", "--save-every", "2",
               "--precision", "float32", "--json"]
    env = {**os.environ, "RAGTUNE_HOME": str(ragtune_home)}
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if list((out / "checkpoints").glob("step-*")):
                break
            time.sleep(0.05)
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert not (out / "ragtune-adapter.json").exists()
    killed_at = max(int(p.name.split("-")[1]) for p in (out / "checkpoints").glob("step-*"))

    resumed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    report = json.loads(resumed.stdout)
    assert report["resumed_from_step"] >= killed_at >= 2
    manifest = read_manifest(out)
    assert manifest.training.resumed_from_steps == [report["resumed_from_step"]]
    assert manifest.training.steps == 2 * 5  # 19 training examples, batches of 4

    settings = Settings.load(home=ragtune_home, cache=model_cache, tune={
        "epochs": 2, "batch_size": 4, "learning_rate": 0.005, "lora_r": 4, "lora_alpha": 8,
        "val_split": 0.2, "save_every": 0, "precision": "float32"})
    straight = train_adapter(load_training_data(data, 8), tmp_path / "straight", settings,
                             data_file=data)
    assert straight.manifest.fingerprint == manifest.fingerprint
    a = load_file(str(out / "adapter_model.safetensors"))
    b = load_file(str(straight.out / "adapter_model.safetensors"))
    assert a.keys() == b.keys()
    for name in a:
        assert (a[name] - b[name]).abs().max().item() < 1e-5, name
    assert manifest.metrics["val_loss"] == pytest.approx(straight.manifest.metrics["val_loss"],
                                                         abs=1e-5)


@pytest.mark.slow
def test_an_adapter_loads_only_onto_its_own_base(tiny_adapter, tmp_path: Path,
                                                 model_cache: Path) -> None:
    import shutil

    from ragtune.errors import ModelError

    result, *_ = tiny_adapter
    copy = tmp_path / "copy"
    shutil.copytree(result.out, copy)
    manifest = json.loads((copy / "ragtune-adapter.json").read_text())
    manifest["base_model"]["sha256"] = "0" * 64
    (copy / "ragtune-adapter.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match="trained on local:smollm2 .* not on this generator"):
        LocalGenerator(cache_dir=model_cache, adapter=copy).warm_up()


@pytest.mark.slow
def test_any_local_checkpoint_folder_can_be_the_base(tmp_path: Path, model_cache: Path) -> None:
    """`--base PATH`: a Hugging Face folder (here the bundled model's conversion) is trained on
    and pinned by the hash of its config and weights."""
    from ragtune.models.generators import converted_checkpoint
    from ragtune.tuning.manifest import folder_sha256

    folder = converted_checkpoint(model_cache)
    data = write_code_examples(tmp_path / "codes.jsonl", 8)
    settings = Settings.load(home=tmp_path / "home", cache=model_cache, tune=TINY_TUNE | {
        "epochs": 1, "val_split": 0.0, "base": f"local:{folder}"})
    result = train_adapter(load_training_data(data, 4), tmp_path / "a", settings,
                           data_file=data)
    base = result.manifest.base_model
    assert base.name == f"local:{folder}" and base.path == str(folder.resolve())
    assert base.sha256 == folder_sha256(folder, model_cache)
    tuned = LocalGenerator(f"local:{folder}", path=folder, cache_dir=model_cache,
                           adapter=result.out, dtype="float32")
    assert tuned.generate([{"role": "user", "content": "Hi"}],
                          GenerationConfig(max_new_tokens=4)).output_tokens > 0
    with pytest.raises(InputError, match="not a Hugging Face model folder"):
        train_adapter(load_training_data(data, 4), tmp_path / "b", Settings.load(
            home=tmp_path / "home", cache=model_cache,
            tune=TINY_TUNE | {"base": str(tmp_path)}), data_file=data)


@pytest.mark.slow
def test_two_processes_train_data_parallel(tmp_path: Path, ragtune_home: Path) -> None:
    """The multi-process path (DDP through accelerate) on this machine's CPU: two processes
    started by torchrun with gloo, as `accelerate launch --multi_gpu` starts them on GPUs. Each
    takes every other batch; one writes the adapter and prints the report."""
    data = write_code_examples(tmp_path / "codes.jsonl", 40)
    out = tmp_path / "adapter"
    torchrun = Path(sys.executable).parent / "torchrun"
    env = {**os.environ, "RAGTUNE_HOME": str(ragtune_home), "ACCELERATE_USE_CPU": "true"}
    done = subprocess.run(
        [str(torchrun), "--nproc_per_node", "2", "-m", "ragtune", "tune", str(data), "--out",
         str(out), "--epochs", "2", "--batch-size", "4", "--lr", "0.005", "--rank", "4",
         "--alpha", "8", "--save-every", "3", "--precision", "float32", "--json"],
        env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)  # one JSON document: only the main process reports
    assert report["training"]["processes"] == 2
    # 36 training examples = 9 batches of 4, cut to 8 so both processes step together: 4 each
    assert report["training"]["steps"] == 2 * 4
    manifest = read_manifest(out)
    assert manifest.metrics["val_loss"] < manifest.metrics["val_loss_before"]
    assert not (out / "checkpoints").exists()


def test_long_batches_run_as_micro_batches_with_the_whole_batchs_gradient() -> None:
    """A batch too wide for memory is split (`micro_batches`); each part's loss weighted by its
    share of the labelled tokens gives the gradient of the whole batch (a tiny real Llama)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from ragtune.tuning.trainer import IGNORE_INDEX, _collate, _labelled, _loss, micro_batches

    assert micro_batches([400] * 16) == [list(range(16))]  # the usual batch: one forward
    assert micro_batches([1500] * 4) == [[0], [1], [2], [3]]
    assert micro_batches([100, 100, 900, 100], cells=2 * 900 ** 2) == [[0, 1], [2, 3]]
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64,
                                         num_hidden_layers=2, num_attention_heads=4,
                                         num_key_value_heads=4))
    rows = []
    for length in (12, 30, 7, 21):
        ids = torch.randint(1, 64, (length,)).tolist()
        rows.append((ids, [IGNORE_INDEX] * (length // 2) + ids[length // 2:]))

    def grads() -> list[torch.Tensor]:
        out = [p.grad.clone() for p in model.parameters()]
        model.zero_grad()
        return out

    _loss(model, _collate(rows, 0, "cpu")).backward()
    whole = grads()
    parts = micro_batches([len(ids) for ids, _ in rows], cells=2 * 30 ** 2)
    assert len(parts) > 1
    total = sum(_labelled(r) for r in rows)
    for part in parts:
        chosen = [rows[j] for j in part]
        (_loss(model, _collate(chosen, 0, "cpu")) * sum(map(_labelled, chosen)) / total
         ).backward()
    for a, b in zip(whole, grads(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)
