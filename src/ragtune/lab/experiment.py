"""The experiment file of `ragtune compare`, its question sets, and the seeded split.

    >>> exp = load_experiment(Path("experiment.yaml"))
    >>> split = split_questions(exp.load_questions(), exp.split)
    >>> len(split.eval), len(split.tuned_training)

An experiment names the documents of its knowledge base, the question file (each question with
several phrasings, its reference answers and gold documents; no answers = unanswerable), the
change set of the freshness probe, the task's answer format (a JSON schema), the architectures
to compare and the budgets. Relative paths are read from the experiment file's folder.

Only the documents are required (`ragtune compare --docs DIR`): without questions the lab
generates a test set from them, without a change set it makes a synthetic one
(`ragtune.lab.freshness`), without a schema the task is the plain cited answer
(`DEFAULT_SCHEMA`: the answer and the documents it comes from), without a checklist the
measurements alone decide.

The split is seeded and keeps every evaluation question out of the training data. By phrasing
(`split.by: phrasings`, chosen by `auto` when every answerable question has
`train_phrasings + 1` phrasings):

- an answerable question lends `train_phrasings` of its phrasings to training (the closed-book
  pairs of `tuned`, and RAFT examples of `hybrid` from the first of them); another phrasing is
  the evaluation question, and one more the paraphrase the consistency check asks;
- every fact is thus seen in training (the fair test of teaching a model knowledge by
  fine-tuning, as in Ovadia et al. 2024), while no evaluation question is.

By question (`split.by: questions`, `auto`'s choice when some question has fewer phrasings, as
real user questions have one): `question_train_share` of the answerable questions train, the
rest are evaluated, so the tuned model never saw an evaluation question's fact (the honest
scenario for a team: tomorrow's questions are not in today's training data). The paraphrase is
the question's second phrasing, else a rewrite (`ragtune.lab.prepare.paraphrase`).

Either way, unanswerable questions are split whole: `unanswerable_train_share` of them teach the
refusal, the rest are evaluated (refusing must generalise to questions never seen).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from ragtune.architectures import get as architectures_get
from ragtune.architectures import names as architecture_names
from ragtune.cases import EvalCase
from ragtune.errors import InputError
from ragtune.jsonl import errors_found, parse_lines
from ragtune.text import normalize_words

SAMPLE_DIR = Path(__file__).parent / "sample"
SAMPLE_EXPERIMENT = SAMPLE_DIR / "experiment.yaml"
DEFAULT_SCHEMA = Path(__file__).parent / "cited-answer.json"  # the task when none is given
SplitBy = Literal["auto", "phrasings", "questions"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class KnowledgeBaseSpec(_Strict):
    name: str | None = Field(None, description="knowledge base the lab builds (in the current "
                             "home; default: the experiment's name)")
    documents: Path = Field(description="folder of documents to ingest")
    chunk_tokens: int | None = Field(None, gt=16, description="chunk size (default [chunking])")
    groups: list[str] = Field(default_factory=list, description="access groups of the "
                              "documents; the served report is shown only to keys holding one "
                              "(none: every key that may read)")


class ChangeSpec(_Strict):
    documents: Path = Field(description="folder of updated documents (replace same names)")
    questions: Path = Field(description="JSONL: question_id, doc_id, old_answers, new_answers")


class TaskSpec(_Strict):
    schema_file: Path = Field(DEFAULT_SCHEMA, alias="schema",
                              description="JSON schema of every answer (default: the plain "
                              "cited answer, `answer` and `sources`)")
    system: str = Field("Answer the question as JSON with the answer and its sources, or "
                        "the answer I don't know.",
                        description="the short system message adapters are trained with")


class SplitSpec(_Strict):
    seed: int = 0
    by: SplitBy = Field("auto", description="phrasings, questions, or auto: by phrasing when "
                        "every answerable question has train_phrasings + 1 of them")
    train_phrasings: int = Field(2, ge=1)
    question_train_share: float = Field(0.5, gt=0, lt=1, description="answerable questions "
                                        "that train when the split is by question")
    unanswerable_train_share: float = Field(0.5, ge=0, le=1)


class Budgets(_Strict):
    eval_cases: int | None = Field(None, gt=0, description="evaluation sample (all if unset)")
    consistency_cases: int | None = Field(None, ge=0, description="paraphrases asked (all "
                                          "answerable evaluation cases if unset)")
    hybrid_examples: int | None = Field(None, gt=0, description="RAFT examples (all if unset)")
    tuned_epochs: int = Field(3, gt=0)
    hybrid_epochs: int = Field(1, gt=0)
    train_batch_size: int = Field(16, gt=0)
    eval_batch_size: int = Field(8, gt=0, description="questions generated together")
    learning_rate: float = Field(2e-3, gt=0)
    lora_r: int = Field(16, gt=0)
    k: int = Field(3, gt=0, description="passages per retrieving answer")
    max_new_tokens: int = Field(48, gt=0)
    raft_distractors: int = Field(2, ge=0)


class Experiment(_Strict):
    """One `compare` run's definition (see the module docstring)."""

    name: str
    knowledge_base: KnowledgeBaseSpec
    questions: Path | None = Field(None, description="question file (default: a test set "
                                   "generated from the documents)")
    generated_questions: int | None = Field(None, gt=1, description="questions to generate "
                                            "when no question file is given (default: "
                                            "`ragtune.lab.prepare.default_question_count`)")
    training_data: Path | None = Field(None, description="the tuned adapter's own training "
                                       "file (chat or prompt/completion JSONL) instead of the "
                                       "closed-book pairs made from the training phrasings")
    changes: ChangeSpec | None = None
    synthetic_changes: int = Field(8, ge=0, description="facts the synthetic freshness probe "
                                   "rewrites when no change set is given (0: no probe)")
    task: TaskSpec = TaskSpec()
    architectures: list[str] = Field(default_factory=lambda: list(architecture_names()))
    split: SplitSpec = SplitSpec()
    budgets: Budgets = Budgets()
    checklist: Path | None = Field(None, description="`ragtune assess` answers (YAML) about "
                                   "the workload (none: the measurements alone decide)")
    path: Path | None = Field(None, exclude=True)

    @model_validator(mode="before")
    @classmethod
    def _named(cls, raw: Any) -> Any:
        """A minimal file names only its documents: the name is the folder's."""
        if isinstance(raw, dict) and "name" not in raw:
            docs = (raw.get("knowledge_base") or {}).get("documents") \
                if isinstance(raw.get("knowledge_base"), dict) else None
            if docs:
                raw = raw | {"name": experiment_name(Path(str(docs)))}
        return raw

    @property
    def kb_name(self) -> str:
        return self.knowledge_base.name or self.name

    def with_architecture(self, name: str) -> Experiment:
        """This experiment comparing `name` too, in the registry's order."""
        wanted = set(self.architectures) | {architectures_get(name).name}
        return self.model_copy(update={"architectures": [
            a for a in architecture_names() if a in wanted]})

    @field_validator("architectures")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        unknown = [a for a in value if a not in architecture_names()]
        if unknown or not value:
            raise ValueError(f"unknown architecture(s) {unknown}; choose from "
                             f"{', '.join(architecture_names())}")
        return list(dict.fromkeys(value))

    def resolve(self, path: Path) -> Path:
        """A path of the file, relative to the experiment file's folder."""
        base = self.path.parent if self.path is not None else Path.cwd()
        return path if path.is_absolute() else base / path

    def answer_schema(self) -> dict[str, Any]:
        from ragtune.models.constrained import load_schema

        return load_schema(self.resolve(self.task.schema_file))

    def load_questions(self) -> list[LabQuestion] | None:
        """The question file's questions; None when the lab generates them."""
        return None if self.questions is None else load_questions(self.resolve(self.questions))

    def load_changes(self) -> list[Change]:
        if self.changes is None:
            return []
        return load_changes(self.resolve(self.changes.questions))


