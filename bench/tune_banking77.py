"""Behaviour benchmark: Banking77 intents as `{"intent": "<label>"}`, four ways.

    python bench/tune_banking77.py --json bench/results/tune_banking77.json

On the same seeded 300 test queries it compares
  1. the base model, prompted with the 77 labels;
  2. the same prompt with JSON-schema constrained decoding (an enum of the labels);
  3. a LoRA adapter trained by `ragtune tune` on a seeded sample of the train split (its prompt
     does not list the labels: the adapter learned them);
  4. that adapter with constrained decoding;
and reports JSON validity, schema validity, label accuracy, prompt tokens, throughput and latency,
plus the adapter's training time, seconds per step and peak memory (from the `ragtune tune`
process's manifest; the training runs as a separate process, as a user would run it).

Data: ../shared/data/banking77 (PolyAI, CC BY 4.0; see its SOURCE.md).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from common import REPO, log, machine, versions, write_json
from ragtune.evaluation.metrics import latency_summary
from ragtune.models.generators import GenerationConfig, LocalGenerator, cpu_has_bf16

DATA = REPO.parent / "shared" / "data" / "banking77"
LABELLED_SYSTEM = (
    "You classify online-banking customer queries by intent. The intents are: {labels}. "
    'Reply with JSON only, in the form {{"intent": "<one of the intents>"}}.'
)
# The adapter learns the labels, so its prompt need not list them (a shorter prompt is part of
# what tuning buys).
TUNED_SYSTEM = "Intent of this banking query, as JSON."


def read_rows(name: str) -> list[dict[str, str]]:
    with (DATA / name).open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def intent_schema(labels: list[str]) -> dict[str, Any]:
    return {"type": "object", "properties": {"intent": {"enum": labels}},
            "required": ["intent"], "additionalProperties": False}


def score(text: str, gold: str, labels: set[str]) -> tuple[bool, bool, bool]:
    """(parses as a JSON object, has exactly a known intent, intent is right)."""
    try:
        data = json.loads(text)
    except ValueError:
        return False, False, False
    if not isinstance(data, dict):
        return False, False, False
    valid = set(data) == {"intent"} and data["intent"] in labels
    return True, valid, valid and data["intent"] == gold


def evaluate(generator: LocalGenerator, system: str, test: list[dict[str, str]],
             labels: list[str], schema: dict[str, Any] | None, batch: int, latency_n: int,
             max_new_tokens: int) -> dict[str, Any]:
    config = GenerationConfig(max_new_tokens=max_new_tokens, json_schema=schema)
    conversations = [[{"role": "system", "content": system},
                      {"role": "user", "content": row["text"]}] for row in test]
    generator.batch_size = batch
    started = time.perf_counter()
    outputs = generator.generate_batch(conversations, config)
    seconds = time.perf_counter() - started
    known = set(labels)
    scored = [score(o.text, row["category"], known) for o, row in zip(outputs, test,
                                                                      strict=True)]
    latencies = []
    for conversation in conversations[:latency_n]:
        t = time.perf_counter()
        generator.generate(conversation, config)
        latencies.append((time.perf_counter() - t) * 1000)
    lat = latency_summary(latencies)
    return {
        "json_valid": sum(s[0] for s in scored) / len(scored),
        "schema_valid": sum(s[1] for s in scored) / len(scored),
        "accuracy": sum(s[2] for s in scored) / len(scored),
        "prompt_tokens": sum(o.prompt_tokens for o in outputs) / len(outputs),
        "output_tokens": sum(o.output_tokens for o in outputs) / len(outputs),
        "batch_seconds": round(seconds, 1),
        "queries_per_s": round(len(test) / seconds, 2),
        "latency_ms": {"p50": round(lat["p50"], 1), "p95": round(lat["p95"], 1),
                       "n": len(latencies)},
        "examples": [{"query": row["text"], "gold": row["category"], "output": o.text}
                     for o, row in list(zip(outputs, test, strict=True))[:5]],
    }


def train(args: argparse.Namespace, train_rows: list[dict[str, str]], home: Path) -> dict:
    """`ragtune tune` in its own process, on a JSONL written from the train sample."""
    data = home / "banking77-train.jsonl"
    seen: set[tuple[str, str]] = set()
    with data.open("w", encoding="utf-8") as fh:
        for row in train_rows:
            key = (row["text"], row["category"])
            if key in seen:  # the train split repeats a few queries; tune rejects duplicates
                continue
            seen.add(key)
            fh.write(json.dumps({"system": TUNED_SYSTEM, "prompt": row["text"],
                                 "completion": json.dumps({"intent": row["category"]})}) + "\n")
    out = home / "adapter"
    command = [sys.executable, "-m", "ragtune", "tune", str(data), "--out", str(out),
               "--epochs", str(args.epochs), "--batch-size", str(args.batch_size),
               "--lr", str(args.lr), "--rank", str(args.rank), "--alpha", str(2 * args.rank),
               "--dropout", str(args.dropout), "--val-split", str(args.val_split),
               "--seed", str(args.seed), "--json"]
    env = {**os.environ, "RAGTUNE_HOME": str(home)}
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"ragtune tune failed:\n{done.stderr[-3000:]}")
    report = json.loads(done.stdout)
    report["wall_seconds"] = round(wall, 1)
    report["command"] = " ".join(["ragtune", *command[3:]])
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--home", type=Path, default=REPO / ".bench-home-banking77")
    parser.add_argument("--test-size", type=int, default=300)
    parser.add_argument("--train-size", type=int, default=4300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--dropout", type=float, default=0.0)
    parser.add_argument("--val-split", type=float, default=0.02)
    parser.add_argument("--gen-batch", type=int, default=16)
    parser.add_argument("--latency-n", type=int, default=30)
    parser.add_argument("--reuse-adapter", action="store_true",
                        help="skip training when --home already holds the adapter")
    args = parser.parse_args()

    labels = json.loads((DATA / "categories.json").read_text(encoding="utf-8"))
    train_rows = read_rows("train.csv")
    test_rows = read_rows("test.csv")
    random.Random(args.seed).shuffle(train_rows)
    test = random.Random(args.seed + 1).sample(test_rows, args.test_size)
    args.home.mkdir(parents=True, exist_ok=True)
    home = args.home.resolve()
    os.environ.setdefault("RAGTUNE_CACHE", str(home / "cache"))

    adapter = home / "adapter"
    if args.reuse_adapter and (adapter / "ragtune-adapter.json").is_file():
        training = {"out": str(adapter), "reused": True,
                    "training": json.loads((adapter / "ragtune-adapter.json").read_text()
                                           )["training"]}
    else:
        log(f"training on {args.train_size} examples ...")
        training = train(args, train_rows[:args.train_size], home)
    cache = Path(os.environ["RAGTUNE_CACHE"])
    schema = intent_schema(labels)
    labelled = LABELLED_SYSTEM.format(labels=", ".join(labels))
    base = LocalGenerator(cache_dir=cache)
    tuned = LocalGenerator(cache_dir=cache, adapter=adapter)
    common = {"test": test, "labels": labels, "batch": args.gen_batch,
              "latency_n": args.latency_n, "max_new_tokens": 24}
    configs = {
        "base (labels in the prompt)": (base, labelled, None),
        "base + constrained decoding": (base, labelled, schema),
        "LoRA adapter": (tuned, TUNED_SYSTEM, None),
        "LoRA + constrained decoding": (tuned, TUNED_SYSTEM, schema),
    }
    results = {}
    for name, (generator, system, constraint) in configs.items():
        log(f"evaluating {name} ...")
        results[name] = evaluate(generator, system, schema=constraint, **common)
        log(json.dumps({k: v for k, v in results[name].items() if k != "examples"}))
    t = training["training"]
    base_acc = results["base (labels in the prompt)"]["accuracy"]
    tuned_acc = results["LoRA adapter"]["accuracy"]
    summary = {
        "date": time.strftime("%Y-%m-%d"), "machine": machine(), "cpu_bf16": cpu_has_bf16(),
        "versions": versions(), "test_queries": len(test),
        "train_examples": training.get("data", {}).get("train"), "seed": args.seed,
        "settings": {k: v for k, v in vars(args).items() if k not in ("json", "home")},
        "training": training, "configs": results,
        "targets": {
            "lora_json_valid>=0.98": results["LoRA adapter"]["json_valid"] >= 0.98,
            "lora_accuracy>=0.70": tuned_acc >= 0.70,
            "lora_accuracy>=3x_base": tuned_acc >= 3 * base_acc,
            "training<15min": t["seconds"] < 900,
            "constrained_json_valid==1": results["base + constrained decoding"]["json_valid"]
            == 1.0,
        },
    }
    print("\n| configuration | JSON valid | schema valid | accuracy | prompt tokens | "
          "queries/s (batch) | latency p50 / p95 ms |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, r in results.items():
        print(f"| {name} | {r['json_valid']:.3f} | {r['schema_valid']:.3f} | "
              f"{r['accuracy']:.3f} | {r['prompt_tokens']:.0f} | {r['queries_per_s']} | "
              f"{r['latency_ms']['p50']:.0f} / {r['latency_ms']['p95']:.0f} |")
    print(f"\ntraining: {t['seconds']:.0f} s, {t['steps']} steps, {t['seconds_per_step']} s/step,"
          f" peak RSS {t['peak_rss_mb']:.0f} MB, {t['precision']} on {t['device']}")
    print("targets:", json.dumps(summary["targets"]))
    write_json(args.json, summary)


if __name__ == "__main__":
    main()
