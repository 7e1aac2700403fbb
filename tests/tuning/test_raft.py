"""RAFT examples from a real knowledge base: the ask prompt, a cited oracle, refusals."""

from __future__ import annotations

import re

from ragtune.answering.prompt import SYSTEM_PROMPT
from ragtune.answering.refusal import model_refused
from ragtune.cases import EvalCase
from ragtune.tuning.raft import RAFT_REFUSAL, build_raft_examples

CASES = [
    EvalCase("How often should the kettle be descaled?", ("every month",), id="kettle"),
    EvalCase("What pressure do road tyres need?", ("6 to 8 bar",), id="tyres"),
    EvalCase("How long does green tea steep?", ("two minutes",), id="tea"),
    EvalCase("Who painted the Mona Lisa?", (), id="unanswerable"),
    EvalCase("What is the warranty period?", ("five years",), id="nowhere"),
]
_PASSAGE = re.compile(r'<passage number="(\d+)"[^>]*>\n(.*?)\n</passage>', re.S)


def _passages(user_turn: str) -> dict[int, str]:
    return {int(n): text for n, text in _PASSAGE.findall(user_turn)}


def test_examples_use_the_ask_prompt_and_cite_the_oracle(six_kb, base_tokenizer) -> None:
    def count(text: str) -> int:
        return len(base_tokenizer(text, add_special_tokens=False)["input_ids"])

    report = build_raft_examples(six_kb, CASES, count, distractors=2, withhold=0.0, seed=1)
    assert (report.answered, report.withheld, report.unanswerable) == (3, 0, 1)
    assert [s["id"] for s in report.skipped] == ["nowhere"]
    assert "no passage holds a reference answer" in report.skipped[0]["reason"]
    by_question = {e.messages[-2]["content"].rsplit("Question: ", 1)[1]: e
                   for e in report.examples}
    for case in CASES[:3]:
        example = by_question[case.question]
        messages = example.messages
        assert messages[0] == {"role": "system", "content": SYSTEM_PROMPT}
        assert all(m.get("weight") == 0 for m in messages[1:-2] if m["role"] == "assistant")
        assert messages[-2]["content"].startswith("<passages>\n")
        passages = _passages(messages[-2]["content"])
        assert len(passages) == 3  # oracle + 2 distractors
        target = messages[-1]["content"]
        match = re.fullmatch(re.escape(case.answers[0]) + r" \[(\d)\]", target)
        assert match, target
        cited = int(match.group(1))
        assert case.answers[0] in passages[cited]
        assert sum(case.answers[0] in text for text in passages.values()) == 1
    unanswerable = by_question["Who painted the Mona Lisa?"]
    assert unanswerable.messages[-1]["content"] == RAFT_REFUSAL
    assert model_refused(RAFT_REFUSAL)
    assert report.documents and all(d in {x.id for x in six_kb.documents()}
                                    for d in report.documents)
    again = build_raft_examples(six_kb, CASES, count, distractors=2, withhold=0.0, seed=1)
    assert again.examples == report.examples


def test_withheld_oracles_teach_the_refusal(six_kb) -> None:
    report = build_raft_examples(six_kb, CASES[:3], lambda t: len(t.split()), distractors=2,
                                 withhold=1.0, seed=0)
    assert (report.answered, report.withheld) == (0, 3)
    for example, case in zip(report.examples, CASES[:3], strict=True):
        assert example.messages[-1]["content"] == RAFT_REFUSAL
        passages = _passages(example.messages[-2]["content"])
        assert len(passages) == 3
        assert not any(case.answers[0] in text for text in passages.values())
