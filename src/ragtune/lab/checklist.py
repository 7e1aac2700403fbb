"""The decision checklist behind `ragtune assess`: RAG, fine-tuning, a hybrid, or neither.

Nine questions about the workload score two needs: a *knowledge* need (answers depend on facts
that change, must be sourced, audited) and a *behaviour* need (a stable task whose format or
style prompting cannot hold). Where the lab measured the architectures on the user's own
questions, the measurement decides among the architectures the answers allow, and the reasons
quote the numbers.

    >>> answers = load_answers(Path("examples/checklists/hybrid.yaml"))
    >>> result = assess(answers, load_evidence(Path("runs/lab")))
    >>> result.recommendation, result.reasons[0]
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from ragtune import architectures
from ragtune.architectures import Recommendation
from ragtune.errors import InputError
from ragtune.lab.result import LAB_FILE, ArchMetrics, LabResult, read_json

UpdateFrequency = Literal["daily", "weekly", "monthly", "rarely"]
MainChallenge = Literal["knowledge", "behaviour", "both", "neither"]

KNOWLEDGE_MAX = 7
BEHAVIOUR_MAX = 5
STRONG = 3  # a need scoring at least this is strong
FRESH = ("daily", "weekly")  # update frequencies that make baked-in facts stale
LOW_RECALL = 0.7
LOW_FAITHFULNESS = 0.5
TIE_MARGIN = 0.05
# (knowledge need strong, behaviour need strong) → what the checklist alone recommends.
_BY_NEEDS: dict[tuple[bool, bool], Recommendation] = {
    (True, True): "hybrid", (True, False): "rag", (False, True): "fine-tune",
    (False, False): "neither",
}
# Metrics assess reads; in evidence files they must be numbers or null.
USED_METRICS = (
    "correct", "freshness_after", "format_valid", "schema_valid", "faithfulness",
    "refusal_correct", "recall@k", "consistency", "latency_ms_p50", "prompt_tokens",
    "training_seconds",
)
_LABELS = {"correct": "correct", "freshness_after": "freshness", "format_valid": "format valid",
           "refusal_correct": "refusal correct"}


class ChecklistAnswers(BaseModel):
    """The answers to `QUESTIONS`, one field per question key (YAML: `key: value`).

    >>> ChecklistAnswers(changing_knowledge=True, tied_to_sources=True, update_frequency="weekly",
    ...                  internal_documents=True, auditability=False, stable_task_pattern=True,
    ...                  structure_matters=False, prompting_inconsistent_or_costly=False,
    ...                  main_challenge="knowledge")
    """

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    changing_knowledge: bool
    tied_to_sources: bool
    update_frequency: UpdateFrequency
    internal_documents: bool
    auditability: bool
    stable_task_pattern: bool
    structure_matters: bool
    prompting_inconsistent_or_costly: bool
    main_challenge: MainChallenge


@dataclass(frozen=True)
class Choice:
    """One answer to a question: the value stored and the label shown."""

    value: bool | str
    label: str


@dataclass(frozen=True)
class Question:
    """One checklist question: its key in the answers file, its text, its choices in order."""

    key: str
    text: str
    choices: tuple[Choice, ...]


_YES_NO = (Choice(True, "yes"), Choice(False, "no"))

QUESTIONS: tuple[Question, ...] = (
    Question("changing_knowledge",
             "Do answers need knowledge that changes (prices, policies, product facts) at the "
             "moment they are given?", _YES_NO),
    Question("tied_to_sources",
             "Must answers be tied to the sources they came from (citations a reader can "
             "check)?", _YES_NO),
    Question("update_frequency", "How often does that information change?",
             (Choice("daily", "daily"), Choice("weekly", "weekly"),
              Choice("monthly", "monthly"), Choice("rarely", "rarely or never"))),
    Question("internal_documents",
             "Is it built on your internal documents or records (not general knowledge)?",
             _YES_NO),
    Question("auditability",
             "Must you be able to audit an answer afterwards (which document, which version)?",
             _YES_NO),
    Question("stable_task_pattern",
             "Is the task pattern stable (the same kind of input and output, month after "
             "month)?", _YES_NO),
    Question("structure_matters",
             "Does the output's structure or style matter a lot (a strict format, labels, "
             "tone)?", _YES_NO),
    Question("prompting_inconsistent_or_costly",
             "Is prompting alone inconsistent or too costly (format slips, long prompts full "
             "of examples)?", _YES_NO),
    Question("main_challenge",
             "What is the main challenge: keeping knowledge fresh, or getting the behaviour "
             "right?",
             (Choice("knowledge", "knowledge: current, sourced facts"),
              Choice("behaviour", "behaviour: format, style, task pattern"),
              Choice("both", "both"), Choice("neither", "neither"))),
)


def interview(read_line: Callable[[], str], write: Callable[[str], None]) -> ChecklistAnswers:
    """Ask `QUESTIONS` one by one with numbered choices; an answer is the number of a choice.

    Anything else (an empty line included: there is no default) is refused and the question is
    asked again. `read_line` returns "" at the end of input (Ctrl-D), which stops with an
    `InputError`.

    >>> interview(sys.stdin.readline, sys.stderr.write)
    """
    values: dict[str, bool | str] = {}
    for number, question in enumerate(QUESTIONS, 1):
        write(f"\n{number}/{len(QUESTIONS)} {question.text}\n")
        by_number = {str(i): c for i, c in enumerate(question.choices, 1)}
        for i, choice in by_number.items():
            write(f"  {i}) {choice.label}\n")
        while True:
            write(f"answer 1-{len(by_number)}: ")
            line = read_line()
            if not line:
                write("\n")
                raise InputError(f"checklist not finished: no answer to {question.key} "
                                 "(end of input)")
            chosen = by_number.get(line.strip())
            if chosen is not None:
                values[question.key] = chosen.value
                break
            write(f"{line.strip()!r} is not one of the choices: type a number from 1 to "
                  f"{len(by_number)} and press Enter\n")
    return ChecklistAnswers.model_validate(values)


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice (PyYAML keeps the last one silently)."""


