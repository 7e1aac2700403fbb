"""Faults of the machine under a knowledge base: a full disk, a read-only home, a damaged file.

Each: nothing committed is lost, and the error is one line that names the file. The disk and
the read-only home are real: a size-limited tmpfs, remounted read-only, in a mount namespace of
the test's own (`unshare`), with the real `ragtune` command run inside it.
"""

from __future__ import annotations

import json
import shlex
import shutil
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ragtune import KnowledgeBase, Settings
from ragtune.cli import app

pytestmark = pytest.mark.slow

runner = CliRunner()


def cli(*args: str):
    return runner.invoke(app, list(args))


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


# --- a damaged file ------------------------------------------------------------------------------

def write_corpus(folder: Path, n: int) -> dict[str, str]:
    """`n` Markdown files long enough that the documents table spans many pages."""
    folder.mkdir(parents=True, exist_ok=True)
    texts = {}
    for i in range(n):
        text = (f"# Topic {i}\n\nSection {i} explains procedure number {i}. "
                + f"Step {i} requires care and a checklist entry {i}. " * 40)
        (folder / f"topic{i:03}.md").write_text(text, encoding="utf-8")
        texts[f"corpus/topic{i:03}.md"] = text
    return texts


def pages_of(db_path: Path, table: str, kind: str) -> list[int]:
    with sqlite3.connect(db_path) as db:
        return [r[0] for r in db.execute(
            "SELECT pageno FROM dbstat WHERE name = ? AND pagetype = ? ORDER BY pageno",
            (table, kind))]


def smash(db_path: Path, pages: list[int]) -> None:
    """Overwrite whole pages with garbage, as a torn write or a bad sector would."""
    with sqlite3.connect(db_path) as db:
        size = db.execute("PRAGMA page_size").fetchone()[0]
    with db_path.open("r+b") as fh:
        for page in pages:
            fh.seek((page - 1) * size)
            fh.write(bytes((page * 7 + i) % 251 for i in range(size)))


