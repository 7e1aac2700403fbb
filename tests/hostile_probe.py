"""Read each file under a folder alone, as ingestion would, and print one JSON line per file.

    python tests/hostile_probe.py ROOT [--repeat N] [--address-space BYTES]

Run in a process of its own (tests/documents/test_hostile.py, bench/hostile.py): it caps its own
address space first (RLIMIT_AS), so a file that would take more fails here instead of taking
the machine. Before each file it prints `{"start": name}` (a crash names its file); after,
seconds (best of N), the process's own peak RSS so far (VmHWM: `ru_maxrss` would carry the
parent's over fork+exec), documents, chunks and the first failures.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path


def peak_rss_mb() -> int:
    status = Path("/proc/self/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines()
                    if line.startswith("VmHWM:"))) >> 10


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("root", type=Path)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--address-space", type=int, default=3 << 30)
    args = parser.parse_args()
    resource.setrlimit(resource.RLIMIT_AS, (args.address_space, args.address_space))
    from ragtune.config import ChunkingSettings, IngestSettings
    from ragtune.documents import chunk_document, iter_source_files, load_path, load_token_counter

    counter = load_token_counter()
    for path in iter_source_files(args.root):
        name = path.relative_to(args.root).as_posix()
        print(json.dumps({"start": name}), flush=True)
        times = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            result = load_path(path, IngestSettings())
            chunks = sum(len(chunk_document(d, 0, counter, ChunkingSettings()))
                         for d in result.documents)
            times.append(time.perf_counter() - started)
        print(json.dumps({"file": name, "seconds": min(times), "peak_rss_mb": peak_rss_mb(),
                          "documents": len(result.documents), "chunks": chunks,
                          "failures": [f.error[:90] for f in result.failures]}), flush=True)


if __name__ == "__main__":
    main()
