"""``analyse``: captures in, a ``rig.verdict/1`` Verdict out; and the ``rig diff`` handler.

The steps: group each point's packets (sides), find every exchange the client started
(tcp, reqrep), join them to the server and any extra points on NAT-invariant keys
(match), decide one outcome each, keep only exchanges toward the server (given, or the
destinations the server capture confirms), then mark as 'incomplete' whatever rests on
the absence of packets at a point that cannot vouch for it (empty, kernel drops, or not
capturing at that time), and write the diagnosis.
"""

from __future__ import annotations

from functools import partial
import os
import sys
from collections import Counter

import numpy as np

from rig.analysis.context import Ctx, Draft, with_copies
from rig.analysis.families import diagnose_families
from rig.analysis.portuse import port_use
from rig.analysis.prose import copy_note, undecided_words
from rig.analysis.gaps import in_gap
from rig.analysis.heap import one_arena
from rig.analysis.keys import addr_key
from rig.analysis.reqrep import echo_drafts, udp_drafts
from rig.analysis.roles import client_hosts, initiations, orientation
from rig.analysis.sides import Side
from rig.analysis.tcp import tcp_drafts
from rig.analysis.windows import (CaptureWindow, ClockFit, PointWindow, fit_clocks, point_window, started_mid_flow,
                                  vouch)
from rig.capture.table import Capture, addr_bytes
from rig.concurrency import Spare, run_all
from rig.errors import UsageError
from rig.gcpause import gc_paused
from rig.outcome import Outcome
from rig.verdict import CapturePointInfo, Evidence, Exchange, ExchangeList, Orientation, Verdict, write_verdict_json
from rig.unique import isin, unique

LOSSES = (Outcome.LOST_OUTBOUND, Outcome.LOST_RETURN)  # what fragments_lost may explain

_PROTO_ORDER = {"tcp": 0, "udp": 1, "icmp": 2}


def _addr_keys(text: str) -> set[int]:
    keys = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            b = addr_bytes(part)
        except ValueError as exc:
            raise UsageError(f"--server-addr: {part!r} is not an IP address") from exc
        keys.add(int(addr_key(np.frombuffer(b, np.uint8).reshape(1, 16))[0]))
    return keys


def _client_local(c: Side) -> set[int]:
    return client_hosts(c)  # by behaviour (rig.analysis.roles)


def _choose_servers(drafts: list[Draft], batches: list, server_addr: str | None, server: Side) -> set[int]:
    """The addresses (as the client addressed them) whose exchanges the verdict holds:
    those a matched exchange went to, and those the server capture holds a packet of
    (without NAT in front of it: an exchange caught only mid-way there, or before it
    began, still went to the server), whether or not any exchange was matched (a server
    capture started after the client's exchanges to one of its addresses). Neither: the
    address the client sent the most exchanges to."""
    if server_addr:
        return _addr_keys(server_addr)
    matched = {d.dst_key for d in drafts if d.matched}
    for b in batches:  # a batch's exchanges are all matched
        matched |= set(unique(b.dst_key).tolist())
    seen = {d.dst_key for d in drafts} & server.all_addr_keys()
    if matched or seen:
        return matched | seen
    counts = Counter(d.dst_key for d in drafts)
    if not counts:
        return set()
    top = max(counts.values())
    return {k for k, n in counts.items() if n == top}


def _side(name: str, cap: Capture) -> Side:
    """A point's ``Side``, and what the roles read of it (its initiations and own
    addresses, memoised: ``orientation`` and ``_client_local`` ask next) made on the
    same thread, beside the other point's (1M pair: 0.14 s on one thread otherwise)."""
    side = Side(name, cap)
    initiations(side)
    return side


def _tcp_step(ctx: Ctx, sides: dict[str, Side]):
    """``tcp_drafts``, then the TCP connections let go: only that step reads them (1M bench
    pair: with the UDP 4-tuples below, ~40 MB that the other thread's step and the
    verdict's assembly no longer carry)."""
    out = tcp_drafts(ctx)
    for side in sides.values():
        side.mid_flow = started_mid_flow(side)  # (windows.point_window)
        del side.tcp  # no step after this one reads it
    return out


def _udp_step(ctx: Ctx, sides: dict[str, Side], local: set[int], spare: Spare):
    """``udp_drafts``, then the UDP 4-tuples it memoised let go (only it reads them)."""
    out = udp_drafts(ctx, local, spare)
    for side in sides.values():
        side.memo.clear()
    return out


def _windows(sides: dict[str, Side], fit: ClockFit,
             given: dict[str, CaptureWindow] | None) -> dict[str, PointWindow | None]:
    """Each point's window on the client clock (``windows.point_window``)."""
    offsets = {"client": 0, "server": fit.offset_ns}
    return {name: point_window(name, *_span(side), offsets.get(name), (given or {}).get(name), fit, side.mid_flow)
            for name, side in sides.items()}


