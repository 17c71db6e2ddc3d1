"""TCP exchanges: each connection attempt the client made, followed to the server and back.

The handshake decides most outcomes (lost SYN, lost SYN-ACK, RST, silence, an answer
the server never sent). After a handshake, data is followed by sequence ranges relative
to each side's ISN (so TSO/GRO frames and segments compare), using the receiver's own
ACKs as proof of receipt; only a connection whose data did not all arrive gets the
per-segment look that tells an MTU black hole from plain loss.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import Counter

import numpy as np

from rig.analysis.changes import data_changes, isn_change, tcp_syn_changes
from rig.analysis.context import LOST_EVIDENCE, Ctx, Draft, hop_words, lost_between, quoted_at, quoted_one
from rig.analysis import prose_tcp as W
from rig.analysis.prose import ambiguous_match_words, tcp_delivered_words
from rig.analysis.keys import combine1, take
from rig.analysis.match import match_tcp, syn_delays
from rig.analysis.sides import Side, TcpConns
from rig.analysis.summary import endpoint, frag_needed_mtu, path_signal
from rig.analysis.tcp_fast import TcpBatch, acked, delivered_drafts, delivered_mask
from rig.capture.table import ACK, RST, SYN
from rig.outcome import Outcome


def error_index(side: Side) -> dict[int, list[int]]:
    """ICMP errors at a point, by the key of the packet they quote."""
    if len(side.errors) == 0:
        return {}
    keys = side.error_key(side.errors)
    out: dict[int, list[int]] = {}
    for k, r in zip(keys.tolist(), side.errors.tolist()):
        out.setdefault(k, []).append(r)
    return out


class _Conn:
    """The rows of one connection at one point, split by role (indices into side.t)."""

    def __init__(self, side: Side, conns: TcpConns, ci: int):
        self.side, self.conns, self.ci = side, conns, ci
        sr = conns.rows(ci)
        self.sr = sr
        self.rows = conns.order[sr]
        t = side.t[self.rows]
        f = t["flags"].astype(np.int64)
        fwd = conns.fwd[sr]
        self.fwd = fwd
        syn, ack, rst = (f & SYN) != 0, (f & ACK) != 0, (f & RST) != 0
        self.syn = self.rows[syn & ~ack & fwd]
        self.synack = self.rows[syn & ack & ~fwd]
        self.rst_fwd = self.rows[rst & fwd]
        self.rst_rev = self.rows[rst & ~fwd]
        plen = t["plen"].astype(np.int64)
        self.data_fwd = np.flatnonzero((plen > 0) & fwd)  # positions in sr
        self.data_rev = np.flatnonzero((plen > 0) & ~fwd)
        self.isn_c = int(conns.isn_c[ci])
        self.isn_s = int(conns.isn_s[ci])

    def stale_acks(self) -> np.ndarray:
        """Bare ACKs from the responder (no SYN, no RST) while it never sent a SYN-ACK."""
        if len(self.synack):
            return np.zeros(0, np.int64)
        f = take(self.side.t["flags"], self.rows).astype(np.int64)
        bare = ~self.fwd & ((f & ACK) != 0) & ((f & (SYN | RST)) == 0)
        return self.rows[bare]

    def acked_synack(self) -> np.ndarray:
        """The initiator's packets (no SYN, no RST) that acknowledge the responder's SYN."""
        t = take(self.side.t, self.rows)
        f = t["flags"].astype(np.int64)
        own = self.fwd & ((f & ACK) != 0) & ((f & (SYN | RST)) == 0)
        return self.rows[own & (t["ack"].astype(np.int64) == (self.isn_s + 1) % 2**32)]

    def first(self, rows: np.ndarray) -> np.void | None:
        return self.side.t[rows[0]] if len(rows) else None


def _intervals(starts: list[int], ends: list[int]) -> tuple[list[int], list[int]]:
    merged_s: list[int] = []
    merged_e: list[int] = []
    for s, e in sorted(zip(starts, ends)):
        if merged_s and s <= merged_e[-1]:
            merged_e[-1] = max(merged_e[-1], e)
        else:
            merged_s.append(s)
            merged_e.append(e)
    return merged_s, merged_e


def _covered(ms: list[int], me: list[int], s: int, e: int) -> bool:
    i = bisect_right(ms, s) - 1
    return i >= 0 and me[i] >= e


class _DataLook:
    """One direction of a connection's data: which sender segments the receiver never got."""

    def __init__(self, snd: _Conn, rcv: _Conn, sender_is_initiator: bool, mss_limit: int):
        st = snd.conns
        pos = snd.data_fwd if sender_is_initiator else snd.data_rev
        # what the sender sent after the peer's RST reached it was never meant to arrive
        peer_rst = snd.rst_rev if sender_is_initiator else snd.rst_fwd
        if len(peer_rst):
            pos = pos[snd.rows[pos] < peer_rst.min()]
        sr = snd.sr[pos]
        self.rows = snd.rows[pos]
        rel = st.rel_seq_at(sr).tolist()
        plen = take(snd.side.t["plen"], self.rows).astype(np.int64).tolist()
        rpos = rcv.data_fwd if sender_is_initiator else rcv.data_rev
        rsr = rcv.sr[rpos]
        rrel = rcv.conns.rel_seq_at(rsr).tolist()
        rlen = take(rcv.side.t["plen"], rcv.rows[rpos]).astype(np.int64).tolist()
        # the receiver's ACKs prove receipt of everything below them
        back = ~rcv.fwd if sender_is_initiator else rcv.fwd
        acks = rcv.conns.rel_ack_at(rcv.sr[back])
        max_ack = int(acks.max()) if len(acks) else 0
        starts, ends = [1] + rrel, [max(max_ack, 1)] + [a + b for a, b in zip(rrel, rlen)]
        ms, me = _intervals(starts, ends)
        self.missing: list[int] = []
        self.passed_eff: list[int] = []
        self.missing_eff: list[int] = []
        starts_missing: Counter = Counter()
        for i, (r, n) in enumerate(zip(rel, plen)):
            eff = min(n, mss_limit) if mss_limit else n
            if _covered(ms, me, r, r + n):
                self.passed_eff.append(eff)
            else:
                self.missing.append(i)
                self.missing_eff.append(eff)
                starts_missing[r] += 1
        self.retransmissions = sum(v - 1 for v in starts_missing.values())
        self.missing_bytes = len({(rel[i], plen[i]) for i in self.missing}) and sum(
            n for (r, n) in {(rel[i], plen[i]) for i in self.missing})
        self.missing_rows = self.rows[self.missing] if self.missing else np.zeros(0, np.int64)


