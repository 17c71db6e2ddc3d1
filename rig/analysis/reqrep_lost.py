"""The plain lost cases of echo and UDP, built from column lists.

A request alone in its group, in a run without extra capture points, that never reached
the server (no copy there, no reply at the client, no ICMP error about it), or reached it
and got the server's one reply, which never reached the client (no ICMP error either
way): most of what a lossy run leaves to the close look in ``reqrep`` (bench/diff.py, 1%
loss: 3 in 4 of its exchanges, at ~100 us each there). Which requests these are is
decided in ``reqrep``; their drafts are made here with the close look's words
(``context``), evidence, frames and changes. They stay drafts, not batches: the run-wide
check (``api._vouch``) may still find that a point cannot vouch for the absence.
"""

from __future__ import annotations

import numpy as np

from rig.analysis.changes import changes_by_signature, ip_changes
from rig.analysis.context import Ctx, Draft
from rig.analysis.prose import (NEVER_REACHED_CLIENT, NEVER_REACHED_SERVER, arrived_note, lost_outbound_words,
                                lost_return_words, sent_note)
from rig.analysis.keys import run_starts, sort_order, take
from rig.analysis.reqrep_fast import IP_FIELDS, REQ_FIELDS, ROW_FIELDS, Rows, echo_id_change
from rig.analysis.sides import Part
from rig.analysis.udpflow import LOST_BACK, LOST_OUT
from rig.outcome import Outcome
from rig.verdict import Evidence
from rig.unique import member, unique

WORDS = {"udp": ("datagram", "reply"), "icmp": ("echo request", "echo reply")}


def _member(keys: np.ndarray, among: np.ndarray) -> np.ndarray:
    """Which 64-bit hash ``keys`` are in ``among`` (sorted, small). A table of ``among``'s
    low bits rules most keys out, a search settles the rest: measured 200k keys among
    3k, 4 ms; ``np.isin`` 12 ms, ``np.searchsorted`` of every key 17 ms."""
    if len(among) == 0:
        return np.zeros(len(keys), bool)
    bits = 1 << max(16, len(among).bit_length() + 4)
    low = np.uint64(bits - 1)
    table = np.zeros(bits, bool)
    table[(among & low).astype(np.intp)] = True
    out = table[(keys & low).astype(np.intp)]
    maybe = np.flatnonzero(out)
    k = keys[maybe]
    out[maybe] = member(among, k)
    return out


def replies_to(asked: np.ndarray, fwd: np.ndarray, rev: np.ndarray, is_req: np.ndarray,
               frames) -> tuple[np.ndarray, np.ndarray]:
    """What ``reqrep._Replies.replies`` gives each of the requests ``asked`` alone, for all
    at once. Positions index a point's UDP rows: ``fwd`` / ``rev`` their 4-tuple keys both
    ways, ``is_req`` the requests the close look registers, ``frames(positions)`` their
    frames. A datagram answers the last request on its reverse 4-tuple at or before its
    frame, or the first such request if none is. Returns, per asked request, its number
    of replies and one of them (a position, -1 if none): its only one where it has one."""
    n_asked = len(asked)
    count, one = np.zeros(n_asked, np.int64), np.full(n_asked, -1, np.int64)
    if n_asked == 0:
        return count, one
    tuples = unique(rev[asked])  # only the rows on these 4-tuples take part
    reqs = np.flatnonzero(is_req & _member(rev, tuples))
    cands = np.flatnonzero(_member(fwd, tuples))
    nq = len(reqs)
    key = np.concatenate([rev[reqs], fwd[cands]])
    # by key, then frame, a request before a candidate of its own frame (bisect_right)
    then = np.concatenate([frames(reqs).astype(np.int64) * 2, frames(cands).astype(np.int64) * 2 + 1])
    o = sort_order(key, then)
    k = key[o]
    n = len(o)
    is_q = o < nq
    pos = np.arange(n)
    start = np.maximum.accumulate(np.where(run_starts(k), pos, 0))
    last_q = np.maximum.accumulate(np.where(is_q, pos, -1))
    next_q = np.minimum.accumulate(np.where(is_q, pos, n)[::-1])[::-1]
    to = np.where(last_q >= start, last_q, next_q[start])
    hit = ~is_q & (to < n)
    hit[hit] = k[to[hit]] == k[hit]  # a request of its own 4-tuple
    q, cand = o[to[hit]], cands[o[hit] - nq]
    per_req = np.bincount(q, minlength=nq)
    one_per = np.full(nq, -1, np.int64)
    one_per[q] = cand
    at = np.searchsorted(reqs, asked)
    return per_req[at], one_per[at]


