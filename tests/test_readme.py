"""The README tour tells the truth: every tour command followed by `#>` lines is run on the
shipped sample (`examples/sample-kb`, the bundled models) and what it prints must match them.

`...` in a `#>` line stands for anything (times, long JSON); whitespace is ignored, so JSON
written on one line in the README matches the indented JSON the command prints."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ragtune.cli import app

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]


def tour() -> list[tuple[str, list[str]]]:
    """(command, expected lines) for each tour command that shows its output."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    block = text.split("## A five-minute tour", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    lines = re.sub(r"\\\n\s*", " ", block).splitlines()  # continued commands joined
    steps: list[tuple[str, list[str]]] = []
    for line in lines:
        if line.startswith("ragtune "):
            steps.append((line.strip(), []))
        elif line.startswith("#> ") and steps:
            steps[-1][1].append(line[3:])
    return [(command, shown) for command, shown in steps if shown]


def matches(expected: list[str], output: str) -> bool:
    """The expected lines, in order, in the output (whitespace ignored, `...` any text)."""
    squeeze = re.compile(r"\s+")
    pattern = ".*?".join(
        ".*?".join(re.escape(squeeze.sub("", part)) for part in line.split("..."))
        for line in expected)
    return re.search(pattern, squeeze.sub("", output), re.DOTALL) is not None


def test_the_tour_has_outputs_to_check() -> None:
    commands = [c for c, _ in tour()]
    assert any(c.startswith("ragtune ingest examples/sample-kb") for c in commands)
    assert any('ragtune ask "How quickly must a Sev1 page be acknowledged?"' in c
               for c in commands)
    assert matches(["a ... c"], "a b\nc") and not matches(["a", "c"], "c a")


def test_the_readme_tour_prints_what_it_shows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    runner = CliRunner()
    for command, expected in tour():
        args = shlex.split(command, comments=True)[1:]
        result = runner.invoke(app, args)
        assert result.exit_code == 0, f"{command}\n{result.output}"
        assert matches(expected, result.output), (
            f"{command}\nREADME shows:\n" + "\n".join(expected) + f"\nit prints:\n{result.output}")
