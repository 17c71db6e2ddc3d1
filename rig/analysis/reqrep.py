"""Request/reply exchanges without connections: ICMP echo and UDP.

ICMP echo requests join across points on (sequence, payload hash) — the echo id may be
rewritten; UDP datagrams on the payload hash — ports may be rewritten. Replies are found
on each point's own view (the reverse of the request as that point saw it), then checked
across points by the same keys, so a reply the server never sent is recognised.
"""

from __future__ import annotations

from bisect import bisect_right

import numpy as np

from rig.analysis.changes import ip_changes
from rig.analysis import prose_reqrep as W
from rig.analysis.context import LOST_EVIDENCE, Ctx, Draft, hop_words, lost_between, quoted_one
from rig.analysis.prose import (NEVER_REACHED_CLIENT, NEVER_REACHED_SERVER, ambiguous_match_words, arrived_note,
                                lost_outbound_words, lost_return_words, reqrep_delivered_words, sent_note)
from rig.analysis.keys import combine, combine1, sort_order, take, take_fields
from rig.analysis.fragments import cut_short, later_fragments
from rig.analysis.match import pair_by_order
from rig.analysis.reqrep_fast import ReqRepBatch, delivered_drafts as fast_delivered, echo_id_change
from rig.analysis.reqrep_lost import lost_drafts, replies_to
from rig.analysis.senders import decided_echoes
from rig.analysis.sides import Side
from rig.analysis.summary import endpoint, frag_needed_mtu, path_signal
from rig.analysis.tcp import error_index
from rig.analysis.udpflow_fast import FlowBatch
from rig.concurrency import Spare
from rig.analysis.udpflow import find_flows, flow_drafts, request_reply_datagrams, udp_key as _udp_key
from rig.capture.table import FRAG_LATER, FRAG_MF
from rig.outcome import Outcome
from rig.verdict import Evidence
from rig.unique import isin

def _index(keys: np.ndarray, rows: np.ndarray) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for k, r in zip(keys.tolist(), rows.tolist()):
        out.setdefault(k, []).append(r)
    return out


def _groups(gk: np.ndarray, rows: np.ndarray, frames: np.ndarray) -> list[np.ndarray]:
    """Rows grouped by key, groups in order of their first frame."""
    if len(rows) == 0:
        return []
    o = np.lexsort((frames, gk))
    k = gk[o]
    cut = np.flatnonzero(k[1:] != k[:-1]) + 1
    groups = np.split(rows[o], cut)
    firsts = [g[0] for g in groups]
    return [groups[i] for i in np.argsort(np.array(firsts), kind="stable")]


def _singletons(gk: np.ndarray) -> np.ndarray:
    """Rows whose group key occurs once (one copy of the request)."""
    n = len(gk)
    if n < 2:
        return np.ones(n, bool)
    o = sort_order(gk)  # a run of equal keys is a repeated request (np.unique: 2x the time)
    k = gk[o]
    same = k[1:] == k[:-1]
    alone = np.ones(n, bool)
    alone[1:] &= ~same
    alone[:-1] &= ~same
    out = np.empty(n, bool)
    out[o] = alone
    return out