def _span(side: Side) -> tuple[int | None, int | None]:
    """A point's first and last packet, widened to when its interfaces say they started
    and stopped capturing (pcapng interface statistics: dumpcap records them), on its clock."""
    lo, hi = side.ts_min, side.ts_max
    for itf in side.cap.interfaces if side.cap is not None else ():
        start, end = itf.listened_ns
        if start is not None and lo is not None:
            lo = min(lo, start)
        if end is not None and hi is not None:
            hi = max(hi, end)
    return lo, hi


def analyse(client: Capture, server: Capture, *, server_addr: str | None = None,
            extra: dict[str, Capture] | None = None, kernel_drops: dict[str, int] | None = None,
            windows: dict[str, CaptureWindow] | None = None, orient: bool = False) -> Verdict:
    """The verdict for a client capture (the initiating side) and a server capture.
    ``windows``: when tcpdump listened at each point, if rig ran it (``windows.CaptureWindow``).
    ``orient``: check which way round they go (``roles.orientation``: swapped when the
    captures clearly say so, ``UsageError`` when they cannot tell); as given otherwise."""
    one_arena()  # the steps' threads reuse what the others freed (rig.analysis.heap: -45 MB peak at 1M packets)
    with gc_paused():  # a few objects per exchange and no cycles (rig.gcpause)
        return _analyse(client, server, server_addr, extra, kernel_drops, windows, orient)


def _analyse(client, server, server_addr, extra, kernel_drops, given_windows, orient=False) -> Verdict:
    # the work is numpy on large arrays, which releases the GIL: the two points are
    # grouped at once, and the protocols analysed at once, on this machine's 2 cores
    # (bench/diff.py, 2x1M packets: grouping 0.99 -> 0.58 s)
    names = ["client", "server", *(extra or {})]
    caps = [client, server, *(extra or {}).values()]
    grouped = run_all([partial(_side, n, cap) for n, cap in zip(names, caps)], names=[f"side-{n}" for n in names])
    turned = None
    if orient:
        why = orientation(grouped[0], grouped[1], _addr_keys(server_addr) if server_addr else None)
        if why.swap:
            grouped[0], grouped[1] = grouped[1], grouped[0]
            grouped[0].name, grouped[1].name = "client", "server"
            turned = Orientation(_file(grouped[0]), _file(grouped[1]), why.because)
    c, s = grouped[0], grouped[1]
    xs = dict(zip(names[2:], grouped[2:]))
    sides = {"client": c, "server": s, **xs}
    for name, n in (kernel_drops or {}).items():
        if name in sides and n is not None:
            sides[name].kernel_drops = int(n)
    ctx = Ctx(c, s, xs)
    local = _client_local(c)
    # the echoes, and the UDP flows once the UDP step has found them, are done by whichever
    # thread is free first (Spare): on the mix pair the UDP step was 0.9 s of CPU where
    # TCP and echo were 0.35 s; on the 1M pair TCP and echo the longer
    spare = Spare()
    spare.post("echo", lambda: echo_drafts(ctx))

    def tcp_then_spare():
        out = _tcp_step(ctx, sides)
        spare.drain()
        return out

    def udp_then_spare():
        out = _udp_step(ctx, sides, local, spare)
        spare.drain()
        return out

    (tcp, o1, b1), (udp, o3, b3) = run_all([tcp_then_spare, udp_then_spare], names=["tcp", "udp"])
    echo, o2, b2 = spare.result("echo")
    joined = (lambda xs: np.concatenate(xs) if xs else np.zeros(0, np.int64))  # noqa: E731
    fit = fit_clocks(joined(o1 + o2 + o3), joined(b1 + b2 + b3))
    offset = fit.offset_ns
    wins = _windows(sides, fit, given_windows)
    everything = tcp + echo + udp
    drafts = [d for d in everything if isinstance(d, Draft)]
    batches = [d for d in everything if not isinstance(d, Draft)]  # the fast paths' (ExchangeBatch)
    servers = _choose_servers(drafts, batches, server_addr, s)
    # verdict order: by first frame, then protocol, stable in the order the steps found
    # them; batches join as arrays (source -1 is a draft, else the batch's number)
    srcs, locs, firsts, protos = [], [], [], []
    kept: list[Draft | None] = [d for d in drafts if d.dst_key in servers]
    k = 0
    for d in everything:
        if isinstance(d, Draft):
            if d.dst_key in servers:
                srcs.append(np.array([-1]))
                locs.append(np.array([k]))
                firsts.append(np.array([d.first_frame], np.int64))
                protos.append(np.array([_PROTO_ORDER[d.protocol]]))
                k += 1
        else:
            bi = batches.index(d)
            sel = np.flatnonzero(isin(d.dst_key, np.fromiter(servers, np.uint64, len(servers))))
            srcs.append(np.full(len(sel), bi))
            locs.append(sel)
            firsts.append(d.first_frame[sel])
            protos.append(np.full(len(sel), _PROTO_ORDER[d.protocol]))
    del drafts, tcp, echo, udp, everything  # each draft is released as soon as its record exists
    cat = (lambda xs, dt: np.concatenate(xs).astype(dt) if xs else np.zeros(0, dt))  # noqa: E731
    src, loc, frame, proto = cat(srcs, np.int32), cat(locs, np.int64), cat(firsts, np.int64), cat(protos, np.int64)
    order = np.lexsort((proto, frame))  # stable: ties keep the steps' order
    src, loc, proto = src[order], loc[order], proto[order]
    num = np.zeros(len(order), np.int64)
    for p in range(3):  # ids count per protocol in verdict order
        at = proto == p
        num[at] = np.arange(1, int(at.sum()) + 1)
    eager_at = np.flatnonzero(src < 0)
    point_order = ["client", *xs, "server"]
    exchanges = []
    copies = {name: side.copy_frames() for name, side in sides.items()}
    any_copies = any(copies.values())
    for pos, j in zip(eager_at.tolist(), loc[eager_at].tolist()):
        d, kept[j] = kept[j], None
        if d is None:
            raise AssertionError(f"draft {j} placed twice in the verdict")
        n = int(num[pos])
        if d.outcome != Outcome.DELIVERED and d.absent_at:
            unseen = vouch(d, sides, wins) or in_gap(d, sides, offset)
            if unseen:
                d.explanation = undecided_words(unseen, d.outcome, d.explanation)
                d.outcome = Outcome.INCOMPLETE
                d.undecided_because = unseen
        fr = d.frames
        frames = tuple((p, with_copies(sorted(set(fr[p])), copies[p])) for p in point_order if p in fr)
        evidence = tuple(d.evidence)
        if any_copies:  # a packet a point captured twice (tcpdump -i any): both frames named
            evidence = tuple(Evidence(e.point, e.frame, copy_note(e.summary, e.frame, copies.get(e.point, {})))
                             for e in evidence)
        exchanges.append(Exchange(f"{d.protocol}-{n}", d.protocol, d.client, d.server, d.seen_at_server_as, d.outcome,
                                  d.explanation, tuple(d.changes), evidence, frames, d.path_mtu,
                                  d.undecided_because, d.datagrams, d.lost_between, d.port_reused, d.echo,
                                  seen_at=tuple(d.seen_at.items()), fragments_lost=d.fragments_lost and d.outcome in LOSSES))
    loc[eager_at] = np.arange(len(eager_at))
    points = []
    for name, side in sides.items():
        cap = side.cap
        points.append(CapturePointInfo(
            name=name,
            file=_file(side),
            packets=side.n_total + (cap.skipped if cap is not None else 0),  # (capture.focus)
            undecoded=int(sum((cap.undecoded or {}).values())) if cap is not None else 0,
            kernel_drops=side.kernel_drops,
            clock_offset_s=(0.0 if name == "client" else (offset / 1e9 if (name == "server" and offset is not None) else None)),
        ))
    ex = ExchangeList(exchanges, batches, src, loc, num)
    use = port_use(ex)
    return Verdict(tuple(points), ex, diagnose_families(ex), orientation=turned,
                   port_set=use if use is not None and use.worth_saying else None)


