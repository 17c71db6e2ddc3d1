"""UDP flows: conversations on one 4-tuple that are not one request and one reply.

Which 4-tuples are flows (``find_flows``) is decided once, in ``reqrep.udp_drafts``,
before any of its paths (the bulk ones, ``reqrep_fast`` / ``reqrep_lost``, and the close
look) sees a datagram; each path then takes only the datagrams off the flows. The rule:
a 4-tuple the client opened (a client host sent a datagram on it) is a flow when its
server port is not a request/reply port (``REQREP_PORTS``: echo, DNS, DHCP, NTP,
NetBIOS names, SNMP, RADIUS, STUN, mDNS) and it carried more than one datagram in one
direction, at the client's point or at the server's (the copies there of the client's
datagrams, and the server's datagrams on the reverse 4-tuple). Everything else stays
request/reply: a 4-tuple with at most one datagram each way decides as before, and so
does every exchange on a request/reply port however many datagrams it carries.

A flow is one exchange (``flow_drafts``). Each datagram is matched across the two points
in its own direction by its payload (``udp_key``, the k-th copy of a payload with the
k-th there), within its flow; the server's side of the flow is every 4-tuple on which one
of the client's datagrams was seen there (NAT rewrites the client's address and port,
and gives a flow idle past its mapping's timeout a new one). The exchange counts its
datagrams each way (``Datagrams``: sent as seen at the sender's point, lost = never seen
at the other) and its outcome is ``lost-outbound`` if
none of the client's arrived, ``unanswered`` if the server received and never sent
(``refused`` / ``lost-return`` if it answered with ICMP errors about the flow, and the
client got them / did not; ``reset-by-middlebox`` if only the client got one),
``lost-return`` if it sent and none of its datagrams reached the client, otherwise
``delivered`` (``answered-by-middlebox`` where the client got datagrams the server
never sent). Extra capture points are not consulted for flows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rig.analysis.changes import ip_changes
from rig.analysis.context import Ctx, Draft
from rig.analysis import prose_reqrep as W
from rig.analysis.prose import arrived_note, sent_note
from rig.analysis.keys import combine, take
from rig.analysis.match import pair_by_order
from rig.analysis.sides import Side
from rig.analysis.summary import endpoint
from rig.analysis.tcp import error_index
from rig.outcome import Outcome
from rig.verdict import Datagrams
from rig.unique import isin

# the server ports of protocols that are one request and one reply
REQREP_PORTS = (7, 53, 67, 68, 123, 137, 161, 1812, 3478, 5353, 19302)
LOST_EACH = 3  # lost datagrams listed per direction in a flow's evidence (all are in its frames)


def udp_key(side: Side, rows: np.ndarray) -> np.ndarray:
    """NAT-invariant key of a datagram: its payload (an empty one: its destination port).
    The payload hash covers the payload's length, and a first fragment's covers its whole
    datagram's (``table.payload_hash``): the fragment's own length is left out, so a
    datagram matches itself however the path fragmented it."""
    t = side.t
    plen = take(t["plen"], rows)
    return np.where(plen > 0, combine(take(t["phash"], rows), 1, n=len(rows)),
                    combine(0, 0, take(t["dport"], rows), n=len(rows)))


def request_reply_datagrams(sent: int, arrived: int, replies: int, replies_arrived: int) -> Datagrams:
    """The datagrams of a request/reply exchange: the client's copies of the request and
    how many arrived, the server's replies and how many reached the client (every path of
    ``reqrep`` counts with this)."""
    return Datagrams(sent, sent - min(arrived, sent), replies, replies - min(replies_arrived, replies))


DELIVERED = request_reply_datagrams(1, 1, 1, 1)  # one request, one reply, both arrived
LOST_OUT = request_reply_datagrams(1, 0, 0, 0)
LOST_BACK = request_reply_datagrams(1, 1, 1, 0)


@dataclass
class Flows:
    """The flows of a run, by position in each point's UDP rows (``Side.rows_of(17)``)."""

    n: int
    c_flow: np.ndarray  # per client UDP row: its flow, -1 if on none
    c_out: np.ndarray  # per client UDP row: going the way of its 4-tuple's first datagram (client to server)
    s_flow: np.ndarray  # per server UDP row: its flow, -1
    s_out: np.ndarray  # per server UDP row: going from the client to the server


