"""The architectures ragtune compares, each registered once with every fact about it.

`ragtune eval --arch` runs one of them, `ragtune compare` runs all six side by side, `ragtune
assess` weighs their measurements cheapest first and turns the winner into a recommendation.
Each reads this one registry (peft registers each tuner with one call the same way):

| name       | retrieves | adapter | runs as | answer format                                    |
| base       | no        | no      | base    | asked for in the prompt (schema + JSON examples) |
| rag        | yes       | no      | rag     | asked for in the prompt                          |
| rag+schema | yes       | no      | rag     | constrained decoding to the schema               |
| rag-tuned-retrieval | yes (levers tuned) | no | rag | asked for in the prompt              |
| tuned      | no        | tuned   | tuned   | learned (short prompt, no examples)              |
| hybrid     | yes       | hybrid  | hybrid  | learned (short prompt, no examples)              |

`rag+schema` is not a pipeline of its own: the evaluator runs it as `rag` with constrained
decoding switched on (`runs_as`), so `ragtune eval` offers the four that are (`evaluated()`).
`rag-tuned-retrieval` runs as `rag` too, searching with the retrieval levers the lab chose on
the training questions (`ragtune.lab.levers`: ranking and fusion weights, the prompt's k and
per-document limit): fix retrieval before training.

    >>> get("rag+schema").runs_as, get("hybrid").retrieves
    ('rag', True)
    >>> names()
    ('base', 'rag', 'rag+schema', 'rag-tuned-retrieval', 'tuned', 'hybrid')
    >>> evaluated()
    ('base', 'rag', 'tuned', 'hybrid')
    >>> by_cost()
    ('base', 'rag+schema', 'rag', 'rag-tuned-retrieval', 'tuned', 'hybrid')
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

from ragtune.errors import InputError

Recommendation = Literal["rag", "fine-tune", "hybrid", "neither"]


@dataclass(frozen=True)
class Architecture:
    """One architecture: how it answers, what it costs, and what choosing it recommends.

    `adapter` names the LoRA adapter it answers with (the lab trains one per name: closed-book
    pairs for `tuned`, RAFT examples for `hybrid`); None answers with the model alone.
    `cost_rank` orders the architectures cheapest first (no training before training, then
    fewer moving parts); `cheaper_because` says what makes it cheaper than those ranked after
    it. `runs_as` is the evaluated architecture that answers for it ("" = itself).
    """

    name: str
    description: str
    retrieves: bool
    cost_rank: int
    recommendation: Recommendation
    adapter: str | None = None
    constrained: bool = False  # constrained decoding to the answer schema
    trained_prompt: bool = False  # the adapters' short prompt, without instructions or examples
    tuned_retrieval: bool = False  # searches with the retrieval levers chosen on training cases
    cheaper_because: str = ""
    runs_as: str = ""

    def __post_init__(self) -> None:
        if not self.runs_as:
            object.__setattr__(self, "runs_as", self.name)

    @property
    def uses_adapter(self) -> bool:
        return self.adapter is not None


_REGISTRY: dict[str, Architecture] = {}
ARCHITECTURES: Mapping[str, Architecture] = MappingProxyType(_REGISTRY)  # name -> architecture


def register(arch: Architecture) -> Architecture:
    """Add an architecture. One that runs as another must retrieve and use an adapter as that
    one does (only the prompt and the decoding may differ)."""
    if arch.name in _REGISTRY:
        raise ValueError(f"architecture {arch.name!r} is already registered")
    if arch.runs_as != arch.name:
        runner = _REGISTRY.get(arch.runs_as)
        if runner is None or runner.runs_as != runner.name:
            raise ValueError(f"architecture {arch.name!r} runs as {arch.runs_as!r}, which is "
                             "not a registered architecture that runs as itself")
        if (runner.retrieves, runner.uses_adapter) != (arch.retrieves, arch.uses_adapter):
            raise ValueError(f"architecture {arch.name!r} retrieves or uses an adapter "
                             f"unlike {arch.runs_as!r}, which it runs as")
    _REGISTRY[arch.name] = arch
    return arch


def get(name: str) -> Architecture:
    """The architecture called `name`; an `InputError` naming the known ones otherwise."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise InputError(f"unknown architecture {name!r}; choose from "
                         f"{', '.join(names())}") from None


def names() -> tuple[str, ...]:
    """Every architecture, in the order a comparison shows them."""
    return tuple(_REGISTRY)


def evaluated() -> tuple[str, ...]:
    """The architectures the evaluator runs as themselves (`ragtune eval --arch`)."""
    return tuple(a.name for a in _REGISTRY.values() if a.runs_as == a.name)


def retrieving() -> tuple[str, ...]:
    """The architectures that put retrieved passages in the prompt."""
    return tuple(a.name for a in _REGISTRY.values() if a.retrieves)


def adapted() -> tuple[str, ...]:
    """The architectures that answer with a LoRA adapter."""
    return tuple(a.name for a in _REGISTRY.values() if a.uses_adapter)


def by_cost() -> tuple[str, ...]:
    """Every architecture, cheapest first."""
    return tuple(sorted(_REGISTRY, key=lambda name: _REGISTRY[name].cost_rank))


register(Architecture(
    "base", "the model alone; format asked for in the prompt", retrieves=False, cost_rank=0,
    recommendation="neither", cheaper_because="the model alone: no retrieval and no training"))
register(Architecture(
    "rag", "retrieve + answer; format asked for in the prompt", retrieves=True, cost_rank=2,
    recommendation="rag", cheaper_because="retrieval only, no training"))
register(Architecture(
    "rag+schema", "retrieve + answer; constrained decoding to the schema", retrieves=True,
    cost_rank=1, recommendation="rag", constrained=True, runs_as="rag",
    cheaper_because="retrieval with constrained decoding, no training"))
register(Architecture(
    "rag-tuned-retrieval", "retrieve with levers tuned on the training questions + answer; "
    "no model training", retrieves=True, cost_rank=3, recommendation="rag", runs_as="rag",
    tuned_retrieval=True, cheaper_because="retrieval settings chosen on the questions, no "
    "model training"))
register(Architecture(
    "tuned", "LoRA on closed-book question/answer pairs; no retrieval", retrieves=False,
    cost_rank=4, recommendation="fine-tune", adapter="tuned", trained_prompt=True,
    cheaper_because="no retrieval to run"))
register(Architecture(
    "hybrid", "retrieve + LoRA trained RAFT-style on the same questions", retrieves=True,
    cost_rank=5, recommendation="hybrid", adapter="hybrid", trained_prompt=True))