def _construct_unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode,
                              deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            duplicate = key in seen
        except TypeError:  # unhashable: construct_mapping reports it
            continue
        if duplicate:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} is given twice", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
                                 _construct_unique_mapping)


def load_answers(path: Path) -> ChecklistAnswers:
    """Read checklist answers from a YAML file (`key: value` for every question).

    Every problem is an `InputError` that names the file and the keys: all missing keys,
    unknown keys, values of the wrong type or outside the allowed ones (listed), a file that is
    not a mapping, YAML syntax errors (with the line).

    >>> load_answers(Path("examples/checklists/rag-first.yaml")).update_frequency
    'weekly'
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader: no arbitrary objects
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise InputError(f"{path}: not valid YAML{where}: {exc.problem or exc.context}") \
            from None
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: not valid YAML: {exc}") from None
    keys = ", ".join(ChecklistAnswers.model_fields)
    if data is None:
        raise InputError(f"{path}: empty; expected the checklist's keys: {keys}")
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a mapping of checklist keys to answers "
                         f"({keys}), got a YAML {type(data).__name__}")
    try:
        return ChecklistAnswers.model_validate(data)
    except ValidationError as exc:
        raise InputError(f"{path}: {'; '.join(_answer_problems(exc))}") from None


def _answer_problems(exc: ValidationError) -> list[str]:
    """One phrase per problem: missing keys together, then unknown keys, then bad values."""
    fields = ChecklistAnswers.model_fields
    missing: list[str] = []
    unknown: list[str] = []
    bad: dict[str, str] = {}
    for error in exc.errors():
        key = str(error["loc"][0]) if error["loc"] else ""
        if error["type"] == "missing":
            missing.append(key)
        elif error["type"] == "extra_forbidden":
            close = difflib.get_close_matches(key, fields, n=1)
            unknown.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        elif key in fields and key not in bad:
            allowed = get_args(fields[key].annotation)
            want = ("true or false (yes/no)" if not allowed
                    else "one of " + ", ".join(allowed))
            bad[key] = f"{key} must be {want}, got {error['input']!r}"
    problems = []
    if missing:
        problems.append(f"missing key{'s' if len(missing) > 1 else ''}: {', '.join(missing)}")
    if unknown:
        problems.append(f"unknown key{'s' if len(unknown) > 1 else ''}: {', '.join(unknown)}")
    return problems + list(bad.values())


@dataclass
class Evidence:
    """Measured numbers that can decide the recommendation (all optional).

    `retrieval_recall`, `faithfulness` and `refusal_correct` are those of the retrieving
    architecture; `archs` holds each measured architecture's metrics (base, rag, rag+schema,
    tuned, hybrid: correct, freshness_after, format_valid, refusal_correct, ...); `source` says
    which file or folder they came from.
    """

    retrieval_recall: float | None = None
    faithfulness: float | None = None
    refusal_correct: float | None = None
    archs: dict[str, dict[str, float | None]] = field(default_factory=dict)
    source: str | None = None


def load_evidence(path: Path) -> Evidence:
    """Measurements from an evaluation run folder (`ragtune eval --out`: summary.json and
    config.json), a lab folder holding lab.json (`ragtune compare`), or a lab.json file.

    >>> load_evidence(Path("runs/lab")).archs["hybrid"]["correct"]
    """
    path = Path(path)
    if path.is_dir():
        if (path / "summary.json").is_file() and (path / "config.json").is_file():
            return _eval_run_evidence(path)
        if (path / LAB_FILE).is_file():
            return _lab_evidence(path / LAB_FILE)
        raise InputError(f"{path}: not evidence: expected an evaluation run folder "
                         "(summary.json and config.json, from `ragtune eval --out`) or a lab "
                         f"folder holding {LAB_FILE} (from `ragtune compare`)")
    if path.is_file():
        return _lab_evidence(path)
    raise InputError(f"{path}: no such file or folder")


def _metrics(raw: Any, where: str) -> dict[str, float | None]:
    """Numeric metrics (null kept as None); schema_valid is the format_valid of a run."""
    if not isinstance(raw, dict):
        raise InputError(f"{where} must be a mapping of metric names to numbers")
    metrics: dict[str, float | None] = {}
    for name, value in raw.items():
        if value is None or (isinstance(value, int | float) and not isinstance(value, bool)):
            metrics[str(name)] = None if value is None else float(value)
        elif name in USED_METRICS:
            raise InputError(f"{where}: metric {name!r} must be a number or null, "
                             f"got {value!r}")
    if "schema_valid" in metrics and metrics.get("format_valid") is None:
        metrics["format_valid"] = metrics["schema_valid"]
    return metrics


def _eval_run_evidence(folder: Path) -> Evidence:
    config = read_json(folder / "config.json")
    summary = read_json(folder / "summary.json")
    if not isinstance(config, dict) or not isinstance(config.get("arch"), str):
        raise InputError(f"{folder / 'config.json'}: no 'arch' (the architecture evaluated)")
    if not isinstance(summary, dict) or "metrics" not in summary:
        raise InputError(f"{folder / 'summary.json'}: no 'metrics'")
    metrics = _metrics(summary["metrics"], f"{folder / 'summary.json'}: metrics")
    return Evidence(retrieval_recall=metrics.get("recall@k"),
                    faithfulness=metrics.get("faithfulness"),
                    refusal_correct=metrics.get("refusal_correct"),
                    archs={config["arch"]: metrics}, source=str(folder))


def _lab_evidence(path: Path) -> Evidence:
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("architectures"), dict):
        raise InputError(f"{path}: not a {LAB_FILE}: no 'architectures' mapping")
    lab = LabResult.read(data, str(path))
    if not lab.architectures:
        raise InputError(f"{path}: 'architectures' is empty: nothing was measured")
    return lab_evidence({name: a.metrics for name, a in lab.architectures.items()}, str(path))


def lab_evidence(metrics: Mapping[str, ArchMetrics], source: str) -> Evidence:
    """Evidence from a lab's metrics per architecture (`compare` decides with the numbers
    `load_evidence` reads back from its lab.json). The retrieval numbers are those of the
    first measured architecture that retrieves without an adapter (rag, else rag+schema)."""
    archs = {name: _metrics(m.to_dict(), f"{source}: architectures.{name}.metrics")
             for name, m in metrics.items()}
    prompted = [archs[a] for a in architectures.retrieving()
                if not architectures.get(a).uses_adapter and archs.get(a)]
    rag = prompted[0] if prompted else {}
    return Evidence(retrieval_recall=rag.get("recall@k"), faithfulness=rag.get("faithfulness"),
                    refusal_correct=rag.get("refusal_correct"), archs=archs, source=source)


@dataclass
class Assessment:
    """What `assess` recommends and why.

    `reasons` are sentences naming the answers (and measured numbers) that decided it;
    `warnings` name wrong reasons to choose it; `scores` are the two needs' scores;
    `decided_by` lists the measured numbers that decided it ({"metric", "arch", "value"}),
    empty when nothing measured decided it.
    """

    recommendation: Recommendation
    reasons: list[str]
    warnings: list[str]
    scores: dict[str, int]
    decided_by: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The `ragtune assess --json` document."""
        return asdict(self)


