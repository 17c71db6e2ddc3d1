"""The ladder diagram of one exchange: which packet reached which capture point.

``build_ladder`` is a pure function of an exchange (``rig.verdict/1`` JSON, with the
additive ``frames`` per point, or else its evidence frames) and the captures of the
capture points: it follows every packet of the exchange across the points (TCP by
sequence/ack numbers, which survive NATs; ICMP by echo sequence and payload; UDP by
payload — DESIGN.md §4), repeated keys pairing in order. Each packet becomes an
``Arrow``: where it was seen, where it vanished (``lost_after``), and whether it
appeared on the way without its sender's point ever seeing it (``from_middlebox``).
``ladder_svg`` draws it as inline SVG (no fonts, no scripts, scales to any width).
"""

from __future__ import annotations

import bisect
import html
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from rig.capture.table import ACK, FIN, PSH, QUOTED_DTYPE, RST, SYN, format_addr

PATH_ORDER = ("client", "router", "hgw", "nat", "server")  # known point names, client side first


@dataclass(frozen=True)
class Arrow:
    direction: str  # "out" (client -> server) | "back"
    label: str
    seen: tuple[tuple[str, int], ...]  # (point, frame) in path order
    t: float  # seconds since the exchange's first packet, in the client's clock (estimated)
    lost_after: str | None  # the last point that saw it, when it never reached the far end
    from_middlebox: bool  # first seen past the sender's own point: someone on the path made it

    @property
    def lost(self) -> bool:
        return self.lost_after is not None


@dataclass(frozen=True)
class Ladder:
    exchange_id: str
    points: tuple[str, ...]  # columns, client side first
    arrows: tuple[Arrow, ...]
    note: str | None = None  # why the drawing is partial


def order_points(names) -> tuple[str, ...]:
    def key(n: str):
        return (PATH_ORDER.index(n) if n in PATH_ORDER else len(PATH_ORDER) - 1 - 0.5, n)

    return tuple(sorted(set(names), key=key))


def _host(endpoint: str | None) -> str | None:
    if not endpoint:
        return None
    e = endpoint.strip()
    if e.startswith("["):
        return e[1 : e.index("]")]
    if e.count(":") == 1:
        return e.split(":")[0]
    return e


def _port(endpoint: str | None) -> int | None:
    if not endpoint:
        return None
    e = endpoint.strip()
    if e.startswith("[") and "]:" in e:
        return int(e.rsplit(":", 1)[1])
    if e.count(":") == 1:
        return int(e.split(":")[1])
    return None


def packet_label(r: np.void, q: np.void) -> str:
    """``r``: a packet-table row; ``q``: its ``Capture.quoted_at`` record."""
    proto = int(r["proto"])
    if proto == 6:
        f = int(r["flags"])
        names = [n for bit, n in ((SYN, "SYN"), (FIN, "FIN"), (RST, "RST"), (PSH, "PSH"), (ACK, "ACK")) if f & bit]
        if f & SYN and f & ACK:
            names = ["SYN-ACK"]
        text = "-".join(names) or "TCP"
        if int(r["plen"]):
            text += f" len={int(r['plen'])}"
        return text
    if proto in (1, 58):
        t, c = int(r["icmp_type"]), int(r["icmp_code"])
        if t in (8, 128):
            return f"echo request seq={int(r['icmp_seq'])}"
        if t in (0, 129):
            return f"echo reply seq={int(r['icmp_seq'])}"
        if (proto == 1 and t == 3 and c == 4) or (proto == 58 and t == 2):
            return f"frag needed mtu={int(q['icmp_mtu'])}"
        if t in (3, 1):
            return f"unreachable code={c}"
        if t in (11, 3):
            return "time exceeded"
        return f"icmp type={t}"
    if proto == 17:
        return f"UDP len={int(r['plen'])}"
    return f"proto {proto}"


