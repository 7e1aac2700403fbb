"""The layers contract (pyproject.toml, `[tool.importlinter]`) holds, and it would catch a break.

`lint-imports` runs on the installed tree; the second test copies the package, adds one upward
import inside a function (the kind that hid the old cycles), and checks the contract names it.
The complexity limits (ruff C901 and PLR0915) are checked the same way on `src/`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def lint_imports(cwd: Path, pythonpath: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    return subprocess.run([str(BIN / "lint-imports"), "--no-cache"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_layers_contract_is_kept():
    result = lint_imports(ROOT, ROOT / "src")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


def test_an_upward_import_inside_a_function_breaks_the_contract(tmp_path):
    shutil.copytree(ROOT / "src" / "ragtune", tmp_path / "src" / "ragtune",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    records = tmp_path / "src" / "ragtune" / "documents" / "records.py"
    records.write_text(records.read_text(encoding="utf-8") + (
        "\n\ndef _wrong() -> object:\n"
        "    from ragtune.service.app import create_app\n\n"
        "    return create_app\n"), encoding="utf-8")
    result = lint_imports(tmp_path, tmp_path / "src")
    assert result.returncode != 0
    assert "ragtune layers BROKEN" in result.stdout
    assert "ragtune.documents.records -> ragtune.service.app" in result.stdout


def test_functions_in_src_stay_under_the_complexity_limits():
    result = subprocess.run(
        [str(BIN / "ruff"), "check", "--select", "C901,PLR0915", "--output-format", "concise",
         "src"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
