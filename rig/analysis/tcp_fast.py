"""The bulk of a large run: TCP connections delivered both ways, decided in one pass.

``tcp.py`` decides each connection with a close look at its packets; at a million
packets that look costs too much for the many connections where nothing went wrong. Here
the counts and sequence ranges of every matched connection are compared as arrays, and
only those that are plainly delivered get their record built from column lists (with
the same changes, evidence and wording as the close look). Everything else is left to
``tcp.py``.
"""

from __future__ import annotations

import numpy as np

from rig.analysis.changes import isn_change, payload_change, tcp_syn_changes
from rig.analysis.context import Ctx, Draft
from rig.analysis.sides import Side
from rig.analysis.summary import addr_texts, tcp_flags
from rig.verdict import Evidence

_CHANGE_FIELDS = ("ttl", "ipver", "ip_id", "tos", "frag", "mss", "wscale", "sackok", "has_ts")


def delivered_mask(ctx: Ctx, ci: np.ndarray, si: np.ndarray) -> np.ndarray:
    """Which client connections (``ci``, matched to server ``si``, -1 if none) are plainly delivered."""
    cc, sc = ctx.client.tcp, ctx.server.tcp
    if ctx.extra or len(ci) == 0 or len(sc) == 0:
        return np.zeros(len(ci), bool)
    ok = si >= 0
    s = np.maximum(si, 0)
    ok &= (sc.syn[s] >= 0) & (sc.synack[s] >= 0) & (cc.synack[ci] >= 0)
    ok &= cc.n_rst_rev[ci] <= sc.n_rst_rev[s]
    s_end, c_end = sc.data_end_rev[s], cc.data_end_fwd[ci]
    ok &= cc.data_end_rev[ci] <= np.maximum(s_end, 1)
    ok &= (c_end <= 1) | (sc.ack_rev[s] >= c_end)
    ok &= (s_end <= 1) | (cc.ack_fwd[ci] >= s_end)
    return ok


class _Cols:
    """Columns of some rows of a side as Python lists (one conversion per column)."""

    def __init__(self, side: Side, rows: np.ndarray,
                 fields=("ttl", "mss", "sport", "dport", "seq", "ack", "flags", "plen", "frame")):
        t = side.t
        self.n = len(rows)
        self.c = {f: t[f][rows].tolist() for f in fields}
        self.src = addr_texts(t["src"][rows])
        self.dst = addr_texts(t["dst"][rows])

    def endpoints(self, which: str = "src", shared: bool = False) -> list[str]:
        """``shared``: few distinct values (the server's), so equal strings are one object."""
        addrs = self.src if which == "src" else self.dst
        ports = self.c["sport" if which == "src" else "dport"]
        out = [f"[{a}]:{p}" if ":" in a else f"{a}:{p}" for a, p in zip(addrs, ports)]
        if shared:
            one: dict[str, str] = {}
            out = [one.setdefault(x, x) for x in out]
        return out

    def summaries(self, note: str) -> list[str]:
        """The same words as ``summary.summarize`` for each row, with ``note`` appended."""
        c = self.c
        out = []
        for a, b, fl, seq, ack, plen, mss, ttl in zip(self.endpoints("src"), self.endpoints("dst"), c["flags"],
                                                      c["seq"], c["ack"], c["plen"], c["mss"], c["ttl"]):
            text = f"{a} > {b} {tcp_flags(fl)} seq {seq}"
            if fl & 0x10:
                text += f" ack {ack}"
            if plen:
                text += f" len {plen}"
            if mss:
                text += f" mss {mss}"
            out.append(f"{text} ttl {ttl} — {note}")
        return out


def delivered_text(to_server: int, to_client: int, lost_syn: int = 0, lost_synack: int = 0) -> str:
    """The explanation of a delivered connection (bytes as the receivers show them)."""
    parts = ["handshake completed"]
    if lost_syn:
        parts[0] += f" after {lost_syn} lost SYN{'s' if lost_syn > 1 else ''}"
    if lost_synack:
        parts[0] += f"{' and' if lost_syn else ' after'} {lost_synack} lost SYN-ACK{'s' if lost_synack > 1 else ''}"
    if to_server > 0:
        parts.append(f"{to_server} bytes reached the server")
    if to_client > 0:
        parts.append(f"{to_client} bytes of reply reached the client")
    return "; ".join(parts)