def _key(r: np.void, direction: str, q: np.void) -> tuple:
    proto = int(r["proto"])
    if proto == 6:
        return (direction, 6, int(r["flags"]) & (SYN | ACK | RST | FIN), int(r["seq"]), int(r["ack"]), int(r["plen"]))
    if proto in (1, 58):
        t = int(r["icmp_type"])
        if t in (8, 0, 128, 129):
            return (direction, proto, t, int(r["icmp_seq"]), int(r["phash"]))
        return (direction, proto, t, int(r["icmp_code"]), int(q["q_proto"]), int(q["q_seq"]))
    return (direction, proto, int(r["phash"]), int(r["plen"]))


def _is_request(r: np.void) -> bool:
    proto = int(r["proto"])
    if proto == 6:
        return bool(int(r["flags"]) & SYN) and not int(r["flags"]) & ACK
    if proto in (1, 58):
        return int(r["icmp_type"]) in (8, 128)
    return True


def _frames_of(exchange: Mapping[str, Any]) -> dict[str, list[int]]:
    fr = exchange.get("frames")
    if isinstance(fr, Mapping) and fr:
        return {p: sorted(int(x) for x in v) for p, v in fr.items()}
    out: dict[str, list[int]] = defaultdict(list)
    for e in exchange.get("evidence", ()):
        out[e["point"]].append(int(e["frame"]))
    return {p: sorted(set(v)) for p, v in out.items()}


_MOD = 1 << 32
_OPP = {"out": "back", "back": "out"}


def _isn_deltas(per_point, points) -> dict[str, dict[str, int]]:
    """How much each point's TCP sequence numbers differ per direction from the first
    point that saw that direction's SYN (0 unless a NAT randomises ISNs, pf style)."""
    syn: dict[str, dict[str, int]] = {p: {} for p in points}
    for p, items in per_point.items():
        for r, d, _ in items:
            if int(r["proto"]) != 6 or not int(r["flags"]) & SYN or d in syn[p]:
                continue
            if (d == "out") == (not int(r["flags"]) & ACK):
                syn[p][d] = int(r["seq"])
    out = {p: {"out": 0, "back": 0} for p in points}
    for d in ("out", "back"):
        ref = next((p for p in points if d in syn[p]), None)
        if ref is None:
            continue
        for p in points:
            if d in syn[p]:
                out[p][d] = (syn[p][d] - syn[ref][d]) % _MOD
    return out


def _data_packets(data: Mapping[str, list[tuple]], points: tuple[str, ...]) -> list[tuple]:
    """TCP data, matched by sequence ranges (DESIGN §4): TSO makes one 7 KB frame at the
    sender where the next point sees five segments, GRO the reverse. A segment counts
    as seen at a point that has the same segment (pairing repeats in order) or, when that
    point has no such segment at all, whose captured bytes cover its range. Each packet is
    drawn once, from the first point along its path that saw it."""
    out = []
    for d in ("out", "back"):
        path = points if d == "out" else points[::-1]
        rows = {p: [x for x in data.get(p, ()) if x[0] == d] for p in path}
        allrows = [x for p in path for x in rows[p]]
        if not allrows:
            continue
        base = (allrows[0][1] - (1 << 31)) % _MOD  # relative numbers stay clear of wrap-around
        counts: dict[str, defaultdict[tuple[int, int], list[tuple]]] = {p: defaultdict(list) for p in path}
        spans: dict[str, list[tuple[int, int]]] = {}
        for p in path:
            iv = []
            for x in rows[p]:
                counts[p][(x[1], x[2])].append(x)
                a = (x[1] - base) % _MOD
                iv.append((a, a + x[2]))
            spans[p] = _merge(iv)
        for i, p in enumerate(path):
            seen_k: dict[tuple, int] = defaultdict(int)
            for x in rows[p]:
                k = (x[1], x[2])
                o = seen_k[k]
                seen_k[k] += 1
                a = (x[1] - base) % _MOD
                if any(_has(counts[e], spans[e], k, o, a, a + x[2]) for e in path[:i]):
                    continue  # already drawn from an earlier point
                at = {p: (x[3], x[4])}
                for q in path[i + 1:]:
                    got = counts[q].get(k)
                    if got is not None and len(got) > o:
                        at[q] = (got[o][3], got[o][4])
                    elif got is None and _covers(spans[q], a, a + x[2]):
                        first = next(y for y in rows[q] if _overlap((y[1] - base) % _MOD, y[2], a, x[2]))
                        at[q] = (first[3], first[4])
                out.append(((d, "data", x[1], x[2], o), at, x[5]))
    return out