def assess(answers: ChecklistAnswers | None, evidence: Evidence | None = None) -> Assessment:
    """Recommend rag, fine-tune, hybrid or neither from the checklist answers, letting measured
    evidence decide among the architectures the answers allow.

    Knowledge need: changing_knowledge + tied_to_sources + internal_documents + auditability +
    (update_frequency daily or weekly) + 2 if main_challenge is knowledge or both. Behaviour
    need: stable_task_pattern + structure_matters + prompting_inconsistent_or_costly + 2 if
    main_challenge is behaviour or both. A need scoring 3 or more is strong: both strong →
    hybrid, knowledge → rag, behaviour → fine-tune, none → neither.

    >>> assess(load_answers(Path("examples/checklists/neither.yaml"))).recommendation
    'neither'

    Without answers (`None`: a lab run given no checklist), the measurements alone decide:
    every measured architecture is compared on correct + freshness + format valid + refusal
    correct, the cheaper one winning a tie.
    """
    if answers is None:
        return _assess_measured(evidence)
    knowledge = _knowledge_factors(answers)
    behaviour = _behaviour_factors(answers)
    k_score = sum(points for _, _, points in knowledge)
    b_score = sum(points for _, _, points in behaviour)
    k_strong, b_strong = k_score >= STRONG, b_score >= STRONG
    checklist = _BY_NEEDS[(k_strong, b_strong)]
    reasons = [
        _need_sentence("knowledge", KNOWLEDGE_MAX, knowledge),
        _need_sentence("behaviour", BEHAVIOUR_MAX, behaviour),
        _CHECKLIST_SENTENCES[checklist],
    ]
    recommendation = checklist
    decided_by: list[dict[str, Any]] = []
    warnings: list[str] = []
    if evidence is not None:
        summary = _evidence_summary(evidence)
        if summary:
            reasons.append(summary)
        decision = _decide_by_measurement(evidence, k_strong, b_strong)
        reasons += decision.reasons
        warnings += decision.warnings
        decided_by = decision.decided_by
        if decision.winner is not None:
            recommendation = architectures.get(decision.winner).recommendation
            if recommendation != checklist:
                reasons.append(f"The answers alone point to {checklist}, but the measurement "
                               f"picks {decision.winner} ({recommendation}): the measured "
                               "result wins.")
    warnings = _wrong_reason_warnings(answers, recommendation, k_strong, b_strong, evidence) \
        + warnings + _evidence_warnings(recommendation, [f for f in knowledge if f[2]], evidence)
    return Assessment(recommendation, reasons, warnings,
                      {"knowledge": k_score, "behaviour": b_score}, decided_by)