def _file(side: Side) -> str:
    return os.path.basename(side.cap.path) if side.cap is not None else ""


def cli_diff(args) -> int:
    """``rig diff CLIENT SERVER [--json] [--server-addr A] [--progress]``."""
    from rig.waiting import stages

    with stages(force=getattr(args, "progress", False)) as stage:  # on stderr, for a long diff (rig.waiting)
        return _cli_diff(args, stage)


def _cli_diff(args, stage) -> int:
    from rig.capture.checks import gap_note
    from rig.capture.pair import read_for_diff

    stage("reading the captures")
    # lean (table.py), not one capture given twice (checks.py), both at once (2 cores) or,
    # against a much larger capture, that one kept to what the small one makes relevant
    client, server = read_for_diff(args.client, args.server)
    for cap in (client, server):  # the verdict stands on what was read; say what was not
        if cap.truncated_tail:
            print(f"rig: warning: {cap.path}: {cap.tail_note}; the {len(cap.packets)} complete records "
                  "before it were analysed", file=sys.stderr)
        if cap.gaps:
            print(f"rig: warning: {gap_note(cap)}", file=sys.stderr)
    stage("analysing")
    verdict = analyse(client, server, server_addr=getattr(args, "server_addr", None), orient=True)
    stage("writing")
    turned = verdict.orientation
    if turned is not None:
        print(f"rig: analysing {turned.client} as the client's capture and {turned.server} as the server's: "
              f"{turned.because}", file=sys.stderr)
    if getattr(args, "json", False):
        write_verdict_json(verdict, sys.stdout)
    else:
        from rich.console import Console

        from rig.render import print_verdict

        print_verdict(verdict, Console())
    return verdict.exit_code()
