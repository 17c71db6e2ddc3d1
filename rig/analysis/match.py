"""Joins across capture points on NAT-invariant keys, and the clock offset between them.

``pair_by_order`` is the one join: rows of two points with equal keys pair in the order
each point saw them (the k-th retransmission here with the k-th there), vectorised as a
sort + searchsorted on (key, rank). TCP connections join on the client's ISN, then on
keys that survive more rewriting (``match_tcp``; pf rewrites ISNs, ports, IP IDs and
timestamps: ``match_syn`` joins what no key can).
"""

from __future__ import annotations

import numpy as np

from rig.analysis.kept import Evidence, Kept, learn
from rig.analysis.keys import combine, run_starts, sort_order, take
from rig.analysis.match_syn import LATER_TICKS, match_by_pattern, timing
from rig.analysis.sides import NEVER_NS, SYN_ROW, SYNACK_ROW, Side
from rig.unique import isin, unique


def _ascending(x: np.ndarray) -> bool:
    return len(x) < 2 or bool((x[1:] >= x[:-1]).all())


def pair_by_order(ka: np.ndarray, oa: np.ndarray, kb: np.ndarray, ob: np.ndarray,
                  valid_a: np.ndarray | None = None, valid_b: np.ndarray | None = None) -> np.ndarray:
    """For each element of a, the index of its partner in b (-1 if none): the k-th element
    of a key in a (in ``oa`` order) pairs with the k-th of that key in b (``ob`` order).

    Both sides are sorted by (key, order); each element of a finds its key's group in b
    by a binary search of b's distinct keys with a's keys *in sorted order* (measured
    1M: 21 ms, against 336 ms for the same search with the needles in random order).
    """
    out = np.full(len(ka), -1, np.int64)
    if len(ka) == 0 or len(kb) == 0:
        return out
    ia = np.arange(len(ka)) if valid_a is None else np.flatnonzero(valid_a)
    ib = np.arange(len(kb)) if valid_b is None else np.flatnonzero(valid_b)
    if len(ia) == 0 or len(ib) == 0:
        return out
    # every intermediate goes as soon as it is used (two steps run this at once)
    a_keys, a_ord = ka[ia], oa[ia]
    sa = sort_order(a_keys, None if _ascending(a_ord) else a_ord)
    ks_a = a_keys[sa]
    del a_keys, a_ord
    b_keys, b_ord = kb[ib], ob[ib]
    sb = sort_order(b_keys, None if _ascending(b_ord) else b_ord)
    ks_b = b_keys[sb]
    del b_keys, b_ord
    nb = len(ks_b)
    start_b = run_starts(ks_b)
    first_b = np.flatnonzero(start_b)
    uniq_b = ks_b[first_b]
    count_b = np.diff(np.append(first_b, nb))
    del ks_b, start_b
    na = len(ks_a)
    start_a = run_starts(ks_a)
    ar = np.arange(na)
    rank = ar - np.maximum.accumulate(np.where(start_a, ar, 0))
    del ar, start_a
    g = np.minimum(np.searchsorted(uniq_b, ks_a), len(uniq_b) - 1)
    hit = (uniq_b[g] == ks_a) & (rank < count_b[g])
    out[ia[sa[hit]]] = ib[sb[first_b[g[hit]] + rank[hit]]]
    return out


