"""When each capture point was listening, and whether it can vouch for an absence.

An outcome such as lost-outbound or answered-by-middlebox rests on packets *missing*
at a point; that point vouches for it only if it was capturing when they would have
arrived. A point's window is its first and last trusted packet (all a capture file
knows), widened to when tcpdump listened and stopped if rig ran it (``CaptureWindow``).
Everything is compared on the client's clock: the server's packets move onto it through
the clock offset the matched packets give (``match.estimate_offset``); tcpdump's own
times are taken on the clock of the machine rig ran on, which is the client capture's.

An exchange is outside a point's window when the first packet that should have reached
that point (the client's first request for the server; the server's first answer for the
client), on the client clock, lies more than ``PATH_DELAY_NS`` before the window opened
or after it closed. With no offset (nothing was seen at both points), the
clocks are taken as equal and only a gap wider than ``UNMAPPED_SLACK_NS`` counts; the
reason says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

PATH_DELAY_NS = 1_000_000_000  # a one-way delay plus the error of the offset estimate
UNMAPPED_SLACK_NS = 30_000_000_000  # no offset known: a gap the clocks' disagreement cannot explain
TAIL_NS = 1_000_000_000  # tcpdump without --immediate-mode loses about the last second


@dataclass(frozen=True)
class CaptureWindow:
    """When tcpdump at one point listened (its "listening on") and was asked to stop: ns
    since the epoch on the clock of the machine rig ran on (the client capture's). Either
    may be unknown (None)."""

    start_ns: int | None = None
    stop_ns: int | None = None

    def to_dict(self) -> dict[str, int | None]:
        return {"start_ns": self.start_ns, "stop_ns": self.stop_ns}

    @classmethod
    def from_dict(cls, d) -> "CaptureWindow":
        """From ``to_dict`` (a bundle's manifest); a value that is not an integer is unknown."""
        def ns(v):
            return v if isinstance(v, int) and not isinstance(v, bool) else None
        return cls(ns(d.get("start_ns")), ns(d.get("stop_ns"))) if isinstance(d, dict) else cls()


def windows_from_manifest(facts) -> dict[str, CaptureWindow] | None:
    """The ``capture_windows`` a run recorded in its manifest's facts (None if none)."""
    got = facts.get("capture_windows") if isinstance(facts, Mapping) else None
    if not isinstance(got, Mapping):
        return None
    return {str(p): CaptureWindow.from_dict(d) for p, d in got.items()}


@dataclass(frozen=True)
class PointWindow:
    """A point's window on the client clock, and how far an exchange may stray from it
    before it counts as outside."""

    name: str
    lo: int
    hi: int
    offset_ns: int | None  # the point's clock minus the client's; None: unknown (taken as 0)
    slack_ns: int
    lo_slack_ns: int = PATH_DELAY_NS  # before it opened, on a mapped clock (``point_window``)

    def to_client(self, ts: int) -> int:
        return ts - (self.offset_ns or 0)


def point_window(name: str, ts_min: int | None, ts_max: int | None, offset_ns: int | None,
                 given: CaptureWindow | None, mid_flow: bool = False) -> PointWindow | None:
    """The window of one point (None: it holds no packets and rig did not run it).
    ``offset_ns`` is the point's clock minus the client's (0 for the client itself).
    ``mid_flow``: the capture holds a TCP connection begun before it (``started_mid_flow``):
    it started while traffic flowed, and its first packet is a hard edge (a path delay only
    makes a packet arrive later than it was sent). Otherwise nothing says when it started,
    and an exchange up to a path delay before its first packet counts as inside."""
    lo = hi = None
    if ts_min is not None and ts_max is not None:
        lo, hi = ts_min - (offset_ns or 0), ts_max - (offset_ns or 0)
    if given is not None:  # rig's clock is the client's: no offset to apply
        if given.start_ns is not None:
            lo = given.start_ns if lo is None else min(lo, given.start_ns)
        if given.stop_ns is not None:
            hi = given.stop_ns if hi is None else max(hi, given.stop_ns)
    if lo is None or hi is None:
        return None
    exact = offset_ns is not None
    if not exact and given is not None and given.start_ns is not None and given.stop_ns is not None:
        lo, hi, exact = given.start_ns, given.stop_ns, True  # the packets' own clock is unknown: tcpdump's times alone
    started = given is not None and given.start_ns is not None
    return PointWindow(name, lo, hi, offset_ns, PATH_DELAY_NS if exact else UNMAPPED_SLACK_NS,
                       0 if mid_flow and not started else PATH_DELAY_NS)


def started_mid_flow(side) -> bool:
    """Whether a point captured a TCP connection already under way: data without its SYN
    or SYN-ACK there (a lone RST or ACK, which scanners and forgers send, is no sign).
    The capture began while that connection flowed: nothing says it began before its
    first packet."""
    tc = side.tcp
    if len(tc.starts) == 0:
        return False
    data = (tc.first_data_fwd >= 0) | (tc.first_data_rev >= 0)
    return bool(((tc.syn < 0) & (tc.synack < 0) & data).any())


def outside(win: PointWindow, first_elsewhere: int, last_elsewhere: int | None = None) -> str | None:
    """Why ``win``'s point cannot vouch for an exchange whose packets seen at another
    point span ``first_elsewhere`` to ``last_elsewhere`` (client clock; the last defaults
    to the first): the reason as a short fact, or None. It vouches when one of them surely
    fell inside its window: that one's absence is certain."""
    last = first_elsewhere if last_elsewhere is None else last_elsewhere
    exact = win.slack_ns == PATH_DELAY_NS
    unmapped = "" if exact else " (clocks taken as equal: no packet was seen at both points)"
    if last + (win.lo_slack_ns if exact else win.slack_ns) < win.lo:
        return f"{win.name} capture started {(win.lo - last) / 1e9:.1f} s later{unmapped}"
    if first_elsewhere - win.slack_ns > win.hi:
        return f"{win.name} capture stopped {(first_elsewhere - win.hi) / 1e9:.1f} s earlier{unmapped}"
    return None


def vouch(d, sides, windows: dict[str, PointWindow | None]) -> str | None:
    """Why a point cannot vouch for the absence draft ``d``'s outcome rests on, as a short
    fact (``Exchange.undecided_because``); None if every point it names can."""
    for name in d.absent_at:
        side = sides[name]
        if side.n_total == 0 or side.ts_min is None:
            return f"{name} capture holds no packets"
        if side.kernel_drops:
            return f"{name} capture lost {side.kernel_drops} packets (dropped by the kernel)"
        win = windows.get(name)
        toward = _first_toward(d, sides, windows, name)
        if win is not None and toward is not None:
            why = outside(win, toward, d.t_last if name != "client" and d.outcome == "lost-outbound" else None)
            if why:
                return why
        if name == "server" and win is not None and win.offset_ns is not None and d.server_until is not None \
                and d.server_until > win.hi - TAIL_NS:
            return "server capture ended about when this connection did"
    return None


def _first_toward(d, sides, windows, absent: str) -> int | None:
    """Client clock: when the first packet that should have reached ``absent`` was seen at
    the other end (the client's first packet; at the server, its first own answer). When
    the exchange was seen at the absent point, what is missing there came after it: its
    first packet there is the time."""
    if absent != "client":
        frames, win = d.frames.get(absent), windows.get(absent)
        if frames and win is not None and win.offset_ns is not None:
            side = sides[absent]
            return max(d.t_first, int(side.t["ts_ns"][side.rows_at(frames)].min()) - win.offset_ns)
        return d.t_first  # the client's first packet of the exchange
    other = "server"
    frames = d.frames.get(other)
    win = windows.get(other)
    if not frames or win is None or win.offset_ns is None:
        return None
    side = sides[other]
    rows = side.rows_at(frames)
    ts = side.t["ts_ns"][rows]
    src = side.t["src_i"][rows]  # the server's answers, not the request it got
    mine = src != side.t["src_i"][int(rows[ts.argmin()])]
    if mine.any():
        ts = ts[mine]
    return int(ts.min()) - win.offset_ns
