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

PROBE = """
import json, resource, sys, time
from pathlib import Path
resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
from ragtune.config import ChunkingSettings, IngestSettings
from ragtune.documents import chunk_document, iter_source_files, load_path, load_token_counter
root = Path(sys.argv[1])
counter = load_token_counter()


def peak_rss_mb():  # this process's own (ru_maxrss would carry the parent's over fork+exec)
    status = Path("/proc/self/status").read_text()
    return int(next(l.split()[1] for l in status.splitlines() if l.startswith("VmHWM:"))) >> 10


for path in iter_source_files(root):
    times = []
    for _ in range(3):
        started = time.perf_counter()
        result = load_path(path, IngestSettings())
        chunks = sum(len(chunk_document(d, 0, counter, ChunkingSettings()))
                     for d in result.documents)
        times.append(time.perf_counter() - started)
    print(json.dumps({"file": path.relative_to(root).as_posix(), "seconds": min(times),
                      "peak_rss_mb": peak_rss_mb(),
                      "documents": len(result.documents), "chunks": chunks,
                      "failures": [f.error[:90] for f in result.failures]}), flush=True)
"""


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
        proc = subprocess.run([sys.executable, "-c", PROBE, str(Path(tmp) / "hostile")],
                              capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-3000:])
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
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
