"""`ragtune compare --docs DIR` with nothing prepared: the time announced before the run against
the time it took, and what the lab recommended.

    python bench/lab_docs.py --corpus sample-kb --json bench/results/lab_docs_sample_kb.json
    python bench/lab_docs.py --corpus pydoc --budget 20 --json bench/results/lab_docs_pydoc.json

Corpora: `sample-kb` is examples/sample-kb (4 short documents); `pydoc` is the Python language
reference's topics that ship with CPython itself (`pydoc_data.topics`, the text `help()` shows;
PSF licence), one text file per topic: a public corpus nobody here wrote, installed with Python.
Each run starts `ragtune compare --docs DIR --json` in its own process with an empty
`RAGTUNE_HOME` (so the model conversion and the reference rates are included, as on a new
machine). The acceptance (issue 23): the run ends within ±50% of the estimate it printed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import REPO, log, machine, versions, write_json

METRICS = ("correct", "format_valid", "refusal_correct", "freshness_before", "freshness_after",
           "stale_after", "consistency", "latency_ms_p50", "training_seconds")


def export_pydoc_topics(folder: Path) -> Path:
    """One `.txt` file per topic of the Python reference that CPython ships."""
    from pydoc_data.topics import topics

    folder.mkdir(parents=True, exist_ok=True)
    for name, text in sorted(topics.items()):
        (folder / f"{name}.txt").write_text(text, encoding="utf-8")
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", choices=("sample-kb", "pydoc"), default="sample-kb")
    parser.add_argument("--budget", type=float, help="minutes (compare --budget)")
    parser.add_argument("--keep", type=Path, help="copy the lab folder (report) here")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ragtune-docs-"))
    docs = (REPO / "examples" / "sample-kb" if args.corpus == "sample-kb"
            else export_pydoc_topics(work / "python-reference"))
    home = work / "home"
    out = args.keep or work / "lab"
    env = dict(os.environ, RAGTUNE_HOME=str(home), HF_HUB_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1")
    env.pop("RAGTUNE_CACHE", None)
    command = [str(Path(sys.executable).with_name("ragtune")), "compare", "--docs", str(docs),
               "--out", str(out), "--json", *(["--budget", str(args.budget)]
                                               if args.budget else [])]
    log(" ".join(command))
    started = time.perf_counter()
    proc = subprocess.run(command, env=env, capture_output=True, text=True, check=False,
                          stdin=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"compare failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    data = json.loads(proc.stdout)
    plan = data["plan"]
    ratio = data["seconds"] / plan["seconds"]
    log(f"announced {plan['seconds']:.0f} s, took {data['seconds']:.0f} s (lab) / {wall:.0f} s "
        f"(process): {ratio:.2f}x the estimate")
    log(f"recommendation: {data['recommendation']['recommendation']}")
    for arch in data["order"]:
        m = data["architectures"][arch]["metrics"]
        log(f"  {arch:20} " + " ".join(f"{k}={m.get(k)}" for k in METRICS[:5]))
    write_json(args.json, {
        "machine": machine(), "versions": versions(), "corpus": args.corpus,
        "documents": data["experiment"]["documents"], "budget_minutes": args.budget,
        "announced_seconds": plan["seconds"], "lab_seconds": data["seconds"],
        "wall_seconds": round(wall, 1), "ratio": round(ratio, 3),
        "within_50_percent": 0.5 <= ratio <= 1.5, "plan": plan,
        "experiment": data["experiment"], "recommendation": data["recommendation"],
        "order": data["order"], "freshness": data["freshness"], "stages": data["stages"],
        "metrics": {a: {k: data["architectures"][a]["metrics"].get(k) for k in METRICS}
                    for a in data["order"]},
    })


if __name__ == "__main__":
    main()
