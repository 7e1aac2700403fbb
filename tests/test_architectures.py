"""`ragtune.architectures`: one registry that the evaluator, the lab and the checklist read."""

from __future__ import annotations

import pytest

from ragtune import architectures
from ragtune.architectures import Architecture, register
from ragtune.errors import InputError


def test_the_registered_architectures() -> None:
    assert architectures.names() == ("base", "rag", "rag+schema", "rag-tuned-retrieval",
                                      "tuned", "hybrid")
    assert architectures.evaluated() == ("base", "rag", "tuned", "hybrid")
    assert architectures.retrieving() == ("rag", "rag+schema", "rag-tuned-retrieval", "hybrid")
    assert architectures.adapted() == ("tuned", "hybrid")
    assert architectures.by_cost() == ("base", "rag+schema", "rag", "rag-tuned-retrieval",
                                       "tuned", "hybrid")
    assert {a: architectures.get(a).recommendation for a in architectures.names()} == {
        "base": "neither", "rag": "rag", "rag+schema": "rag", "rag-tuned-retrieval": "rag",
        "tuned": "fine-tune", "hybrid": "hybrid"}
    tuned = architectures.get("rag-tuned-retrieval")
    assert tuned.runs_as == "rag" and tuned.tuned_retrieval and not tuned.uses_adapter
    assert list(architectures.ARCHITECTURES) == list(architectures.names())


def test_rag_schema_runs_as_rag_with_constrained_decoding() -> None:
    schema, rag = architectures.get("rag+schema"), architectures.get("rag")
    assert schema.runs_as == "rag" and schema.constrained and not rag.constrained
    for name in architectures.names():
        arch = architectures.get(name)
        runner = architectures.get(arch.runs_as)
        assert runner.name in architectures.evaluated()
        assert (runner.retrieves, runner.uses_adapter) == (arch.retrieves, arch.uses_adapter)
        assert arch.cheaper_because or arch.cost_rank == len(architectures.names()) - 1


def test_an_unknown_name_is_an_error_naming_the_known_ones() -> None:
    with pytest.raises(InputError, match=r"unknown architecture 'rag\+x'; choose from base, "
                                         r"rag, rag\+schema, rag-tuned-retrieval, tuned, "
                                         r"hybrid"):
        architectures.get("rag+x")


def test_registration_keeps_the_registry_consistent() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register(Architecture("rag", "again", retrieves=True, cost_rank=9,
                              recommendation="rag"))
    with pytest.raises(ValueError, match="unlike 'rag'"):
        register(Architecture("rag+adapter", "x", retrieves=True, cost_rank=9,
                              recommendation="hybrid", adapter="hybrid", runs_as="rag"))
    with pytest.raises(ValueError, match="not a registered architecture"):
        register(Architecture("rag+rerank", "x", retrieves=True, cost_rank=9,
                              recommendation="rag", runs_as="rag+schema"))
    assert "rag+adapter" not in architectures.names()


def test_the_evaluator_runs_the_architectures_that_run_as_themselves() -> None:
    from ragtune.evaluation.runner import Evaluator

    with pytest.raises(InputError, match=r"arch must be one of base, rag, tuned, hybrid, "
                                         r"got 'rag\+schema'"):
        Evaluator(None, "rag+schema")  # type: ignore[arg-type]  # refused before the kb is read


def test_an_experiment_names_registered_architectures() -> None:
    from pydantic import ValidationError

    from ragtune.lab.experiment import Experiment

    base = {"name": "x", "knowledge_base": {"name": "x", "documents": "kb"},
            "questions": "q.jsonl", "task": {"schema": "s.json"}, "checklist": "c.yaml"}
    assert Experiment.model_validate(base).architectures == list(architectures.names())
    with pytest.raises(ValidationError, match=r"unknown architecture\(s\) \['rag\+x'\]; "
                                              "choose from base, rag, rag"):
        Experiment.model_validate(base | {"architectures": ["rag", "rag+x"]})
