"""Hostile and malformed files (`hostile.build`: zip bombs, 10,000-deep HTML, a PDF of 100,000
objects, a 1 GB sparse file, NUL bytes, bidi overrides, links out of the root, names with
newlines and escape codes, ...): each is read within a time and memory bound, each bad one fails
alone with a one-line reason, and the batch goes on."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hostile import SECRET, Case, build
from ragtune import KnowledgeBase, Settings
from ragtune.cli import app

pytestmark = pytest.mark.slow

SECONDS_PER_FILE = 20.0
ADDRESS_SPACE = 3 << 30  # the reading process's hard limit (RLIMIT_AS)
PEAK_RSS_MB = 1500

PROBE = Path(__file__).resolve().parent.parent / "hostile_probe.py"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Case]]:
    base = tmp_path_factory.mktemp("hostile")
    cases = build(base / "hostile", base / "outside")
    assert len(cases) >= 30
    return base / "hostile", cases


def test_each_file_is_read_within_its_time_and_memory_bound(corpus) -> None:
    root, _ = corpus
    proc = subprocess.run([sys.executable, str(PROBE), str(root), "--address-space",
                           str(ADDRESS_SPACE)], capture_output=True, text=True, timeout=600)
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    started = [r["start"] for r in rows if "start" in r]
    done = [r for r in rows if "seconds" in r]
    assert proc.returncode == 0, f"died reading {started[-1] if started else '?'}: " \
                                 f"{proc.stderr[-2000:]}"
    assert len(done) == len(started) >= 30
    for row in done:
        assert row["seconds"] < SECONDS_PER_FILE, row
        assert row["peak_rss_mb"] < PEAK_RSS_MB, row


def test_the_batch_goes_on_and_every_bad_file_fails_alone_in_one_line(
        corpus, ragtune_home: Path, embedder) -> None:
    root, cases = corpus
    result = CliRunner().invoke(app, ["ingest", str(root), "--kb", "hostile", "--json"])
    assert result.exit_code == 1, result.output  # some files failed, and the batch finished
    report = json.loads(result.stdout)
    failed_lines = [line for line in result.stderr.splitlines() if line.startswith("failed ")]
    assert len(failed_lines) == len(report["failed"])  # one line each, whatever the name holds
    failures: dict[str, list[str]] = {}
    for f in report["failed"]:  # a JSONL row's failure is named `file.jsonl:LINE`
        failures.setdefault(re.sub(r"(?<=\.jsonl):\d+$", "", f["path"]), []).append(f["error"])

    settings = Settings.load(home=ragtune_home)
    with KnowledgeBase("hostile", settings, embedder=embedder) as kb:
        assert kb.store.check() == []
        texts: dict[str, list[str]] = {}
        for doc in kb.documents():
            texts.setdefault(doc.source, []).append(kb.store.document_text(doc.id) or "")
    everything = "\n".join(t for ts in texts.values() for t in ts)
    assert SECRET not in everything
    for case in cases:
        name = f"{root.name}/{case.name}".encode("utf-8", "surrogateescape").decode(
            "utf-8", "replace")
        docs, errors = texts.get(name, []), failures.get(name, [])
        where = f"{case.name!r}: documents {len(docs)}, failures {errors}"
        for text in docs:
            assert not any(a in text for a in case.absent), where
        if case.outcome == "loads":
            assert docs and all(any(c in t for t in docs) for c in case.contains), where
            assert all(case.reason in e for e in errors) if case.reason else not errors, where
        elif case.outcome == "fails":
            assert not docs and len(errors) == 1 and case.reason in errors[0], where
        elif case.outcome == "skipped":
            assert not docs and not errors, where
        else:
            assert (docs or errors) and not (docs and errors), where
        assert all("\n" not in e for e in errors), where
