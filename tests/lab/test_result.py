"""`LabResult`: the typed `Lab.run()` result reads the lab.json files compare wrote before it
existed, writes them back key for key, and names what is wrong in a bad one."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from ragtune.errors import InputError
from ragtune.lab.checklist import ChecklistAnswers, assess, load_evidence
from ragtune.lab.report import render_html, render_markdown, write_report
from ragtune.lab.result import LabResult, load_lab

# Written by `ragtune compare` (ragtune 0.1.0, before the result was typed) on a slice of the
# bundled sample (tests/lab/test_compare.py's), its cases cut to four.
OLD = Path(__file__).parent / "data" / "lab-0.1.0.json"


def _dump(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def test_an_old_lab_json_loads_and_writes_back_byte_for_byte() -> None:
    text = OLD.read_text(encoding="utf-8")
    raw = json.loads(text)
    lab = load_lab(OLD)
    assert _dump(lab.to_dict()) == text
    assert lab.order == raw["order"] == ["base", "rag", "rag+schema", "tuned", "hybrid"]
    assert lab.recommendation.recommendation == raw["recommendation"]["recommendation"]
    assert lab.experiment.answer_schema == raw["experiment"]["schema"]
    rag = lab.architectures["rag"].metrics
    assert rag.recall_at_k == rag.get("recall@k") == raw["architectures"]["rag"]["metrics"][
        "recall@k"]
    tuned = lab.architectures["tuned"].metrics
    assert tuned.adapter_stale_documents == raw["architectures"]["tuned"]["metrics"][
        "adapter_stale_documents"]
    assert "adapter_stale_documents" not in lab.architectures["rag"].metrics.to_dict()
    assert lab.freshness.resync == raw["freshness"]["resync"]
    case = lab.cases[0]
    assert case.by_arch["rag"].passages[0].text == raw["cases"][0]["by_arch"]["rag"][
        "passages"][0]["text"]


def test_the_report_renders_a_result_as_it_renders_the_document(tmp_path: Path) -> None:
    lab, raw = load_lab(OLD), json.loads(OLD.read_text(encoding="utf-8"))
    assert render_html(lab) == render_html(raw)
    assert render_markdown(lab) == render_markdown(raw)
    paths = write_report(lab, tmp_path / "out")
    assert paths["json"].read_text(encoding="utf-8") == OLD.read_text(encoding="utf-8")


def test_the_lab_as_evidence_decides_as_compare_did() -> None:
    lab = load_lab(OLD)
    again = assess(ChecklistAnswers.model_validate(lab.checklist), load_evidence(OLD))
    assert again.recommendation == lab.recommendation.recommendation
    assert again.decided_by == [d.model_dump() for d in lab.recommendation.decided_by]


@pytest.mark.parametrize("data", [
    {},
    {"architectures": {"rag+schema": {"metrics": {"recall@k": 0.6}}, "hybrid": {"metrics": {}}}},
    {"ragtune": "test", "experiment": {"name": "acme lab", "groups": ["acme"]},
     "recommendation": {"recommendation": "rag"}, "order": ["rag", "base"],
     "architectures": {"rag": {"metrics": {"correct": 0.8, "recall@k": 0.9}},
                       "base": {"metrics": {"correct": 0.3, "future_metric": "x"}}},
     "cases": [{"by_arch": {"rag": {}}}], "from_a_newer_ragtune": {"a": [1, 2]}},
])
def test_a_partial_or_newer_lab_keeps_exactly_what_it_had(data: dict[str, Any]) -> None:
    lab = LabResult.read(data)
    assert lab.to_dict() == data
    assert LabResult.read(lab) is lab


@pytest.mark.parametrize(("data", "problem"), [
    ({"architectures": {"rag": {"metrics": {"correct": "high"}}}},
     "lab.json: architectures.rag.metrics: metric 'correct' must be a number or null, "
     "got 'high'"),
    ({"architectures": {"rag": {"metrics": {"recall@k": True}}}},
     "metric 'recall@k' must be a number or null, got True"),
    ({"architectures": {"rag": {"description": "no metrics"}}},
     "architectures.rag.metrics: Field required"),
    ({"experiment": {"groups": "acme"}}, "experiment.groups: Input should be a valid list"),
    ([1, 2], "lab.json: not a lab.json: expected a JSON object, got list"),
])
def test_a_value_of_the_wrong_type_names_where_it_is(data: Any, problem: str) -> None:
    with pytest.raises(InputError, match=re.escape(problem)):
        LabResult.read(data, "lab.json")