def _same_copy(sender: _Conn, rows: np.ndarray, arrived: np.void) -> np.void:
    """The copy among ``rows`` (a SYN or SYN-ACK and its retransmissions, as sent) that is
    the packet that ``arrived``: same TCP timestamp, else same IP ID, else the first.
    (The vectorised rule for delivered connections is match.copy_that_arrived.)"""
    t = sender.side.t
    for field, flag in (("tsval", "has_ts"), ("ip_id", None)):
        if flag and not arrived[flag]:
            continue
        for r in rows.tolist():
            if (not flag or t[flag][r]) and t[field][r] == arrived[field]:
                return t[r]
    return t[rows[0]]


def _frag_needed(side: Side, conn: _Conn) -> list[int]:
    """ICMP frag-needed / packet-too-big at ``side`` about this connection's packets."""
    if len(side.errors) == 0:
        return []
    t = side.t[side.errors]
    big = ((t["proto"] == 1) & (t["icmp_type"] == 3) & (t["icmp_code"] == 4)) | (
        (t["proto"] == 58) & (t["icmp_type"] == 2))
    first = side.t[conn.rows[0]]
    ports = {(int(first["sport"]), int(first["dport"])), (int(first["dport"]), int(first["sport"]))}
    q = quoted_at(side, side.errors)
    ok = [int(r) for r, b, qs, qd, qp in zip(side.errors, big, q["q_sport"], q["q_dport"], q["q_proto"])
          if b and int(qp) == 6 and (int(qs), int(qd)) in ports]
    return ok


