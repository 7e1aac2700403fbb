"""Training speed on this machine: seconds per step for the choices that decide it.

    python bench/tune_speed.py --json bench/results/tune_speed.json

One epoch of `train_adapter` over the same 320 Banking77 training queries (short prompt, JSON
target; batch 16 = 20 steps), once per setting: precision (bf16 autocast vs fp32), LoRA dropout
(0 vs 0.05), adapted modules (all linear layers vs q/v projections) and batch size. Only the
training steps are timed (no validation, no model load); the first step is included.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import shutil
import tempfile
import time
from pathlib import Path

from common import REPO, log, machine, versions, write_json
from ragtune import Settings
from ragtune.models.generators import cpu_has_bf16
from ragtune.tuning import TrainingExample, train_adapter

DATA = REPO.parent / "shared" / "data" / "banking77"
SYSTEM = "Intent of this banking query, as JSON."
SETTINGS = [
    {"precision": "bfloat16", "lora_dropout": 0.0},
    {"precision": "float32", "lora_dropout": 0.0},
    {"precision": "bfloat16", "lora_dropout": 0.05},
    {"precision": "bfloat16", "lora_dropout": 0.0, "target_modules": ["q_proj", "v_proj"]},
    {"precision": "bfloat16", "lora_dropout": 0.0, "batch_size": 32},
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path)
    parser.add_argument("--examples", type=int, default=320)
    parser.add_argument("--cache", type=Path, default=REPO / ".bench-home-banking77" / "cache")
    args = parser.parse_args()
    with (DATA / "train.csv").open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    random.Random(5).shuffle(rows)
    examples = [TrainingExample(({"role": "system", "content": SYSTEM},
                                 {"role": "user", "content": r["text"]},
                                 {"role": "assistant",
                                  "content": json.dumps({"intent": r["category"]})}), i + 1)
                for i, r in enumerate(rows[:args.examples])]
    results = []
    with tempfile.TemporaryDirectory(prefix="ragtune-tune-speed-") as tmp:
        for extra in SETTINGS:
            tune = {"epochs": 1, "batch_size": 16, "val_split": 0.0, "save_every": 0,
                    "learning_rate": 1e-3} | extra
            settings = Settings.load(home=Path(tmp) / "home", cache=args.cache, tune=tune)
            out = Path(tmp) / "adapter"
            shutil.rmtree(out, ignore_errors=True)
            started = time.perf_counter()
            t = train_adapter(examples, out, settings).manifest.training
            row = {"settings": extra | {"batch_size": tune["batch_size"]},
                   "steps": t.steps, "seconds_per_step": t.seconds_per_step,
                   "examples_per_s": round(args.examples / (t.seconds_per_step * t.steps), 2),
                   "tokens_per_s": t.tokens_per_second, "peak_rss_mb": t.peak_rss_mb,
                   "wall_s": round(time.perf_counter() - started, 1)}
            log(json.dumps(row))
            results.append(row)
    print("| precision | dropout | modules | batch | s/step | examples/s | tokens/s |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in results:
        s = r["settings"]
        print(f"| {s['precision']} | {s['lora_dropout']} | "
              f"{','.join(s.get('target_modules', ['all-linear']))} | {s['batch_size']} | "
              f"{r['seconds_per_step']} | {r['examples_per_s']} | {r['tokens_per_s']} |")
    write_json(args.json, {"date": time.strftime("%Y-%m-%d"), "machine": machine(),
                           "cpu_bf16": cpu_has_bf16(), "versions": versions(),
                           "examples": args.examples, "results": results})


if __name__ == "__main__":
    main()
