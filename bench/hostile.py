"""Time and memory of reading each hostile file alone (the corpus of tests/hostile.py).

    .venv/bin/python bench/hostile.py [--json OUT]

Builds the corpus in a temporary folder, then, in a child process capped at 3 GiB of address
space (RLIMIT_AS), reads each file with `load_path` and chunks what it gives, one at a time:
seconds (best of 3) and the child's peak RSS after it (VmHWM, a high-water mark: it only grows), the
outcome (documents and chunks, or the failure's reason). The same bounds are asserted by
tests/documents/test_hostile.py; this table is where the margins are written down.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import log, machine, versions, write_json

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

PROBE = ROOT / "tests" / "hostile_probe.py"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    from hostile import build

    with tempfile.TemporaryDirectory(prefix="ragtune-hostile-") as tmp:
        started = time.perf_counter()
        cases = build(Path(tmp) / "hostile", Path(tmp) / "outside")
        built = time.perf_counter() - started
        log(f"built {len(cases)} cases in {built:.1f} s; reading each alone")
        proc = subprocess.run([sys.executable, str(PROBE), str(Path(tmp) / "hostile"),
                               "--repeat", "3"],
                              capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-3000:])
    rows = [row for row in map(json.loads, proc.stdout.splitlines()) if "file" in row]
    for row in sorted(rows, key=lambda r: -r["seconds"]):
        outcome = (f"{row['documents']} doc, {row['chunks']} chunks" if row["documents"]
                   else (row["failures"] or ["-"])[0])
        print(f"{row['seconds']:7.3f} s  {row['peak_rss_mb']:5d} MB  {row['file'][:40]!r:44}"
              f"{outcome}")
    write_json(args.json, {
        "machine": machine(), "versions": versions(), "date": time.strftime("%Y-%m-%d"),
        "cases": len(cases), "files_read": len(rows), "build_seconds": round(built, 1),
        "slowest_seconds": max(r["seconds"] for r in rows),
        "peak_rss_mb": max(r["peak_rss_mb"] for r in rows), "files": rows})


if __name__ == "__main__":
    main()