def load_experiment(path: Path) -> Experiment:
    """Read and check an experiment file; every problem is one `InputError` naming it."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: not valid YAML ({exc})".replace("\n", " ")) from exc
    if not isinstance(raw, dict):
        raise InputError(f"{path}: expected a mapping of experiment settings")
    try:
        exp = Experiment.model_validate(raw)
    except ValidationError as exc:
        problems = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        raise InputError(f"{path}: {'; '.join(problems)}") from exc
    exp.path = path.resolve()
    for label, p in (("knowledge_base.documents", exp.knowledge_base.documents),
                     *((("questions", exp.questions),) if exp.questions else ()),
                     ("task.schema", exp.task.schema_file),
                     *((("training_data", exp.training_data),) if exp.training_data else ()),
                     *((("changes.documents", exp.changes.documents),
                        ("changes.questions", exp.changes.questions)) if exp.changes else ()),
                     *((("checklist", exp.checklist),) if exp.checklist else ())):
        if not exp.resolve(p).exists():
            raise InputError(f"{path}: {label}: {exp.resolve(p)} does not exist")
    return exp


def experiment_name(documents: Path) -> str:
    """A name for an experiment on a folder of documents: the folder's, as a slug."""
    name = "".join(c if c.isalnum() or c in "-_" else "-"
                   for c in documents.resolve().name.lower()).strip("-")
    return name or "documents"


