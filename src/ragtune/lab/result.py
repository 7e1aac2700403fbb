"""What `ragtune compare` measured: the typed result of `Lab.run()`, written as `lab.json`.

    >>> lab = load_lab(Path("runs/lab/lab.json"))
    >>> lab.recommendation.recommendation, lab.architectures["rag"].metrics.correct
    ('hybrid', 0.55)
    >>> lab.to_dict()                      # the lab.json document, key for key

Every reader of a lab (the report, the checklist's evidence, the CLI, the service) goes through
these models. A `lab.json` written by an older or newer ragtune still loads: every field has a
default (a missing one is left out again by `to_dict`), and unknown keys are kept as they were.
A value of the wrong type is an `InputError` naming where it is.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from ragtune.errors import InputError

LAB_FILE = "lab.json"


class _Record(BaseModel):
    """A part of a lab result: unknown keys kept (a newer ragtune's), fields set by alias."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)


class LabExperiment(_Record):
    """What was run: the experiment, its knowledge base, the split and the budgets."""

    name: str | None = None
    file: str | None = None
    kb: str | None = None
    documents: int | None = None
    groups: list[str] = Field(default_factory=list)  # the documents' access groups
    eval_cases: int | None = None
    paraphrases: int | None = None
    seed: int | None = None
    split: dict[str, int] = Field(default_factory=dict)
    split_by: str | None = None  # "phrasings" or "questions" (`Split.describe`)
    task: str | None = None
    answer_schema: dict[str, Any] | None = Field(None, alias="schema")
    train_examples: dict[str, int] = Field(default_factory=dict)
    budgets: dict[str, Any] = Field(default_factory=dict)
    generator: str | None = None
    notes: list[str] = Field(default_factory=list)
    prepared: list[str] = Field(default_factory=list)  # what the lab made, not given it
    plan: dict[str, Any] | None = None  # the estimate announced before the run (`Plan`)


class DecidedBy(_Record):
    """One measured number that decided the recommendation."""

    metric: str = ""
    arch: str = ""
    value: float | None = None


class LabRecommendation(_Record):
    """The checklist's answer with the measurements (`ragtune assess --json`'s shape)."""

    recommendation: str | None = None
    reasons: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    scores: dict[str, int] = Field(default_factory=dict)
    decided_by: list[DecidedBy] = Field(default_factory=list)


class ArchMetrics(_Record):
    """One architecture's measurements on the evaluation questions (None: not measured)."""

    correct: float | None = None
    faithfulness: float | None = None
    citation_accuracy: float | None = None
    format_valid: float | None = None
    refusal_correct: float | None = None
    false_refusal_rate: float | None = None
    recall_at_k: float | None = Field(None, alias="recall@k")
    freshness_before: float | None = None
    freshness_after: float | None = None
    stale_after: float | None = None
    consistency: float | None = None
    latency_ms_p50: float | None = None
    latency_ms_p95: float | None = None
    prompt_tokens: float | None = None
    output_tokens: float | None = None
    training_seconds: float | None = None
    adapter_stale: bool | None = None
    change_cost_seconds: float | None = None
    change_cost: str | None = None
    adapter_stale_documents: list[str] | None = None  # only for an architecture with an adapter

    @field_validator("*", mode="before")
    @classmethod
    def _numbers_are_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        """A metric that is a number must be one (not a string, not a bool) or null."""
        name = info.field_name or ""
        if cls.model_fields[name].annotation == float | None and not (
                value is None or isinstance(value, int | float) and not isinstance(value, bool)):
            alias = cls.model_fields[name].alias or name
            raise ValueError(f"metric {alias!r} must be a number or null, got {value!r}")
        return value

    def get(self, name: str) -> Any:
        """A metric by its name in lab.json ("recall@k", "correct", ...), for tables that
        list metrics by name; None when it was not measured."""
        return self.to_dict().get(name)

    def to_dict(self) -> dict[str, Any]:
        """The metrics that were given, by their lab.json names."""
        return self.model_dump(by_alias=True, exclude_unset=True)


class ArchResult(_Record):
    """One architecture: what it is, what it measured, why its failed cases failed."""

    description: str | None = None
    metrics: ArchMetrics
    failure_causes: dict[str, int] = Field(default_factory=dict)


class Freshness(_Record):
    """The freshness probe: the change set applied, the re-sync it took."""

    changed_documents: list[str] = Field(default_factory=list)
    questions: int | None = None
    resync_seconds: float | None = None
    resync: dict[str, int | float] | None = None  # the re-sync's counts (with a change set)
    synthetic: bool = False  # the lab made the change set (`ragtune.lab.freshness`)
    edits: list[dict[str, Any]] = Field(default_factory=list)  # its edits (`Edit.to_dict`)


class Stage(_Record):
    """One timed stage of the run."""

    stage: str = ""
    seconds: float | None = None


class CasePassage(_Record):
    """A passage an architecture was given, as the drill-down shows it."""

    n: int | None = None
    doc_id: str = ""
    title: str = ""
    text: str = ""


class CaseAnswer(_Record):
    """One architecture's answer to one case, judged."""

    answer: str = ""
    raw_output: str = ""
    refused: bool = False
    refusal_reason: str | None = None
    correct: bool | None = None
    format_valid: bool | None = None
    cited_docs: list[str] = Field(default_factory=list)
    cause: str | None = None
    latency_ms: float | None = None
    passages: list[CasePassage] = Field(default_factory=list)


class LabCase(_Record):
    """One question (evaluation, paraphrase or freshness) and every architecture's answer."""

    id: str = ""
    kind: str = ""
    question: str = ""
    answers: list[str] = Field(default_factory=list)
    gold_doc_ids: list[str] = Field(default_factory=list)
    by_arch: dict[str, CaseAnswer] = Field(default_factory=dict)


class LabResult(_Record):
    """A whole `compare` run: what `Lab.run()` returns and `lab.json` holds."""

    ragtune: str | None = None
    created_at: str | None = None
    experiment: LabExperiment = Field(default_factory=LabExperiment)
    recommendation: LabRecommendation = Field(default_factory=LabRecommendation)
    checklist: dict[str, Any] = Field(default_factory=dict)  # the checklist answers
    order: list[str] = Field(default_factory=list)  # the architectures, as compared
    architectures: dict[str, ArchResult] = Field(default_factory=dict)
    freshness: Freshness = Field(default_factory=Freshness)
    retrieval_levers: dict[str, Any] | None = None  # `RetrievalTuning.to_dict()`
    stages: list[Stage] = Field(default_factory=list)
    cases: list[LabCase] = Field(default_factory=list)
    seconds: float | None = None

    @property
    def columns(self) -> list[str]:
        """The architectures in the comparison's order (as stored when no order was saved)."""
        return list(self.order) or list(self.architectures)

    def to_dict(self) -> dict[str, Any]:
        """The lab.json document: the fields that were set, in their order, then unknown keys."""
        return self.model_dump(by_alias=True, exclude_unset=True)

    @classmethod
    def read(cls, data: LabResult | Mapping[str, Any], source: str = "lab") -> LabResult:
        """A result as given, or read from a lab.json document; `source` names it in errors."""
        if isinstance(data, LabResult):
            return data
        if not isinstance(data, Mapping):
            raise InputError(f"{source}: not a {LAB_FILE}: expected a JSON object, "
                             f"got {type(data).__name__}")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise InputError(f"{source}: {'; '.join(_problems(exc))}") from None


def _problems(exc: ValidationError) -> list[str]:
    """One phrase per problem, with where it is: `architectures.rag.metrics: metric 'correct'
    must be a number or null, got 'high'`."""
    out = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"])
        if error["type"] == "value_error":  # ours: the message names the field
            parent = ".".join(str(p) for p in error["loc"][:-1])
            out.append(f"{parent}: {error['ctx']['error']}")
        else:
            out.append(f"{where}: {error['msg']}")
    return out


def read_json(path: Path) -> Any:
    """A JSON file's content; an `InputError` naming the file when it cannot be read."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None


def load_lab(path: Path) -> LabResult:
    """A lab.json file (`ragtune compare` writes one beside its report)."""
    return LabResult.read(read_json(path), str(path))