def match_tcp(c: Side, s: Side, patterns: bool = True) -> tuple[np.ndarray, dict[int, str]]:
    """For each client connection, the server connection it is (-1 if the server never
    saw it); and the client connections that could be any of several server connections,
    with why (``match_syn.Undecided``: their outcome is 'incomplete', never a guess).

    Each step joins what the ones before left, on a key that survives more rewriting:

    1. the client's ISN with the service port (Linux NATs keep both);
    2. the server's own ISN (the SYN-ACK's seq) with the service port: pf's ``modulate
       state`` shifts only the initiator's sequence numbers, so a connection whose SYN-ACK
       reached the client is found whatever pf did to its ISN, ports, IP IDs, timestamps;
    3. the SYN's IP ID and TCP timestamp (a path that rewrites the ISN but keeps these);
    4. the SYN's TCP timestamp alone (``scrub random-id`` without timestamp modulation),
       where exactly one connection on each side carries it;
    4b. the SYN's IPv4 ID alone (pf's timestamp modulation without ``random-id``), and
       then its addresses and ports (a path without NAT), where exactly one connection on
       each side carries it and it arrived when the pairs joined so far say it could;
    4c. the TCP timestamp of any of the client's SYN copies, for a server connection whose
       first copy is a later one (``_join_later_copy``);
    5. what is left when every field was rewritten and no SYN-ACK came back (the seed's
       fault behind pf): ``match_syn.match_by_pattern`` (unless not ``patterns``), with
       what the joins so far show the path keeps (``_kept``).
    """
    cc, sc = c.tcp, s.tcp
    if len(cc) == 0:
        return np.zeros(0, np.int64), {}
    c_first = c.frames(cc.order[cc.starts])
    s_first = s.frames(sc.order[sc.starts]) if len(sc) else np.zeros(0, np.int64)
    # the ISN with the service port: a scanner's SYN that happens to carry the same ISN
    # (one chance in 2^32 per pair, but a public server sees thousands) is not taken for ours
    m = pair_by_order(combine(cc.isn_c, cc.resp_port), c_first, combine(sc.isn_c, sc.resp_port) if len(sc) else sc.isn_c,
                      s_first, cc.syn >= 0, sc.isn_c >= 0)
    left = (m < 0) & (cc.syn >= 0)
    if not left.any() or len(sc) == 0:
        return m, {}
    taken = np.zeros(len(sc), bool)
    taken[m[m >= 0]] = True

    def join(ka, kb, valid_a, valid_b):
        nonlocal left
        got = pair_by_order(ka, c_first, kb, s_first, left & valid_a, ~taken & valid_b)
        hit = got >= 0
        m[hit] = got[hit]
        taken[got[hit]] = True
        left &= ~hit

    join(combine(cc.isn_s, cc.resp_port), combine(sc.isn_s, sc.resp_port), cc.isn_s >= 0, sc.isn_s >= 0)
    if left.any():
        k2c, vc = _syn_key2(c, cc)
        k2s, vs = _syn_key2(s, sc)
        join(k2c, k2s, vc, vs)
    if left.any():
        kc, vc = _syn_tsval_key(c, cc)
        ks, vs = _syn_tsval_key(s, sc)
        join(kc, ks, vc & _unique(kc, vc & left), vs & _unique(ks, vs & ~taken))
    def join_timed(key, span: int) -> None:
        """Join on a key that may repeat by chance or over time: unique on each side, and
        the first SYN copies at the two points no further than ``span`` from when the pairs
        joined so far say it would arrive (0: the same packet; a retry span: any copy)."""
        nonlocal left
        if not left.any():
            return
        kc, vc = key(c, cc)
        ks, vs = key(s, sc)
        got = pair_by_order(kc, c_first, ks, s_first, left & vc & _unique(kc, vc & left),
                            ~taken & vs & _unique(ks, vs & ~taken))
        hit = got >= 0
        if not hit.any():
            return
        delay, tol = timing(_learnt(c, s, m)[0])
        if delay is not None:
            ci = np.flatnonzero(hit)
            d = (take(s.t["ts_ns"], sc.order[sc.syn[got[ci]]]).astype(np.int64)
                 - take(c.t["ts_ns"], cc.order[cc.syn[ci]]).astype(np.int64))
            hit[ci[(d < delay - tol) | (d > delay + tol + span)]] = False
        m[hit] = got[hit]
        taken[got[hit]] = True
        left &= ~hit

    join_timed(_syn_ipid_key, 0)  # each copy has its own ID
    join_timed(_tuple_key, SYN_RETRY_SPAN_NS)  # the first to arrive may be a later copy
    if left.any():
        _join_later_copy(c, s, m, left, taken)
    if not patterns or not (left & (cc.synack < 0)).any():
        return m, {}
    delays, public = _learnt(c, s, m)
    m, undecided = match_by_pattern(c, s, m, left, taken, delays, public, _kept(c, s, m))
    return m, {ci: u.text() for ci, u in undecided.items()}


