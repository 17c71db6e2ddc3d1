"""The bulk of a large run for echo and UDP: one request, one reply, both seen everywhere.

Requests pair with the server's copies, and each point's requests with that point's
replies, by ``pair_by_order`` (vectorised). Exchanges whose four packets are all there
are built here from column lists, with the same wording, changes and evidence as the
close look in ``reqrep``; everything else is left to it.
"""

from __future__ import annotations

import numpy as np

from rig.analysis.changes import ip_changes
from rig.analysis.context import Ctx, Draft
from rig.analysis.sides import Side
from rig.analysis.summary import addr_texts
from rig.verdict import Change, Evidence

_IP_FIELDS = ("ttl", "ipver", "ip_id", "tos", "frag")
_NAMES = {0: "echo reply", 8: "echo request", 128: "echo request", 129: "echo reply"}


class _Rows:
    def __init__(self, side: Side, rows: np.ndarray, fields=("ttl", "sport", "dport", "plen", "icmp_type", "icmp_id",
                                                            "icmp_seq", "frame"), addresses: bool = True):
        t = side.t
        self.c = {f: t[f][rows].tolist() for f in fields}
        self.src = addr_texts(t["src"][rows]) if addresses else []
        self.dst = addr_texts(t["dst"][rows]) if addresses else []

    def eps(self, which: str, port: bool, shared: bool = False) -> list[str]:
        """``shared``: few distinct values (the server's), so equal strings are one object."""
        addrs = self.src if which == "src" else self.dst
        if not port:
            return addrs
        ports = self.c["sport" if which == "src" else "dport"]
        out = [f"[{a}]:{p}" if ":" in a else f"{a}:{p}" for a, p in zip(addrs, ports)]
        if shared:
            one: dict[str, str] = {}
            out = [one.setdefault(x, x) for x in out]
        return out

    def summaries(self, udp: bool, note: str) -> list[str]:
        c = self.c
        if udp:
            return [f"{a} > {b} UDP len {n} ttl {t} — {note}"
                    for a, b, n, t in zip(self.eps("src", True), self.eps("dst", True), c["plen"], c["ttl"])]
        return [f"{a} > {b} ICMP {_NAMES.get(ty, 'echo')} id {i} seq {q} ttl {t} — {note}"
                for a, b, ty, i, q, t in zip(self.src, self.dst, c["icmp_type"], c["icmp_id"], c["icmp_seq"], c["ttl"])]


def changes_by_signature(c: Side, s: Side, rc: np.ndarray, rs: np.ndarray, direction: str) -> list[tuple]:
    """``ip_changes`` for each pair of rows, computed once per distinct signature."""
    if len(rc) == 0:
        return []
    cols = []
    for f in _IP_FIELDS:
        a, b = c.t[f][rc].astype(np.int64), s.t[f][rs].astype(np.int64)
        if f == "ip_id":
            same = a == b
            a, b = np.where(same, -1, a), np.where(same, -1, b)
        cols += [a, b]
    sig = np.stack(cols, axis=1)
    _, first, inv = np.unique(sig, axis=0, return_index=True, return_inverse=True)
    per = []
    for k in first.tolist():
        a = {f: c.t[f][rc[k]] for f in _IP_FIELDS}
        b = {f: s.t[f][rs[k]] for f in _IP_FIELDS}
        per.append(tuple(ip_changes(a, b, direction)))
    return [per[j] for j in inv.ravel().tolist()]


def delivered_drafts(ctx: Ctx, protocol: str, creq: np.ndarray, sreq: np.ndarray, srep: np.ndarray,
                     crep: np.ndarray) -> tuple[list[Draft], np.ndarray, np.ndarray]:
    """Drafts for exchanges whose request and reply were seen at both points (rows given,
    one per exchange); returns them with the out and back delays for the clock offset."""
    c, s = ctx.client, ctx.server
    udp = protocol == "udp"
    req, word, rep = ("datagram", "datagram", "reply") if udp else ("echo request", "echo request", "echo reply")
    cq = _Rows(c, creq, ("sport", "dport", "icmp_id", "frame", "ts_ns"))
    sq, cp = _Rows(s, sreq), _Rows(c, crep)
    sp = _Rows(s, srep, ("frame",), addresses=False)
    out_ch = changes_by_signature(c, s, creq, sreq, "out")
    back_ch = changes_by_signature(c, s, crep, srep, "back")
    dst_key = c.dst_key[creq].tolist()
    explanation = f"the {word} reached the server and its {rep} reached the client"
    n = len(creq)
    # every string and record of the batch from column lists, one comprehension each
    client_ep, server_ep, seen_ep = cq.eps("src", udp), cq.eps("dst", udp, shared=True), sq.eps("src", udp)
    ev_s = [Evidence(s.name, f, t) for f, t in zip(sq.c["frame"], sq.summaries(udp, f"{req} arrived"))]
    ev_c = [Evidence(c.name, f, t) for f, t in zip(cp.c["frame"], cp.summaries(udp, f"{rep} arrived"))]
    fc = [(a, b) if a < b else (b, a) for a, b in zip(cq.c["frame"], cp.c["frame"])]
    fs = [(a, b) if a < b else (b, a) for a, b in zip(sq.c["frame"], sp.c["frame"])]
    ids_changed = set() if udp else set(np.flatnonzero(c.t["icmp_id"][creq] != s.t["icmp_id"][sreq]).tolist())
    t0s, first = cq.c["ts_ns"], cq.c["frame"]
    cname, sname = c.name, s.name
    drafts = []
    for i in range(n):  # final tuples here: turning the draft into its record copies nothing
        ch = out_ch[i] + back_ch[i]
        if i in ids_changed:
            ch = out_ch[i] + (Change("icmp.id", "out", cq.c["icmp_id"][i], sq.c["icmp_id"][i], "echo id rewritten"),) \
                + back_ch[i]
        d = Draft(protocol, dst_key[i], t0s[i], t0s[i], first[i], client_ep[i], server_ep[i], seen_ep[i],
                  "delivered", explanation, True, ch, (ev_s[i], ev_c[i]), ((cname, fc[i]), (sname, fs[i])), (), True)
        drafts.append(d)
    out_d = s.t["ts_ns"][sreq].astype(np.int64) - c.t["ts_ns"][creq].astype(np.int64)
    back_d = c.t["ts_ns"][crep].astype(np.int64) - s.t["ts_ns"][srep].astype(np.int64)
    return drafts, out_d, back_d
