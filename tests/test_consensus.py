"""Consensus vote counting on its own: deciding early never changes the outcome.

The strategy stops waiting as soon as `Tally.decided()`; these properties check, over any
answers and any arrival order, that the result it then reports is the one waiting for every
answer would have given.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from lucky_litellm.consensus import Tally, answer_of


def response(content: str | None = None, tool_calls: list[tuple[str, str]] | None = None) -> Any:
    calls = None
    if tool_calls is not None:
        calls = [SimpleNamespace(function=SimpleNamespace(name=n, arguments=a)) for n, a in tool_calls]
    message = SimpleNamespace(content=content, tool_calls=calls)
    return SimpleNamespace(choices=[SimpleNamespace(message=message)])


ANSWERS = st.sampled_from([None, "", "Paris", "paris.", "Lyon", "Nice"])  # None: the call failed
AGREEMENT = st.sampled_from([None, 0.25, 0.34, 0.5, 0.6, 0.67, 1.0])


def outcome(tally: Tally) -> tuple[str | None, float]:
    group = tally.winner()
    return (None if group is None else answer_of(group[0].response)[0], tally.agreement if group else 0.0)


@settings(max_examples=400, deadline=None)
@given(answers=st.lists(ANSWERS, min_size=1, max_size=6), agreement=AGREEMENT, data=st.data())
def test_deciding_early_gives_the_outcome_of_waiting_for_everyone(answers, agreement, data) -> None:
    order = data.draw(st.permutations(range(len(answers))))

    def feed(tally: Tally, indices: list[int]) -> None:
        for i in indices:
            if answers[i] is None:
                tally.abstain(i)
            else:
                tally.vote(i, response(answers[i]))

    full = Tally(len(answers), agreement)
    feed(full, order)
    early = Tally(len(answers), agreement)
    for i in order:
        feed(early, [i])
        if early.decided():
            break
    final_winner, _ = outcome(full)
    early_winner, _ = outcome(early)
    assert early_winner == final_winner
    if final_winner is not None:  # the same group, minus the members cancelled before answering
        assert {b.index for b in early.winner()} <= {b.index for b in full.winner()}


def test_a_one_to_one_split_needs_a_second_vote_and_says_so() -> None:
    tally = Tally(2, None)
    tally.vote(0, response("Paris"))
    tally.vote(1, response("Lyon"))
    assert (tally.needed, tally.winner(), tally.agreement) == (2, None, 0.5)


def test_empty_answers_abstain() -> None:
    assert answer_of(response("")) is None
    assert answer_of(response("  \n")) is None
    assert answer_of(response(None)) is None


def test_tool_calls_agree_on_name_and_arguments_whatever_their_spelling() -> None:
    a = answer_of(response(tool_calls=[("get_weather", '{"city": "Paris", "unit": "C"}'), ("now", "{}")]))
    reordered = [("now", " {} "), ("get_weather", '{"unit":"C","city":"Paris"}')]
    b = answer_of(response("Let me check.", reordered))
    c = answer_of(response(tool_calls=[("get_weather", '{"city": "Lyon", "unit": "C"}'), ("now", "{}")]))
    assert a is not None and b is not None and c is not None
    assert a[0] == b[0] != c[0]
    assert a[1] == 'get_weather({"city":"Paris","unit":"C"}); now({})'
