"""Finding the lab reports in a data home, and which of them a caller may see.

`ragtune compare` and `ragtune demo` write each lab into `<home>/labs/<name>/` (`lab.json`,
`report.html`, `report.md`). A lab over grouped documents shows their passages and scores, so it
is seen exactly like its documents (`ragtune.access`): by callers that may read its groups.

    >>> [r.name for r in visible_reports(settings.home, Access.of(["support"]))]
    ['demo', 'support-lab']
    >>> report = find_report(settings.home, "demo", access)   # None: missing or not visible
    >>> report.data()["recommendation"]
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ragtune.access import OPERATOR, Access
from ragtune.lab.checklist import LAB_FILE

LABS_FOLDER = "labs"  # under the data home
REPORT_FILE = "report.html"


@dataclass(frozen=True)
class LabReport:
    """One lab folder that holds a report, with what its `lab.json` says about it."""

    name: str
    folder: Path
    experiment: Any
    created_at: Any
    groups: tuple[str, ...]
    recommendation: Any
    architectures: list[str]

    @classmethod
    def read(cls, folder: Path) -> LabReport:
        """The report in `folder` (which holds `lab.json` and `report.html`)."""
        data = json.loads((folder / LAB_FILE).read_text(encoding="utf-8"))
        exp = data.get("experiment", {})
        return cls(name=folder.name, folder=folder, experiment=exp.get("name"),
                   created_at=data.get("created_at"), groups=tuple(exp.get("groups", [])),
                   recommendation=data.get("recommendation", {}).get("recommendation"),
                   architectures=data.get("order", []))

    @property
    def data_path(self) -> Path:
        """The lab's measurements (`lab.json`)."""
        return self.folder / LAB_FILE

    def data(self) -> dict[str, Any]:
        """The lab's measurements, as `ragtune compare` wrote them."""
        data: dict[str, Any] = json.loads(self.data_path.read_text(encoding="utf-8"))
        return data

    def html(self) -> str:
        """The self-contained HTML report."""
        return (self.folder / REPORT_FILE).read_text(encoding="utf-8")

    def to_dict(self) -> dict[str, Any]:
        """The summary a listing shows (`GET /v1/reports`)."""
        return {"name": self.name, "experiment": self.experiment,
                "created_at": self.created_at, "groups": list(self.groups),
                "recommendation": self.recommendation, "architectures": self.architectures}


def lab_folders(home: Path) -> dict[str, Path]:
    """Lab folders under `<home>/labs` that hold a report, by name (sorted)."""
    folder = home / LABS_FOLDER
    if not folder.is_dir():
        return {}
    return {p.name: p for p in sorted(folder.iterdir())
            if (p / LAB_FILE).is_file() and (p / REPORT_FILE).is_file()}


def visible_reports(home: Path, access: Access | None = None) -> list[LabReport]:
    """The reports the caller may see (`access=None`: the operator, who sees all)."""
    access = access or OPERATOR
    reports = [LabReport.read(folder) for folder in lab_folders(home).values()]
    return [r for r in reports if access.may_read(r.groups)]


def find_report(home: Path, name: str, access: Access | None = None) -> LabReport | None:
    """The report called `name`, or None when there is none or the caller may not see it
    (the same answer, so a hidden report cannot be told from a missing one)."""
    folder = lab_folders(home).get(name)
    if folder is None:
        return None
    report = LabReport.read(folder)
    return report if (access or OPERATOR).may_read(report.groups) else None