def _distinct_per_key(keys: np.ndarray, who: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The sorted distinct ``keys``, how many rows carry each, and how many distinct
    ``who`` among them; and each row's position in the first (as ``np.unique``)."""
    o = sort_order(keys, who)  # (np.lexsort((who, keys)): 0.45 s at 4M packets, 3x this)
    ks, ws = keys[o], who[o]
    new_key = np.concatenate([[True], ks[1:] != ks[:-1]])
    new_who = new_key | np.concatenate([[True], ws[1:] != ws[:-1]])
    kid = np.cumsum(new_key) - 1
    pos = np.empty(len(keys), np.int64)
    pos[o] = kid
    return ks[new_key], np.bincount(kid), np.bincount(kid, weights=new_who).astype(np.int64), pos


def shared_keys(xk: np.ndarray, gk: np.ndarray, sk: np.ndarray, sender: np.ndarray) -> np.ndarray:
    """Which requests cannot be told apart across the points by their NAT-invariant key
    (``xk``, what pairs a request with its copy at the server; ``gk``: the exchange each
    is part of at the client; ``sk``: the keys of the requests the server got, ``sender``:
    who sent each there, address and port or echo id): the key is carried by more than
    one exchange at the client (two hosts' Windows pings, two SNTP clients' all-zero
    queries) and the server holds fewer copies than the client sent, so which of them
    arrived the key cannot say; or more senders at the server sent it than there are
    exchanges at the client (strangers sent the same bytes: SNTP clients all over the
    Internet), so which copy is the client's it cannot say either. (When each copy the
    client sent arrived and no stranger's, each did; a copy the path duplicated comes
    from the same sender.)"""
    out = np.zeros(len(xk), bool)
    if len(xk) == 0:
        return out
    ukeys, n_c, n_grp, pos = _distinct_per_key(xk, gk)
    n_s = np.zeros(len(ukeys), np.int64)
    n_snd = np.zeros(len(ukeys), np.int64)
    if len(sk):
        us, cnt, snd, _ = _distinct_per_key(sk, sender)
        at = np.minimum(np.searchsorted(us, ukeys), len(us) - 1)
        hit = us[at] == ukeys
        n_s[hit], n_snd[hit] = cnt[at[hit]], snd[at[hit]]
    return (((n_grp > 1) & (n_s < n_c)) | (n_snd > n_grp))[pos]




def _undecided_if_shared(d: Draft, shared: bool) -> None:
    """An exchange whose requests ``shared_keys`` cannot tell apart is decided only when
    its own reply reached the client (the request then arrived, whichever copy it was)."""
    if shared and d.outcome != Outcome.DELIVERED:
        d.explanation = ambiguous_match_words(W.SHARED)
        d.outcome = Outcome.INCOMPLETE
        d.undecided_because = W.SHARED
        d.absent_at = ()


def _decide(ctx: Ctx, d: Draft, req: str, rep: str, n_req_c: int, sreq, srep, crep, serr, cerr, where: str,
            reply_seen_at: dict[str, list[int]] | None = None, later: list[int] | None = None) -> None:
    """``reply_seen_at``: the extra points that saw the server's reply, with its rows there.
    ``later``: the client's later fragments of a datagram that reached the server as its
    first fragment without all the rest (``fragments.cut_short``)."""
    reply_seen_at = reply_seen_at or {}
    c, s = ctx.client, ctx.server
    _, ev = d.lists()
    if sreq and later is not None and not srep and not crep:
        d.outcome = Outcome.LOST_OUTBOUND
        d.explanation = W.later_fragments_lost(req, where)
        ctx.add_frames(d, c, later)
        ev += ctx.ev(c, later, W.LATER_FRAGMENT_SENT, 2)
        ev += ctx.ev(s, sreq, W.FIRST_FRAGMENT_ONLY, LOST_EVIDENCE)
        d.absent_at = ("server",)
        d.fragments_lost = True
        return
    if sreq:
        ev += ctx.ev(s, sreq, arrived_note(req), 2)
        if srep:
            if crep:
                d.outcome = Outcome.DELIVERED
                d.explanation = reqrep_delivered_words(req, rep)
                ev[:] = ctx.delivered_evidence(d.protocol, sreq[0], crep[0])
                d.seen_at.clear()  # what the extra points saw is a fact of failures (as TCP's)
            else:
                d.outcome = Outcome.LOST_RETURN
                d.explanation = lost_return_words(req, rep, len(srep))
                if ctx.extra:
                    hop_words(d, lost_between(list(ctx.extra), set(reply_seen_at), "client"))
                seen = [n for n in reversed(list(ctx.extra)) if n in reply_seen_at]  # server side first
                ev += ctx.ev(s, srep, sent_note(rep) if seen else NEVER_REACHED_CLIENT, LOST_EVIDENCE)
                for n in seen:
                    last = n == seen[-1]
                    ctx.add_frames(d, ctx.extra[n], reply_seen_at[n])
                    ev += ctx.ev(ctx.extra[n], reply_seen_at[n], W.seen_at(n, "client" if last else None),
                                 LOST_EVIDENCE if last else 2)
                d.absent_at = ("client",)
        elif serr:
            ev += ctx.ev(s, serr, W.ERROR_SENT, 2)
            if cerr:
                d.outcome = Outcome.REFUSED
                d.explanation = W.refused(req)
                ev += ctx.ev(c, cerr, W.ERROR_ARRIVED, 2)
            else:
                d.outcome = Outcome.LOST_RETURN
                d.explanation = W.refusal_lost(req)
                d.absent_at = ("client",)
        elif crep:
            d.outcome = Outcome.ANSWERED_BY_MIDDLEBOX
            d.explanation = W.answered_in_silence(req, rep, len(crep))
            ev += ctx.ev(c, crep, W.not_from_server(rep), 2)
            d.absent_at = ("server",)
        elif cerr:
            d.outcome = Outcome.RESET_BY_MIDDLEBOX
            d.explanation = W.error_in_silence(req)
            ev += ctx.ev(c, cerr, W.ERROR_NOT_FROM_SERVER, 2)
            d.absent_at = ("server",)
        else:
            d.outcome = Outcome.UNANSWERED
            d.explanation = W.unanswered(req, len(sreq))
            d.absent_at = ("server",)
        return
    if srep:
        d.outcome = Outcome.INCOMPLETE
        d.undecided_because = W.REQUEST_UNSEEN
        d.explanation = W.reply_to_unseen(req, rep, len(srep))
        ev += ctx.ev(s, srep, sent_note(rep), 2)
        return
    if crep:
        d.outcome = Outcome.ANSWERED_BY_MIDDLEBOX
        d.explanation = W.answered_unseen(req, rep, len(crep))
        ev += ctx.ev(c, crep, W.not_from_server(rep), 2)
    elif cerr and all(path_signal(c.t[r], c.addrs) for r in cerr):
        d.outcome = Outcome.LOST_OUTBOUND
        d.explanation = W.stopped_by(req, path_signal(c.t[cerr[0]], c.addrs, quoted_one(c, cerr[0])))
        d.path_mtu = frag_needed_mtu(c.t[cerr[0]], quoted_one(c, cerr[0]))
        ev += ctx.ev(c, cerr, W.ERROR_FROM_PATH, 2)
    elif cerr:
        d.outcome = Outcome.RESET_BY_MIDDLEBOX
        d.explanation = W.error_about_unseen(req)
        ev += ctx.ev(c, cerr, W.ERROR_FROM_PATH, 2)
    else:
        d.outcome = Outcome.LOST_OUTBOUND
        d.explanation = lost_outbound_words(req, n_req_c) + where
        if ctx.extra:
            hop_words(d, lost_between(list(ctx.extra), set(d.request_seen_at), "server"))
        far = [i for i, e in enumerate(ev) if e.point != c.name] or [i for i, e in enumerate(ev) if e.point == c.name]
        for i in far[-1:]:
            ev[i] = Evidence(ev[i].point, ev[i].frame, ev[i].summary + NEVER_REACHED_SERVER)
    d.absent_at = ("server",)


def _where(ctx: Ctx, d: Draft, key: int, reqs_of: dict[str, dict[int, list[int]]]) -> str:
    notes = []
    for name, side in ctx.extra.items():
        rows = reqs_of.get(name, {}).get(key, [])
        if rows:
            ctx.add_frames(d, side, rows)
            d.lists()[1].extend(ctx.ev(side, rows, W.seen_at(name), 1))
            notes.append(W.saw_it(name))
            d.request_seen_at |= {name}
            if d.protocol == "udp":  # the client's endpoint past the NATs before this point (a port-set fact)
                r = side.t[rows[0]]
                d.seen_at[name] = endpoint(side.addrs[r["src_i"]], int(r["sport"]))
        else:
            notes.append(W.not_seen_at(name))
    return W.where_clause(notes)


def echo_drafts(ctx: Ctx) -> tuple[list[Draft | ReqRepBatch], list[np.ndarray], list[np.ndarray]]:
    c, s = ctx.client, ctx.server
    req = c.echo_req
    if len(req) == 0:
        return [], [], []
    tc = take_fields(c.t, ("icmp_id", "icmp_seq", "phash", "proto"), req)
    dk, hk = c.addr_keys("dst", req), c.addr_keys("src", req)
    # one exchange per client host: two hosts' echoes may be the same bytes (Windows' ping)
    gk = combine(dk, hk, tc["icmp_id"], tc["icmp_seq"], tc["phash"], tc["proto"], n=len(req))
    xk_all = c.echo_key(req)
    skq, skp, ckp = s.echo_key(s.echo_req), s.echo_key(s.echo_rep), c.echo_key(c.echo_rep)
    extra_req = {n: _index(x.echo_key(x.echo_req), x.echo_req) for n, x in ctx.extra.items()}
    extra_rep = {n: _index(x.echo_key(x.echo_rep), x.echo_rep) for n, x in ctx.extra.items()}
    c_err, s_err = error_index(c), error_index(s)
    drafts: list[Draft | ReqRepBatch] = []
    out_d: list[int] = []
    back_d: list[int] = []
    bulk_out: list[np.ndarray] = []
    bulk_back: list[np.ndarray] = []
    fast = np.zeros(len(req), bool)
    shared = shared_keys(xk_all, gk, skq, combine(s.addr_keys("src", s.echo_req), take(s.t["icmp_id"], s.echo_req),
                                                  n=len(s.echo_req)))
    alone = _singletons(gk) & ~shared if not ctx.extra else None
    claimed: list[np.ndarray] = []  # the server's rows the bulk passes made another request's
    # a reply is the request's when it came from the address asked, to the host that asked
    ck_reply = combine(ckp, c.addr_keys("src", c.echo_rep), c.addr_keys("dst", c.echo_rep))
    xk_host = combine(xk_all, dk, hk)
    if alone is not None and len(s.echo_req) and len(s.echo_rep) and len(c.echo_rep):
        fr = lambda side, rows: side.frames(rows)  # noqa: E731
        sq_i = pair_by_order(xk_all, fr(c, req), skq, fr(s, s.echo_req))
        sp_i = pair_by_order(skq, fr(s, s.echo_req), skp, fr(s, s.echo_rep))
        cp_i = pair_by_order(xk_host, fr(c, req), ck_reply, fr(c, c.echo_rep))
        sp_of = np.where(sq_i >= 0, sp_i[np.maximum(sq_i, 0)], -1)
        fast = alone & (sq_i >= 0) & (sp_of >= 0) & (cp_i >= 0)
        f = np.flatnonzero(fast)
        got, o, b = fast_delivered(ctx, "icmp", req[f], s.echo_req[sq_i[f]], s.echo_rep[sp_of[f]], c.echo_rep[cp_i[f]])
        drafts += got
        bulk_out, bulk_back = [o], [b]  # the bulk's delays stay arrays (150k of them)
        claimed += [s.echo_req[sq_i[f]], s.echo_rep[sp_of[f]]]
    if alone is not None:  # no extra points: the plain lost cases (reqrep_lost)
        found = _plain_lost_echo(ctx, req, xk_all, xk_host, alone & ~fast, skq, skp, ck_reply, c_err, s_err)
        _add_lost(ctx, "icmp", req, found, fast, drafts, bulk_out)
        claimed += [found[2], found[3]]
    # a fast row is alone in its group (``_singletons``): the rest form the same groups
    slow = ~fast
    # the close look's lookups, over the keys it will ask for only (not every request)
    need = xk_all[slow]
    xk_of = dict(zip(req[slow].tolist(), need.tolist()))
    dk_of = dict(zip(req[slow].tolist(), dk[slow].tolist()))
    hk_of = dict(zip(req[slow].tolist(), hk[slow].tolist()))
    shared_of = set(req[slow & shared].tolist())
    by_sender = decided_echoes(c, s, req, xk_all, slow & shared)  # what the NAT's mapping says of them
    ukeys, _, n_grp, _ = _distinct_per_key(xk_all, gk)
    several = set(ukeys[n_grp > 1].tolist())  # keys more than one exchange at the client carries
    # (a copy another host's same bytes were paired with is not this one's: two hosts' Windows pings)
    taken = np.concatenate(claimed) if claimed else np.zeros(0, np.int64)
    sreq, srep = (_index(k[m], rows[m]) for k, rows in ((skq, s.echo_req), (skp, s.echo_rep))
                  for m in [isin(k, need) & ~isin(rows, taken)])
    asked = isin(ckp, need)
    crep = _index(ckp[asked], c.echo_rep[asked])
    for g in _groups(gk[slow], req[slow], c.frames(req[slow])):
        r0 = c.t[g[0]]
        xk = xk_of[int(g[0])]
        dst_key = dk_of[int(g[0])]
        ts = take(c.t["ts_ns"], g)
        d = Draft("icmp", dst_key, int(ts.min()), int(ts.max()), int(r0["frame"]), endpoint(c.addrs[r0["src_i"]]),
                  endpoint(c.addrs[r0["dst_i"]]), None, "", "", False)
        d.echo = (int(r0["icmp_id"]), int(r0["icmp_seq"]))
        changes, evidence = d.lists()
        sq = sreq.get(xk, [])
        sp = srep.get(xk, [])
        known = by_sender.get(int(g[0]))
        # the server's copies are this request's own, not of several hosts' same bytes
        one_sender = len(sq) <= 1 or xk not in several
        if known is not None:
            sq, sp, one_sender = known
        cp = [r for r in crep.get(xk, []) if c.addr_key1("src", r) == dst_key
              and c.addr_key1("dst", r) == hk_of[int(g[0])]]
        ce = c_err.get(int(c.echo_error_key(g[:1])[0]), [])
        se = s_err.get(int(s.echo_error_key(np.array(sq[:1], np.int64))[0]), []) if sq else []
        d.matched = bool(sq)
        for side, rows in ((c, g), (c, cp), (c, ce), (s, sq), (s, sp), (s, se)):
            ctx.add_frames(d, side, rows)
        evidence += ctx.ev(c, g, sent_note("echo request"), 2)
        if sq and one_sender:  # (of several hosts' copies, the first is a guess: no mapping, changes or delay)
            s0 = s.t[sq[0]]
            d.seen_at_server_as = endpoint(s.addrs[s0["src_i"]])
            changes += ip_changes(r0, s0, "out")
            if int(r0["icmp_id"]) != int(s0["icmp_id"]):
                changes.append(echo_id_change(int(r0["icmp_id"]), int(s0["icmp_id"])))
            out_d.append(int(s0["ts_ns"]) - int(r0["ts_ns"]))
            if sp and cp:
                changes += ip_changes(c.t[cp[0]], s.t[sp[0]], "back")
                back_d.append(int(c.t[cp[0]]["ts_ns"]) - int(s.t[sp[0]]["ts_ns"]))
        where = _where(ctx, d, xk, extra_req)
        _decide(ctx, d, "echo request", "echo reply", len(g), sq, sp, cp, se, ce, where,
                {n: idx[xk] for n, idx in extra_rep.items() if idx.get(xk)})
        _undecided_if_shared(d, int(g[0]) in shared_of and known is None)
        drafts.append(d)
    return drafts, _delays(out_d, bulk_out), _delays(back_d, bulk_back)


def _add_lost(ctx: Ctx, protocol: str, req: np.ndarray, found, fast: np.ndarray, drafts: list,
              bulk_out: list[np.ndarray]) -> None:
    """The drafts of the plain lost cases ``found`` (``_plain_lost_udp`` / ``_echo``) and
    their delays added; their requests marked as done (``fast``)."""
    out, back, sq, sp = found
    drafts += lost_drafts(ctx, protocol, req[out])[0]
    got, o = lost_drafts(ctx, protocol, req[back], sq, sp)
    drafts += got
    bulk_out.append(o)
    fast[out] = True
    fast[back] = True


def _hits(keys: np.ndarray, want: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """How many of ``keys`` equal each of ``want``, and the first of them (-1 if none)."""
    if len(keys) == 0:
        return np.zeros(len(want), np.int64), np.full(len(want), -1, np.int64)
    o = sort_order(keys)
    ks = keys[o]
    lo, hi = np.searchsorted(ks, want, "left"), np.searchsorted(ks, want, "right")
    return hi - lo, np.where(hi > lo, o[np.minimum(lo, len(o) - 1)], -1)


def _plain_lost_echo(ctx: Ctx, req: np.ndarray, xk: np.ndarray, xk_host: np.ndarray, alone: np.ndarray,
                     skq: np.ndarray, skp: np.ndarray, ck_reply: np.ndarray, c_err: dict, s_err: dict):
    """The echo requests ``reqrep_lost`` builds, as the close look would decide them:
    (never reached the server, reply lost) as indices into ``req``, with the latter's
    server copies and replies. ``xk``: the requests' echo keys; ``xk_host``: with the
    address asked and the host that asked; ``skq`` / ``skp``: the echo keys of the
    server's requests and replies; ``ck_reply``: the client's replies' keys, as
    ``xk_host``. ``alone``: the requests alone in their group, to choose from."""
    c, s = ctx.client, ctx.server
    cand = np.flatnonzero(alone)
    want = xk[cand]
    n_sq, sq = _hits(skq, want)
    n_sp, sp = _hits(skp, want)
    n_cp, _ = _hits(ck_reply, xk_host[cand])
    ek = c.echo_error_key(req[cand])  # what an ICMP error about it is filed under
    plain = (n_cp == 0) & ~isin(ek, np.fromiter(c_err, np.uint64, len(c_err)))
    out = plain & (n_sq == 0) & (n_sp == 0)
    back = plain & (n_sq == 1) & (n_sp == 1)
    at_s = s.echo_error_key(s.echo_req[sq[back]])  # an error the server sent is about its own copy
    back[np.flatnonzero(back)] = ~isin(at_s, np.fromiter(s_err, np.uint64, len(s_err)))
    return cand[out], cand[back], s.echo_req[sq[back]], s.echo_rep[sp[back]]


def _tuple_key(side: Side, rows: np.ndarray, reverse: bool = False) -> np.ndarray:
    """The 4-tuple of each row (``reverse``: of the reply it would get), memoised per side
    for the side's UDP rows, which every step of the UDP analysis asks for."""
    full = side.memo.get(("udp-tuples", reverse))
    if full is not None and len(rows) and len(full[0]):
        pos = np.searchsorted(full[0], rows)
        pos_c = np.minimum(pos, len(full[0]) - 1)
        if (full[0][pos_c] == rows).all():
            return full[1][pos_c]
    return _tuple_keys(side, rows)[reverse]


def _tuple_keys(side: Side, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``_tuple_key`` of ``rows`` both ways, from one read of their addresses and ports."""
    t = side.t
    sk, dk = side.addr_keys("src", rows), side.addr_keys("dst", rows)
    sp, dp = take(t["sport"], rows), take(t["dport"], rows)
    return combine(sk, sp, dk, dp, n=len(rows)), combine(dk, dp, sk, sp, n=len(rows))


def udp_tuples(side: Side) -> tuple[np.ndarray, np.ndarray]:
    """``_tuple_key`` of every UDP row of the side (``rows_of(17)``) both ways, made once
    and memoised for every step of the UDP analysis (and ``roles``)."""
    got = side.memo.get(("udp-tuples", False))
    if got is None:
        rows = side.rows_of(17)
        for rev, keys in enumerate(_tuple_keys(side, rows)):
            side.memo[("udp-tuples", bool(rev))] = (rows, keys)
    return _tuples(side)


class _FromOtherPort:
    """UDP datagrams at one point by (source address, destination endpoint): what a server
    sends a client from a new port of its own (TFTP's data, STUN's change-port answer)."""

    def __init__(self, side: Side, rows: np.ndarray):
        self.side = side
        t = side.t
        keys = combine(side.addr_keys("src", rows), side.addr_keys("dst", rows), take(t["dport"], rows), n=len(rows))
        self.by_key = _index(keys, rows)

    def after(self, req: int) -> list[int]:
        """The datagrams from ``req``'s destination address, from another port, to its
        source endpoint, after it."""
        side, t = self.side, self.side.t
        k = combine1(side.addr_key1("dst", req), side.addr_key1("src", req), int(t["sport"][req]))
        fr, dport = int(t["frame"][req]), int(t["dport"][req])
        return [r for r in self.by_key.get(k, []) if int(t["frame"][r]) > fr and int(t["sport"][r]) != dport]


class _Replies:
    """UDP datagrams at one point, findable as replies to a request seen at that point."""

    def __init__(self, side: Side, rows: np.ndarray):
        rl = rows.tolist()
        self.rev_of = dict(zip(rl, _tuple_key(side, rows, reverse=True).tolist()))
        self.frame = dict(zip(rl, side.frames(rows).tolist()))
        self.by_tuple = _index(_tuple_key(side, rows), rows)
        self.req_frames: dict[int, list[int]] = {}  # reverse tuple -> request frames

    def register(self, rows) -> None:
        for r in rows:
            self.req_frames.setdefault(self.rev_of[r], []).append(self.frame[r])

    def replies(self, req_rows) -> list[int]:
        """Datagrams on the reverse tuple after these requests and before the next other request."""
        if not req_rows:
            return []
        k = self.rev_of[req_rows[0]]
        cand = self.by_tuple.get(k, [])
        if not cand:
            return []
        mine = {self.frame[r] for r in req_rows}
        allreq = sorted(self.req_frames.get(k, []))
        out = []
        for r in cand:
            i = max(bisect_right(allreq, self.frame[r]) - 1, 0)
            if allreq[i] in mine:
                out.append(r)
        return out


def _sole_answer(side: Side, rows: np.ndarray, request: np.ndarray) -> np.ndarray:
    """For each of a point's UDP ``rows`` (file order): its one answer, as an index into
    ``rows`` (-1 if none is certain). The answer is the next datagram on the same
    4-tuple, going the other way; certain when the datagram after that on the tuple (if
    any) is another ``request`` going the first way: then the close look
    (``_Replies.replies``) finds exactly this one. Pairing the k-th request with the
    k-th reply on a tuple instead went astray after every loss on a reused tuple
    (bench/diff.py: 1578 of 100k exchanges left to the close look, 0 now)."""
    n = len(rows)
    out = np.full(n, -1, np.int64)
    if n < 2:
        return out
    f, r = _tuple_key(side, rows), _tuple_key(side, rows, reverse=True)
    o = sort_order(combine(np.minimum(f, r), np.maximum(f, r), n=n))  # by tuple, then file order
    f, r, req = f[o], r[o], request[o]
    tup = np.minimum(f, r)
    nxt = np.zeros(n, bool)  # the row after this one (sorted) is on the same tuple, going back
    nxt[:-1] = (tup[1:] == tup[:-1]) & (f[1:] == r[:-1]) & (f[:-1] != r[:-1])
    then = np.ones(n, bool)  # and the one after that is off the tuple, or a request this way
    then[:-2] = (tup[2:] != tup[:-2]) | ((f[2:] == f[:-2]) & req[2:])
    pos = np.flatnonzero(nxt & then)
    out[o[pos]] = o[pos + 1]
    return out


def _delays(one_by_one: list[int], bulk: list[np.ndarray]) -> list[np.ndarray]:
    """Clock-offset samples (``match.estimate_offset``) as arrays."""
    return [*bulk, np.asarray(one_by_one, np.int64)]


def _quote_key(side: Side, rows: np.ndarray) -> np.ndarray:
    """The key of these datagrams' first fragments: IP ID and destination port."""
    return combine(17, take(side.t["ip_id"], rows), take(side.t["dport"], rows), n=len(rows))


def _plain_lost_udp(ctx: Ctx, udp_c: np.ndarray, local: np.ndarray, udp_s: np.ndarray, partner: np.ndarray,
                    alone: np.ndarray, c_err: dict, s_err: dict, ff_pos: np.ndarray, ff_keys: np.ndarray):
    """The requests ``reqrep_lost`` builds, as the close look would decide them: (never
    reached the server, reply lost) as indices into the requests (``udp_c[local]``), with
    the latter's server copies and replies. ``alone``: the requests alone in their group,
    left to choose from; ``ff_pos``: the server's first fragments (positions in ``udp_s``)."""
    c, s = ctx.client, ctx.server
    req_pos = np.flatnonzero(local)
    cand = np.flatnonzero(alone)
    rows = udp_c[req_pos[cand]]
    qk = _quote_key(c, rows)
    n_rep, _ = replies_to(req_pos[cand], *_tuples(c), local, lambda p: c.frames(udp_c[p]))
    keep = (n_rep == 0) & ~isin(c.udp_error_key(rows), np.fromiter(c_err, np.uint64, len(c_err)))
    p = partner[cand]
    unpaired = p < 0
    out = keep & unpaired
    out[out] = ~(_may_fragment(c, rows[out]) & isin(qk[out], ff_keys))
    back = keep & ~unpaired
    none = np.zeros(0, np.int64)
    if not back.any():
        return cand[out], cand[back], none, none
    # the server's requests, as the close look registers them: every copy paired with a
    # client request, and the first fragments of unpaired ones
    is_req = np.zeros(len(udp_s), bool)
    is_req[partner[partner >= 0]] = True
    lone = udp_c[req_pos[partner < 0]]
    is_req[ff_pos[isin(ff_keys, _quote_key(c, lone[_may_fragment(c, lone)]))]] = True
    sq_pos = p[back]
    n_s, one = replies_to(sq_pos, *_tuples(s), is_req, lambda q: s.frames(udp_s[q]))
    ok = (n_s == 1) & ~isin(s.udp_error_key(udp_s[sq_pos]), np.fromiter(s_err, np.uint64, len(s_err)))
    back[np.flatnonzero(back)[~ok]] = False
    return cand[out], cand[back], udp_s[sq_pos[ok]], udp_s[one[ok]]


def _tuples(side: Side) -> tuple[np.ndarray, np.ndarray]:
    """``_tuple_key`` of all the side's UDP rows (``rows_of(17)``), both ways (as memoised)."""
    return side.memo[("udp-tuples", False)][1], side.memo[("udp-tuples", True)][1]


def _may_fragment(side: Side, rows: np.ndarray) -> np.ndarray:
    """Datagrams whose first fragment the close look looks for at the server when no copy
    arrived whole: sent whole, or as a first fragment (a router that reassembles it may
    fragment it anew: the first fragments then differ, IP ID and ports do not)."""
    t = side.t
    return (t["ipver"][rows] == 4) & (t["ip_id"][rows] != 0) & ((t["frag"][rows] & FRAG_LATER) == 0)


def _errors_about(side: Side, index: dict[int, list[int]], rows: list[int]) -> list[int]:
    """ICMP errors quoting any of these datagrams (by their 4-tuple: ``Side.udp_error_key``)."""
    if not index:
        return []
    out: list[int] = []
    for k in side.udp_error_key(np.array(rows, np.int64)).tolist():
        for e in index.get(k, []):
            if e not in out:
                out.append(e)
    return out


def udp_drafts(ctx: Ctx, client_local: set[int], spare: Spare | None = None
               ) -> tuple[list[Draft | ReqRepBatch], list[np.ndarray], list[np.ndarray]]:
    """The UDP exchanges: the flows (``udpflow``), then request/reply on every other 4-tuple.
    ``spare``: the flows' drafts are posted there (another thread may make them meanwhile)."""
    c, s = ctx.client, ctx.server
    udp_c = c.rows_of(17)
    if len(udp_c) == 0:
        return [], [], []
    local = isin(c.addr_keys("src", udp_c), np.array(sorted(client_local), dtype=np.uint64))
    if not local.any():
        return [], [], []
    fr = lambda side, rows: side.frames(rows)  # noqa: E731
    for side in (c, s):  # every UDP row's 4-tuple, both ways, once (roles may have made them)
        udp_tuples(side)
    udp_s = s.rows_of(17)
    skeys = _udp_key(s, udp_s)
    req = udp_c[local]
    ckeys = _udp_key(c, req)
    # each copy the client sent pairs with one the server got, in order within the key
    partner = pair_by_order(ckeys, fr(c, req), skeys, fr(s, udp_s))
    # the one rule that takes flows out of request/reply, before either path looks
    flows = find_flows(c, udp_c, local, _tuples(c), udp_s, _tuples(s), partner)
    if flows.n == 0:
        return _reqrep_udp(ctx, udp_c, local, udp_s, skeys, req, ckeys, partner)
    spare = spare or Spare()
    spare.post("udp flows", lambda: flow_drafts(ctx, flows, udp_c, udp_s))
    on = flows.c_flow[local] >= 0
    local = local & (flows.c_flow < 0)
    req, ckeys = req[~on], ckeys[~on]
    more: list[Draft | ReqRepBatch] = []
    o2: list[np.ndarray] = []
    b2: list[np.ndarray] = []
    if len(req):
        partner = pair_by_order(ckeys, fr(c, req), skeys, fr(s, udp_s), valid_b=flows.s_flow < 0)
        more, o2, b2 = _reqrep_udp(ctx, udp_c, local, udp_s, skeys, req, ckeys, partner)
    got, plain, o, b = spare.result("udp flows")
    drafts: list[Draft | ReqRepBatch] = [FlowBatch(ctx, plain)] if plain is not None else []
    drafts += got + more
    return drafts, o + o2, b + b2


def _arrived_whole(c: Side, cp: list[int], s: Side, sp: list[int]) -> list[int]:
    """The client's replies ``cp`` that are not a first fragment of a server reply (``sp``,
    paired by payload) whose later fragments never reached the client (``cut_short``)."""
    by_hash = {int(s.t["phash"][r]): r for r in sp}
    pairs = [(r, by_hash.get(int(c.t["phash"][r]), -1)) for r in cp]
    paired = [(r, q) for r, q in pairs if q >= 0]
    if not paired:
        return cp
    cut = cut_short(s, np.array([q for _, q in paired], np.int64), c, np.array([r for r, _ in paired], np.int64))
    lost = {r for (r, _), x in zip(paired, cut.tolist()) if x}
    return [r for r in cp if r not in lost]


def _reqrep_udp(ctx: Ctx, udp_c: np.ndarray, local: np.ndarray, udp_s: np.ndarray, skeys: np.ndarray,
                req: np.ndarray, ckeys: np.ndarray, partner: np.ndarray
                ) -> tuple[list[Draft | ReqRepBatch], list[np.ndarray], list[np.ndarray]]:
    """The request/reply exchanges of the client's datagrams ``req`` (``udp_c[local]``)."""
    c, s = ctx.client, ctx.server
    fr = lambda side, rows: side.frames(rows)  # noqa: E731
    gk = combine(_tuple_key(c, req), take(c.t["phash"], req), take(c.t["plen"], req), n=len(req))
    drafts: list[Draft | ReqRepBatch] = []
    out_d: list[int] = []
    back_d: list[int] = []
    bulk_out: list[np.ndarray] = []
    bulk_back: list[np.ndarray] = []
    fast = np.zeros(len(req), bool)
    # a first fragment at the server without the rest: the close look says what was lost
    cut = np.zeros(len(req), bool)
    has = np.flatnonzero(partner >= 0)
    if len(has):
        cut[has] = cut_short(c, req[has], s, udp_s[partner[has]])
    # requests as the server got them: its own replies, which may carry the same bytes (echo), left out
    shared = shared_keys(combine(ckeys, take(c.t["dport"], req), n=len(req)), gk,
                         combine(skeys, take(s.t["dport"], udp_s), n=len(udp_s)),
                         combine(s.addr_keys("src", udp_s), take(s.t["sport"], udp_s), n=len(udp_s)))
    alone = _singletons(gk) & ~cut & ~shared if not ctx.extra else None
    if alone is not None and len(udp_s):
        paired = np.zeros(len(udp_s), bool)
        paired[partner[partner >= 0]] = True
        sp_i = _sole_answer(s, udp_s, paired)
        cp_i = _sole_answer(c, udp_c, local)[local]
        sp_of = np.where(partner >= 0, sp_i[np.maximum(partner, 0)], -1)
        ok = alone & (partner >= 0) & (sp_of >= 0) & (cp_i >= 0)
        ok &= skeys[np.maximum(sp_of, 0)] == _udp_key(c, udp_c[np.maximum(cp_i, 0)])
        # a reply that reached the client as a first fragment without the rest did not arrive
        ok[ok] = ~cut_short(s, udp_s[sp_of[ok]], c, udp_c[cp_i[ok]])
        fast = ok
        f = np.flatnonzero(fast)
        got, o, b = fast_delivered(ctx, "udp", req[f], udp_s[partner[f]], udp_s[sp_of[f]], udp_c[cp_i[f]])
        drafts += got
        bulk_out, bulk_back = [o], [b]  # the bulk's delays stay arrays (150k of them)
    c_err, s_err = error_index(c), error_index(s)
    # a datagram fragmented on the way: its first fragment keeps the IP ID and the ports
    ff_pos = np.flatnonzero((take(s.t["frag"], udp_s) & FRAG_MF) != 0)
    ff_pos = ff_pos[s.t["ipver"][udp_s[ff_pos]] == 4]
    first_frag = udp_s[ff_pos]
    ff_keys = _quote_key(s, first_frag)
    if alone is not None:  # no extra points: the plain lost cases (reqrep_lost)
        found = _plain_lost_udp(ctx, udp_c, local, udp_s, partner, alone & ~fast, c_err, s_err, ff_pos, ff_keys)
        _add_lost(ctx, "udp", req, found, fast, drafts, bulk_out)
    if fast.all():
        return drafts, _delays(out_d, bulk_out), _delays(back_d, bulk_back)
    # the close look, for the rest: only the datagrams on their 4-tuples take part
    slow = ~fast
    partner_rows = udp_s[np.maximum(partner, 0)] if len(udp_s) else np.zeros(len(req), np.int64)
    # the close look reads these for its own rows only (a few %): no dict over every request
    partner_of = dict(zip(req[slow].tolist(), np.where(partner >= 0, partner_rows, -1)[slow].tolist()))
    c_tuples = np.concatenate([_tuple_key(c, req[slow]), _tuple_key(c, req[slow], reverse=True)])
    c_near = udp_c[isin(_tuple_key(c, udp_c), c_tuples)]
    sfrag = _index(ff_keys, first_frag)
    lone = req[slow & (partner < 0)]  # never arrived whole: maybe in fragments
    lone = lone[_may_fragment(c, lone)]
    frag_sq = {r: sfrag.get(k, []) for r, k in zip(lone.tolist(), _quote_key(c, lone).tolist())}
    s_pick = np.concatenate([partner_rows[slow & (partner >= 0)],
                             np.array([x for v in frag_sq.values() for x in v], np.int64)])
    s_tuples = np.concatenate([_tuple_key(s, s_pick), _tuple_key(s, s_pick, reverse=True)])
    s_near = udp_s[isin(_tuple_key(s, udp_s), s_tuples)] if len(udp_s) else udp_s
    c_rep, s_rep = _Replies(c, c_near), _Replies(s, s_near)
    c_rep.register(req[isin(req, c_near)].tolist())
    paired = partner_rows[partner >= 0]
    s_rep.register(paired[isin(paired, s_near)].tolist())
    s_rep.register([x for v in frag_sq.values() for x in v])
    extra_req = {n: _index(_udp_key(x, x.rows_of(17)), x.rows_of(17)) for n, x in ctx.extra.items()}
    groups = _groups(gk[slow], req[slow], fr(c, req[slow]))
    matched_s: list[list[int]] = []
    cut_rows = set(req[cut].tolist())
    shared_rows = set(req[shared].tolist())
    for g in groups:
        sq = [p for p in (partner_of[r] for r in g.tolist()) if p >= 0]
        if not sq:
            sq = frag_sq.get(int(g[0]), [])
            if sq and cut_short(c, g[:1], s, np.array(sq[:1], np.int64))[0]:
                cut_rows.add(int(g[0]))
        matched_s.append(sq)
    ck = dict(zip(req[slow].tolist(), ckeys[slow].tolist()))
    s_sent = None  # payload key -> server rows, built if a reply without a request needs it
    other_s = other_c = None  # answers from another port, built if a request without replies asks
    skey_of = None  # server row -> payload key
    for g, sq in zip(groups, matched_s):
        r0 = c.t[g[0]]
        gl = g.tolist()
        ts = take(c.t["ts_ns"], g)
        d = Draft("udp", c.addr_key1("dst", g[0]), int(ts.min()), int(ts.max()), int(r0["frame"]),
                  endpoint(c.addrs[r0["src_i"]], int(r0["sport"])), endpoint(c.addrs[r0["dst_i"]], int(r0["dport"])),
                  None, "", "", bool(sq))
        changes, evidence = d.lists()
        sp = s_rep.replies(sq)
        cp_all = c_rep.replies(gl)
        if not sq and cp_all:  # a reply the server did send, though its capture lacks the request
            if s_sent is None:
                s_sent = _index(skeys, udp_s)
            sp = [r for k in _udp_key(c, np.array(cp_all, np.int64)).tolist() for r in s_sent.get(k, [])]
        sent = {int(s.t["phash"][r]) for r in sp}
        cp = [r for r in cp_all if int(c.t["phash"][r]) in sent] if sq else cp_all
        if gl[0] in shared_rows and cp_all:
            # bytes others sent too: the reply the client got, found at the server, names
            # the server's copy of the request (the one on the 4-tuple the reply left by)
            if s_sent is None:
                s_sent = _index(skeys, udp_s)
            answered = [r for k in _udp_key(c, np.array(cp_all, np.int64)).tolist() for r in s_sent.get(k, [])]
            if answered:
                tk = int(_tuple_key(s, np.array(answered[:1], np.int64), reverse=True)[0])
                mine = [r for r in s_sent.get(ck[gl[0]], []) if int(_tuple_key(s, np.array([r], np.int64))[0]) == tk]
                if mine:
                    sq, sp = mine, answered
                    d.matched = True
                    sent = {int(s.t["phash"][r]) for r in sp}
                    cp = [r for r in cp_all if int(c.t["phash"][r]) in sent]
        if sq and not sp and not cp_all:  # answered from another port of the server (TFTP)?
            if other_s is None or other_c is None:
                other_s, other_c = _FromOtherPort(s, udp_s), _FromOtherPort(c, udp_c)
            sp = other_s.after(sq[0])
            if sp:
                sent = {int(s.t["phash"][r]) for r in sp}
                cp = [r for r in other_c.after(gl[0]) if int(c.t["phash"][r]) in sent]
                cp_all = cp
        cut_back = False
        if sp and cp:  # a reply cut short on the way back (its later fragments lost) never arrived
            whole = _arrived_whole(c, cp, s, sp)
            cut_back, cp = not whole, whole
        ce = _errors_about(c, c_err, gl)
        se = []
        if sq:
            s0 = s.t[sq[0]]
            se = _errors_about(s, s_err, sq)
            d.seen_at_server_as = endpoint(s.addrs[s0["src_i"]], int(s0["sport"]))
            changes += ip_changes(r0, s0, "out")
            out_d.append(int(s0["ts_ns"]) - int(r0["ts_ns"]))
            if sp and cp:
                changes += ip_changes(c.t[cp[0]], s.t[sp[0]], "back")
                back_d.append(int(c.t[cp[0]]["ts_ns"]) - int(s.t[sp[0]]["ts_ns"]))
        for side, rows in ((c, gl), (c, cp_all), (c, ce), (s, sq), (s, sp), (s, se)):
            ctx.add_frames(d, side, rows)
        evidence += ctx.ev(c, gl, sent_note("datagram"), 2)
        where = _where(ctx, d, ck[gl[0]], extra_req)
        sent_keys = set()
        if sp and extra_req:  # only the extra points ask; sp are rows of udp_s: a lookup, not numpy per exchange
            if skey_of is None:
                skey_of = dict(zip(udp_s.tolist(), skeys.tolist()))
            sent_keys = {skey_of[r] for r in sp}
        _decide(ctx, d, "datagram", "reply", len(gl), sq, sp, cp, se, ce, where,
                {n: rows for n, idx in extra_req.items() for rows in [[r for k in sent_keys for r in idx.get(k, [])]]
                 if rows}, later_fragments(c, gl[0]) if gl[0] in cut_rows else None)
        if cut_back and d.outcome == Outcome.LOST_RETURN:
            d.fragments_lost = True
        # a datagram cut short at the server never arrived; one the server answered did,
        # though its capture lacks it
        arrived = 0 if gl[0] in cut_rows else len(sq) if sq or not sp else len(gl)
        d.datagrams = request_reply_datagrams(len(gl), arrived, len(sp), len(cp))
        _undecided_if_shared(d, gl[0] in shared_rows)
        drafts.append(d)
    return drafts, _delays(out_d, bulk_out), _delays(back_d, bulk_back)
