"""What every protocol's analysis shares: the capture points and the per-exchange draft.

A ``Draft`` is an exchange before the run-wide steps (choosing the server address,
numbering, the 'incomplete' checks); ``Ctx`` holds the sides and the evidence helpers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from rig.analysis.prose import DELIVERED_NOTES, copy_note, hop_clause
from rig.analysis.sides import Side
from rig.analysis.summary import summarize
from rig.outcome import Outcome
from rig.verdict import Change, Datagrams, Evidence



LOST_EVIDENCE = 20  # lost packets listed one by one in the evidence (all are in ``frames``)


@dataclass(slots=True)
class Draft:
    protocol: str
    dst_key: int  # the server address as the client addressed it (hash)
    t_first: int  # client clock, first request
    t_last: int
    first_frame: int
    client: str
    server: str
    seen_at_server_as: str | None
    outcome: Outcome | str  # "" until the analysis decides
    explanation: str
    matched: bool  # the server capture saw the request
    changes: list[Change] | tuple[Change, ...] = field(default_factory=list)
    evidence: list[Evidence] | tuple[Evidence, ...] = field(default_factory=list)
    frames: dict[str, list[int]] = field(default_factory=dict)  # point -> frames, as the close look collects them
    absent_at: tuple[str, ...] = ()  # points whose *absence* of packets the outcome relies on
    server_until: int | None = None  # client clock: the outcome needs the server capture running past this
    path_mtu: int | None = None  # the next-hop MTU a frag-needed about the exchange reported
    undecided_because: str | None = None  # why the outcome is 'incomplete', as a short fact
    datagrams: Datagrams | None = None  # UDP: datagrams each way, sent and lost
    lost_between: tuple[str, str] | None = None  # the last capture point that saw the packets, the next
    port_reused: bool = False  # the NAT reused a public port the server still held (TIME_WAIT)
    fragments_lost: bool = False  # UDP: the lost datagram's first fragment arrived, its later ones never did
    echo: tuple[int, int] | None = None  # ICMP: (id, seq) of the echo request as the client sent it
    request_seen_at: frozenset[str] = frozenset()  # the extra points that saw the request (not in the verdict)
    seen_at: dict[str, str] = field(default_factory=dict)  # extra point -> the client's endpoint as it saw the request

    def lists(self) -> tuple[list[Change], list[Evidence]]:
        """The changes and evidence of a draft a slow path made, which it extends in place
        (the fast paths' drafts hold their final tuples)."""
        if not isinstance(self.changes, list) or not isinstance(self.evidence, list):
            raise TypeError("this draft's changes and evidence are final tuples")
        return self.changes, self.evidence


@dataclass
class Ctx:
    client: Side
    server: Side
    extra: dict[str, Side]
    offset_ns: int | None = None  # server clock minus client clock

    def ev(self, side: Side, rows, note: str = "", limit: int = 6) -> list[Evidence]:
        rows = list(rows)
        out = []
        # what ICMP errors are about (a capture without ICMP errors has nothing to look up)
        cap = side.cap
        quoted = cap.quoted_at(rows[:limit]) if rows and cap is not None and len(cap.quoted) else None
        for i, r in enumerate(rows[:limit]):
            rec = side.t[r]
            s = summarize(rec, side.addrs, None if quoted is None else quoted[i])
            if note:
                s = f"{s} — {note}"
            if i == limit - 1 and len(rows) > limit:
                s += f" (and {len(rows) - limit} more)"
            out.append(Evidence(side.name, int(rec["frame"]), s))
        return out

    def delivered_evidence(self, protocol: str, request_at_server: int, reply_at_client: int) -> list[Evidence]:
        """The evidence of a delivered exchange, whichever path decided it: the request as
        it arrived at the server, the reply as it arrived at the client (one row each)."""
        req, rep = DELIVERED_NOTES[protocol]
        return self.ev(self.server, [request_at_server], req, 1) + self.ev(self.client, [reply_at_client], rep, 1)

    def add_frames(self, d: Draft, side: Side, rows) -> None:
        if isinstance(rows, np.ndarray):
            if len(rows):
                d.frames.setdefault(side.name, []).extend(side.frames(rows).tolist())
            return
        rows = list(rows)
        if rows:  # a few rows of one exchange: scalar reads, no array made (called ~6 times an exchange)
            fr = side.t["frame"]
            d.frames.setdefault(side.name, []).extend([int(fr[r]) for r in rows])


def quoted_at(side: Side, rows: np.ndarray | list[int] | int) -> np.ndarray:
    """``side``'s ``Capture.quoted_at`` records of ``rows`` (a side without a capture has no rows)."""
    if side.cap is None:
        raise ValueError(f"rows asked of {side.name}, which has no capture")
    return side.cap.quoted_at(rows)


def quoted_one(side: Side, row: int) -> np.void:
    """The ``Capture.quoted_at`` record of one row."""
    q = quoted_at(side, row)
    assert isinstance(q, np.void), "one int: one record"
    return q


def with_copies(frames: list[int], copies: dict[int, list[int]]) -> tuple[int, ...]:
    """Frames at a point (in order), with the other copies of packets it captured twice
    (``copies``: ``Side.copy_frames``)."""
    if not copies:
        return tuple(frames)
    extra = [x for f in frames if f in copies for x in copies[f]]  # most frames have no copy
    return tuple(sorted(frames + extra)) if extra else tuple(frames)


def with_copies_each(frames: list[tuple[int, ...]], copies: dict[int, list[int]]) -> list[tuple[int, ...]]:
    """``with_copies`` of each tuple of frames (in order); one none of whose frames has a
    copy is that tuple itself, as ``with_copies`` would make it (a call per tuple cost
    ~0.5 s at 1M packets, where few frames have copies)."""
    if not copies:
        return frames
    has = copies.keys()
    return [f if has.isdisjoint(f) else with_copies(list(f), copies) for f in frames]


def with_copy_notes(summaries: list[str], frames: list[int], copies: dict[int, list[int]]) -> list[str]:
    """Evidence ``summaries`` of packets ``frames`` with ``copy_note`` applied; one whose
    packet has no copy is kept as it is."""
    if not copies:
        return summaries
    return [copy_note(t, f, copies) if f in copies else t for t, f in zip(summaries, frames)]


def lost_between(extras: list[str], saw: set[str], toward: str) -> tuple[str, str]:
    """Where on the path packets died (the last point that saw them, the next one), from
    which capture points saw them: the points run client, extras (in the order given,
    from the client), server."""
    path = ["client", *extras, "server"]
    if toward == "client":
        path.reverse()
    last = 0
    for i, p in enumerate(path[:-1]):
        if i == 0 or p in saw:
            last = i
    return path[last], path[last + 1]


def hop_words(d: Draft, hop: tuple[str, str]) -> None:
    """Record where the packets died on the draft, and say it in its explanation."""
    d.lost_between = hop
    d.explanation += hop_clause(hop)