def _join_later_copy(c: Side, s: Side, m: np.ndarray, left: np.ndarray, taken: np.ndarray) -> None:
    """Step 4c, in place: a server connection whose first SYN carries the TCP timestamp of
    one of a client connection's *later* copies (with the service port). Each
    retransmission has its own timestamp and NATs keep it; the server capture that began
    after the client's first copy (or the path that lost it) holds a later one first,
    which step 4 (first copy to first copy) cannot join. A key is used only where exactly
    one connection on each side carries it."""
    cc, sc = c.tcp, s.tcp
    pos = np.flatnonzero(((cc.kind & SYN_ROW) != 0) & cc.fwd)
    cid = cc.conn_of(pos)
    rows = cc.order[pos]
    ok = left[cid] & (take(c.t["has_ts"], rows) > 0) & (take(c.t["tsval"], rows) > 0)
    pos, cid, rows = pos[ok], cid[ok], rows[ok]
    if not len(cid):
        return
    ck = combine(take(c.t["tsval"], rows), cc.resp_port[cid], n=len(rows))
    keys, first = np.unique(ck, return_index=True)
    o = np.lexsort((cid, ck))  # how many client connections carry each key
    ck_s, cid_s = ck[o], cid[o]
    new = np.r_[True, (ck_s[1:] != ck_s[:-1]) | (cid_s[1:] != cid_s[:-1])]
    owners = np.bincount(np.searchsorted(keys, ck_s[new]), minlength=len(keys))
    ks, vs = _syn_tsval_key(s, sc)
    vs = vs & ~taken & _unique(ks, vs & ~taken)
    at = np.minimum(np.searchsorted(keys, ks), len(keys) - 1)
    hit = vs & (keys[at] == ks) & (owners[at] == 1)
    si = np.flatnonzero(hit)
    ci = cid[first[at[si]]]
    uci, n_of = np.unique(ci, return_counts=True)  # a client connection two server ones claim: neither
    once = isin(ci, uci[n_of == 1])
    si, ci = si[once], ci[once]
    m[ci] = si
    taken[si] = True
    left[ci] = False


def _learnt(c: Side, s: Side, m: np.ndarray) -> tuple[np.ndarray, dict[int, dict[int, np.ndarray]]]:
    """What the packets joined so far say about the path: how long after the client sent
    a packet the server's clock saw it (server time minus client time: the clock offset
    plus the path delay), from the joined SYNs and echo requests; and, per client address
    (its key), the addresses its packets arrived from at the server (its NAT's public
    addresses), per IP version."""
    cc, sc = c.tcp, s.tcp
    mc = np.flatnonzero(m >= 0)
    mc = mc[(sc.syn[m[mc]] >= 0) & (cc.syn[mc] >= 0)]
    rs = sc.order[sc.syn[m[mc]]]
    rc = cc.order[cc.syn[mc]]
    delays = syn_delays(c, s, mc, m[mc])[0]
    ec, es = c.echo_req, s.echo_req
    if len(ec) and len(es):
        pe = pair_by_order(c.echo_key(ec), c.frames(ec), s.echo_key(es), s.frames(es))
        hit = pe >= 0
        rs = np.concatenate([rs, es[pe[hit]]])
        rc = np.concatenate([rc, ec[hit]])
        delays = np.concatenate([delays, take(s.t["ts_ns"], es[pe[hit]]).astype(np.int64)
                                 - take(c.t["ts_ns"], ec[hit]).astype(np.int64)])
    ver = take(s.t["ipver"], rs)
    keys = s.addr_keys("src", rs)
    hosts = c.addr_keys("src", rc)
    # one pass over the samples sorted by (host, version, key), not a mask per host (a site's
    # capture has thousands of hosts)
    o = np.lexsort((keys, ver, hosts))
    hosts, ver, keys = hosts[o], ver[o], keys[o]
    cut = np.flatnonzero((hosts[1:] != hosts[:-1]) | (ver[1:] != ver[:-1])) + 1
    public: dict[int, dict[int, np.ndarray]] = {}
    for a, b in zip(np.r_[0, cut].tolist(), np.r_[cut, len(hosts)].tolist()):
        if a < b:
            public.setdefault(int(hosts[a]), {})[int(ver[a])] = unique(keys[a:b])
    return delays, public