def tcp_drafts(ctx: Ctx) -> tuple[list[Draft | TcpBatch], list[np.ndarray], list[np.ndarray]]:
    c, s = ctx.client, ctx.server
    cc = c.tcp
    m, undecided = match_tcp(c, s)
    cand = np.flatnonzero(cc.syn >= 0) if len(cc) else np.zeros(0, np.int64)
    c_err, s_err = error_index(c), error_index(s)
    extra_m = {name: (side, _match_extra(c, side)) for name, side in ctx.extra.items()}
    out_d, back_d = [], []
    mc = cand[m[cand] >= 0]
    if len(mc):
        o, b = syn_delays(c, s, mc, m[mc])
        out_d.append(o)
        back_d.append(b)
    fast = delivered_mask(ctx, cand, m[cand])
    drafts: list[Draft | TcpBatch] = [*delivered_drafts(ctx, cand[fast], m[cand[fast]])]
    drafts += [_one(ctx, ci, int(m[ci]), c_err, s_err, extra_m, undecided.get(ci)) for ci in cand[~fast].tolist()]
    return drafts, out_d, back_d


def _match_extra(c: Side, side: Side) -> np.ndarray:
    """The client's connections at an extra point: ``match_tcp``'s joins on keys (a point
    past pf sees the rewritten ISN, ports, IP IDs), not its last, by pattern (an extra
    point's absence of a packet only says where, never whether, it was lost)."""
    cc, xc = c.tcp, side.tcp
    if len(cc) == 0 or len(xc) == 0:
        return np.full(len(cc), -1, np.int64)
    return match_tcp(c, side, patterns=False)[0]


def _one(ctx: Ctx, ci: int, si: int, c_err, s_err, extra_m, undecided: str | None = None) -> Draft:
    seen: dict = {}
    d = _one_inner(ctx, ci, si, c_err, s_err, extra_m, seen)
    if seen and d.outcome != Outcome.DELIVERED and not any(e.point in seen for e in d.evidence):
        d.lists()[1].extend(_extra_evidence(ctx, seen))
    if undecided is not None:  # match.match_tcp could not tell which server connection this is
        d.outcome, d.undecided_because, d.absent_at = Outcome.INCOMPLETE, undecided, ()
        d.explanation = ambiguous_match_words(undecided)
    return d