@dataclass(frozen=True)
class LabQuestion:
    """A question with its phrasings, reference answers (none: unanswerable), gold documents."""

    id: str
    phrasings: tuple[str, ...]
    answers: tuple[str, ...]
    gold_doc_ids: tuple[str, ...]

    @property
    def answerable(self) -> bool:
        return bool(self.answers)

    def case(self, phrasing: str, kind: str, answers: tuple[str, ...] | None = None
             ) -> EvalCase:
        return EvalCase(question=phrasing, answers=self.answers if answers is None
                        else answers, gold_doc_ids=self.gold_doc_ids,
                        metadata={"kind": kind, "gold_doc_ids": list(self.gold_doc_ids)},
                        id=self.id)


def load_questions(path: Path) -> list[LabQuestion]:
    """JSONL rows `{"id", "phrasings": [...], "answers": [...], "gold_doc_ids": [...]}`
    (`question` + `paraphrases` is read as the phrasings too). Every bad line is reported."""
    records, errors = parse_lines(path, _parse_question)
    seen: dict[str, int] = {}
    for line, q in records:
        if q.id in seen:
            errors.append(f"{path}:{line}: id {q.id!r} repeats line {seen[q.id]}")
        seen.setdefault(q.id, line)
    if errors:
        raise errors_found(f"{path}: {len(errors)} bad question line(s)", errors)
    if not records:
        raise InputError(f"{path}: no questions")
    return [q for _, q in records]


def _parse_question(row: Any, where: str, line: int) -> LabQuestion:
    if not isinstance(row, dict):
        raise InputError(f"{where}: expected a JSON object")
    phrasings = row.get("phrasings") or (
        [row["question"], *row.get("paraphrases", [])] if "question" in row else [])
    if not isinstance(phrasings, list) or not phrasings or not all(
            isinstance(p, str) and p.strip() for p in phrasings):
        raise InputError(f"{where}: needs 'phrasings' (a list of non-empty strings)")
    answers, golds = row.get("answers", []), row.get("gold_doc_ids", [])
    if not isinstance(answers, list) or not isinstance(golds, list):
        raise InputError(f"{where}: 'answers' and 'gold_doc_ids' must be lists")
    return LabQuestion(str(row.get("id") or f"q{line}"), tuple(phrasings),
                       tuple(map(str, answers)), tuple(map(str, golds)))


@dataclass(frozen=True)
class Change:
    """One fact the change set replaces, and the question that asks for it."""

    question_id: str
    doc_id: str
    old_answers: tuple[str, ...]
    new_answers: tuple[str, ...]


