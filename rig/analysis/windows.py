"""When each capture point was listening, and whether it can vouch for an absence.

An outcome such as lost-outbound or answered-by-middlebox rests on packets *missing*
at a point; that point vouches for it only if it was capturing when they would
have arrived. A point's window is its first and last trusted packet (all a capture file
knows), widened to when tcpdump listened and stopped if rig ran it (``CaptureWindow``).
Everything is compared on the client's clock: the server's packets move onto it through
the clock offset the matched packets give (``ClockFit``); tcpdump's own times are taken
on the clock of the machine rig ran on, which is the client capture's.

An exchange is outside a point's window when the packets that should have reached it
would have arrived before the window opened or after it closed. When they would have
arrived is measured, not assumed: with packets matched both ways, half the round trip
after they were sent, give or take the delays' spread (``ClockFit``); a path delay
(``PATH_DELAY_NS``) only when the matched packets do not say. A capture whose first
packet came 24 ms after a refused connection on a 10 ms path did not see that connection
for want of listening, and its absence there proves nothing. With no offset (nothing was
seen at both points), the clocks are taken as equal and nothing more is allowed either
way: the exchange must lie inside the window as the two files' own times say, and when
it does not the reason says that the clocks were taken as equal. (An allowance for the
clocks' disagreement would make exchanges from before a late start, matched by nothing,
a proxy's doing: where the clocks are not known, the edge decides, and past it the
answer is 'incomplete'.) Inside the edge too, a server capture that holds the server's
traffic but nothing surely the client's vouches for nothing (``UNTIED``): taking its
clock for the client's is then a guess its own packets do not support.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from rig.analysis.match import estimate_offset

PATH_DELAY_NS = 1_000_000_000  # how long a packet may take, when the matched packets do not say
UNMAPPED_SLACK_NS = 0  # no offset known: the clocks taken as equal, no allowance either way
MIN_ERR_NS = 1_000_000  # the least error of a mapped time (capture timestamps, scheduling)
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
class ClockFit:
    """How the server's clock maps onto the client's, from the packets seen at both
    points: ``offset_ns`` the server's clock minus the client's (None: nothing was seen at
    both); ``ways`` the directions that gave it ("out", "back"); ``half_rtt_ns`` with
    both: on the mapped clock a packet arrives that long after it was sent, whichever way
    it went; ``err_ns`` how far one packet's mapped time may stray from that (the delays'
    spread)."""

    offset_ns: int | None
    ways: frozenset[str] = frozenset()
    half_rtt_ns: int = 0
    err_ns: int = MIN_ERR_NS

    def edges(self, point: str, mapped: bool) -> tuple[int, int]:
        """When a packet sent at ``t`` toward ``point`` counts as arriving inside a window,
        as offsets from ``t`` on the client clock: no earlier than ``t + late`` is before
        the window opened, no later than ``t + early`` after it closed. With both
        directions measured it arrives half a round trip later; with the packet's own
        direction alone the mapped clock holds its delay. The least error (``MIN_ERR_NS``)
        is allowed either way; what the delays' spread adds beyond it counts against the
        exchange: a mapping its own samples disagree on vouches for less, not more (two
        SYN copies paired across a retransmission put the offset seconds off). With
        nothing measured, a path delay either way; on clocks nobody mapped, none."""
        if not mapped:
            return UNMAPPED_SLACK_NS, -UNMAPPED_SLACK_NS
        doubt = max(0, self.err_ns - MIN_ERR_NS)
        if len(self.ways) == 2:
            arrive = self.half_rtt_ns
        elif self.ways == {"out" if point == "server" else "back"}:
            arrive = 0
        elif self.ways:
            # the other direction alone: the mapped clock holds that direction's delay,
            # so a packet this way arrives a round trip after its mapped time, no sooner
            # (a reply mapped past the last packet of a capture that stopped there was
            # not waited for); how much later is not measured
            return PATH_DELAY_NS, -MIN_ERR_NS + doubt
        else:
            return PATH_DELAY_NS, -PATH_DELAY_NS
        return arrive + MIN_ERR_NS - doubt, arrive - MIN_ERR_NS + doubt


def fit_clocks(out_delays: np.ndarray, back_delays: np.ndarray) -> ClockFit:
    """``ClockFit`` from matched pairs (``match.estimate_offset``'s samples).

    With both directions, the offset is the midpoint of the two medians, and a packet
    mapped through it arrives half a round trip after it was sent, whichever way it
    went and however asymmetric the path (the asymmetry moves the offset, not that sum).
    With one direction, the mapped clock absorbs that direction's delay, and the other's
    is not known."""
    o, b = np.asarray(out_delays, np.int64), np.asarray(back_delays, np.int64)
    offset = estimate_offset([o], [b])
    ways = frozenset(w for w, x in (("out", o), ("back", b)) if len(x))
    err = MIN_ERR_NS + 3 * max((_iqr(x) for x in (o, b) if len(x)), default=0)
    half_rtt = max(0, int((np.median(o) + np.median(b)) // 2)) if len(ways) == 2 else 0
    return ClockFit(offset, ways, half_rtt, err)


def _iqr(x: np.ndarray) -> int:
    q25, q75 = np.percentile(x, [25, 75])
    return int(q75 - q25)


@dataclass(frozen=True)
class PointWindow:
    """A point's window on the client clock: its first and last packet (or when tcpdump
    listened and stopped). A packet sent at ``t`` elsewhere arrives there between ``t +
    early_ns`` and ``t + late_ns``. ``mapped``: its times are on a known clock (the
    client's own, an estimated offset, or tcpdump's on rig's); else taken as the client's."""

    name: str
    lo: int
    hi: int
    offset_ns: int | None  # the point's clock minus the client's; None: unknown (taken as 0)
    late_ns: int = PATH_DELAY_NS
    early_ns: int = -PATH_DELAY_NS
    mapped: bool = True

    def to_client(self, ts: int) -> int:
        return ts - (self.offset_ns or 0)


def point_window(name: str, ts_min: int | None, ts_max: int | None, offset_ns: int | None,
                 given: CaptureWindow | None, fit: ClockFit | None = None, mid_flow: bool = False) -> PointWindow | None:
    """The window of one point (None: it holds no packets and rig did not run it).
    ``offset_ns`` is the point's clock minus the client's (0 for the client itself);
    ``fit`` what the matched packets say of the clocks and the path (``fit_clocks``).
    ``mid_flow``: the capture holds a TCP connection begun before it (``started_mid_flow``):
    it started while traffic flowed, and its first packet is a hard edge."""
    fit = fit or ClockFit(None)
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
    mapped = offset_ns is not None
    if not mapped and given is not None and given.start_ns is not None and given.stop_ns is not None:
        lo, hi, mapped = given.start_ns, given.stop_ns, True  # the packets' own clock is unknown: tcpdump's times alone
    late, early = fit.edges(name, mapped)
    started = given is not None and given.start_ns is not None
    return PointWindow(name, lo, hi, offset_ns, min(late, 0) if mid_flow and not started and mapped else late, early, mapped)


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


def _secs(ns: int) -> str:
    return f"{ns / 1e9:.1f} s" if ns >= 100_000_000 else f"{ns / 1e9:.3f} s"


def outside(win: PointWindow, first_elsewhere: int, last_elsewhere: int | None = None,
            opened: bool = False) -> str | None:
    """Why ``win``'s point cannot vouch for an exchange whose packets seen at another
    point span ``first_elsewhere`` to ``last_elsewhere`` (client clock; the last defaults
    to the first): the reason as a short fact, or None. It vouches when one of them
    fell inside its window: the last may arrive no earlier than the window opened, the
    first no later than it closed. ``opened``: the point captured part of the exchange
    already, so it was listening when the rest was due."""
    last = first_elsewhere if last_elsewhere is None else last_elsewhere
    unmapped = "" if win.mapped else " (clocks taken as equal: no packet was surely seen at both points)"
    if not opened and last + win.late_ns < win.lo:
        if last < win.lo:
            return f"{win.name} capture started {_secs(win.lo - last)} later{unmapped}"
        return f"{win.name} capture started only {_secs(last - win.lo)} before, within what the clock offset is unsure of"
    if first_elsewhere + win.early_ns > win.hi:
        if first_elsewhere > win.hi:
            return f"{win.name} capture stopped {_secs(first_elsewhere - win.hi)} earlier{unmapped}"
        return f"{win.name} capture stopped only {_secs(win.hi - first_elsewhere)} after, within what the clock offset is unsure of"
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
            why = outside(win, toward, d.t_last if name != "client" and d.outcome == "lost-outbound" else None,
                          opened=bool(d.frames.get(name)))
            if why:
                return why
        if name == "server" and win is not None and win.offset_ns is not None and d.server_until is not None \
                and d.server_until > win.hi - TAIL_NS:
            return "server capture ended about when this connection did"
        if name == "server" and win is not None and not win.mapped and _untied(d, sides):
            return UNTIED
    return None


UNTIED = ("server capture holds traffic of the server's address but no packet surely the client's, "
          "so when it listened is not known")


def _untied(d, sides) -> bool:
    """Whether the server capture holds packets with the address ``d``'s client addressed,
    though nothing was surely seen at both points. Its clock is then not known (its
    files' times say nothing of when it listened: a clock 90 s off, captures of other
    times), and that it saw the server's traffic and none of the client's proves no
    loss. (A server capture without any traffic of that address, when the client sent
    some, vouches on the files' times: everything the client sent was lost, or the
    capture was elsewhere.)"""
    return d.dst_key in sides["server"].all_addr_keys()


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