def _assess_measured(evidence: Evidence | None) -> Assessment:
    if evidence is None or len(evidence.archs) < 2:
        raise InputError("assess needs the checklist answers, or measurements of two or more "
                         "architectures to decide from alone")
    reasons = ["No checklist was given: the recommendation is decided from the measurements "
               "alone, on every measured architecture (a knowledge or behaviour need would "
               "rule some out; answer the checklist to weigh them)."]
    summary = _evidence_summary(evidence)
    if summary:
        reasons.append(summary)
    # an architecture that answered nothing right is not an answer, however well it refuses or
    # formats: it competes only when none did better
    wrong = [a for a, m in evidence.archs.items() if not m.get("correct")]
    if wrong and len(wrong) < len(evidence.archs):
        reasons.append(f"{_join(sorted(wrong))} answered none of the answerable evaluation "
                       "questions correctly, so "
                       + ("it is" if len(wrong) == 1 else "they are")
                       + " not compared (refusing and formatting well do not make an answer).")
        evidence = replace(evidence, archs={a: m for a, m in evidence.archs.items()
                                            if a not in wrong})
    decision = _decide_by_measurement(evidence, False, False, used=list(MEASURED_ALONE))
    if len(evidence.archs) == 1:  # the only one that answered anything right
        decision.winner = next(iter(evidence.archs))
        decision.reasons = [f"{decision.winner} is the only architecture that answered "
                            "correctly."]
        decision.decided_by = [{"metric": m, "arch": decision.winner,
                                "value": evidence.archs[decision.winner].get(m)}
                               for m in MEASURED_ALONE]
    if decision.winner is None:
        raise InputError("the measurements could not decide: no architecture was measured on "
                         "the metrics compared")
    recommendation = architectures.get(decision.winner).recommendation
    return Assessment(recommendation, reasons + decision.reasons,
                      decision.warnings + _evidence_warnings(recommendation, [], evidence), {},
                      decision.decided_by)


