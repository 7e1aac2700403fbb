"""`ragtune eval` end to end, offline, on a generated SciFact test set and on the SQuAD sample.

    .venv/bin/python bench/eval_runs.py [--scifact-questions 60] [--squad-per-class 200]

Everything goes through the command line, in fresh processes, with no API key in the
environment and the model hubs switched off (HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE):
1. the SciFact knowledge base (`.bench-home`, built by bench/ingest.py or here, incrementally)
   and `ragtune testset -n N --unanswerable 0.2 --seed 0`: fill-in-the-blank questions with
   their gold document, plus unanswerable ones;
2. the SQuAD 2.0 knowledge base (`.bench-home-squad`, as bench/answer_squad.py builds it) and
   the first N answerable + N unanswerable questions of the answering benchmark's test sample
   (seed 13), with each question's paragraph as its gold document;
3. `ragtune eval CASES --arch base` and `--arch rag` on both (offline judge, batch 1: per-query
   latency), then `ragtune eval --compare` of the two runs.
Cost per 1,000 queries uses an assumed price for the bundled model of $0.05 per hour of
generation time (about what a 2-vCPU cloud machine costs), written into each bench home's
config.toml: `[eval.prices."local:smollm2"] per_hour = 0.05`. Results: bench/results/eval_runs.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from common import BENCH_HOME, REPO, SCIFACT, log, machine, versions, write_json
from ragtune.evaluation.squad import load_squad

SQUAD = REPO.parent / "shared" / "data" / "squad-v2-dev-subset" / "dev-v2.0.json"
SQUAD_HOME = REPO / ".bench-home-squad"
RUNS = REPO / ".bench-home" / "runs"
PRICE = '[eval.prices."local:smollm2"]\nper_hour = 0.05\n'


def offline_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if "API_KEY" not in k}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", RAGTUNE_CACHE=str(
        SQUAD_HOME / "cache"))
    return env


def ragtune(*args: str) -> tuple[dict[str, Any], float]:
    """Run `ragtune ARGS --json` in a fresh process; its JSON and wall seconds."""
    command = [sys.executable, "-m", "ragtune", *args, "--json"]
    log("$ ragtune " + " ".join(args))
    started = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, env=offline_env())
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"ragtune {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return json.loads(proc.stdout), seconds


def with_price(home: Path) -> None:
    config = home / "config.toml"
    text = config.read_text(encoding="utf-8") if config.is_file() else ""
    if "[eval.prices" not in text:
        home.mkdir(parents=True, exist_ok=True)
        config.write_text(text + PRICE, encoding="utf-8")


def squad_cases(path: Path, per_class: int) -> Path:
    data = load_squad(SQUAD)
    sample = data.sample(200, 200, seed=13)  # the answering benchmark's test sample
    chosen = sample[:per_class] + sample[200:200 + per_class]
    rows = [{"id": q.id, "question": q.question, "answers": list(q.answers),
             "gold_doc_ids": [q.paragraph_id] if q.answerable else []} for q in chosen]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                    encoding="utf-8")
    return path


def evaluate(name: str, home: Path, kb: str, cases: Path, archs: set[str],
             previous: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = dict(previous)
    for arch in sorted(archs):
        summary, seconds = ragtune("eval", str(cases), "--home", str(home), "--kb", kb,
                                   "--arch", arch, "--out", str(RUNS / f"{name}-{arch}"))
        summary["wall_seconds"] = round(seconds, 1)
        out[arch] = summary
    diff, _ = ragtune("eval", "--compare", str(RUNS / f"{name}-base"), str(RUNS / f"{name}-rag"))
    out["compare"] = {"fixed_by_rag": len(diff["fixed"]), "broken_by_rag": len(diff["broken"]),
                      "shared_cases": diff["shared_cases"]}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scifact-questions", type=int, default=60)
    parser.add_argument("--squad-per-class", type=int, default=200)
    parser.add_argument("--datasets", default="scifact,squad",
                        help="which to (re)run; the others keep their entries in --json")
    parser.add_argument("--archs", default="base,rag",
                        help="which architectures to (re)run; the others keep their entries")
    parser.add_argument("--json", type=Path, default=REPO / "bench" / "results" /
                        "eval_runs.json")
    args = parser.parse_args()
    wanted = set(args.datasets.split(","))
    archs = set(args.archs.split(","))
    result: dict[str, Any] = json.loads(args.json.read_text()) if args.json.is_file() else {}
    result.update({"machine": machine(), "versions": versions(),
                   "assumed_price": {"local:smollm2": {"per_hour": 0.05}}})
    for home in (BENCH_HOME, SQUAD_HOME):
        with_price(home)

    if "scifact" in wanted:
        ingest, seconds = ragtune("ingest", str(SCIFACT / "corpus.jsonl"), "--home",
                                  str(BENCH_HOME), "--kb", "scifact")
        log(f"scifact knowledge base: {ingest['unchanged']} unchanged, {ingest['added']} "
            f"added ({seconds:.0f} s)")
        generated = REPO / "bench" / "results" / "eval_scifact_generated.jsonl"
        made, seconds = ragtune("testset", "--home", str(BENCH_HOME), "--kb", "scifact", "-n",
                                str(args.scifact_questions), "--unanswerable", "0.2", "--seed",
                                "0", "--out", str(generated))
        made["seconds"] = round(seconds, 1)
        result["scifact"] = {**evaluate("scifact", BENCH_HOME, "scifact", generated, archs,
                                        result.get("scifact", {})), "testset": made}
        write_json(args.json, result)
    if "squad" in wanted:
        corpus = load_squad(SQUAD).write_corpus(SQUAD_HOME / "corpus" /
                                                "squad-paragraphs.jsonl")
        ragtune("ingest", str(corpus), "--home", str(SQUAD_HOME), "--kb", "squad")
        cases = squad_cases(REPO / "bench" / "results" / "eval_squad_cases.jsonl",
                            args.squad_per_class)
        result["squad"] = evaluate("squad", SQUAD_HOME, "squad", cases, archs,
                                   result.get("squad", {}))
        write_json(args.json, result)
    for name in sorted(wanted & set(result)):
        for arch in ("base", "rag"):
            s = result[name][arch]
            log(f"{name} {arch}: {json.dumps(s['metrics'])}\n  causes {s['failure_causes']}")


if __name__ == "__main__":
    main()
