"""Judges: the offline judge on hand-made claims (real bundled embedder), the LLM judge's reply
parsing, and the LLM judge against a real OpenAI-compatible server."""

from __future__ import annotations

import pytest

from ragtune.answering.judges import (
    FEATURES,
    Claim,
    Judge,
    LLMJudge,
    OfflineJudge,
    parse_judgement,
    sentences,
)

CONTEXT = (
    "Super Bowl 50 was an American football game played on February 7, 2016. "
    "The Denver Broncos defeated the Carolina Panthers 24–10 to earn their third title. "
    "The game was played at Levi's Stadium in Santa Clara, California.",
)


@pytest.fixture(scope="module")
def judge(embedder) -> OfflineJudge:
    return OfflineJudge(embedder)


def scores(judge: OfflineJudge, question: str, *claims: str) -> list[float]:
    return [v.score for v in judge.judge([Claim(question, c, CONTEXT) for c in claims])]


def test_offline_judge_is_a_judge(judge: OfflineJudge) -> None:
    assert isinstance(judge, Judge)
    assert judge.judge([]) == []


def test_supported_answer_beats_other_answers_from_the_same_context(judge) -> None:
    right, swapped, elsewhere = scores(judge, "Which team won Super Bowl 50?",
                                       "Denver Broncos", "Carolina Panthers", "Santa Clara")
    assert right > swapped and right > elsewhere
    asked = "Who defeated the Carolina Panthers in Super Bowl 50?"
    right, wrong = judge.judge([Claim(asked, "Denver Broncos", CONTEXT),
                                Claim(asked, "Santa Clara", CONTEXT)])
    assert right.supported and "Denver Broncos defeated" in right.evidence
    assert not wrong.supported and "Santa Clara" in wrong.evidence
    where, team = scores(judge, "Where was Super Bowl 50 played?", "Levi's Stadium",
                         "Denver Broncos")
    assert where > team


def test_claims_absent_from_the_context_score_zero(judge) -> None:
    assert scores(judge, "Which team won Super Bowl 50?", "Seattle Seahawks") == [0.0]
    # a wrong figure is never supported, even when the rest of the claim is there
    assert scores(judge, "When was Super Bowl 50 played?", "February 9, 2016") == [0.0]
    right = judge.judge([Claim("When was Super Bowl 50 played?", "February 7, 2016",
                               CONTEXT)])[0]
    assert right.supported


def test_sentence_claims(judge) -> None:
    [good, bad] = judge.judge([
        Claim("Who won?", "The Denver Broncos won Super Bowl 50.", CONTEXT),
        Claim("Who won?", "The Panthers won the game in Miami.", CONTEXT),
    ])
    assert good.supported and not bad.supported


def test_echoing_the_question_is_not_an_answer(judge) -> None:
    [echo] = scores(judge, "Where did the Denver Broncos play Super Bowl 50?", "Denver Broncos")
    [answer] = scores(judge, "Where did the Denver Broncos play Super Bowl 50?",
                      "Levi's Stadium")
    assert answer > echo


HISTORY = (
    "Harvard and Yale first played football against each other in 1875, under rules the two "
    "schools agreed that year. The rivalry grew, and Harvard Stadium was built in 1903 as the "
    "first large reinforced-concrete stadium. Charles Eliot, then president, was against it.",
)


def test_a_rival_of_the_claims_kind_nearer_the_question_lowers_it(judge) -> None:
    """The reader's typical mistake: a real year (or name) of the passage, from the wrong
    place. The year the question's words sit beside wins; so does the name."""
    question = "In what year did Harvard and Yale first play football?"
    rival = dict(zip(FEATURES, judge.evidence(Claim(question, "1903", HISTORY)).features,
                     strict=True))["rival"]
    right, wrong = (v.score for v in judge.judge([Claim(question, "1875", HISTORY),
                                                  Claim(question, "1903", HISTORY)]))
    assert rival < 1.0 and right > wrong
    who = "Who was the president who was against the stadium?"
    right, wrong = (v.score for v in judge.judge([Claim(who, "Charles Eliot", HISTORY),
                                                  Claim(who, "Yale", HISTORY)]))
    assert right > wrong


def test_a_question_for_a_figure_or_time_wants_one(judge) -> None:
    """'When…' and 'How many…' are not answered by a name or a phrase without a figure or a
    time word; the same words with one are."""
    features = dict(zip(FEATURES, judge.evidence(Claim(
        "When was Harvard Stadium built?", "reinforced-concrete stadium", HISTORY)).features,
        strict=True))
    assert features["answer_type"] == 0.0
    features = dict(zip(FEATURES, judge.evidence(Claim(
        "When was Harvard Stadium built?", "1903", HISTORY)).features, strict=True))
    assert features["answer_type"] == 1.0
    [phrase, year] = [v.score for v in judge.judge([
        Claim("When was Harvard Stadium built?", "reinforced-concrete stadium", HISTORY),
        Claim("When was Harvard Stadium built?", "1903", HISTORY)])]
    assert year > phrase


def test_empty_context_or_claim(judge) -> None:
    assert judge.judge([Claim("Who?", "Denver", ())])[0].score == 0.0
    assert judge.judge([Claim("Who?", "...", CONTEXT)])[0].score == 0.0


def test_sentences() -> None:
    assert sentences("One. Two!\nThree? ") == ["One.", "Two!", "Three?"]


def test_parse_judgement() -> None:
    assert parse_judgement("Yes.") == 1.0
    assert parse_judgement("no, it is not") == 0.0
    assert parse_judgement("Not supported") == 0.0
    assert parse_judgement("maybe") is None
    assert parse_judgement("yes", logprob=-0.1053605) == pytest.approx(0.9)
    assert parse_judgement("no", logprob=-0.1053605) == pytest.approx(0.1)


@pytest.mark.slow
def test_llm_judge_through_an_openai_compatible_server(generator, embedder) -> None:
    from openai_server import OpenAIServer
    from ragtune.models.openai import OpenAIGenerator

    server = OpenAIServer(generator, embedder).start()
    try:
        judge = LLMJudge(OpenAIGenerator("smollm2", server.base_url, api_key_env="NO_SUCH_KEY"))
        claims = [Claim("Which team won Super Bowl 50?", "Denver Broncos", CONTEXT),
                  Claim("Which team won Super Bowl 50?", "Seattle Seahawks", CONTEXT)]
        assert "Denver Broncos defeated" in judge.messages(claims[0])[1]["content"]
        verdicts = judge.judge(claims)
        assert server.requests == 2
    finally:
        server.stop()
    assert judge.name == "llm:openai:smollm2"
    assert len(verdicts) == 2
    for v in verdicts:
        assert 0.0 <= v.score <= 1.0 and v.supported == (v.score >= judge.threshold)
        assert v.evidence  # the model's reply, or why it could not be read