MEASURED_ALONE = ("correct", "freshness_after", "format_valid", "refusal_correct")
Factor = tuple[str, str, int]  # (answer key, what the answer says, points it adds)


def _factor(key: str, counts: bool, yes: str, no: str, points: int = 1) -> Factor:
    return (key, yes, points) if counts else (key, no, 0)


def _challenge(a: ChecklistAnswers, need: str) -> Factor:
    counts = a.main_challenge in (need, "both")
    named = "both knowledge and behaviour" if a.main_challenge == "both" else a.main_challenge
    return _factor("main_challenge", counts, f"you named {named} as the main challenge",
                   f"the main challenge is {a.main_challenge}", 2)


def _knowledge_factors(a: ChecklistAnswers) -> list[Factor]:
    """Every knowledge answer, scoring or not (points 0), with what it says."""
    return [
        _factor("changing_knowledge", a.changing_knowledge, "answers need knowledge that changes",
                "answers need no changing knowledge"),
        _factor("tied_to_sources", a.tied_to_sources, "answers must be tied to their sources",
                "answers need not cite sources"),
        _factor("update_frequency", a.update_frequency in FRESH,
                f"the information changes {a.update_frequency}",
                "the information rarely changes" if a.update_frequency == "rarely"
                else f"the information changes only {a.update_frequency}"),
        _factor("internal_documents", a.internal_documents,
                "it is built on internal documents or records",
                "it is not built on internal documents"),
        _factor("auditability", a.auditability, "answers must be auditable",
                "answers need no audit trail"),
        _challenge(a, "knowledge"),
    ]


def _behaviour_factors(a: ChecklistAnswers) -> list[Factor]:
    """Every behaviour answer, scoring or not (points 0), with what it says."""
    return [
        _factor("stable_task_pattern", a.stable_task_pattern, "the task pattern is stable",
                "the task pattern is not stable"),
        _factor("structure_matters", a.structure_matters,
                "the output's structure or style matters a lot",
                "the output's structure or style does not matter much"),
        _factor("prompting_inconsistent_or_costly", a.prompting_inconsistent_or_costly,
                "prompting alone is inconsistent or too costly",
                "prompting alone works well enough"),
        _challenge(a, "behaviour"),
    ]


def _join(phrases: list[str], last: str = "and") -> str:
    return phrases[0] if len(phrases) == 1 else f"{', '.join(phrases[:-1])} {last} {phrases[-1]}"


def _need_sentence(need: str, most: int, factors: list[Factor]) -> str:
    """A strong need names the answers that made it; a weak one also those that did not."""
    score = sum(points for _, _, points in factors)
    said = [f"{text} ({key})" for key, text, points in factors if points]
    not_said = [f"{text} ({key})" for key, text, points in factors if not points]
    if score >= STRONG:
        return f"The {need} need is strong ({score} of {most}): {_join(said)}."
    if said:
        return (f"The {need} need is weak ({score} of {most}, strong from {STRONG}): "
                f"{_join(said)}, but {_join(not_said)}.")
    return f"The {need} need is weak (0 of {most}): {_join(not_said)}."