def _kept(c: Side, s: Side, m: np.ndarray) -> Kept:
    """What the path kept of the SYNs joined so far (``kept.learn``): the initiator's ISN,
    and on the same SYN copy at both points, its TCP timestamp value and IPv4 ID."""
    cc, sc = c.tcp, s.tcp
    rows_c = cc.order[np.maximum(cc.syn, 0)]
    kind = combine(c.addr_keys("src", rows_c), c.addr_keys("dst", rows_c), cc.resp_port, n=len(cc))
    mc = np.flatnonzero(m >= 0)
    mc = mc[(cc.syn[mc] >= 0) & (sc.syn[m[mc]] >= 0)]
    ms = m[mc]
    rs = sc.order[sc.syn[ms]]
    rc, known = same_copy(c, mc, "syn", s, rs, ms)
    ct, st = c.t, s.t
    isn = Evidence(np.ones(len(mc), bool), cc.isn_c[mc] == sc.isn_c[ms])
    ts_seen = known & (take(ct["has_ts"], rc) > 0) & (take(st["has_ts"], rs) > 0)
    tsval = Evidence(ts_seen, take(ct["tsval"], rc) == take(st["tsval"], rs))
    id_c = take(ct["ip_id"], rc)
    id_seen = known & (take(ct["ipver"], rc) == 4) & (take(st["ipver"], rs) == 4) & (id_c > 0)
    ip_id = Evidence(id_seen, id_c == take(st["ip_id"], rs))
    return learn(kind, mc, isn, tsval, ip_id)