def _one_inner(ctx: Ctx, ci: int, si: int, c_err, s_err, extra_m, seen_out: dict) -> Draft:
    c, s = ctx.client, ctx.server
    C = _Conn(c, c.tcp, ci)
    syn_c = C.first(C.syn)
    if syn_c is None:  # tcp_drafts asks only about connections whose SYN the client sent
        raise ValueError(f"client connection {ci} has no SYN")
    client_ep = endpoint(c.addrs[syn_c["src_i"]], int(syn_c["sport"]))
    server_ep = endpoint(c.addrs[syn_c["dst_i"]], int(syn_c["dport"]))
    ts = take(c.t["ts_ns"], C.rows)
    d = Draft("tcp", c.addr_key1("dst", C.syn[0]), int(ts.min()), int(ts.max()), int(syn_c["frame"]),
              client_ep, server_ep, None, "", "", si >= 0)
    ctx.add_frames(d, c, C.rows)
    errs_c = c_err.get(combine1(6, C.isn_c), [])
    ctx.add_frames(d, c, errs_c)
    S = None
    if si >= 0:
        S = _Conn(s, s.tcp, si)
        ctx.add_frames(d, s, S.rows)
        first_fwd = s.t[S.rows[S.fwd][0]] if S.fwd.any() else None
        if first_fwd is not None:
            d.seen_at_server_as = endpoint(s.addrs[first_fwd["src_i"]], int(first_fwd["sport"]))
    errs_s = s_err.get(combine1(6, S.isn_c), []) if S is not None else []
    ctx.add_frames(d, s, errs_s)
    n_syn = len(C.syn)
    changes, ev = d.lists()
    ev += ctx.ev(c, C.syn, W.syn_sent(n_syn), limit=3)
    where, seen = _extra_note(ctx, d, ci, extra_m)
    seen_out.update(seen)

    if S is None:
        if len(C.synack):
            d.outcome = Outcome.ANSWERED_BY_MIDDLEBOX
            d.explanation = W.answered_unseen(len(C.synack))
            ev += ctx.ev(c, C.synack, W.SYNACK_NOT_FROM_SERVER)
            d.absent_at = ("server",)
        elif not len(C.rst_rev) and errs_c and all(path_signal(c.t[r], c.addrs) for r in errs_c):
            d.outcome = Outcome.LOST_OUTBOUND
            d.explanation = W.syn_stopped_by(path_signal(c.t[errs_c[0]], c.addrs, quoted_one(c, errs_c[0])))
            d.path_mtu = frag_needed_mtu(c.t[errs_c[0]], quoted_one(c, errs_c[0]))
            ev += ctx.ev(c, errs_c, W.ERROR_FROM_PATH, 2)
            d.absent_at = ("server",)
        elif len(C.rst_rev) or errs_c:
            d.outcome = Outcome.RESET_BY_MIDDLEBOX
            d.explanation = W.reset_unseen(len(C.rst_rev))
            ev += ctx.ev(c, list(C.rst_rev) + list(errs_c), W.RESET_NOT_FROM_SERVER)
            d.absent_at = ("server",)
        else:
            d.outcome = Outcome.LOST_OUTBOUND
            d.explanation = W.syn_lost(n_syn, where)
            if ctx.extra:
                hop_words(d, lost_between(list(ctx.extra), {n for n in seen if len(seen[n][1].syn)}, "server"))
            d.absent_at = ("server",)
            ev[:] = _last_seen(ctx, seen, "syn", "server", c, C.syn, W.SYN_SENT)
        return d

    syn_s = S.first(S.syn)
    synack_s, synack_c = S.first(S.synack), C.first(C.synack)
    if syn_s is not None:
        changes += tcp_syn_changes(_same_copy(C, C.syn, syn_s), syn_s, "out")
    changes += isn_change(C.isn_c, S.isn_c, "out")
    if synack_s is not None and synack_c is not None:
        changes += tcp_syn_changes(synack_c, _same_copy(S, S.synack, synack_c), "back")
        changes += isn_change(C.isn_s, S.isn_s, "back")
    ev += ctx.ev(s, S.syn, W.SYN_ARRIVED, limit=3)
    n_syn_s = len(S.syn)

    if len(S.synack):
        ev += ctx.ev(s, S.synack, W.SYNACK_SENT, limit=3)
        if not len(C.synack):
            if len(C.rst_rev):
                d.outcome = Outcome.RESET_BY_MIDDLEBOX
                d.explanation = W.reset_after_synack(len(C.rst_rev))
                ev += ctx.ev(c, C.rst_rev, W.RST_NOT_FROM_SERVER)
                d.absent_at = ("server",)
            elif len(acked := S.acked_synack()):
                # the client acknowledged the SYN-ACK at the server: one did reach it, and
                # the client capture missed it (it stopped, or dropped it)
                d.outcome = Outcome.INCOMPLETE
                d.undecided_because = W.SACK_UNDECIDED
                d.explanation = W.synack_acked_unseen(len(S.synack))
                ev += ctx.ev(s, acked, W.SYNACK_ACKED, 1)
            else:
                d.outcome = Outcome.LOST_RETURN
                d.explanation = W.synack_lost(len(S.synack), where)
                if ctx.extra:
                    hop_words(d, lost_between(list(ctx.extra), {n for n in seen if len(seen[n][1].synack)}, "client"))
                ev[:] = (ctx.ev(c, C.syn, W.SYN_SENT, 2) + ctx.ev(s, S.syn, W.SYN_ARRIVED, 2)
                         + _last_seen(ctx, seen, "synack", "client", s, S.synack, W.SYNACK_SENT))
                d.absent_at = ("client",)
            return d
        ev += ctx.ev(c, C.synack, W.SYNACK_ARRIVED, limit=2)
        _data_phase(ctx, d, C, S)
        return d

    if len(S.rst_rev):
        ev += ctx.ev(s, S.rst_rev, W.RST_SENT, 2)
        if len(C.rst_rev):
            d.outcome = Outcome.REFUSED
            d.explanation = W.refused_rst(int(syn_s["dport"]) if syn_s is not None else None)
            ev += ctx.ev(c, C.rst_rev, W.RST_ARRIVED, 2)
        else:
            d.outcome = Outcome.LOST_RETURN
            d.explanation = W.rst_lost(len(S.rst_rev), where)
            d.absent_at = ("client",)
        return d
    if errs_s:
        ev += ctx.ev(s, errs_s, W.ERROR_SENT, 2)
        if errs_c:
            d.outcome = Outcome.REFUSED
            d.explanation = W.REFUSED_ICMP
            ev += ctx.ev(c, errs_c, W.ERROR_ARRIVED, 2)
        else:
            d.outcome = Outcome.LOST_RETURN
            d.explanation = W.ICMP_REFUSAL_LOST
            d.absent_at = ("client",)
        return d
    stale_s, stale_c = S.stale_acks(), C.stale_acks()
    if len(stale_s):
        # a SYN on a 4-tuple the server still holds (TIME_WAIT): it answers with an ACK of
        # the old connection. Through a NAT this means a public port was reused too soon.
        ev += ctx.ev(s, stale_s, W.OLDER_ACK, 2)
        d.port_reused = True
        if len(stale_c):
            d.outcome = Outcome.REFUSED
            d.explanation = W.port_reused(d.seen_at_server_as, bool(len(C.rst_fwd)))
            ev += ctx.ev(c, stale_c, W.OLDER_ACK_ARRIVED, 1) + ctx.ev(c, C.rst_fwd, W.CLIENT_RESETS, 1)
        else:
            d.outcome = Outcome.LOST_RETURN
            d.explanation = W.port_reused(d.seen_at_server_as, None)
            d.absent_at = ("client",)
        return d
    # the server saw the SYN and sent nothing
    if len(C.synack):
        d.outcome = Outcome.ANSWERED_BY_MIDDLEBOX
        d.explanation = W.answered_in_silence(n_syn_s)
        ev += ctx.ev(c, C.synack, W.SYNACK_NOT_FROM_SERVER)
        d.absent_at = ("server",)
    elif len(C.rst_rev) or errs_c:
        d.outcome = Outcome.RESET_BY_MIDDLEBOX
        d.explanation = W.reset_in_silence(n_syn_s, bool(len(C.rst_rev)))
        ev += ctx.ev(c, list(C.rst_rev) + list(errs_c), W.RESET_NOT_FROM_SERVER)
        d.absent_at = ("server",)
    else:
        d.outcome = Outcome.UNANSWERED
        d.explanation = W.unanswered(n_syn_s)
        d.absent_at = ("server",)
    return d