_CHECKLIST_SENTENCES: dict[Recommendation, str] = {
    "rag": "From the answers: RAG. Keep the knowledge in a searchable store and retrieve it at "
           "answer time: a changed document is live at the next question, answers cite their "
           "sources, and no model is trained.",
    "fine-tune": "From the answers: fine-tune. Train a LoRA adapter on examples of the task so "
                 "the model holds its pattern and format without long prompts; no facts need "
                 "to stay fresh, so the training data does not go stale.",
    "hybrid": "From the answers: hybrid. Retrieve the facts at answer time (current and "
              "citable) and train an adapter for the behaviour (format, style): the documents "
              "say what to answer, the adapter how.",
    "neither": "From the answers: neither retrieval nor fine-tuning yet. Use prompting and "
               "orchestration first: better instructions, few-shot examples in the prompt, "
               "constrained decoding to a JSON schema (--schema), and tools; build retrieval or "
               "train a model only when these measurably fall short.",
}

@dataclass
class _Decision:
    winner: str | None = None
    reasons: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    decided_by: list[dict[str, Any]] = field(default_factory=list)


def _num(value: float | None) -> str:
    return "not measured" if value is None else f"{value:.2f}"


def _evidence_summary(evidence: Evidence) -> str:
    measured = [f"{label} {value:.2f}" for label, value in (
        ("retrieval recall@k", evidence.retrieval_recall),
        ("faithfulness", evidence.faithfulness),
        ("refusal correct", evidence.refusal_correct)) if value is not None]
    if not measured:
        return ""
    return (f"Measured for the retrieving architecture ({evidence.source or 'evidence'}): "
            f"{_join(measured)}.")


def _decide_by_measurement(evidence: Evidence, k_strong: bool, b_strong: bool,
                           used: list[str] | None = None) -> _Decision:
    """Score each measured architecture the answers allow and pick the best, preferring the
    cheaper one within `TIE_MARGIN`; `used` overrides the metrics the needs choose."""
    decision = _Decision()
    cost_order = architectures.by_cost()  # cheapest first
    known = [a for a in cost_order if a in evidence.archs]
    unknown = sorted(set(evidence.archs) - set(known))
    if unknown:
        decision.warnings.append(
            f"Measured architecture(s) {', '.join(unknown)} left out of the comparison: assess "
            f"compares {', '.join(cost_order)}.")
    # A strong knowledge need rules out architectures that do not retrieve: their facts are
    # whatever the weights hold, with nothing to cite.
    allowed = [a for a in known if architectures.get(a).retrieves or not k_strong]
    ruled_out = [a for a in known if a not in allowed]
    if ruled_out:
        decision.reasons.append(
            f"{_join(ruled_out)} "
            + ("was measured but not compared: it does not" if len(ruled_out) == 1 else
               "were measured but not compared: they do not")
            + " retrieve, and the knowledge need is strong.")
    if len(allowed) < 2:
        if known:
            measured = f"only {allowed[0]}" if allowed else "none"
            decision.reasons.append(
                f"The evidence measured {measured} of the architectures the answers allow, so "
                "it cannot choose between architectures; compare two or more with `ragtune "
                "compare`.")
        return decision
    used = used or ["correct"] + (["freshness_after"] if k_strong else []) \
        + (["format_valid"] if b_strong else []) + ["refusal_correct"]
    scores = {a: sum(evidence.archs[a].get(m) or 0.0 for m in used) for a in allowed}
    ranked = sorted(allowed, key=lambda a: (-scores[a], cost_order.index(a)))
    top = ranked[0]
    close = [a for a in allowed if scores[a] >= scores[top] - TIE_MARGIN - 1e-9]
    winner = min(close, key=cost_order.index)

    def parts(arch: str) -> str:
        return ", ".join(f"{_LABELS[m]} {_num(evidence.archs[arch].get(m))}" for m in used)

    others = "; ".join(f"{a} {scores[a]:.2f}" for a in ranked[1:])
    decision.reasons.append(
        f"Measured on your questions ({evidence.source or 'evidence'}), scoring "
        f"{' + '.join(_LABELS[m] for m in used)}: {top}: {parts(top)} — best score "
        f"{scores[top]:.2f}; {others}.")
    chosen = architectures.get(winner)
    if winner != top:
        cost = evidence.archs[top].get("training_seconds")
        decision.reasons.append(
            f"{winner} ({parts(winner)}) scores {scores[winner]:.2f}, within {TIE_MARGIN} of "
            f"{top}'s {scores[top]:.2f}, and is cheaper — {chosen.cheaper_because}"
            + (f" ({top} took {cost:.0f} s of training)" if cost else "")
            + f" — so {winner} is chosen.")
    if chosen.constrained:
        decision.reasons.append("Recommendation rag, with constrained decoding, no training: "
                                "answer from retrieval and force the output format with a "
                                "JSON schema (--schema).")
    for arch in dict.fromkeys([winner, top]):
        decision.decided_by += [{"metric": m, "arch": arch, "value": evidence.archs[arch].get(m)}
                                for m in used]
    decision.decided_by += [{"metric": "score", "arch": a, "value": round(scores[a], 4)}
                            for a in ranked]
    decision.winner = winner
    return decision