def test_damaged_pages_one_line_error_then_repair_rebuilds_from_readable_rows(
        tmp_path: Path, ragtune_home: Path, embedder) -> None:
    texts = write_corpus(tmp_path / "corpus", 60)
    assert cli("ingest", str(tmp_path / "corpus"), "--kb", "d").exit_code == 0
    db_path = ragtune_home / "kb" / "d" / "store.sqlite"
    healthy = cli("kb", "check", "--kb", "d", "--json")
    assert healthy.exit_code == 0 and json.loads(healthy.stdout)["problems"] == []

    # one leaf of the documents table, the chunks table's root and the vectors table's root
    doc_leaves = pages_of(db_path, "documents", "leaf")
    assert len(doc_leaves) >= 4
    smash(db_path, [doc_leaves[len(doc_leaves) // 2], pages_of(db_path, "chunks", "internal")[0],
                    pages_of(db_path, "vectors", "internal")[0]])

    failed = cli("search", "procedure number 7", "--kb", "d")
    assert failed.exit_code == 1
    lines = error_lines(failed.stderr)
    assert len(lines) == 1, failed.stderr
    assert str(db_path) in lines[0] and "corrupt" in lines[0] and "--repair" in lines[0]

    found = cli("kb", "check", "--kb", "d", "--json")
    assert found.exit_code == 1
    assert json.loads(found.stdout)["problems"]

    repaired = cli("kb", "check", "--kb", "d", "--repair", "--json")
    report = json.loads(repaired.stdout)
    assert report["action"] == "rebuilt" and report["remaining"] == []
    assert repaired.exit_code == 1, "rows were lost: the user has to re-ingest"
    assert report["lost"].get("documents", 0) >= 1
    aside = Path(report["set_aside"])
    assert aside.exists() and aside != db_path  # the damaged file is kept, never deleted
    recovered = 60 - report["documents"]
    assert 1 <= recovered <= 10  # one page of documents, not the table

    settings = Settings.load(home=ragtune_home)
    with KnowledgeBase("d", settings, embedder=embedder) as kb:
        assert kb.store.check() == []
        docs = kb.documents()
        for doc in docs:  # what came back is exactly what was committed
            assert kb.store.document_text(doc.id) == texts[doc.id]
            assert [v.event for v in kb.store.versions(doc.id)] == ["added"]
            assert doc.version == 1 and doc.chunks == len(kb.store.chunks_of(doc.id))
        stats = kb.store.stats()
        assert stats.vectors == stats.chunks
        # re-ingesting the sources brings back the documents of the damaged page, only them
        again = kb.ingest([tmp_path / "corpus"])
        assert (again.added, again.unchanged, again.failed) == (60 - len(docs), len(docs), [])
    hits = cli("search", "procedure number 7", "--kb", "d", "--json")
    assert hits.exit_code == 0 and json.loads(hits.stdout)["hits"]
    assert cli("kb", "check", "--kb", "d").exit_code == 0


def test_index_damage_loses_nothing_and_inconsistency_is_mended_in_place(
        tmp_path: Path, ragtune_home: Path) -> None:
    write_corpus(tmp_path / "corpus", 30)
    assert cli("ingest", str(tmp_path / "corpus"), "--kb", "i").exit_code == 0
    db_path = ragtune_home / "kb" / "i" / "store.sqlite"
    smash(db_path, pages_of(db_path, "chunks_doc", "leaf")[:1])  # an index: derived data
    assert json.loads(cli("kb", "check", "--kb", "i", "--json").stdout)["problems"]
    repaired = cli("kb", "check", "--kb", "i", "--repair", "--json")
    report = json.loads(repaired.stdout)
    assert repaired.exit_code == 0, repaired.stderr
    assert (report["documents"], report["lost"], report["remaining"]) == (30, {}, [])

    # a logical fault (chunks whose document row is gone) is mended without a new file
    with sqlite3.connect(db_path) as db:
        db.execute("PRAGMA foreign_keys=OFF")
        db.execute("DELETE FROM documents WHERE id = 'corpus/topic007.md'")
    found = json.loads(cli("kb", "check", "--kb", "i", "--json").stdout)["problems"]
    assert any("chunks without a document" in p for p in found)
    mended = cli("kb", "check", "--kb", "i", "--repair", "--json")
    report = json.loads(mended.stdout)
    assert mended.exit_code == 0, mended.stderr
    assert (report["action"], report["documents"], report["set_aside"]) == ("reindexed", 29, None)


def test_unreadable_file_one_line_error_and_repair_says_what_is_lost(
        tmp_path: Path, ragtune_home: Path) -> None:
    write_corpus(tmp_path / "corpus", 5)
    assert cli("ingest", str(tmp_path / "corpus"), "--kb", "h").exit_code == 0
    db_path = ragtune_home / "kb" / "h" / "store.sqlite"
    with db_path.open("r+b") as fh:
        fh.write(b"\x00garbage" * 12)  # the file header
    for command in ("docs", "list"), ("search", "topic"), ("ingest", str(tmp_path / "corpus")):
        result = cli(*command, "--kb", "h", "--json")  # --json: no progress bar
        lines = error_lines(result.stderr)
        assert result.exit_code == 1 and len(lines) == 1, result.stderr
        assert str(db_path) in lines[0] and "corrupt" in lines[0]
    repaired = cli("kb", "check", "--kb", "h", "--repair", "--json")
    report = json.loads(repaired.stdout)
    assert repaired.exit_code == 1
    assert "documents" in report["unreadable"] and report["documents"] == 0
    assert Path(report["set_aside"]).read_bytes()[:8] == b"\x00garbage"  # kept as it was
    assert cli("ingest", str(tmp_path / "corpus"), "--kb", "h").exit_code == 0
    assert cli("kb", "check", "--kb", "h").exit_code == 0


# --- a full disk and a read-only home, for real --------------------------------------------------

@dataclass
class Step:
    rc: int
    stdout: str
    stderr: str


def in_mount_namespace(tmp_path: Path, commands: list[str]) -> list[Step]:
    """Run shell `commands` in order in a mount namespace of their own (where this process
    may mount a tmpfs); each one's exit status and output."""
    if shutil.which("unshare") is None or subprocess.run(
            ["unshare", "-rm", "true"], capture_output=True).returncode != 0:
        pytest.skip("no mount namespaces here (unshare -rm)")
    out = tmp_path / "steps"
    out.mkdir()
    script = "\n".join(f"( {c} ) >{out}/{i}.out 2>{out}/{i}.err; echo $? >{out}/{i}.rc"
                       for i, c in enumerate(commands))
    subprocess.run(["unshare", "-rm", "bash", "-c", script], check=True, timeout=900)
    return [Step(int((out / f"{i}.rc").read_text()), (out / f"{i}.out").read_text(),
                 (out / f"{i}.err").read_text()) for i in range(len(commands))]


def write_rows(path: Path, prefix: str, n: int) -> Path:
    with path.open("w", encoding="utf-8") as fh:
        for i in range(n):
            text = f"Entry {prefix}{i} records the measurement {i} of sample {prefix}. " * 8
            fh.write(json.dumps({"_id": f"{prefix}{i}", "title": f"{prefix} {i}",
                                 "text": text}) + "\n")
    return path


def ragtune_cmd(*args: str) -> str:
    return shlex.join([sys.executable, "-m", "ragtune", *args])


def test_disk_full_mid_ingest_loses_nothing_committed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "small-disk"
    home.mkdir()
    first = write_rows(tmp_path / "first.jsonl", "a", 20)
    big = write_rows(tmp_path / "big.jsonl", "b", 300)
    monkeypatch.setenv("RAGTUNE_HOME", str(home))  # the namespace's commands inherit it
    steps = in_mount_namespace(tmp_path, [
        f"mount -t tmpfs -o size=2m tmpfs {home}",
        ragtune_cmd("ingest", str(first), "--kb", "k", "--json"),
        ragtune_cmd("ingest", str(big), "--kb", "k", "--json"),
        ragtune_cmd("kb", "check", "--kb", "k", "--json"),
        ragtune_cmd("docs", "list", "--kb", "k", "--json"),
        f"mount -o remount,size=64m {home}",
        ragtune_cmd("ingest", str(big), "--kb", "k", "--json"),
        ragtune_cmd("kb", "check", "--kb", "k", "--json"),
    ])
    assert steps[0].rc == 0, steps[0].stderr
    assert steps[1].rc == 0, steps[1].stderr
    full = steps[2]
    assert full.rc == 1
    lines = error_lines(full.stderr)
    assert len(lines) == 1, full.stderr
    assert "store.sqlite: disk full" in lines[0]
    assert "nothing of this write was committed" in lines[0]
    assert steps[3].rc == 0 and json.loads(steps[3].stdout)["problems"] == []
    ids = {d["id"] for d in json.loads(steps[4].stdout)["documents"]}
    assert {f"a{i}" for i in range(20)} <= ids  # everything committed before is there
    landed = len(ids) - 20
    assert 0 <= landed < 300, "the disk must fill mid-batch"
    resumed = json.loads(steps[6].stdout)
    assert steps[6].rc == 0, steps[6].stderr
    assert (resumed["added"], resumed["unchanged"]) == (300 - landed, landed)
    assert json.loads(steps[7].stdout)["problems"] == []


def test_read_only_home_reads_work_and_writes_fail_in_one_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "ro-home"
    home.mkdir()
    rows = write_rows(tmp_path / "rows.jsonl", "r", 12)
    more = write_rows(tmp_path / "more.jsonl", "m", 3)
    monkeypatch.setenv("RAGTUNE_HOME", str(home))
    steps = in_mount_namespace(tmp_path, [
        f"mount -t tmpfs -o size=64m tmpfs {home}",
        ragtune_cmd("ingest", str(rows), "--kb", "k", "--json"),
        f"mount -o remount,ro {home}",
        ragtune_cmd("search", "measurement 3", "--kb", "k", "--json"),
        ragtune_cmd("docs", "list", "--kb", "k", "--json"),
        ragtune_cmd("ingest", str(more), "--kb", "k", "--json"),
        ragtune_cmd("ingest", str(more), "--kb", "new", "--json"),
        ragtune_cmd("kb", "check", "--kb", "k", "--json"),
        f"mount -o remount,rw {home}",
        ragtune_cmd("ingest", str(more), "--kb", "k", "--json"),
    ])
    assert steps[1].rc == 0, steps[1].stderr
    assert steps[3].rc == 0, steps[3].stderr
    assert json.loads(steps[3].stdout)["hits"][0]["doc_id"] == "r3"
    assert len(json.loads(steps[4].stdout)["documents"]) == 12
    for step in steps[5], steps[6]:
        lines = error_lines(step.stderr)
        assert step.rc == 1 and len(lines) == 1, step.stderr
        assert "read-only" in lines[0] and str(home) in lines[0]
    assert steps[7].rc == 0 and json.loads(steps[7].stdout)["problems"] == []
    after = json.loads(steps[9].stdout)
    assert steps[9].rc == 0 and after["added"] == 3