def _count(sorted_keys: np.ndarray, want: np.ndarray) -> np.ndarray:
    return np.searchsorted(sorted_keys, want, "right") - np.searchsorted(sorted_keys, want, "left")


def _lookup(uniq: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """The position of each key in the sorted unique ``uniq``, -1 if absent."""
    if len(uniq) == 0:
        return np.full(len(keys), -1, np.int64)
    pos = np.minimum(np.searchsorted(uniq, keys), len(uniq) - 1)
    return np.where(uniq[pos] == keys, pos, -1)


def find_flows(c: Side, udp_c: np.ndarray, local: np.ndarray, c_tuples: tuple[np.ndarray, np.ndarray],
               udp_s: np.ndarray, s_tuples: tuple[np.ndarray, np.ndarray], partner: np.ndarray) -> Flows:
    """The rule of the module docstring. ``local``: the client UDP rows a client host sent;
    ``c_tuples`` / ``s_tuples``: every UDP row's 4-tuple key each way (forward, reverse);
    ``partner``: for each client datagram (``udp_c[local]``), its copy at the server
    (a position in ``udp_s``, -1)."""
    fk_c, rk_c = c_tuples
    fk_s, rk_s = s_tuples
    none = Flows(0, np.full(len(udp_c), -1, np.int64), local.copy(), np.full(len(udp_s), -1, np.int64),
                 np.zeros(len(udp_s), bool))
    if len(udp_c) < 2 and len(udp_s) < 2:
        return none
    # a 4-tuple either way; its direction is its first datagram's at the client
    uniq, first, inv = np.unique(np.minimum(fk_c, rk_c), return_index=True, return_inverse=True)
    inv = inv.ravel()
    nt = len(uniq)
    port = take(c.t["dport"], udp_c[first])
    cand = local[first] & ~isin(port, np.array(REQREP_PORTS))
    if not cand.any():  # request/reply only (a DNS-heavy run): nothing more to count
        return none
    fwd = fk_c[first]
    out = fk_c == fwd[inv]
    n_out = np.bincount(inv[out], minlength=nt)
    n_back = np.bincount(inv[~out], minlength=nt)
    # the server's side of each tuple: where its first datagram to arrive was seen
    stup = np.zeros(nt, np.uint64)
    has = np.zeros(nt, bool)
    lp = np.flatnonzero(local)
    paired = np.flatnonzero((partner >= 0) & out[lp])
    if len(paired):
        ut, fi = np.unique(inv[lp[paired]], return_index=True)
        stup[ut] = fk_s[partner[paired[fi]]]
        has[ut] = True
    has &= cand
    ask = np.flatnonzero(has)
    s_in, s_back = np.zeros(nt, np.int64), np.zeros(nt, np.int64)
    if len(ask):
        want = np.sort(stup[ask])  # only the server rows on these tuples are sorted
        s_in[ask] = _count(np.sort(fk_s[_lookup(want, fk_s) >= 0]), stup[ask])
        s_back[ask] = _count(np.sort(rk_s[_lookup(want, rk_s) >= 0]), stup[ask])  # going back
    most = np.maximum(np.maximum(n_out, n_back), np.maximum(s_in, s_back))
    is_flow = cand & (most >= 2)
    if not is_flow.any():
        return none
    # flows numbered by their first datagram at the client
    idx = np.flatnonzero(is_flow)
    idx = idx[np.argsort(first[idx], kind="stable")]
    number = np.full(nt, -1, np.int64)
    number[idx] = np.arange(len(idx))
    c_flow = number[inv]
    s_flow = np.full(len(udp_s), -1, np.int64)
    s_out = np.zeros(len(udp_s), bool)
    # the server's side of a flow: every 4-tuple one of its datagrams arrived on (a NAT
    # whose mapping expired while the flow was idle gives it a new public port)
    ct = inv[lp[paired]] if len(paired) else np.zeros(0, np.int64)
    pick = is_flow[ct] & has[ct]
    st, sn_all = fk_s[partner[paired[pick]]] if len(paired) else np.zeros(0, np.uint64), number[ct[pick]]
    if len(st):
        so = np.lexsort((sn_all, st))
        su, sn = st[so], sn_all[so]
        keep = np.concatenate([[True], su[1:] != su[:-1]])  # a tuple two flows share: the first keeps it
        su, sn = su[keep], sn[keep]
        f_at, r_at = _lookup(su, fk_s), _lookup(su, rk_s)
        s_flow = np.where(f_at >= 0, sn[np.maximum(f_at, 0)], np.where(r_at >= 0, sn[np.maximum(r_at, 0)], -1))
        s_out = f_at >= 0
    return Flows(len(idx), c_flow, out, s_flow, s_out)


def _via(idx: np.ndarray, p: np.ndarray) -> np.ndarray:
    """``idx[p]`` where ``p >= 0``, else -1."""
    out = np.full(len(p), -1, np.int64)
    m = p >= 0
    out[m] = idx[p[m]]
    return out


def passed(n_out, out_lost, n_back, back_lost):
    """Whether a flow is delivered: some of the client's datagrams reached the server and
    some of the server's the client (counts, or arrays of them: ``flow_drafts``' bulk)."""
    return (n_out > out_lost) & (n_back > back_lost)


def _words(n_out: int, out_lost: int, n_back: int, back_lost: int, stray: int, c_back: int,
           s_err: int = 0, c_err: int = 0) -> tuple[str, str, tuple[str, ...]]:
    """The outcome, its explanation and the points whose absence of packets it rests on.
    ``s_err`` / ``c_err``: the ICMP errors about the flow the server sent and the client got."""
    if passed(n_out, out_lost, n_back, back_lost):
        return Outcome.DELIVERED, W.flow_passed(n_out, out_lost, n_back, back_lost, stray), ()
    arrived = n_out - out_lost
    if arrived == 0:
        if c_back:
            return Outcome.ANSWERED_BY_MIDDLEBOX, W.flow_answered_unseen(n_out, c_back), ("server",)
        return Outcome.LOST_OUTBOUND, W.flow_lost_outbound(n_out), ("server",)
    if n_back == 0:
        if c_back:
            return Outcome.ANSWERED_BY_MIDDLEBOX, W.flow_answered_in_silence(n_out, arrived, c_back), ("server",)
        if s_err and c_err:
            return Outcome.REFUSED, W.flow_refused(n_out, arrived, s_err), ()
        if s_err:
            return Outcome.LOST_RETURN, W.flow_refusal_lost(n_out, arrived, s_err), ("client",)
        if c_err:
            return Outcome.RESET_BY_MIDDLEBOX, W.flow_error_in_silence(n_out, arrived, c_err), ("server",)
        return Outcome.UNANSWERED, W.flow_unanswered(n_out, arrived), ("server",)
    return Outcome.LOST_RETURN, W.flow_replies_lost(n_out, out_lost, n_back), ("client",)  # (n_back == back_lost)


@dataclass
class PlainFlows:
    """Delivered flows (some of the client's datagrams reached the server, some of the
    server's the client) with no datagram from elsewhere: each one's first datagram at the
    client (``first``: what orders it), the four rows its record's changes and evidence
    read (the client's first datagram that arrived, at the client and at the server; the
    server's first that arrived, at the server and at the client), its counts, its frames
    at each point (``frames[cut[i]:cut[i + 1]]``, in order), and the first ``LOST_EACH``
    of its lost datagrams each way (rows at the sender, ``lost_*[cut[i]:cut[i + 1]]``).
    ``udpflow_fast.FlowBatch`` makes their records as ``flow_drafts`` would."""

    first: np.ndarray
    creq: np.ndarray
    sreq: np.ndarray
    srep: np.ndarray
    crep: np.ndarray
    n_out: np.ndarray
    out_lost: np.ndarray
    n_back: np.ndarray
    back_lost: np.ndarray
    c_frames: np.ndarray
    c_cut: np.ndarray
    s_frames: np.ndarray
    s_cut: np.ndarray
    lost_c: np.ndarray
    lost_c_cut: np.ndarray
    lost_s: np.ndarray
    lost_s_cut: np.ndarray


def _ragged(flow: np.ndarray, frames: np.ndarray, number: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The frames of each of ``n`` flows (``number``: a row's flow's place among them, -1:
    none) in order, and where each flow's start (n + 1 cuts)."""
    on = np.flatnonzero(number[flow] >= 0)
    key = number[flow[on]]
    order = np.argsort(key, kind="stable")  # rows are in file order: so are their frames within a flow
    return frames[on[order]], np.searchsorted(key[order], np.arange(n + 1))


def _first_and_lost(order: np.ndarray, lo: np.ndarray, hi: np.ndarray, arrived: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each slice ``order[lo[i]:hi[i]]`` (a flow's datagrams one way, in file order;
    positions whose ``arrived`` says if they reached the other point): the first position
    that arrived (-1: none), and the first ``LOST_EACH`` that did not, with where each
    slice's start among them (len(lo) + 1 cuts)."""
    m = len(lo)
    lens = hi - lo
    seg = np.repeat(np.arange(m), lens)
    at = order[np.arange(int(lens.sum())) - np.repeat(np.cumsum(lens) - lens, lens) + np.repeat(lo, lens)]
    ok = arrived[at]
    first = np.full(m, -1, np.int64)
    g = np.flatnonzero(ok)
    if len(g):
        u, i = np.unique(seg[g], return_index=True)
        first[u] = at[g[i]]
    bad = np.flatnonzero(~ok)
    bad_seg = seg[bad]
    rank = np.arange(len(bad)) - np.searchsorted(bad_seg, bad_seg, "left")
    keep = rank < LOST_EACH
    return first, at[bad[keep]], np.searchsorted(bad_seg[keep], np.arange(m + 1))


def flow_drafts(ctx: Ctx, fl: Flows, udp_c: np.ndarray, udp_s: np.ndarray, bulk: bool = True
                ) -> tuple[list[Draft], PlainFlows | None, list[np.ndarray], list[np.ndarray]]:
    """One draft per flow, with the out and back delays of its matched datagrams (for the
    clock offset). ``bulk``: the delivered flows without a stray datagram (``PlainFlows``)
    are left to the bulk path, which gives the same records from columns."""
    c, s = ctx.client, ctx.server
    cf = np.flatnonzero(fl.c_flow >= 0)
    sf = np.flatnonzero(fl.s_flow >= 0)
    crow, cfl, cout = udp_c[cf], fl.c_flow[cf], fl.c_out[cf]
    srow, sfl, sout = udp_s[sf], fl.s_flow[sf], fl.s_out[sf]
    ck, sk = combine(cfl, udp_key(c, crow), n=len(crow)), combine(sfl, udp_key(s, srow), n=len(srow))
    cfr, sfr = c.frames(crow), s.frames(srow)
    # each direction: the sender's datagrams paired with the receiver's (positions in cf / sf)
    co, si = np.flatnonzero(cout), np.flatnonzero(sout)
    so, ci = np.flatnonzero(~sout), np.flatnonzero(~cout)
    p_out = pair_by_order(ck[co], cfr[co], sk[si], sfr[si])
    p_back = pair_by_order(sk[so], sfr[so], ck[ci], cfr[ci])
    out_to = _via(si, p_out)  # per co: its copy at the server (a position in sf), -1
    back_to = _via(ci, p_back)  # per so: its copy at the client (in cf), -1
    from_server = np.zeros(len(cf), bool)
    from_server[back_to[back_to >= 0]] = True
    n = fl.n
    count = lambda sel, fl_of: np.bincount(fl_of[sel], minlength=n)  # noqa: E731
    out_sent, out_lost = count(co, cfl), count(co[out_to < 0], cfl)
    back_sent, back_lost = count(so, sfl), count(so[back_to < 0], sfl)
    c_back = count(ci, cfl)
    stray = count(ci[~from_server[ci]], cfl)
    ts_c, ts_s = take(c.t["ts_ns"], crow).astype(np.int64), take(s.t["ts_ns"], srow).astype(np.int64)
    m = out_to >= 0
    out_d = ts_s[out_to[m]] - ts_c[co[m]]
    m = back_to >= 0
    back_d = ts_c[back_to[m]] - ts_s[so[m]]
    # each point's rows by (flow, direction), in file order within: a flow's datagrams
    # each way are one slice (positions in cf / sf)
    c_ord, c_cut = _by_flow(cfl, ~cout, n)
    s_ord, s_cut = _by_flow(sfl, ~sout, n)
    copy_at_s = np.full(len(cf), -1, np.int64)
    copy_at_s[co] = out_to
    copy_at_c = np.full(len(sf), -1, np.int64)
    copy_at_c[so] = back_to
    # the per-flow loop reads Python lists: a flow is a few dozen datagrams
    c_fr, s_fr = cfr[c_ord].tolist(), sfr[s_ord].tolist()
    c_pos, s_pos = c_ord.tolist(), s_ord.tolist()
    crow_l, srow_l = crow.tolist(), srow.tolist()
    at_s, at_c = copy_at_s.tolist(), copy_at_c.tolist()
    c_cut_a, s_cut_a = c_cut, s_cut
    c_cut, s_cut = c_cut.tolist(), s_cut.tolist()
    counts = np.stack([out_sent, out_lost, back_sent, back_lost, stray, c_back]).T.tolist()
    ts_l = ts_c.tolist()
    # ICMP errors about a flow (filed by the 4-tuple they quote: ``Side.udp_error_key``),
    # asked of the flows the server sent nothing on
    c_errs, s_errs = error_index(c), error_index(s)
    plain_flows = None
    if bulk:
        # delivered (as the loop below decides with ``_words``), without a stray datagram
        is_plain = passed(out_sent, out_lost, back_sent, back_lost) & (stray == 0)
        pf = np.flatnonzero(is_plain)
        if len(pf):
            number = np.full(n, -1, np.int64)
            number[pf] = np.arange(len(pf))
            # positions in cf / sf: each flow's first datagram out, the first of them that
            # arrived, the first of the server's that arrived; the lost ones each way
            c0 = c_ord[c_cut_a[2 * pf]]
            a0, lost_c, lost_c_cut = _first_and_lost(c_ord, c_cut_a[2 * pf], c_cut_a[2 * pf + 1], copy_at_s >= 0)
            b0, lost_s, lost_s_cut = _first_and_lost(s_ord, s_cut_a[2 * pf + 1], s_cut_a[2 * pf + 2], copy_at_c >= 0)
            cfr_all, ccut = _ragged(cfl, cfr, number, len(pf))
            sfr_all, scut = _ragged(sfl, sfr, number, len(pf))
            plain_flows = PlainFlows(crow[c0], crow[a0], srow[copy_at_s[a0]], srow[b0], crow[copy_at_c[b0]],
                                     out_sent[pf], out_lost[pf], back_sent[pf], back_lost[pf],
                                     cfr_all, ccut, sfr_all, scut, crow[lost_c], lost_c_cut, srow[lost_s], lost_s_cut)
        skip = is_plain.tolist()
    drafts = []
    for f in range(n):
        if bulk and skip[f]:
            continue
        ca, cm, cb = c_cut[2 * f], c_cut[2 * f + 1], c_cut[2 * f + 2]  # out: [ca, cm), back: [cm, cb)
        sa, sm, sb = s_cut[2 * f], s_cut[2 * f + 1], s_cut[2 * f + 2]
        if cm == ca:
            continue
        mine, theirs = c_pos[ca:cm], c_pos[cm:cb]
        s_sent = s_pos[sm:sb]
        n_out, n_out_lost, n_back, n_back_lost, n_stray, n_c_back = counts[f]
        r0 = crow_l[mine[0]]
        rec = c.t[r0]
        arrived = [i for i in mine if at_s[i] >= 0]
        ce: list[int] = []
        se: list[int] = []
        if n_back == 0 and (c_errs or s_errs):
            ce = c_errs.get(int(c.udp_error_key(np.array([r0], np.int64))[0]), [])
            if arrived:
                se = s_errs.get(int(s.udp_error_key(np.array([srow_l[at_s[arrived[0]]]], np.int64))[0]), [])
        outcome, words, absent = _words(n_out, n_out_lost, n_back, n_back_lost, n_stray, n_c_back, len(se), len(ce))
        ts = [ts_l[i] for i in mine]
        d = Draft("udp", c.addr_key1("dst", r0), min(ts), max(ts), int(rec["frame"]),
                  endpoint(c.addrs[rec["src_i"]], int(rec["sport"])), endpoint(c.addrs[rec["dst_i"]], int(rec["dport"])),
                  None, outcome, words, sb > sa)
        d.absent_at = absent
        d.datagrams = Datagrams(n_out, n_out_lost, n_back, n_back_lost)
        d.frames[c.name] = c_fr[ca:cb]
        if sb > sa:
            d.frames[s.name] = s_fr[sa:sb]
        changes, ev = d.lists()
        plain = outcome == Outcome.DELIVERED  # as a delivered request/reply: what arrived, each way
        if not plain:
            ev += ctx.ev(c, [r0], sent_note("datagram"), 1)
        if arrived:
            a0 = arrived[0]
            s0 = srow_l[at_s[a0]]
            d.seen_at_server_as = endpoint(s.addrs[s.t["src_i"][s0]], int(s.t["sport"][s0]))
            changes += ip_changes(c.t[crow_l[a0]], s.t[s0], "out")
            ev += ctx.ev(s, [s0], arrived_note("datagram"), 1)
        if s_sent:
            if not plain:
                ev += ctx.ev(s, [srow_l[s_sent[0]]], sent_note("datagram"), 1)
            back_ok = [i for i in s_sent if at_c[i] >= 0]
            if back_ok:
                b0 = back_ok[0]
                changes += ip_changes(c.t[crow_l[at_c[b0]]], s.t[srow_l[b0]], "back")
                ev += ctx.ev(c, [crow_l[at_c[b0]]], arrived_note("datagram"), 1)
        if n_out_lost and arrived:  # all lost: the datagram sent says it already
            ev += ctx.ev(c, [crow_l[i] for i in mine if at_s[i] < 0], W.NEVER_REACHED_SERVER_EACH, LOST_EACH)
        if n_back_lost:
            ev += ctx.ev(s, [srow_l[i] for i in s_sent if at_c[i] < 0], W.NEVER_REACHED_CLIENT_EACH, LOST_EACH)
        if se:
            ctx.add_frames(d, s, se)
            ev += ctx.ev(s, se, "ICMP error sent by the server", 1)
        if ce:
            ctx.add_frames(d, c, ce)
            ev += ctx.ev(c, ce, "ICMP error arrived", 1)
        if n_stray:
            odd = [crow_l[i] for i in theirs if not from_server[i]]
            ev += ctx.ev(c, odd, W.DATAGRAM_NOT_FROM_SERVER, 1)
        drafts.append(d)
    del c_fr, s_fr, c_pos, s_pos, crow_l, srow_l, at_s, at_c, ts_l
    return drafts, plain_flows, [out_d], [back_d]


def _by_flow(flow: np.ndarray, back: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions sorted by (flow, direction: out first), file order within; and where
    each (flow, direction) starts (2n + 1 cuts)."""
    key = flow * 2 + back
    order = np.argsort(key, kind="stable")
    cuts = np.searchsorted(key[order], np.arange(2 * n + 1))
    return order, cuts