def _texts(side, rows: np.ndarray, protocol: str, req_side: bool) -> Rows:
    fields = REQ_FIELDS[protocol] if req_side else ROW_FIELDS[protocol]
    need = tuple(dict.fromkeys(fields + ROW_FIELDS[protocol]))  # the client's request is summarised whole
    return Rows(Part(side, rows, need + ("src_i", "dst_i")), np.arange(len(rows)), need)


def lost_drafts(ctx: Ctx, protocol: str, creq: np.ndarray, sreq: np.ndarray | None = None,
                srep: np.ndarray | None = None) -> tuple[list[Draft], np.ndarray]:
    """The drafts of requests ``creq`` (client rows) that never reached the server
    (``sreq`` None), or whose server copy ``sreq`` got the one reply ``srep`` that never
    reached the client; with the out delays of the latter for the clock offset."""
    c, s = ctx.client, ctx.server
    if len(creq) == 0:
        return [], np.zeros(0, np.int64)
    udp = protocol == "udp"
    req, rep = WORDS[protocol]
    cq = _texts(c, creq, protocol, True)
    client_ep, server_ep = cq.eps("src", udp), cq.eps("dst", udp, shared=True)
    sent = cq.summaries(udp, sent_note(req))
    cframe = cq.c["frame"]
    dst_key = c.addr_keys("dst", creq).tolist()
    ts = take(c.t["ts_ns"], creq).tolist()
    # the request's (id, seq) as the client sent it, for ICMP (how a probe finds its exchange)
    echo: list[tuple[int, int] | None] = ([None] * len(creq) if udp else
                                          [(int(i), int(q)) for i, q in zip(cq.c["icmp_id"], cq.c["icmp_seq"])])
    out = []
    if sreq is None:
        words = lost_outbound_words(req, 1)
        for i in range(len(creq)):
            out.append(Draft(protocol, dst_key[i], ts[i], ts[i], cframe[i], client_ep[i], server_ep[i], None,
                             Outcome.LOST_OUTBOUND, words, False, [],
                             [Evidence(c.name, cframe[i], sent[i] + NEVER_REACHED_SERVER)],
                             {c.name: [cframe[i]]}, ("server",), datagrams=LOST_OUT if udp else None,
                             echo=echo[i]))
        return out, np.zeros(0, np.int64)
    if srep is None:
        raise ValueError("server requests (sreq) come with their replies (srep)")
    sq, sp = _texts(s, sreq, protocol, False), _texts(s, srep, protocol, False)
    seen = sq.eps("src", udp)
    arrived, lost = sq.summaries(udp, arrived_note(req)), sp.summaries(udp, NEVER_REACHED_CLIENT)
    sframe, pframe = sq.c["frame"], sp.c["frame"]
    per, inv = changes_by_signature(c, s, creq, sreq, "out", IP_FIELDS, ip_changes)
    inv = inv.tolist()
    renamed = [] if udp else (take(c.t["icmp_id"], creq) != take(s.t["icmp_id"], sreq)).tolist()
    words = lost_return_words(req, rep, 1)
    for i in range(len(creq)):
        ch = list(per[inv[i]])
        if not udp and renamed[i]:
            ch.append(echo_id_change(cq.c["icmp_id"][i], sq.c["icmp_id"][i]))
        out.append(Draft(protocol, dst_key[i], ts[i], ts[i], cframe[i], client_ep[i], server_ep[i], seen[i],
                         Outcome.LOST_RETURN, words, True, ch,
                         [Evidence(c.name, cframe[i], sent[i]), Evidence(s.name, sframe[i], arrived[i]),
                          Evidence(s.name, pframe[i], lost[i])],
                         {c.name: [cframe[i]], s.name: [sframe[i], pframe[i]]}, ("client",),
                         datagrams=LOST_BACK if udp else None,
                         echo=echo[i]))
    out_d = take(s.t["ts_ns"], sreq).astype(np.int64) - take(c.t["ts_ns"], creq).astype(np.int64)
    return out, out_d
