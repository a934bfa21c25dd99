"""Counting consensus votes: what makes two answers "the same", and when the outcome is certain.

Kept apart from the strategy (which starts and cancels the calls) so the rules can be read, and
tested, on their own:

- a text answer votes for its normalised text (case, spacing and end punctuation ignored);
- a tool-call answer votes for its calls: function names and JSON arguments parsed and
  re-serialised with sorted keys, so `{"a": 1, "b": 2}` and `{ "b":2,"a":1 }` agree;
- an empty answer and a failure abstain: they join no group, but still count among the models
  asked, so the quorum is a share of everyone asked (a lone answer among failures is no consensus);
- the largest group wins if it reaches the quorum (`minAgreement` of the models asked, default a
  strict majority); ties go to the group whose first member comes first in provider order;
- the outcome is decided as soon as no answer still pending could change it.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Ballot", "Tally", "answer_of", "normalise_answer"]

_PUNCTUATION = re.compile(r"[\s\.\!\?\,;:]+$")
_SPACES = re.compile(r"\s+")


def normalise_answer(text: str | None) -> str:
    """Key under which answers count as "the same": case, spacing and end punctuation ignored."""
    if not text:
        return ""
    return _PUNCTUATION.sub("", _SPACES.sub(" ", text.strip().lower()))


def _normalise_arguments(arguments: Any) -> str:
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except ValueError:
            return arguments.strip()  # not JSON: compared as sent, surrounding space aside
    return json.dumps(arguments, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def answer_of(response: Any) -> tuple[str, str] | None:
    """(key, display) of a response's vote, or None when it abstains (empty or no message).

    Tool calls are compared by function name and normalised arguments, in a stable order (the
    order of parallel calls carries no meaning); any text next to them is commentary and ignored.
    """
    try:
        message = response.choices[0].message
    except (AttributeError, IndexError, TypeError):
        return None
    calls = getattr(message, "tool_calls", None)
    if calls:
        shown = []
        for call in calls:
            function = getattr(call, "function", None)
            name = getattr(function, "name", None) or ""
            shown.append(f"{name}({_normalise_arguments(getattr(function, 'arguments', None) or '{}')})")
        shown.sort()
        text = "; ".join(shown)
        return "tool:" + text, text
    content = getattr(message, "content", None)
    key = normalise_answer(content if isinstance(content, str) else None)
    if not key:
        return None
    return "text:" + key, str(content)


@dataclass
class Ballot:
    """One model's answer that counts: its position in provider order and its response."""

    index: int
    response: Any


@dataclass
class Tally:
    """The votes of one consensus request, updated as answers arrive."""

    asked: int
    min_agreement: float | None
    pending: set[int] = field(init=False)
    groups: dict[str, list[Ballot]] = field(default_factory=dict)
    shown: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.pending = set(range(self.asked))

    @property
    def needed(self) -> int:
        """Votes the quorum takes: `minAgreement` of the models asked, or more than half."""
        if self.min_agreement is None:
            return self.asked // 2 + 1
        return max(1, math.ceil(self.min_agreement * self.asked - 1e-9))

    def vote(self, index: int, response: Any) -> None:
        self.pending.discard(index)
        answer = answer_of(response)
        if answer is None:
            return
        key, shown = answer
        self.groups.setdefault(key, []).append(Ballot(index, response))
        self.shown.setdefault(key, shown)

    def abstain(self, index: int) -> None:
        self.pending.discard(index)

    def leader(self) -> str | None:
        """The group that wins if nothing else arrives: largest, ties to provider order."""
        if not self.groups:
            return None
        return max(self.groups, key=lambda key: (len(self.groups[key]), -self._first(key)))

    def _first(self, key: str) -> int:
        return min(ballot.index for ballot in self.groups[key])

    def decided(self) -> bool:
        """True once the pending answers can no longer change the outcome."""
        if not self.pending:
            return True
        leader = self.leader()
        best = max((len(group) for group in self.groups.values()), default=0)
        if best + len(self.pending) < self.needed:
            return True  # no group can reach the quorum any more
        if leader is None or len(self.groups[leader]) < self.needed:
            return False
        count, first = len(self.groups[leader]), self._first(leader)
        earliest_pending = min(self.pending)
        # a rival is the worst case: another group (or a new one) taking every pending answer
        rivals = [(len(g), min(b.index for b in g)) for k, g in self.groups.items() if k != leader]
        rivals.append((0, earliest_pending))
        for size, rival_first in rivals:
            most = size + len(self.pending)
            if most > count or (most == count and min(rival_first, earliest_pending) < first):
                return False
        return True

    def winner(self) -> list[Ballot] | None:
        """The winning group (first member first in provider order), or None without quorum."""
        leader = self.leader()
        if leader is None or len(self.groups[leader]) < self.needed:
            return None
        return sorted(self.groups[leader], key=lambda ballot: ballot.index)

    @property
    def agreement(self) -> float:
        leader = self.leader()
        return 0.0 if leader is None or not self.asked else len(self.groups[leader]) / self.asked

    @property
    def votes(self) -> dict[str, int]:
        """Each answer as first given, with its count, in provider order of first answer."""
        keys = sorted(self.groups, key=self._first)
        return {self.shown[key]: len(self.groups[key]) for key in keys}