def delivered_drafts(ctx: Ctx, ci: np.ndarray, si: np.ndarray) -> list[Draft]:
    """Drafts of connections ``delivered_mask`` accepted."""
    c, s = ctx.client, ctx.server
    cc, sc = c.tcp, s.tcp
    if len(ci) == 0:
        return []
    syn_c = _Cols(c, cc.order[cc.syn[ci]])
    syn_s = _Cols(s, sc.order[sc.syn[si]], fields=("sport",))
    synack_s = _Cols(s, sc.order[sc.synack[si]])
    dst_key = c.dst_key[cc.order[cc.syn[ci]]].tolist()
    # every frame of each connection, in frame order, from one conversion per point
    c_frames, s_frames = c.t["frame"][cc.order].tolist(), s.t["frame"][sc.order].tolist()
    c_ts = c.t["ts_ns"][cc.order]
    c_end = np.append(cc.starts[1:], len(cc.order))
    s_end = np.append(sc.starts[1:], len(sc.order))
    c_lo, c_hi = cc.starts[ci].tolist(), c_end[ci].tolist()
    s_lo, s_hi = sc.starts[si].tolist(), s_end[si].tolist()
    t_first, t_last = c_ts[cc.starts[ci]].tolist(), c_ts[c_end[ci] - 1].tolist()
    isn = (cc.isn_c[ci].tolist(), sc.isn_c[si].tolist(), cc.isn_s[ci].tolist(), sc.isn_s[si].tolist())
    cbytes = (cc.data_end_fwd[ci] - 1).tolist()
    sbytes = (sc.data_end_rev[si] - 1).tolist()
    payload = _payload_suspects(ctx, ci, si)
    out_changes = _changes_by_signature(c, s, cc.order[cc.syn[ci]], sc.order[sc.syn[si]], "out")
    back_changes = _changes_by_signature(c, s, cc.order[cc.synack[ci]], sc.order[sc.synack[si]], "back")
    client_ep, server_ep, seen_ep = syn_c.endpoints("src"), syn_c.endpoints("dst", shared=True), syn_s.endpoints("src")
    texts: dict[tuple[int, int, int, int], str] = {}
    lost_syn = np.maximum(cc.n_syn[ci] - sc.n_syn[si], 0).tolist()
    lost_synack = np.maximum(sc.n_synack[si] - cc.n_synack[ci], 0).tolist()
    ev_c = [Evidence(c.name, f, t) for f, t in zip(syn_c.c["frame"], syn_c.summaries("SYN sent"))]
    ev_s = [Evidence(s.name, f, t) for f, t in zip(synack_s.c["frame"], synack_s.summaries("SYN-ACK sent; it arrived"))]
    first = syn_c.c["frame"]
    cname, sname = c.name, s.name
    drafts = []
    for i in range(len(ci)):
        d = Draft("tcp", dst_key[i], t_first[i], t_last[i], first[i], client_ep[i], server_ep[i], seen_ep[i],
                  "delivered", "", True)
        ch = out_changes[i] + back_changes[i]
        if isn[0][i] != isn[1][i] or isn[2][i] != isn[3][i] or i in payload:
            ch = (out_changes[i] + tuple(isn_change(isn[0][i], isn[1][i], "out")) + back_changes[i]
                  + tuple(isn_change(isn[2][i], isn[3][i], "back")) + tuple(payload.get(i, ())))
        d.changes = ch
        key = (cbytes[i], sbytes[i], lost_syn[i], lost_synack[i])
        text = texts.get(key)
        if text is None:  # many connections carry the same sizes: one string for all of them
            text = texts[key] = delivered_text(*key)
        d.explanation = text
        d.evidence = (ev_c[i], ev_s[i])
        d.frames = ((cname, tuple(c_frames[c_lo[i]:c_hi[i]])), (sname, tuple(s_frames[s_lo[i]:s_hi[i]])))
        d.frames_sorted = True
        drafts.append(d)
    return drafts


def _changes_by_signature(c: Side, s: Side, rc: np.ndarray, rs: np.ndarray, direction: str) -> list[tuple]:
    """``tcp_syn_changes`` for each pair of rows, computed once per distinct signature."""
    cols = []
    for f in _CHANGE_FIELDS:
        a, b = c.t[f][rc].astype(np.int64), s.t[f][rs].astype(np.int64)
        if f == "ip_id":  # equal IP IDs say nothing: let them share a signature
            same = a == b
            a, b = np.where(same, -1, a), np.where(same, -1, b)
        cols += [a, b]
    sig = np.stack(cols, axis=1)
    uniq, first, inv = np.unique(sig, axis=0, return_index=True, return_inverse=True)
    per = []
    for k in first.tolist():
        a = {f: v for f, v in zip(_CHANGE_FIELDS, (c.t[f][rc[k]] for f in _CHANGE_FIELDS))}
        b = {f: v for f, v in zip(_CHANGE_FIELDS, (s.t[f][rs[k]] for f in _CHANGE_FIELDS))}
        per.append(tuple(tcp_syn_changes(a, b, direction)))
    return [per[j] for j in inv.ravel().tolist()]


def _payload_suspects(ctx: Ctx, ci: np.ndarray, si: np.ndarray) -> dict[int, list]:
    """Payload changes, checked on the first data segment of each direction (vectorised)."""
    c, s = ctx.client, ctx.server
    cc, sc = c.tcp, s.tcp
    out: dict[int, list] = {}
    for direction, fc, fs in (("out", cc.first_data_fwd, sc.first_data_fwd), ("back", cc.first_data_rev, sc.first_data_rev)):
        a, b = fc[ci], fs[si]
        has = (a >= 0) & (b >= 0)
        idx = np.flatnonzero(has)
        if not len(idx):
            continue
        ra, rb = cc.order[a[idx]], sc.order[b[idx]]
        ta, tb = c.t[ra], s.t[rb]
        diff = ((cc.rel_seq[a[idx]] == sc.rel_seq[b[idx]]) & (ta["plen"] == tb["plen"])
                & (ta["pcaplen"] == tb["pcaplen"]) & (ta["phash"] != tb["phash"]))
        for k in np.flatnonzero(diff).tolist():
            out.setdefault(int(idx[k]), []).extend(payload_change(ta[k], tb[k], direction))
    return out