def load_changes(path: Path) -> list[Change]:
    def parse(row: Any, where: str, line: int) -> Change:
        try:
            return Change(str(row["question_id"]), str(row["doc_id"]),
                          tuple(row["old_answers"]), tuple(row["new_answers"]))
        except (KeyError, TypeError) as exc:
            raise InputError(f"{where}: needs question_id, doc_id, old_answers and "
                             f"new_answers") from exc

    records, errors = parse_lines(path, parse)
    if errors:
        raise errors_found(f"{path}: {len(errors)} bad change line(s)", errors)
    return [c for _, c in records]


@dataclass
class Split:
    """Which phrasings train and which evaluate (see the module docstring)."""

    eval: list[EvalCase] = field(default_factory=list)
    paraphrases: list[EvalCase] = field(default_factory=list)  # same ids as their eval case
    tuned_training: list[EvalCase] = field(default_factory=list)
    hybrid_training: list[EvalCase] = field(default_factory=list)
    eval_phrasing: dict[str, str] = field(default_factory=dict)  # question id -> phrasing
    by: str = "phrasings"  # how it was split: "phrasings" or "questions"
    rewritten: int = 0  # paraphrases made by `paraphrase` (no second phrasing to ask)

    def to_dict(self) -> dict[str, int]:
        return {"eval": len(self.eval), "paraphrases": len(self.paraphrases),
                "tuned_training": len(self.tuned_training),
                "hybrid_training": len(self.hybrid_training)}

    def describe(self) -> str:
        """One sentence: how the split was made (the report states it)."""
        if self.by == "phrasings":
            return ("Split by phrasing: every answerable question lends phrasings to training "
                    "and is evaluated in another, so the tuned model saw every evaluated fact "
                    "(never the evaluation wording).")
        return ("Split by question: the questions have one phrasing, so the training questions "
                "and the evaluation questions are different questions; the tuned model never "
                "saw an evaluated fact, as tomorrow's user questions are not in today's "
                "training data.")


def split_by(questions: list[LabQuestion], spec: SplitSpec) -> str:
    """"phrasings" or "questions": the spec's choice, or auto's (see the module docstring)."""
    need = spec.train_phrasings + 1
    short = [q.id for q in questions if q.answerable and len(q.phrasings) < need]
    if spec.by == "phrasings" and short:
        raise InputError(f"answerable questions need at least {need} phrasings "
                         f"(train_phrasings + 1) to split by phrasing: {', '.join(short[:5])}; "
                         "split.by: questions (or auto) splits by question instead")
    if spec.by == "auto":
        return "questions" if short else "phrasings"
    return spec.by


