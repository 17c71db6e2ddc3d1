"""The outcome of one exchange: the words of contract ``rig.verdict/1`` (DESIGN.md §3) as
one typed value, with what every reader of an outcome needs to know about it.

``Outcome`` is a ``StrEnum``: a member *is* its word (``Outcome.LOST_RETURN ==
"lost-return"``, and ``json.dumps`` writes the word), so the JSON text is the contract's.
The members are declared worst first, and that is the one order of rig: the clause order
of the diagnosis sentence, the outcome that names a protocol's cell on the history
timeline, the order the report and the terminal list problems in. It is the order the
diagnosis has always written its clauses in (that sentence is part of the verdict JSON);
an outcome a proxy or a forged reset explains comes before the losses it may cause.

Each member carries its ``kind`` (clean, a problem of the path, the server's own answer,
or undecided), its ``style`` for the terminal (rich) and its ``colour`` for the HTML
report and the history timeline. No numpy here: ``rig lab scenarios`` and the other
commands that analyse nothing import this module and must stay quick.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Iterable

from rig.errors import InputError


class Kind(StrEnum):
    """What an outcome says about the path. Only ``CLEAN`` counts toward exit code 0."""

    CLEAN = "clean"  # the path carried the exchange both ways
    PATH = "path"  # the path lost, forged or blocked something
    SERVER = "server"  # the path carried it; the server did not answer, or refused
    UNDECIDED = "undecided"  # the captures cannot decide


class Outcome(StrEnum):
    """One exchange's outcome; declaration order is severity, worst first."""

    ANSWERED_BY_MIDDLEBOX = "answered-by-middlebox"
    RESET_BY_MIDDLEBOX = "reset-by-middlebox"
    MTU_BLACKHOLE = "mtu-blackhole"
    LOST_RETURN = "lost-return"
    LOST_OUTBOUND = "lost-outbound"
    UNANSWERED = "unanswered"
    REFUSED = "refused"
    INCOMPLETE = "incomplete"
    DELIVERED = "delivered"

    @property
    def severity(self) -> int:
        """0 for the worst outcome; a larger number is a milder one (``DELIVERED`` last)."""
        return _SEVERITY[self]

    @property
    def kind(self) -> Kind:
        return _TRAITS[self].kind

    @property
    def style(self) -> str:
        """The rich style of the word in the terminal table."""
        return _TRAITS[self].style

    @property
    def colour(self) -> str:
        """The CSS colour of the report's badge and of the history cell."""
        return _TRAITS[self].colour

    @property
    def clean(self) -> bool:
        return self.kind is Kind.CLEAN

    @classmethod
    def known(cls, word: Any) -> "Outcome | None":
        """The member for ``word``, or None for a word this rig does not know."""
        try:
            return cls(word)
        except ValueError:
            return None

    @classmethod
    def parse(cls, word: Any, where: str = "") -> "Outcome":
        """The member for a word read back from JSON; an unknown word is an input error
        (a verdict written by a newer rig)."""
        o = cls.known(word)
        if o is None:
            at = f"{where}: " if where else ""
            raise InputError(f"{at}outcome {word!r} is not a rig.verdict/1 outcome word this rig knows "
                             f"(written by a newer rig?)")
        return o


@dataclass(frozen=True, slots=True)
class _Traits:
    kind: Kind
    style: str  # rich
    colour: str  # CSS


_TRAITS = {
    Outcome.ANSWERED_BY_MIDDLEBOX: _Traits(Kind.PATH, "bold magenta", "#b35c00"),
    Outcome.RESET_BY_MIDDLEBOX: _Traits(Kind.PATH, "bold magenta", "#ad1457"),
    Outcome.MTU_BLACKHOLE: _Traits(Kind.PATH, "bold red", "#8e24aa"),
    Outcome.LOST_RETURN: _Traits(Kind.PATH, "bold red", "#b71c1c"),
    Outcome.LOST_OUTBOUND: _Traits(Kind.PATH, "bold red", "#c62828"),
    Outcome.UNANSWERED: _Traits(Kind.SERVER, "yellow", "#e65100"),
    Outcome.REFUSED: _Traits(Kind.SERVER, "yellow", "#6d7a86"),
    Outcome.INCOMPLETE: _Traits(Kind.UNDECIDED, "dim", "#9aa5b1"),
    Outcome.DELIVERED: _Traits(Kind.CLEAN, "green", "#2e7d32"),
}
if set(_TRAITS) != set(Outcome):  # a member added without its traits: fail at import, not at first use
    raise ImportError(f"rig.outcome: traits missing for {sorted(set(Outcome) - set(_TRAITS))}")

_SEVERITY = {o: i for i, o in enumerate(Outcome)}
UNKNOWN_COLOUR = "#5d4037"  # a word this rig does not know (a newer rig's): the history cell
UNKNOWN_SEVERITY = _SEVERITY[Outcome.DELIVERED] - 0.5  # unknown: after every known problem, before delivered


def rank(word: Any) -> float:
    """Severity of an outcome word as read from JSON; an unknown word ranks just before
    ``delivered``, so it is never hidden behind a delivered exchange."""
    o = Outcome.known(word)
    return UNKNOWN_SEVERITY if o is None else o.severity


def worst(words: Iterable[Any]) -> Any:
    """The dominating outcome of ``words`` (unknown words kept as they are), or None if none."""
    got = [w for w in words if w]
    return min(got, key=rank) if got else None