def _data_phase(ctx: Ctx, d: Draft, C: _Conn, S: _Conn) -> None:
    c, s = ctx.client, ctx.server
    cc, sc = c.tcp, s.tcp
    changes, ev = d.lists()
    # payload, DSCP and ECN as both points saw the first data segment of each direction
    for snd, rcv, fwd, direction in ((C, S, True, "out"), (S, C, False, "back")):
        sp = snd.data_fwd if fwd else snd.data_rev
        rp = rcv.data_fwd if fwd else rcv.data_rev
        if len(sp) and len(rp):
            a = snd.side.t[snd.rows[sp[0]]]
            b = rcv.side.t[rcv.rows[rp[0]]]
            if (snd.conns.rel_seq_at(snd.sr[sp[:1]])[0] == rcv.conns.rel_seq_at(rcv.sr[rp[:1]])[0]
                    and int(a["plen"]) == int(b["plen"])):
                at_c, at_s = (a, b) if direction == "out" else (b, a)
                changes += data_changes(at_c, at_s, direction)
    rst_extra = len(C.rst_rev) - len(S.rst_rev)
    if rst_extra > 0:
        d.outcome = Outcome.RESET_BY_MIDDLEBOX
        d.explanation = W.reset_midway(len(C.rst_rev), len(S.rst_rev))
        ev += ctx.ev(c, C.rst_rev, W.RST_ARRIVED)
        d.absent_at = ("server",)
        return
    s_end = int(sc.data_end_rev[S.ci])
    c_got = int(cc.data_end_rev[C.ci])
    if c_got > max(s_end, 1):
        d.outcome = Outcome.ANSWERED_BY_MIDDLEBOX
        d.explanation = W.reply_beyond(c_got - max(s_end, 1))
        ev += ctx.ev(c, C.rows[C.data_rev], W.REPLY_DATA, 3)
        d.absent_at = ("server",)
        # the server capture must have been running well after this arrived at the client
        d.server_until = int(take(c.t["ts_ns"], C.rows[C.data_rev]).max())
        return
    c_end = int(cc.data_end_fwd[C.ci])
    acked_s, acked_c = (int(a) for a in acked(cc, sc, C.ci, S.ci))
    checks = (
        (C, S, True, c_end, acked_s, "out"),
        (S, C, False, s_end, acked_c, "back"),
    )
    for snd, rcv, fwd, end, got, direction in checks:
        if end <= 1 or got >= end:
            continue
        peer_open = snd.synack if fwd else snd.syn  # the receiver's SYN / SYN-ACK as the sender saw it
        mss = int(snd.side.t["mss"][peer_open[0]]) if len(peer_open) else 0  # the segment size it allows
        look = _DataLook(snd, rcv, fwd, mss)
        if not look.missing:
            continue
        sender, receiver = ("client", "server") if direction == "out" else ("server", "client")
        frag = _frag_needed(snd.side, snd)
        v6 = int(snd.side.t[snd.rows[0]]["ipver"]) == 6
        overhead = 60 if v6 else 40
        big = min(look.missing_eff) + overhead > (1280 if v6 else 576)
        small_passed = max(look.passed_eff, default=0)
        ev += ctx.ev(snd.side, look.missing_rows, W.never_reached(receiver), LOST_EVIDENCE)
        if big and min(look.missing_eff) > small_passed and look.retransmissions > 0 and not frag:
            d.outcome = Outcome.MTU_BLACKHOLE
            d.explanation = W.mtu_blackhole(len(look.passed_eff), len(look.missing), max(look.missing_eff), sender,
                                            receiver, look.retransmissions)
        else:
            d.outcome = Outcome.LOST_OUTBOUND if direction == "out" else Outcome.LOST_RETURN
            if frag:
                ev += ctx.ev(snd.side, frag, W.FRAG_NEEDED, 2)
                d.path_mtu = frag_needed_mtu(snd.side.t[frag[0]], quoted_one(snd.side, frag[0]))
            d.explanation = W.data_lost(len(look.missing), look.missing_bytes, sender, receiver, bool(frag))
        d.absent_at = (receiver,)
        return
    d.outcome = Outcome.DELIVERED
    if len(S.syn) and len(C.synack):  # (a connection caught mid-way keeps the rows found above)
        ev[:] = ctx.delivered_evidence("tcp", S.syn[0], C.synack[0])
    got_s = min(c_end, max(acked_s, int(sc.data_end_fwd[S.ci])))  # as the receivers show it
    got_c = min(s_end, max(acked_c, c_got))
    d.explanation = tcp_delivered_words(max(got_s - 1, 0), max(got_c - 1, 0), max(len(C.syn) - len(S.syn), 0),
                                   max(len(S.synack) - len(C.synack), 0))