def _wrong_reason_warnings(a: ChecklistAnswers, recommendation: Recommendation, k_strong: bool,
                           b_strong: bool, evidence: Evidence | None) -> list[str]:
    """Warnings about choosing the recommendation for the wrong reasons."""
    warnings = []
    trains = recommendation in ("fine-tune", "hybrid")
    changing = ([f"the information changes {a.update_frequency} (update_frequency)"]
                if a.update_frequency in FRESH else []) \
        + (["answers need knowledge that changes (changing_knowledge)"]
           if a.changing_knowledge else [])
    if trains and changing:
        warnings.append(f"Facts baked into weights go stale: {_join(changing)}, so every "
                        "change would mean retraining; keep facts in retrieval and train the "
                        "adapter only on behaviour (format, style).")
    retrieval_measured = evidence is not None and (
        evidence.retrieval_recall is not None
        or any(r in evidence.archs for r in architectures.retrieving()))
    if (trains or k_strong) and not retrieval_measured:
        warnings.append("Retrieval was not measured: fine-tuning because RAG underperforms is "
                        "only justified once retrieval was measured; run ragtune eval / "
                        "ragtune compare on your own questions and pass --evidence.")
    if recommendation == "rag" and a.main_challenge == "behaviour":
        warnings.append("RAG does not fix a behaviour problem: you named behaviour as the main "
                        "challenge (main_challenge), and retrieval changes what the model knows, "
                        "not how it answers; hold the format with constrained decoding "
                        "(--schema) or examples, or train an adapter.")
    sourced = ([] if not a.tied_to_sources else ["answers must be tied to their sources "
                                                 "(tied_to_sources)"]) \
        + ([] if not a.auditability else ["answers must be auditable (auditability)"])
    if recommendation == "fine-tune" and sourced:
        warnings.append(f"A fine-tuned model cannot cite its sources, yet {_join(sourced)}: it "
                        "answers from its weights with no document to point to; keep "
                        "retrieval for anything that must be cited.")
    if not a.stable_task_pattern and (trains or b_strong):
        warnings.append("An unstable task pattern makes training data go stale: the task "
                        "pattern is not stable (stable_task_pattern: no), so today's examples "
                        "will not describe next month's task; stay with prompting until it "
                        "settles, or budget for retraining.")
    return warnings


def _evidence_warnings(recommendation: Recommendation, knowledge: list[Factor],
                       evidence: Evidence | None) -> list[str]:
    """Warnings from measured numbers that say the measurement itself is not ready."""
    if evidence is None:
        return []
    warnings = []
    recall = evidence.retrieval_recall
    if recall is not None and recall < LOW_RECALL:
        text = (f"Retrieval recall@k is {recall:.2f}: fix retrieval and chunking before "
                f"training (the right passage is missing from the prompt for {1 - recall:.0%} "
                "of the questions).")
        if recommendation == "fine-tune" and knowledge:
            text += (" RAG was not fairly measured, so it cannot justify fine-tuning for "
                     f"knowledge ({', '.join(key for key, _, _ in knowledge)}).")
        warnings.append(text)
    faithful = evidence.faithfulness
    if faithful is not None and faithful < LOW_FAITHFULNESS:
        warnings.append(f"Faithfulness is {faithful:.2f}: fewer than half of the answers are "
                        "supported by the retrieved passages; fix the prompt, the refusal "
                        "thresholds or retrieval before judging the architecture.")
    return warnings