def _merge(iv: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[list[int]] = []
    for a, b in sorted(iv):
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    return [(a, b) for a, b in merged]


def _covers(spans: list[tuple[int, int]], a: int, b: int) -> bool:
    i = bisect.bisect_right(spans, (a, float("inf"))) - 1
    return i >= 0 and spans[i][0] <= a and spans[i][1] >= b


def _overlap(a1: int, n1: int, a2: int, n2: int) -> bool:
    return a1 < a2 + n2 and a2 < a1 + n1


def _has(counts, spans, k, o, a, b) -> bool:
    got = counts.get(k)
    if got is not None:
        return len(got) > o
    return _covers(spans, a, b)


def build_ladder(
    exchange: Mapping[str, Any],
    tables: Mapping[str, Any],
    offsets: Mapping[str, float] | None = None,
) -> Ladder:
    """Follow the exchange's packets across the capture points.

    ``tables``: the ``Capture`` per point (a bare packet table, ``Capture.packets``, will
    do, but then ICMP errors are drawn without what they are about: ``Capture.quoted``);
    points without one are left out of the drawing. ``offsets``: seconds each point's clock is ahead of the
    client's, if known; otherwise estimated from the packets seen at both."""
    frames = _frames_of(exchange)
    points = order_points([p for p in tables if p in frames] + [p for p in ("client", "server") if p in tables])
    if not points:
        return Ladder(exchange.get("id", "?"), (), (), note="no captures to draw from")
    # rows of the exchange at each point, with their direction
    endpoint = {"client": exchange.get("client"), "server": exchange.get("seen_at_server_as")}
    per_point: dict[str, list[tuple[np.void, str, np.void]]] = {}  # (row, direction, quoted record)
    for p in points:
        cap = tables[p]
        t = getattr(cap, "packets", cap)
        fs = [f for f in frames.get(p, ()) if 1 <= f <= len(t)]
        idx = np.asarray(fs, dtype=np.int64) - 1
        rows = t[idx] if fs else t[:0]
        quoted = cap.quoted_at(idx) if hasattr(cap, "quoted_at") else np.zeros(len(idx), QUOTED_DTYPE)
        host, port = _host(endpoint.get(p)), _port(endpoint.get(p))
        if host is None and len(rows):
            first = next((r for r in rows if _is_request(r)), rows[0])
            host, port = format_addr(first["src"]), int(first["sport"]) or None
        items = []
        for r, q in zip(rows, quoted):
            src = format_addr(r["src"])
            out = src == host and (port is None or int(r["proto"]) not in (6, 17) or int(r["sport"]) == port)
            items.append((r, "out" if out else "back", q))
        per_point[p] = items
    delta = _isn_deltas(per_point, points)
    packets = []  # (key, {point: (frame, ts)}, label)
    # control packets and everything not TCP data: equal keys pair across points in order
    occurrences: dict[tuple, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    data: dict[str, list[tuple]] = {}  # point -> [(direction, seq, plen, frame, ts, label)] of TCP data
    for p, items in per_point.items():
        for r, d, q in items:
            frame, ts, label = int(r["frame"]), int(r["ts_ns"]) / 1e9, packet_label(r, q)
            if int(r["proto"]) == 6:
                seq = (int(r["seq"]) - delta[p][d]) % _MOD
                ack = (int(r["ack"]) - delta[p][_OPP[d]]) % _MOD if int(r["flags"]) & ACK else 0
                if int(r["plen"]) > 0:
                    data.setdefault(p, []).append((d, seq, int(r["plen"]), frame, ts, label))
                    continue
                key = (d, 6, int(r["flags"]) & (SYN | ACK | RST | FIN), seq, ack, 0)
            else:
                key = _key(r, d, q)
            occurrences[key][p].append((frame, ts, label))
    for key, at_points in occurrences.items():
        n = max(len(v) for v in at_points.values())
        for i in range(n):
            at = {p: v[i] for p, v in at_points.items() if i < len(v)}
            label = next(iter(at.values()))[2]
            packets.append((key, {p: (f, ts) for p, (f, ts, _) in at.items()}, label))
    packets.extend(_data_packets(data, points))
    # clock offsets relative to the client
    off = dict(offsets or {})
    ref = "client" if "client" in points else points[0]
    for p in points:
        if p == ref or p in off:
            continue
        diffs = [at[p][1] - at[ref][1] for _, at, _ in packets if p in at and ref in at]
        off[p] = float(np.median(diffs)) if diffs else 0.0
    off[ref] = 0.0

    def t_of(at: Mapping[str, tuple[int, float]]) -> float:
        if ref in at:
            return at[ref][1]
        p = next(iter(at))
        return at[p][1] - off.get(p, 0.0)

    arrows = []
    for key, at, label in packets:
        direction = key[0]
        path = points if direction == "out" else points[::-1]
        seen = [i for i, p in enumerate(path) if p in at]
        first, last = min(seen), max(seen)
        lost_after = path[last] if last < len(path) - 1 else None
        arrows.append(
            Arrow(
                direction=direction,
                label=label,
                seen=tuple((p, at[p][0]) for p in points if p in at),
                t=t_of(at),
                lost_after=lost_after,
                from_middlebox=first > 0,
            )
        )
    arrows.sort(key=lambda a: a.t)
    t0 = arrows[0].t if arrows else 0.0
    arrows = [Arrow(a.direction, a.label, a.seen, a.t - t0, a.lost_after, a.from_middlebox) for a in arrows]
    note = None
    missing = [p for p in ("client", "server") if p not in tables]
    if missing:
        note = "no capture from " + " and ".join(missing)
    return Ladder(exchange.get("id", "?"), points, tuple(arrows), note)


def condense(arrows: tuple[Arrow, ...], max_rows: int = 40) -> list[Arrow | tuple[int, int]]:
    """The rows to draw: every arrow if they fit; otherwise the first and last ones plus
    every lost or middlebox packet (up to the budget), with ``(n, n_lost)`` gap rows
    standing for what was left out (a 512 KB transfer is hundreds of packets)."""
    n = len(arrows)
    if n <= max_rows:
        return list(arrows)
    head, tail = max_rows // 4, max_rows // 6
    keep = set(range(head)) | set(range(n - tail, n))
    special = [i for i, a in enumerate(arrows) if (a.lost or a.from_middlebox) and i not in keep]
    budget = max_rows - len(keep)
    if len(special) > budget:  # more trouble than rows: the first ones and the last ones
        special = special[: budget * 2 // 3] + special[len(special) - (budget - budget * 2 // 3):]
    keep |= set(special)
    rows: list[Arrow | tuple[int, int]] = []
    skipped, skipped_lost = 0, 0
    for i, a in enumerate(arrows):
        if i in keep:
            if skipped:
                rows.append((skipped, skipped_lost))
                skipped, skipped_lost = 0, 0
            rows.append(a)
        else:
            skipped += 1
            skipped_lost += a.lost
    if skipped:
        rows.append((skipped, skipped_lost))
    return rows


# --------------------------------------------------------------------------- drawing

_W = 480  # viewBox width; the SVG scales to the page (narrow: legible on a phone)
_TOP = 46
_ROW = 34


def ladder_svg(ladder: Ladder, title: str = "", max_rows: int = 40) -> str:
    """Inline SVG of the ladder. Lost packets end in a red cross (class ``lost``) in the
    segment where they vanished; packets someone on the path made are drawn dashed from
    that segment (class ``middlebox``)."""
    pts = ladder.points
    n = len(pts)
    if n == 0:
        return '<p class="muted">no packets to draw</p>'
    margin = 62
    xs = {p: margin + (i * (_W - 2 * margin) / max(n - 1, 1)) for i, p in enumerate(pts)}
    rows = condense(ladder.arrows, max_rows)
    height = _TOP + _ROW * max(len(rows), 1) + 24
    e = html.escape
    out = [
        f'<svg class="ladder" viewBox="0 0 {_W} {height}" role="img" preserveAspectRatio="xMidYMin meet" '
        f'aria-label="{e(title or "ladder diagram of " + ladder.exchange_id)}">',
        "<defs>"
        '<marker id="ah" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">'
        '<path d="M0,0 L10,5 L0,10 z" fill="#1f4e79"/></marker>'
        '<marker id="ahm" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">'
        '<path d="M0,0 L10,5 L0,10 z" fill="#b35c00"/></marker>'
        "</defs>",
    ]
    for p in pts:
        x = xs[p]
        out.append(
            f'<text x="{x:.1f}" y="18" text-anchor="middle" class="col">{e(p)}</text>'
            f'<line x1="{x:.1f}" y1="26" x2="{x:.1f}" y2="{height - 8}" class="post"/>'
        )
    for i, a in enumerate(rows):
        y = _TOP + i * _ROW
        if isinstance(a, tuple):
            gap, gap_lost = a
            what = f"{gap} more packets" + (f", {gap_lost} of them lost" if gap_lost else ", none lost")
            out.append(f'<g class="gap"><text x="{_W / 2:.1f}" y="{y + 8:.1f}" text-anchor="middle" class="lbl">'
                       f"⋯ {e(what)} ⋯</text></g>")
            continue
        path = pts if a.direction == "out" else pts[::-1]
        seen_pts = [p for p in path if p in dict(a.seen)]
        start_p, end_p = seen_pts[0], seen_pts[-1]
        x1 = xs[start_p]
        if a.from_middlebox:  # starts in the segment before the first point that saw it
            prev = path[path.index(start_p) - 1]
            x1 = (xs[prev] + xs[start_p]) / 2
        if a.lost:
            nxt = path[path.index(end_p) + 1]
            x2 = (xs[end_p] + xs[nxt]) / 2
        else:
            x2 = xs[end_p]
        cls = ["pkt", a.direction]
        if a.lost:
            cls.append("lost")
        if a.from_middlebox:
            cls.append("middlebox")
        frames = ", ".join(f"{p} #{f}" for p, f in a.seen)
        tip = f"{a.label} — seen at {frames}"
        if a.lost:
            tip += f"; lost after {a.lost_after}"
        if a.from_middlebox:
            tip += "; not sent by the " + ("client" if a.direction == "out" else "server")
        dy = 10
        marker = "" if a.lost else (' marker-end="url(#ahm)"' if a.from_middlebox else ' marker-end="url(#ah)"')
        out.append(f'<g class="{" ".join(cls)}" data-label="{e(a.label)}" data-frames="{e(frames)}"><title>{e(tip)}</title>')
        out.append(f'<line x1="{x1:.1f}" y1="{y:.1f}" x2="{x2:.1f}" y2="{y + dy:.1f}"{marker}/>')
        if a.lost:
            c = 6
            out.append(
                f'<g class="lost-mark"><line x1="{x2 - c:.1f}" y1="{y + dy - c:.1f}" x2="{x2 + c:.1f}" y2="{y + dy + c:.1f}"/>'
                f'<line x1="{x2 - c:.1f}" y1="{y + dy + c:.1f}" x2="{x2 + c:.1f}" y2="{y + dy - c:.1f}"/></g>'
            )
        if a.from_middlebox:
            out.append(f'<circle class="origin" cx="{x1:.1f}" cy="{y:.1f}" r="3.5"/>')
        lx = (x1 + x2) / 2
        status = " ✗ lost" if a.lost else (" (middlebox)" if a.from_middlebox else "")
        out.append(f'<text x="{lx:.1f}" y="{y - 3:.1f}" text-anchor="middle" class="lbl">{e(a.label)}{status}</text>')
        out.append(f'<text x="4" y="{y + 8:.1f}" class="t">+{a.t:.3f}s</text>')
        out.append("</g>")
    if not ladder.arrows:
        out.append(f'<text x="{_W / 2}" y="{_TOP + 8}" text-anchor="middle" class="lbl">no packets of this exchange were captured</text>')
    out.append("</svg>")
    return "".join(out)
