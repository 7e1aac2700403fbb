"""`ragtune assess`: the checklist, its files, the warnings, evidence that decides, and the
interactive questions on a real terminal."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ragtune.cli import app
from ragtune.errors import InputError
from ragtune.lab.checklist import (
    QUESTIONS,
    ChecklistAnswers,
    Evidence,
    assess,
    load_answers,
    load_evidence,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "checklists"
runner = CliRunner()

# The hybrid example's answers, as the base the tests vary.
HYBRID = {
    "changing_knowledge": True, "tied_to_sources": True, "update_frequency": "weekly",
    "internal_documents": True, "auditability": True, "stable_task_pattern": True,
    "structure_matters": True, "prompting_inconsistent_or_costly": True, "main_challenge": "both",
}


def run(*args: str) -> Any:
    return runner.invoke(app, list(args))


def write_yaml(path: Path, answers: dict[str, Any]) -> Path:
    lines = [f"{k}: {json.dumps(v)}" for k, v in answers.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_lab(folder: Path, metrics: dict[str, dict[str, float | None]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lab = {"architectures": {arch: {"metrics": m} for arch, m in metrics.items()}}
    (folder / "lab.json").write_text(json.dumps(lab), encoding="utf-8")
    return folder


def assess_json(*args: str) -> dict[str, Any]:
    result = run("assess", *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_questions_are_the_answer_fields_in_order() -> None:
    assert [q.key for q in QUESTIONS] == list(ChecklistAnswers.model_fields)
    assert all(len(q.choices) >= 2 and q.text.endswith("?") for q in QUESTIONS)
    assert [c.value for c in QUESTIONS[2].choices] == ["daily", "weekly", "monthly", "rarely"]
    assert [c.value for c in QUESTIONS[-1].choices] == ["knowledge", "behaviour", "both",
                                                       "neither"]


@pytest.mark.parametrize(("name", "recommendation", "scores", "named"), [
    ("rag-first", "rag", {"knowledge": 6, "behaviour": 1},
     ["changing_knowledge", "tied_to_sources", "update_frequency", "main_challenge"]),
    ("fine-tune-first", "fine-tune", {"knowledge": 0, "behaviour": 5},
     ["stable_task_pattern", "structure_matters", "prompting_inconsistent_or_costly"]),
    ("hybrid", "hybrid", {"knowledge": 7, "behaviour": 5},
     ["changing_knowledge", "auditability", "structure_matters", "main_challenge"]),
    ("neither", "neither", {"knowledge": 0, "behaviour": 1},
     ["changing_knowledge", "prompting_inconsistent_or_costly", "main_challenge"]),
])
def test_example_checklists(name: str, recommendation: str, scores: dict[str, int],
                            named: list[str]) -> None:
    path = EXAMPLES / f"{name}.yaml"
    assert path.read_text(encoding="utf-8").startswith("# Workflow: ")
    data = assess_json("--answers", str(path))
    assert set(data) == {"recommendation", "reasons", "warnings", "scores", "decided_by"}
    assert data["recommendation"] == recommendation
    assert data["scores"] == scores
    assert data["decided_by"] == []
    reasons = " ".join(data["reasons"])
    assert all(key in reasons for key in named), reasons
    if recommendation == "neither":
        assert data["warnings"] == []
        assert "few-shot examples" in reasons and "constrained decoding" in reasons
    else:  # nothing was measured: every other recommendation warns about that
        assert any("only justified once retrieval was measured" in w for w in data["warnings"])
    human = run("assess", "--answers", str(path))
    assert human.exit_code == 0
    assert human.stdout.splitlines()[0] == f"Recommendation: {recommendation}"
    assert human.stdout.index("Why:") < human.stdout.index(data["reasons"][0])


@pytest.mark.parametrize(("content", "expected"), [
    ({k: v for k, v in HYBRID.items() if k not in ("auditability", "main_challenge")},
     ["missing keys: auditability, main_challenge"]),
    (HYBRID | {"auditibility": True}, ["unknown key: 'auditibility'", "auditability"]),
    (HYBRID | {"update_frequency": "hourly"},
     ["update_frequency must be one of daily, weekly, monthly, rarely, got 'hourly'"]),
    (HYBRID | {"main_challenge": "speed"}, ["main_challenge must be one of knowledge"]),
    (HYBRID | {"structure_matters": "very"}, ["structure_matters must be true or false"]),
    (HYBRID | {"tied_to_sources": 1}, ["tied_to_sources must be true or false", "got 1"]),
    ("changing_knowledge: [true\nauditability: yes\n", ["not valid YAML at line 2"]),
    ("- changing_knowledge\n- auditability\n", ["expected a mapping", "got a YAML list"]),
    ("auditability: yes\nauditability: no\n", ["'auditability' is given twice"]),
    ("", ["empty", "changing_knowledge"]),
])
def test_bad_answer_files_exit_1_with_one_line(tmp_path: Path, content: Any,
                                               expected: list[str]) -> None:
    path = tmp_path / "answers.yaml"
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        write_yaml(path, content)
    result = run("assess", "--answers", str(path), "--json")
    assert result.exit_code == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(path) in lines[0]
    for text in expected:
        assert text in lines[0]


def test_missing_answers_file_and_no_terminal() -> None:
    missing = run("assess", "--answers", "nope.yaml")
    assert missing.exit_code == 1 and "nope.yaml: no such file" in missing.stderr
    no_tty = run("assess", "--json")  # the runner's stdin is not a terminal
    assert no_tty.exit_code == 1
    assert no_tty.stderr.strip() == "error no terminal: pass --answers FILE"


def test_fine_tune_with_daily_updates_warns_facts_go_stale(tmp_path: Path) -> None:
    answers = HYBRID | {"changing_knowledge": False, "tied_to_sources": False,
                        "update_frequency": "daily", "internal_documents": False,
                        "auditability": False, "main_challenge": "behaviour"}
    data = assess_json("--answers", str(write_yaml(tmp_path / "a.yaml", answers)))
    assert data["recommendation"] == "fine-tune"
    stale = [w for w in data["warnings"] if "facts baked into weights go stale" in w.lower()]
    assert len(stale) == 1 and "daily (update_frequency)" in stale[0]
    assert "changing_knowledge" not in stale[0]  # it was answered no
    monthly = assess(ChecklistAnswers(**answers | {"update_frequency": "monthly"}))
    assert not any("go stale" in w for w in monthly.warnings)


def test_rag_for_a_behaviour_problem_warns(tmp_path: Path) -> None:
    answers = HYBRID | {"stable_task_pattern": False, "structure_matters": False,
                        "prompting_inconsistent_or_costly": False, "main_challenge": "behaviour"}
    data = assess_json("--answers", str(write_yaml(tmp_path / "a.yaml", answers)))
    assert data["recommendation"] == "rag"
    assert data["scores"] == {"knowledge": 5, "behaviour": 2}
    assert any(w.startswith("RAG does not fix a behaviour problem") and "main_challenge" in w
               for w in data["warnings"])


def test_fine_tune_that_must_cite_and_an_unstable_task_warn() -> None:
    answers = ChecklistAnswers(**HYBRID | {
        "changing_knowledge": False, "update_frequency": "rarely", "internal_documents": False,
        "auditability": False, "stable_task_pattern": False, "main_challenge": "behaviour"})
    result = assess(answers)
    assert result.recommendation == "fine-tune"
    assert result.scores == {"knowledge": 1, "behaviour": 4}
    text = " ".join(result.warnings)
    assert "cannot cite its sources" in text and "tied_to_sources" in text
    assert "unstable task pattern makes training data go stale" in text.lower()
    stable = assess(answers.model_copy(update={"stable_task_pattern": True,
                                               "tied_to_sources": False}))
    assert not any("cite" in w or "unstable" in w.lower() for w in stable.warnings)


def eval_run(folder: Path, arch: str, metrics: dict[str, float | None]) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"arch": arch, "k": 5}), encoding="utf-8")
    (folder / "summary.json").write_text(json.dumps({"cases": 20, "metrics": metrics}),
                                         encoding="utf-8")
    return folder


def test_eval_run_with_low_recall_says_fix_retrieval_first(tmp_path: Path) -> None:
    run_dir = eval_run(tmp_path / "run", "rag", {
        "recall@k": 0.45, "faithfulness": 0.4, "refusal_correct": 0.9, "correct": 0.5,
        "schema_valid": 0.75, "latency_ms_p50": 812.0})
    evidence = load_evidence(run_dir)
    assert (evidence.retrieval_recall, evidence.faithfulness) == (0.45, 0.4)
    assert evidence.archs["rag"]["format_valid"] == 0.75  # schema_valid is the format metric
    data = assess_json("--answers", str(EXAMPLES / "rag-first.yaml"), "--evidence", str(run_dir))
    assert data["recommendation"] == "rag" and data["decided_by"] == []
    warnings = " ".join(data["warnings"])
    assert "recall@k is 0.45: fix retrieval and chunking before training" in warnings
    assert "Faithfulness is 0.40" in warnings
    assert "only justified once retrieval was measured" not in warnings
    assert any("recall@k 0.45" in r for r in data["reasons"])
    assert any("cannot choose between architectures" in r for r in data["reasons"])
    good = eval_run(tmp_path / "good", "rag", {"recall@k": 0.9, "faithfulness": 0.8})
    assert not assess(load_answers(EXAMPLES / "rag-first.yaml"), load_evidence(good)).warnings


def test_low_recall_with_fine_tuning_for_knowledge_says_rag_was_not_fairly_measured() -> None:
    answers = ChecklistAnswers(**HYBRID | {"changing_knowledge": False, "tied_to_sources": False,
                                           "update_frequency": "rarely",
                                           "auditability": False,
                                           "main_challenge": "behaviour"})
    result = assess(answers, Evidence(retrieval_recall=0.5, source="run"))
    assert result.recommendation == "fine-tune"
    assert any("fix retrieval and chunking" in w and "not fairly measured" in w
               and "internal_documents" in w for w in result.warnings)


LAB = {
    "base": {"correct": 0.30, "freshness_after": 0.05, "format_valid": 0.40,
             "refusal_correct": 0.20},
    "rag": {"correct": 0.56, "freshness_after": 0.88, "format_valid": 0.60,
            "refusal_correct": 0.72, "recall@k": 0.92, "faithfulness": 0.81},
    "rag+schema": {"correct": 0.55, "freshness_after": 0.88, "format_valid": 0.97,
                   "refusal_correct": 0.70},
    # Tuned scores well on old facts, but it does not retrieve: with a strong knowledge need it
    # is not a candidate at all.
    "tuned": {"correct": 0.90, "freshness_after": 0.95, "format_valid": 0.99,
              "refusal_correct": 0.95, "training_seconds": 420.0},
    "hybrid": {"correct": 0.62, "freshness_after": 0.90, "format_valid": 0.98,
               "refusal_correct": 0.80, "training_seconds": 420.0,
               # compare also writes descriptive entries; assess reads only numbers
               "change_cost": "re-sync 3 documents", "adapter_stale": True},
}


def test_lab_evidence_where_hybrid_wins(tmp_path: Path) -> None:
    lab = write_lab(tmp_path / "lab", LAB)
    evidence = load_evidence(lab)
    assert evidence.retrieval_recall == 0.92 and evidence.source == str(lab / "lab.json")
    assert "change_cost" not in evidence.archs["hybrid"]
    only_schema = write_lab(tmp_path / "lab2", {"rag+schema": {"recall@k": 0.6}, "hybrid": {}})
    assert load_evidence(only_schema).retrieval_recall == 0.6
    assert load_evidence(lab / "lab.json").archs == evidence.archs
    data = assess_json("--answers", str(EXAMPLES / "hybrid.yaml"), "--evidence", str(lab))
    assert data["recommendation"] == "hybrid"
    decided = {(d["metric"], d["arch"]): d["value"] for d in data["decided_by"]}
    assert decided[("correct", "hybrid")] == 0.62
    assert decided[("freshness_after", "hybrid")] == 0.90
    assert decided[("format_valid", "hybrid")] == 0.98
    assert decided[("score", "hybrid")] == pytest.approx(3.30)
    assert decided[("score", "rag+schema")] == pytest.approx(3.10)
    assert ("score", "tuned") not in decided and ("score", "base") not in decided
    reasons = " ".join(data["reasons"])
    assert "hybrid: correct 0.62, freshness 0.90, format valid 0.98" in reasons
    assert "best score 3.30; rag+schema 3.10; rag 2.76" in reasons
    assert "base and tuned were measured but not compared" in reasons
    assert "only justified once retrieval was measured" not in " ".join(data["warnings"])


def test_lab_evidence_where_rag_schema_ties_hybrid_picks_rag(tmp_path: Path) -> None:
    tied = LAB | {"rag+schema": LAB["rag+schema"] | {"correct": 0.62, "refusal_correct": 0.80}}
    data = assess_json("--answers", str(EXAMPLES / "hybrid.yaml"), "--evidence",
                       str(write_lab(tmp_path / "lab", tied)))
    assert data["recommendation"] == "rag"
    reasons = " ".join(data["reasons"])
    assert "with constrained decoding, no training" in reasons
    assert "scores 3.27, within 0.05 of hybrid's 3.30" in reasons
    assert "The answers alone point to hybrid, but the measurement picks rag+schema" in reasons
    decided = {(d["metric"], d["arch"]): d["value"] for d in data["decided_by"]}
    assert decided[("correct", "rag+schema")] == 0.62
    assert decided[("score", "hybrid")] == pytest.approx(3.30)


def test_measurement_wins_over_the_checklist_within_what_the_answers_allow() -> None:
    evidence = Evidence(archs={a: dict(m) for a, m in LAB.items()}, source="lab.json")
    # A weak knowledge need lets the tuned model compete; here it measures best.
    ticket_routing = load_answers(EXAMPLES / "fine-tune-first.yaml")
    assert assess(ticket_routing, evidence).recommendation == "fine-tune"
    # With a strong knowledge need it is ruled out, however well it scored.
    support_bot = load_answers(EXAMPLES / "rag-first.yaml")
    result = assess(support_bot, evidence)
    assert result.recommendation == "hybrid"  # scored without format: rag 2.16, hybrid 2.32
    assert "The answers alone point to rag, but the measurement picks hybrid" in \
        " ".join(result.reasons)
    # The model alone wins a close call against anything that needs retrieval or training.
    base_close = Evidence(archs={"base": {"correct": 0.80, "refusal_correct": 0.9},
                                 "rag": {"correct": 0.82, "refusal_correct": 0.9}})
    assert assess(load_answers(EXAMPLES / "neither.yaml"), base_close).recommendation == "neither"


def test_bad_evidence_paths_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not evidence"):
        load_evidence(tmp_path)
    with pytest.raises(InputError, match="no such file or folder"):
        load_evidence(tmp_path / "nope")
    (tmp_path / "lab.json").write_text('{"architectures": {"rag": {"metrics": '
                                       '{"correct": "high"}}}}', encoding="utf-8")
    with pytest.raises(InputError, match=r"architectures.rag.metrics: metric 'correct'"):
        load_evidence(tmp_path)
    (tmp_path / "lab.json").write_text("{", encoding="utf-8")
    with pytest.raises(InputError, match="lab.json: not valid JSON"):
        load_evidence(tmp_path / "lab.json")
    result = run("assess", "--answers", str(EXAMPLES / "rag-first.yaml"), "--evidence",
                 str(tmp_path / "nope"))
    assert result.exit_code == 1 and str(tmp_path / "nope") in result.stderr


# --- the questions on a real terminal -----------------------------------------------------

def _start_on_a_terminal(*args: str) -> tuple[subprocess.Popen[bytes], int]:
    primary, secondary = os.openpty()
    env = os.environ | {"TERM": "dumb"}
    # A job started in the background by a non-interactive shell inherits SIGINT ignored, and
    # Python then installs no Ctrl-C handler: give the child the default disposition back.
    proc = subprocess.Popen([sys.executable, "-m", "ragtune", "assess", *args],
                            stdin=secondary, stdout=secondary, stderr=secondary, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    os.close(secondary)
    return proc, primary


def _read_until(fd: int, wanted: str, seen: list[str], timeout: float = 30.0) -> str:
    """Read the terminal until `wanted` appears after what was already consumed; returns the
    new text. At end of output (the child exited) returns what came."""
    deadline = time.monotonic() + timeout
    start = len("".join(seen))
    while wanted not in "".join(seen)[start:]:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            raise AssertionError(f"timed out waiting for {wanted!r}; got {''.join(seen)!r}")
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        seen.append(chunk.decode("utf-8", "replace"))
    return "".join(seen)[start:]


def test_interactive_questions_on_a_terminal_with_a_bad_answer_re_asked() -> None:
    proc, fd = _start_on_a_terminal()
    seen: list[str] = []
    try:
        # hybrid: yes, yes, weekly, yes, yes, yes, yes, yes, both
        answers = ["1", "1", "2", "1", "1", "1", "1", "1", "3"]
        first = _read_until(fd, "answer 1-2: ", seen)
        assert QUESTIONS[0].text in first and "1) yes" in first and "2) no" in first
        os.write(fd, b"7\n")
        again = _read_until(fd, "answer 1-2: ", seen)
        assert "'7' is not one of the choices" in again
        assert QUESTIONS[0].text not in again  # the same question, asked again
        os.write(fd, b"\n")  # Enter alone is not an answer either
        assert "'' is not one of the choices" in _read_until(fd, "answer 1-2: ", seen)
        for number, question in enumerate(QUESTIONS):
            if number:
                assert question.text in _read_until(fd, f"answer 1-{len(question.choices)}: ",
                                                    seen)
            os.write(fd, answers[number].encode() + b"\n")
        rest = _read_until(fd, "\x00never", seen)
        assert proc.wait(timeout=30) == 0, "".join(seen)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(fd)
    assert "Recommendation: hybrid" in rest
    assert rest.index("Recommendation: hybrid") < rest.index("Why:") < rest.index("Warnings:")


@pytest.mark.parametrize("stop", ["ctrl-d", "ctrl-c"])
def test_interactive_stopped_exits_1_with_one_line(stop: str) -> None:
    proc, fd = _start_on_a_terminal("--json")
    seen: list[str] = []
    try:
        _read_until(fd, "answer 1-2: ", seen)
        os.write(fd, b"2\n")
        _read_until(fd, "answer 1-2: ", seen)
        if stop == "ctrl-d":
            os.write(fd, b"\x04")  # end of input at the start of a line
        else:
            proc.send_signal(signal.SIGINT)
        rest = _read_until(fd, "\x00never", seen)
        assert proc.wait(timeout=30) == 1
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(fd)
    errors = [line for line in rest.splitlines() if line.startswith("error ")]
    expected = ("no answer to tied_to_sources" if stop == "ctrl-d"
                else "checklist cancelled (Ctrl-C)")
    assert len(errors) == 1 and expected in errors[0], rest
    assert "Traceback" not in rest and "{" not in rest