def _unique(k: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Which valid keys occur once among the valid ones."""
    out = np.zeros(len(k), bool)
    idx = np.flatnonzero(valid)
    if len(idx):
        _, inv, cnt = np.unique(k[idx], return_inverse=True, return_counts=True)
        out[idx] = cnt[inv.ravel()] == 1
    return out


def _syn_ts(side: Side, conns) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each connection's first SYN row, its TCP timestamp value, and whether it has one."""
    has = conns.syn >= 0
    rows = conns.order[np.maximum(conns.syn, 0)] if len(conns) else np.zeros(0, np.int64)
    tsval = take(side.t["tsval"], rows)
    return rows, tsval, has & (take(side.t["has_ts"], rows) > 0) & (tsval > 0)


def _syn_key2(side: Side, conns) -> tuple[np.ndarray, np.ndarray]:
    rows, tsval, valid = _syn_ts(side, conns)
    return combine(take(side.t["ip_id"], rows), tsval, n=len(rows)), valid


SYN_RETRY_SPAN_NS = 130_000_000_000  # a SYN retransmitted for this long at most (Linux: 6 retries, 127 s)


def _syn_ipid_key(side: Side, conns) -> tuple[np.ndarray, np.ndarray]:
    """The first SYN's IPv4 ID with the service port (pf's ``modulate state`` with
    timestamp modulation keeps the ID unless ``scrub random-id``); an ID of 0 says nothing."""
    rows = conns.order[np.maximum(conns.syn, 0)] if len(conns) else np.zeros(0, np.int64)
    ip_id = take(side.t["ip_id"], rows)
    valid = (conns.syn >= 0) & (take(side.t["ipver"], rows) == 4) & (ip_id > 0)
    return combine(ip_id, conns.resp_port, n=len(rows)), valid


def _tuple_key(side: Side, conns) -> tuple[np.ndarray, np.ndarray]:
    """The first SYN's addresses and ports: the same at both points where nothing
    translated them (IPv6 without NAT), whatever pf did to sequence numbers and timestamps."""
    rows = conns.order[np.maximum(conns.syn, 0)] if len(conns) else np.zeros(0, np.int64)
    t = side.t
    key = combine(side.addr_keys("src", rows), side.addr_keys("dst", rows), take(t["sport"], rows),
                  take(t["dport"], rows), n=len(rows))
    return key, conns.syn >= 0


def _syn_tsval_key(side: Side, conns) -> tuple[np.ndarray, np.ndarray]:
    rows, tsval, valid = _syn_ts(side, conns)
    return combine(tsval, conns.resp_port, n=len(rows)), valid


def estimate_offset(out_delays: list[np.ndarray], back_delays: list[np.ndarray]) -> int | None:
    """Server clock minus client clock, from matched pairs (out: t_server - t_client for
    packets the client sent; back: t_client - t_server for packets the server sent).
    One-way latency cancels when both directions are known."""
    o = np.concatenate(out_delays) if out_delays else np.zeros(0)
    b = np.concatenate(back_delays) if back_delays else np.zeros(0)
    if len(o) and len(b):
        return int((np.median(o) - np.median(b)) // 2)
    if len(o):
        return int(np.median(o))
    if len(b):
        return int(-np.median(b))
    return None


def copy_that_arrived(snd: Side, ci: np.ndarray, want: str, rcv: Side, rcv_rows: np.ndarray) -> np.ndarray:
    """``same_copy``'s rows alone."""
    return same_copy(snd, ci, want, rcv, rcv_rows)[0]


def same_copy(snd: Side, ci: np.ndarray, want: str, rcv: Side, rcv_rows: np.ndarray,
              rcv_ci: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """For each connection ``ci`` at the sending point, the row of its SYN (``want="syn"``,
    sent by the initiator) or SYN-ACK (``"synack"``, sent by the responder) that is the
    same packet as ``rcv_rows`` at the receiving point.

    Same packet: the same TCP timestamp when both carry one (each retransmission has a
    new one, and NATs keep it), else the same IP ID; the first copy when nothing tells
    the copies apart. Diffing the first copy *sent* with the first that *arrived* made
    up IP ID and timestamp "changes" whenever the first copy was the one lost.
    Also says, per connection, whether the copy is known to be that packet (a field told
    them apart, or it is the only one the sender can have sent) rather than the first
    taken for want of a better. A copy alone in the sender's capture is not known to be
    the one that arrived when the receiver (its connections ``rcv_ci``) holds more: the
    sender sent others its capture missed (a client capture that stopped half a second
    after a SYN, and a server capture that began after it, hold copies of different
    sends, and their times put the clock offset a retransmission off).
    """
    conns = snd.tcp
    first = (conns.syn if want == "syn" else conns.synack)[ci]
    out = conns.order[np.maximum(first, 0)]
    if len(ci) == 0:
        return out, np.ones(0, bool)
    sel = ((conns.kind & SYN_ROW) != 0) & conns.fwd if want == "syn" else ((conns.kind & SYNACK_ROW) != 0) & ~conns.fwd
    pos = np.flatnonzero(sel)
    cid = conns.conn_of(pos)  # non-decreasing: rows are in connection order
    alone = _alone(snd, ci, want, rcv, rcv_ci) & ~_sent_later(snd, out, rcv, rcv_rows)
    if want == "syn" and rcv_ci is not None:
        alone &= ~_answer_missed(snd, ci, out, rcv, rcv_ci)
    if not (cid[1:] == cid[:-1]).any():  # no connection sent a second copy: the first is it, if alone
        return out, alone
    single = (np.bincount(cid, minlength=int(ci.max()) + 1)[ci] <= 1) & alone
    rows = conns.order[pos]
    st, rt = snd.t, rcv.t
    left = np.ones(len(ci), bool)
    for field, flag in (("tsval", "has_ts"), ("ip_id", None)):
        # a value tells copies apart only where it is there (IPv6 has no IP ID) and no
        # other copy of the connection carries it (else the pairing is by order: a guess)
        vs = take(st[flag], rows) > 0 if flag else (take(st["ipver"], rows) == 4) & (take(st[field], rows) > 0)
        vr = (take(rt[flag], rcv_rows) > 0 if flag else take(rt["ipver"], rcv_rows) == 4) & left
        ks = combine(cid, take(st[field], rows), n=len(rows))
        vs &= _unique(ks, vs)
        m = pair_by_order(combine(ci, take(rt[field], rcv_rows), n=len(ci)), np.arange(len(ci)), ks, pos, vr, vs)
        hit = m >= 0
        out[hit] = rows[m[hit]]
        left &= ~hit
        if not left.any():
            break
    return out, single | ~left



def _sent_later(snd: Side, rows: np.ndarray, rcv: Side, rcv_rows: np.ndarray) -> np.ndarray:
    """Whether the receiver's copy (``rcv_rows``) carries a TCP timestamp a retransmission
    later than the sender's copy (``rows``): another send than the one the sender's
    capture holds (its capture stopped before it sent that one)."""
    st, rt = snd.t, rcv.t
    both = (take(st["has_ts"], rows) > 0) & (take(rt["has_ts"], rcv_rows) > 0)
    d = (take(rt["tsval"], rcv_rows).astype(np.int64) - take(st["tsval"], rows).astype(np.int64)) % (1 << 32)
    return both & (d >= LATER_TICKS[0]) & (d <= LATER_TICKS[1])


ANSWER_SLACK_NS = 250_000_000  # beyond the round trip the server measured


def _answer_missed(c: Side, ci: np.ndarray, rows: np.ndarray, s: Side, si: np.ndarray) -> np.ndarray:
    """Whether the client capture should hold the answer to its SYN copy ``rows`` had that
    copy been the one the server answered, and does not: the server saw the client ACK
    its SYN-ACK (so it reached the client) one round trip after sending it, and the
    client capture ran on well past that round trip after its copy, holding no SYN-ACK.
    The server then answered another send, one the client capture did not hold (its
    copy was lost, the retransmission came after the capture stopped, and the
    retransmission's timestamp and IP ID were rewritten on the way)."""
    cc, sc = c.tcp, s.tcp
    if len(ci) == 0 or c.ts_max is None:
        return np.zeros(len(ci), bool)
    first_ack = sc.first_ack_fwd_ns
    has = (sc.synack[si] >= 0) & (first_ack[si] < NEVER_NS) & (cc.synack[ci] < 0)
    out = np.zeros(len(ci), bool)
    k = np.flatnonzero(has)
    if not len(k):
        return out
    synack_t = take(s.t["ts_ns"], sc.order[sc.synack[si[k]]]).astype(np.int64)
    rtt = np.maximum(first_ack[si[k]] - synack_t, 0)
    sent = take(c.t["ts_ns"], rows[k]).astype(np.int64)
    out[k] = sent + rtt + ANSWER_SLACK_NS < int(c.ts_max)
    return out


def _alone(snd: Side, ci: np.ndarray, want: str, rcv: Side, rcv_ci: np.ndarray | None) -> np.ndarray:
    """Whether the sender's copy of each connection ``ci`` (if it is its only one) can be
    the only one it sent (``same_copy``): the receiver holds no more copies than that."""
    if rcv_ci is None:
        return np.ones(len(ci), bool)
    rc = rcv.tcp
    return (rc.n_syn if want == "syn" else rc.n_synack)[rcv_ci] <= 1


def syn_delays(c: Side, s: Side, mc: np.ndarray, ms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For matched connections (client ``mc``, server ``ms``): server time minus client
    time of the same SYN at both points, and client time minus server time of the same
    SYN-ACK; the one source of the path delays and of the clock offset. Only copies known
    to be the same packet count: pairing the first SYN sent with the first that arrived
    put a retransmission timeout (1 s, 3 s...) into the delay whenever the first was lost."""
    cc, sc = c.tcp, s.tcp
    ok = (sc.syn[ms] >= 0) & (cc.syn[mc] >= 0)
    rs = sc.order[sc.syn[ms[ok]]]
    rc, known = same_copy(c, mc[ok], "syn", s, rs, ms[ok])
    out = take(s.t["ts_ns"], rs[known]).astype(np.int64) - take(c.t["ts_ns"], rc[known]).astype(np.int64)
    ok2 = (sc.synack[ms] >= 0) & (cc.synack[mc] >= 0)
    rc2 = cc.order[cc.synack[mc[ok2]]]
    rs2, known2 = same_copy(s, ms[ok2], "synack", c, rc2, mc[ok2])
    back = take(c.t["ts_ns"], rc2[known2]).astype(np.int64) - take(s.t["ts_ns"], rs2[known2]).astype(np.int64)
    return out, back