def _extra_note(ctx: Ctx, d: Draft, ci: int, extra_m) -> tuple[str, dict[str, tuple]]:
    """What the extra points (in path order from the client) saw of this connection."""
    notes, seen = [], {}
    for name, (side, mm) in extra_m.items():
        xi = int(mm[ci]) if len(mm) else -1
        if xi < 0:
            notes.append(W.not_seen_at(name))
            continue
        X = _Conn(side, side.tcp, xi)
        ctx.add_frames(d, side, X.rows)
        seen[name] = (side, X)
        if len(X.syn):  # the client's endpoint past the NATs before this point (a port-set fact)
            syn = side.t[int(X.syn[0])]
            d.seen_at[name] = endpoint(side.addrs[syn["src_i"]], int(syn["sport"]))
        notes.append(W.where_seen(name, len(X.syn), len(X.synack)))
    return W.where_clause(notes), seen


def _last_seen(ctx: Ctx, seen: dict[str, tuple], role: str, toward: str, origin: Side, origin_rows,
               what: str) -> list:
    """Evidence for packets lost on the way ``toward`` a point: every point that saw them,
    the last one marked 'last seen here'."""
    names = [n for n in seen if len(getattr(seen[n][1], role))]
    if toward == "client":
        names.reverse()  # the extra points nearest the client are last on the way back
    out = ctx.ev(origin, origin_rows, W.lost_on_way(what, toward, not names), LOST_EVIDENCE)
    for i, n in enumerate(names):
        side, X = seen[n]
        last = i == len(names) - 1
        out += ctx.ev(side, getattr(X, role), W.seen_at(n, toward if last else None), LOST_EVIDENCE if last else 2)
    return out


def _extra_evidence(ctx: Ctx, seen: dict[str, tuple]) -> list:
    out = []
    for n, (side, X) in seen.items():
        out += ctx.ev(side, list(X.syn[:1]) + list(X.synack[:1]), W.seen_at(n), 2)
    return out