def split_questions(questions: list[LabQuestion], spec: SplitSpec,
                    budgets: Budgets | None = None, keep: set[str] | None = None,
                    paraphrase: Callable[[str], str] | None = None) -> Split:
    """The seeded split; `budgets` samples the evaluation set (questions in `keep`, those the
    freshness probe needs, are sampled first) and the RAFT examples. `paraphrase` rewrites an
    evaluation question that has no second phrasing for the consistency check (none: such a
    question is not asked again)."""
    budgets = budgets or Budgets()
    rng = random.Random(spec.seed)
    by = split_by(questions, spec)
    answerable = [q for q in questions if q.answerable]
    unanswerable = [q for q in questions if not q.answerable]
    rng.shuffle(unanswerable)
    n_train = round(len(unanswerable) * spec.unanswerable_train_share)
    split = Split(by=by)
    eval_pool: list[tuple[LabQuestion, str, str | None]] = []
    if by == "questions":
        shuffled = list(answerable)
        rng.shuffle(shuffled)
        n_ans = min(len(shuffled) - 1, max(1, round(len(shuffled) * spec.question_train_share)))
        training = {q.id for q in shuffled[:n_ans]}
        for q in answerable:  # in the file's order
            if q.id in training:
                split.tuned_training += [q.case(p, "train") for p in q.phrasings]
                split.hybrid_training.append(q.case(q.phrasings[0], "train"))
            else:
                eval_pool.append((q, q.phrasings[0],
                                  q.phrasings[1] if len(q.phrasings) > 1 else None))
    else:
        for q in answerable:
            order = list(q.phrasings)
            rng.shuffle(order)
            train, rest = order[:spec.train_phrasings], order[spec.train_phrasings:]
            split.tuned_training += [q.case(p, "train") for p in train]
            split.hybrid_training.append(q.case(train[0], "train"))
            eval_pool.append((q, rest[0], rest[1] if len(rest) > 1 else None))
    for q in unanswerable[:n_train]:
        split.tuned_training += [q.case(p, "train") for p in q.phrasings[:spec.train_phrasings]]
        split.hybrid_training.append(q.case(q.phrasings[0], "train"))
    held_out = [(q, q.phrasings[0], q.phrasings[1] if len(q.phrasings) > 1 else None)
                for q in unanswerable[n_train:]]
    share = len(unanswerable) / len(questions)
    # own generators: the training sets must not depend on the evaluation budget (an adapter
    # trained once is reused when only the evaluation changes)
    chosen = _sample(eval_pool, held_out, budgets.eval_cases, share, keep or set(),
                     random.Random(f"{spec.seed}-eval"))
    for q, phrasing, _ in chosen:
        split.eval.append(q.case(phrasing, "eval"))
        split.eval_phrasing[q.id] = phrasing
    with_paraphrase = [(q, p) for q, _, p in chosen if q.answerable
                       and (p is not None or paraphrase is not None)]
    limit = budgets.consistency_cases
    for q, p in with_paraphrase[:len(with_paraphrase) if limit is None else limit]:
        if p is None and paraphrase is not None:
            p = paraphrase(split.eval_phrasing[q.id])
            split.rewritten += 1
        assert p is not None
        split.paraphrases.append(q.case(p, "paraphrase"))
    if budgets.hybrid_examples is not None and budgets.hybrid_examples < len(
            split.hybrid_training):
        split.hybrid_training = random.Random(f"{spec.seed}-raft").sample(
            split.hybrid_training, budgets.hybrid_examples)
    leaked = ({normalize_words(c.question) for c in split.eval + split.paraphrases}
              & {normalize_words(c.question) for c in split.tuned_training
                 + split.hybrid_training})
    if leaked:
        raise InputError(f"{len(leaked)} evaluation question(s) also appear in the training "
                         f"phrasings (e.g. {sorted(leaked)[0]!r}): make phrasings distinct")
    return split


def _sample(answerable: list[Any], unanswerable: list[Any], size: int | None, share: float,
            keep: set[str], rng: random.Random) -> list[Any]:
    """`size` evaluation questions, `share` of them unanswerable (the question file's share) as
    far as the held-out ones go; the questions in `keep` first. In the question file's order."""
    every = answerable + unanswerable
    if size is None or size >= len(every):
        return every
    n_unans = min(len(unanswerable), round(size * share))
    n_ans = size - n_unans
    kept = [x for x in answerable if x[0].id in keep][:n_ans]
    others = [x for x in answerable if x[0].id not in keep]
    picked = kept + rng.sample(others, min(len(others), n_ans - len(kept)))
    picked += rng.sample(unanswerable, n_unans)
    ids = {x[0].id for x in picked}
    return [x for x in every if x[0].id in ids]


def sample_files() -> dict[str, Path]:
    """The bundled sample: documents, questions, change set, schema, checklist, experiment."""
    return {"experiment": SAMPLE_EXPERIMENT, "documents": SAMPLE_DIR / "kb",
            "questions": SAMPLE_DIR / "questions.jsonl", "changes": SAMPLE_DIR / "changes",
            "schema": SAMPLE_DIR / "answer-schema.json",
            "checklist": SAMPLE_DIR / "checklist.yaml"}


def dump(obj: Any) -> str:
    return json.dumps(obj, indent=2, ensure_ascii=False, default=str)
