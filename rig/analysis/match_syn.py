"""The last TCP join: connection attempts whose every key was rewritten on the way.

Behind pf with ``modulate state``, ``scrub random-id`` and timestamp modulation, a SYN
reaches the server with another ISN, another source port, another IP ID and another
timestamp; if its SYN-ACK never came back, the client holds nothing the server's
capture shares a value with. What is left to join on:

- the service port the client asked for (NATs keep it);
- the source address, where other matched traffic showed which public address the
  client's packets arrive from;
- the SYN's option layout (MSS present, SACK-permitted, timestamps, window scale;
  the MSS value itself is clamped on many paths);
- the SYN's retransmissions: the server's copies are a subset of the client's, at the
  same times (after the clock offset and the path delay learnt from matched packets),
  and with timestamps, at the same timestamp differences (pf shifts them by a constant);
- the server's side of the connection: a server connection whose initiator acked the
  SYN-ACK or sent data is not an attempt whose client never got a SYN-ACK; and an
  attempt that got an answer (a RST) is the candidate that sent one, if only one did
  (``_answered``);
- order: connections that left one after the other arrive one after the other;
- what the path is measured to keep (``kept``): where the connections joined on keys
  show the ISN, the IP ID or the timestamp kept, a candidate must carry the attempt's.

Candidates are pairs that fit all of these. A client attempt with exactly one candidate,
itself a candidate of no other attempt, is joined. A cluster of attempts that fit each
other's candidates (concurrent SYNs to one port with one option layout) is joined in
order only when any pairing would give every attempt the same outcome (as many
attempts as server connections, all alike at both ends); otherwise each attempt in it
is undecided (``Undecided``), and rig says 'incomplete' instead of guessing a direction.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rig.analysis.kept import Kept
from rig.analysis.keys import take
from rig.analysis.sides import SYN_ROW, Side
from rig.unique import isin, unique

MIN_TOL_NS = 250_000_000  # timing tolerance at least (jitter + the offset's error)
# a later copy's TCP timestamp is ahead by the retransmission's wait, in the sender's
# ticks (1 ms on Linux and FreeBSD, 10 ms elsewhere): 1-3 s and more for a SYN; a path
# that rewrites timestamps (pf's modulation) adds a random 32-bit offset instead
LATER_TICKS = (50, 200_000)
MIN_SYN_RTO_NS = 1_000_000_000  # the least first wait before a SYN is sent again (RFC 6298's 1 s; Linux, macOS)
SYN_RTO_NS = 3_000_000_000  # the longest first wait before a SYN is sent again (RFC 1122's 3 s)
MAX_PAIRS = 200_000  # candidate pairs looked at one by one; beyond, the attempts are undecided


@dataclass(frozen=True, slots=True)
class Undecided:
    """Client attempts the captures cannot tell apart: a fact for ``undecided_because``."""

    attempts: int  # client connection attempts in the cluster
    port: int  # the service port they asked for
    span_ms: int  # between the first SYN of the first and of the last, client clock
    server_conns: int  # server connections any of them could be

    def text(self) -> str:
        who = (f"{self.attempts} connection attempts to port {self.port} within {self.span_ms} ms fit"
               if self.attempts > 1 else f"a connection attempt to port {self.port} fits")
        return (f"{who} {self.server_conns} server connection{'s' if self.server_conns != 1 else ''} equally well, "
                f"and no value the two captures share tells them apart")


def timing(out_delays: np.ndarray) -> tuple[int | None, int]:
    """The path delay plus clock offset (server time of arrival minus client time of
    sending, ns) and the tolerance around it, from matched outbound packets."""
    if len(out_delays) == 0:
        return None, MIN_TOL_NS
    q25, q50, q75 = np.percentile(out_delays, [25, 50, 75])
    return int(q50), max(MIN_TOL_NS, int(3 * (q75 - q25)))


class _Copies:
    """The SYN copies of some connections at one point: times, timestamps, per connection."""

    def __init__(self, side: Side, conns: np.ndarray):
        tc = side.tcp
        pos = np.flatnonzero(((tc.kind & SYN_ROW) != 0) & tc.fwd)
        cid = tc.conn_of(pos)
        keep = isin(cid, conns)
        pos, cid = pos[keep], cid[keep]
        rows = tc.order[pos]
        t = side.t
        self.ts = take(t["ts_ns"], rows).astype(np.int64)
        self.tsval = take(t["tsval"], rows).astype(np.int64)
        self.has_ts = take(t["has_ts"], rows) > 0
        ids = np.where(take(t["ipver"], rows) == 4, take(t["ip_id"], rows).astype(np.int64), 0)
        self._ids = ids.tolist()
        # rows are in connection order, then frame order: each connection's copies are one run
        idx = np.searchsorted(cid, conns)
        end = np.searchsorted(cid, conns, side="right")
        self.lo, self.hi = idx, end
        self.first_id = ids[np.minimum(idx, max(len(rows) - 1, 0))] if len(rows) else np.zeros(0, np.int64)
        first = rows[np.minimum(idx, max(len(rows) - 1, 0))] if len(rows) else np.zeros(0, np.int64)
        self.first_t = self.ts[np.minimum(idx, max(len(rows) - 1, 0))] if len(rows) else np.zeros(0, np.int64)
        self.last_t = self.ts[np.maximum(end - 1, 0)] if len(rows) else np.zeros(0, np.int64)
        self.layout = (take(t["mss"], first) > 0).astype(np.int64) << 10 | (take(t["sackok"], first) > 0).astype(
            np.int64) << 9 | (take(t["has_ts"], first) > 0).astype(np.int64) << 8 | (
            take(t["wscale"], first).astype(np.int64) & 0xFF)

        self.n = self.hi - self.lo
        self._ts, self._vals = self.ts.tolist(), self.tsval.tolist()
        with_ts = np.zeros(len(conns), bool)
        some = self.n > 0
        if some.any():
            with_ts[some] = np.logical_and.reduceat(self.has_ts, self.lo[some])
        self._with_ts = with_ts.tolist()
        self._lo, self._hi = self.lo.tolist(), self.hi.tolist()
        self.reset = tc.n_rst_rev[conns] > 0  # a RST came back: the connection sends no more SYNs

    def of(self, k: int) -> tuple[list[int], list[int] | None]:
        lo, hi = self._lo[k], self._hi[k]
        return self._ts[lo:hi], (self._vals[lo:hi] if self._with_ts[k] else None)

    def may_go_on(self, ks: np.ndarray, end: int | None) -> np.ndarray:
        """Which of the connections ``ks`` may have sent another copy after ``end`` (the
        capture's last packet): the next retransmission comes no sooner than the gap
        before the last (backoff only grows), or up to ``SYN_RTO_NS`` after a single copy;
        none after a RST the capture holds (it ends the attempt)."""
        if end is None:
            return np.zeros(len(ks), bool)
        lo, hi = self.lo[ks], self.hi[ks]
        last = self.ts[np.maximum(hi - 1, 0)]
        prev = self.ts[np.maximum(hi - 2, 0)]
        gap = np.where(hi - lo >= 2, last - prev, SYN_RTO_NS)
        return (last + gap > end) & ~self.reset[ks]

    def ids(self, k: int) -> list[int] | None:
        """The copies' IPv4 IDs (None if any is 0 or not IPv4: nothing to compare)."""
        got = self._ids[self._lo[k]:self._hi[k]]
        return got if got and all(got) else None


def _aligns(tc: list[int], vc: list[int] | None, ts: list[int], vs: list[int] | None,
            delay: int | None, tol: int, client_end: int | None = None,
            ids: tuple[list[int], list[int]] | None = None, same_ts: bool = False) -> bool:
    """Whether the server's SYN copies (``ts``, server clock; ``vs`` their timestamps)
    can be a subset of the client's (``tc``, ``vc``), in order, each within ``tol`` of
    its client copy plus ``delay`` (or of one common delay, when none is known), with
    the same timestamp differences. Copies that arrived after the client capture ended
    (``client_end``, client clock) were sent when nothing recorded them there: they need
    no client copy. ``ids``: the client's and the server's copies' IP IDs, which each
    copy must then share with its client copy too. ``same_ts``: the path keeps timestamps,
    so each copy carries its client copy's value, not only the same differences."""
    if client_end is not None and delay is not None and ts[-1] > client_end + delay:
        keep = sum(1 for x in ts if x <= client_end + delay)
        if keep == 0:  # every copy came when the client capture had ended: no copy to pair,
            # but the first is a retransmission of the client's last: sent no sooner than
            # the wait before it (backoff only grows; after a single copy, the least
            # first wait), and on a path that keeps timestamps it carries a later value of
            # the client's last copy's clock, not another connection's
            wait = tc[-1] - tc[-2] if len(tc) >= 2 else MIN_SYN_RTO_NS
            if ts[0] - delay - tc[-1] < wait - tol:
                return False
            if same_ts and vc and vs and vc[-1] and vs[0]:
                return LATER_TICKS[0] <= (vs[0] - vc[-1]) % (1 << 32) <= LATER_TICKS[1]
            return True
        ts, vs = ts[:keep], (vs[:keep] if vs is not None else None)
    ic, is_ = ids if ids is not None else (None, [])
    all_ts, all_vs = ts, vs
    for i0 in range(len(tc)):
        d = all_ts[0] - tc[i0]  # this pairing's delay, which every later copy shares
        if delay is not None and abs(d - delay) > tol:
            continue
        ts, vs = all_ts, all_vs
        if delay is None and client_end is not None and all_ts[-1] > client_end + d:
            # with no delay known, this pairing's own says which copies came after the
            # client capture ended; at least two copies must still be compared, or one
            # with the same IP ID, or the pairing is a guess (a lone copy fits any
            # attempt: match_by_pattern)
            keep = sum(1 for x in all_ts if x <= client_end + d)
            if keep < 2 and ic is None:
                continue
            ts, vs = all_ts[:keep], (all_vs[:keep] if all_vs is not None else None)
        if len(ts) > len(tc) - i0:
            continue
        if ic is not None and ic[i0] != is_[0]:
            continue
        if same_ts and vc is not None and vs is not None and vc[i0] != vs[0]:
            continue  # the later copies' differences then make them equal too
        i, ok = i0, True
        for j in range(1, len(ts)):
            i += 1
            while i < len(tc):
                off = ts[j] - tc[i] - d
                if off < -tol:  # later client copies only fit worse
                    i = len(tc)
                elif off <= tol and (vc is None or vs is None or (vs[j] - vs[0] - vc[i] + vc[i0]) % (1 << 32) == 0) \
                        and (ic is None or ic[i] == is_[j]):
                    break
                else:
                    i += 1
            if i >= len(tc):
                ok = False
                break
        if ok:
            return True
    return False


def _acked_in_time(c: Side, s: Side, delay: int | None) -> np.ndarray:
    """Per server connection: its initiator acknowledged the SYN-ACK or sent data while
    the client capture still ran, so it is no attempt whose client never got a SYN-ACK.
    An ACK that left the client after its capture ended (server time, less ``delay``)
    says nothing of what that capture holds; one sent before it ended followed a SYN-ACK
    that arrived before, which that capture would hold."""
    sc = s.tcp
    acked = (sc.ack_fwd > 0) | (sc.data_end_fwd > 1)
    if delay is None or c.ts_max is None or not acked.any():
        return acked
    return acked & (sc.first_ack_fwd_ns <= c.ts_max + delay)


def _components(n_u: int, pu: np.ndarray, pv: np.ndarray) -> np.ndarray:
    """Connected components of the bipartite candidate graph: a label per client attempt."""
    parent = list(range(n_u))

    def root(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    first_u: dict[int, int] = {}
    for a, b in zip(pu.tolist(), pv.tolist()):
        if b in first_u:
            ra, rb = root(a), root(first_u[b])
            if ra != rb:
                parent[ra] = rb
        else:
            first_u[b] = a
    return np.array([root(a) for a in range(n_u)], np.int64)


def _n_rev(conns, ci: np.ndarray) -> np.ndarray:
    """Packets the responder sent, per connection ``ci``."""
    if len(conns.order) == 0:
        return np.zeros(len(ci), np.int64)
    n = np.add.reduceat((~conns.fwd).astype(np.int32), conns.starts)
    return n[ci]


def _answered(m: np.ndarray, u_all: np.ndarray, v_all: np.ndarray, pu: np.ndarray, pv: np.ndarray,
              got: np.ndarray, sent: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Join first the attempts whose answer arrived: a client attempt that got something
    back (``got``: a RST, an ACK of an older connection) and a candidate server
    connection that sent such a thing (``sent``), when each is the other's only such
    candidate (of concurrent SYNs through a port-set NAT, the one that reached the server
    is the one that got an answer). Returns the candidate pairs left, without the
    joined attempts and server connections."""
    strong = got[pu] & sent[pv]
    if not strong.any():
        return pu, pv
    su, sv = pu[strong], pv[strong]
    nu = np.bincount(su, minlength=len(u_all))
    nv = np.bincount(sv, minlength=len(v_all))
    fix = (nu[su] == 1) & (nv[sv] == 1)
    if not fix.any():
        return pu, pv
    m[u_all[su[fix]]] = v_all[sv[fix]]
    done_u = np.zeros(len(u_all), bool)
    done_v = np.zeros(len(v_all), bool)
    done_u[su[fix]] = True
    done_v[sv[fix]] = True
    rest = ~done_u[pu] & ~done_v[pv]
    return pu[rest], pv[rest]


def match_by_pattern(c: Side, s: Side, m: np.ndarray, left: np.ndarray, taken: np.ndarray,
                     out_delays: np.ndarray, public: dict[int, dict[int, np.ndarray]],
                     kept: Kept | None = None) -> tuple[np.ndarray, dict[int, Undecided]]:
    """Join the client attempts ``left`` (without a SYN-ACK at the client) to server
    connections not ``taken``, in place in ``m``; the attempts that stay undecided.

    ``out_delays``: server time minus client time of matched outbound packets;
    ``public``: per client address (its key), per IP version, the address keys that
    client's packets were seen to arrive from (a client, or a version, not in it: any
    source: several hosts of one capture may leave through different NATs);
    ``kept``: the fields the path is measured to keep (``kept.learn``), which a
    candidate must then share with the attempt."""
    cc, sc = c.tcp, s.tcp
    if kept is None:
        kept = Kept.nothing(len(cc))
    u_all = np.flatnonzero(left & (cc.synack < 0))
    delay, tol = timing(out_delays)
    v_ok = ~taken & (sc.syn >= 0) & ~_acked_in_time(c, s, delay)
    # the server connections each client host's attempts may be: from its public addresses
    host_u = c.addr_keys("src", cc.order[cc.syn[u_all]]) if len(u_all) else np.zeros(0, np.uint64)
    hosts: dict[tuple, tuple[list[int], np.ndarray]] = {}  # what a host may arrive as -> (its hosts, which v)
    if public and len(u_all):
        first = sc.order[np.maximum(sc.syn, 0)]
        ver = take(s.t["ipver"], first)
        src = s.addr_keys("src", first)
    for h in unique(host_u).tolist():
        known = public.get(h, {})
        key = tuple(sorted((v, tuple(k.tolist())) for v, k in known.items()))
        if key not in hosts:
            ok = v_ok.copy()
            for v, keys in known.items():
                ok &= (ver != v) | isin(src, keys)
            hosts[key] = ([], ok)
        hosts[key][0].append(h)
    v_all = np.flatnonzero(np.logical_or.reduce([ok for _, ok in hosts.values()])) if hosts else np.zeros(0, np.int64)
    undecided: dict[int, Undecided] = {}
    if len(u_all) == 0 or len(v_all) == 0:
        return m, undecided
    cu, cv = _Copies(c, u_all), _Copies(s, v_all)
    port_u, port_v = cc.resp_port[u_all], sc.resp_port[v_all]
    # candidate pairs (positions in u_all, v_all): same port, from where the attempt's host
    # arrives, the server's first copy in the window of the client's copies
    pu_l, pv_l, flooded = [], [], []
    for hs, ok in hosts.values():
        mine_u = isin(host_u, hs)
        mine_v = ok[v_all]
        for port in unique(port_u[mine_u]).tolist():
            ui = np.flatnonzero(mine_u & (port_u == port))
            vi = np.flatnonzero(mine_v & (port_v == port))
            if not len(vi):
                continue
            vi = vi[np.argsort(cv.first_t[vi], kind="stable")]
            vt = cv.first_t[vi]
            if delay is None:
                lo, hi = np.zeros(len(ui), np.int64), np.full(len(ui), len(vi))
            else:
                lo = np.searchsorted(vt, cu.first_t[ui] + delay - tol, side="left")
                hi = np.searchsorted(vt, cu.last_t[ui] + delay + tol, side="right")
                hi[cu.may_go_on(ui, c.ts_max)] = len(vi)  # its later copies are the server's to show
            n = hi - lo
            if int(n.sum()) > MAX_PAIRS:  # too many to look at one by one
                flooded += [(a, len(vi)) for a in ui[n > 0].tolist()]
                continue
            offs = np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)
            pu_l.append(np.repeat(ui, n))
            pv_l.append(vi[np.repeat(lo, n) + offs])
    for a, nv in flooded:
        undecided[int(u_all[a])] = Undecided(1, int(port_u[a]), 0, nv)
    if not pu_l:
        return m, undecided
    pu, pv = np.concatenate(pu_l), np.concatenate(pv_l)
    # where the path keeps the ISN, a server connection with another is another attempt
    isn_ok = ~kept.isn[u_all[pu]] | (cc.isn_c[u_all[pu]] == sc.isn_c[v_all[pv]])
    pu, pv = pu[isn_ok], pv[isn_ok]
    k_id, k_ts = kept.ip_id[u_all[pu]], kept.tsval[u_all[pu]]
    # one copy each, with a delay known and no kept value to compare: the window above
    # was the whole test
    keep = (cu.n[pu] == 1) & (cv.n[pv] == 1) & (delay is not None) & ~k_id & ~k_ts
    # the IP IDs of the aligned copies agree too
    strong = keep & (cu.first_id[pu] > 0) & (cu.first_id[pu] == cv.first_id[pv])
    for k in np.flatnonzero(~keep).tolist():
        a, b = int(pu[k]), int(pv[k])
        tc, vc = cu.of(a)
        ts, vs = cv.of(b)
        ic, is_ = cu.ids(a), cv.ids(b)
        same_ts = bool(k_ts[k])
        if ic is not None and is_ is not None:
            strong[k] = _aligns(tc, vc, ts, vs, delay, tol, c.ts_max, (ic, is_), same_ts)
            if k_id[k]:  # the path keeps IDs: copies with other IDs are other packets
                keep[k] = strong[k]
                continue
        keep[k] = strong[k] or _aligns(tc, vc, ts, vs, delay, tol, c.ts_max, same_ts=same_ts)
    # with no delay known and one copy at the server, nothing was compared: a lone SYN
    # there fits any attempt (two captures that never overlapped, a client capture that
    # stopped before its retransmission and a server's that began after it). A guess,
    # not a join: the attempt stays unjoined.
    keep &= ~((delay is None) & (cv.n[pv] == 1))
    pu, pv, strong = pu[keep], pv[keep], strong[keep]
    # the IP IDs break ties (pf keeps them without ``random-id``): a pair whose IDs agree
    # leaves out the other candidates of both its attempt and its server connection
    if strong.any():
        su = np.zeros(len(u_all), bool)
        sv = np.zeros(len(v_all), bool)
        su[pu[strong]] = True
        sv[pv[strong]] = True
        sel = strong | (~su[pu] & ~sv[pv])
        pu, pv = pu[sel], pv[sel]
    # the option layout breaks ties: an attempt keeps only the candidates with its own
    # layout, if it has any (a path that changes the layout changes it for all of them)
    if len(pu):
        same = cu.layout[pu] == cv.layout[pv]
        has_same = np.zeros(len(u_all), bool)
        has_same[pu[same]] = True
        sel = same | ~has_same[pu]
        pu, pv = pu[sel], pv[sel]
    if len(pu):
        got = _n_rev(cc, u_all) > 0  # these attempts have no SYN-ACK: a RST, a stale ACK
        sent = (_n_rev(sc, v_all) - sc.n_synack[v_all]) > 0
        pu, pv = _answered(m, u_all, v_all, pu, pv, got, sent)
    if not len(pu):
        return m, undecided
    comp = _components(len(u_all), pu, pv)
    by_comp: dict[int, list[int]] = {}
    for a in unique(pu).tolist():
        by_comp.setdefault(int(comp[a]), []).append(a)
    edges = set(zip(pu.tolist(), pv.tolist()))
    v_of: dict[int, set[int]] = {}
    for a, b in edges:
        v_of.setdefault(a, set()).add(b)
    fate_v = (sc.n_synack[v_all] > 0).astype(np.int64) * 2 + (sc.n_rst_rev[v_all] > 0)
    fate_u = cc.n_rst_rev[u_all] > 0
    for members in by_comp.values():
        vs_ = sorted(set().union(*(v_of[a] for a in members)), key=lambda b: (int(cv.first_t[b]), b))
        us_ = sorted(members, key=lambda a: (int(cu.first_t[a]), a))
        if len(us_) == 1 and len(vs_) == 1:
            m[u_all[us_[0]]] = v_all[vs_[0]]
            continue
        alike = len({int(fate_v[b]) for b in vs_}) == 1 and len({bool(fate_u[a]) for a in us_}) == 1
        if len(us_) == len(vs_) and alike and all((a, b) in edges for a, b in zip(us_, vs_)):
            for a, b in zip(us_, vs_):
                m[u_all[a]] = v_all[b]
            continue
        span = int((cu.first_t[us_[-1]] - cu.first_t[us_[0]]) // 1_000_000)
        why = Undecided(len(us_), int(port_u[us_[0]]), span, len(vs_))
        for a in us_:
            undecided[int(u_all[a])] = why
    return m, undecided
