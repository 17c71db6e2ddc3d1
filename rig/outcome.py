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
report and the history timeline. No numpy here: ``rig --help`` imports this module.
"""

from __future__ import annotations

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

    kind: Kind
    style: str  # rich style for the terminal table
    colour: str  # CSS colour for the report's badge and the history cell

    def __new__(cls, word: str, kind: Kind, style: str, colour: str) -> "Outcome":
        obj = str.__new__(cls, word)
        obj._value_ = word
        obj.kind = kind
        obj.style = style
        obj.colour = colour
        return obj

    ANSWERED_BY_MIDDLEBOX = "answered-by-middlebox", Kind.PATH, "bold magenta", "#b35c00"
    RESET_BY_MIDDLEBOX = "reset-by-middlebox", Kind.PATH, "bold magenta", "#ad1457"
    MTU_BLACKHOLE = "mtu-blackhole", Kind.PATH, "bold red", "#8e24aa"
    LOST_RETURN = "lost-return", Kind.PATH, "bold red", "#b71c1c"
    LOST_OUTBOUND = "lost-outbound", Kind.PATH, "bold red", "#c62828"
    UNANSWERED = "unanswered", Kind.SERVER, "yellow", "#e65100"
    REFUSED = "refused", Kind.SERVER, "yellow", "#6d7a86"
    INCOMPLETE = "incomplete", Kind.UNDECIDED, "dim", "#9aa5b1"
    DELIVERED = "delivered", Kind.CLEAN, "green", "#2e7d32"

    @property
    def severity(self) -> int:
        """0 for the worst outcome; a larger number is a milder one (``DELIVERED`` last)."""
        return _SEVERITY[self]

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
