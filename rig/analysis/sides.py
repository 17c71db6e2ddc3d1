"""One capture point, grouped: TCP connections, ICMP echo, UDP datagrams, ICMP errors.

Everything here is vectorised over the packet table (sorts, cumulative sums, reduceat):
no Python loop runs per packet. A ``Side`` keeps only trusted rows (status OK or
payload-truncated, IP decoded) and the per-connection facts the outcomes need.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rig.analysis.keys import addr_key, combine, rel32, sort_order, take, take_fields
from rig.capture.table import ACK, RST, SYN, Capture, Undecoded

SYN_ROW, SYNACK_ROW = 1, 2  # bits of TcpConns.kind

ICMP4_ERRORS = (3, 4, 5, 11, 12)
ICMP6_ERRORS = (1, 2, 3, 4)


_MIX = np.uint64(0x9E3779B97F4A7C15)


def _endpoint_key(addr_key: np.ndarray, port: np.ndarray) -> np.ndarray:
    """Address key and port as one 64-bit key. The address keys are already well mixed
    (``keys.addr_key``), so the port is folded in with one multiply, not two mixing
    rounds of ``combine``; these keys only group rows, they are never compared with
    keys made elsewhere."""
    with np.errstate(over="ignore"):
        k = port.astype(np.uint64)
        k *= _MIX
        k ^= addr_key
        return k


def _first_per_group(group: np.ndarray, mask: np.ndarray, ngroups: int) -> np.ndarray:
    """Index of the first row (in array order) with ``mask`` in each group; -1 if none.
    ``group`` is non-decreasing (connection ids of rows in connection order), so the
    first of each group is where the id changes: no sort (np.unique sorted it again)."""
    out = np.full(ngroups, -1, dtype=np.int64)
    idx = np.flatnonzero(mask)
    if len(idx):
        g = group[idx]
        first = np.empty(len(g), bool)
        first[0] = True
        np.not_equal(g[1:], g[:-1], out=first[1:])
        out[g[first]] = idx[first]
    return out


def _reduce(fn, values: np.ndarray, starts: np.ndarray, n: int, empty) -> np.ndarray:
    if n == 0:
        return np.zeros(0, dtype=values.dtype)
    if len(values) == 0:
        return np.full(n, empty, dtype=values.dtype)
    return fn.reduceat(values, starts)


@dataclass
class TcpConns:
    """TCP connections at one point. Row arrays are in connection order (``order``)."""

    order: np.ndarray  # indices into Side.t, sorted by (connection, frame)
    conn: np.ndarray  # connection id of each sorted row
    starts: np.ndarray  # first sorted row of each connection
    fwd: np.ndarray  # row sent by the connection's initiator
    rel_seq: np.ndarray  # seq relative to the sender's ISN (int64)
    rel_ack: np.ndarray  # ack relative to the peer's ISN
    syn: np.ndarray  # sorted-row index of the first SYN (no ACK) per connection, -1
    synack: np.ndarray  # first SYN-ACK, -1
    isn_c: np.ndarray  # initiator's ISN (int64, -1 unknown)
    isn_s: np.ndarray  # responder's ISN (-1 unknown)
    resp_port: np.ndarray  # the responder's port (the service the initiator asked for)
    n_syn: np.ndarray
    n_synack: np.ndarray
    n_rst_fwd: np.ndarray
    n_rst_rev: np.ndarray
    data_end_fwd: np.ndarray  # highest relative data byte sent by the initiator (+1), 1 if none
    data_end_rev: np.ndarray
    ack_fwd: np.ndarray  # highest relative ack the initiator sent (covers responder data)
    ack_rev: np.ndarray
    first_data_fwd: np.ndarray  # sorted-row index of the initiator's first data segment, -1
    first_data_rev: np.ndarray
    kind: np.ndarray  # per sorted row: SYN_ROW (SYN without ACK) | SYNACK_ROW

    def __len__(self) -> int:
        return len(self.starts)

    def rows(self, c: int) -> np.ndarray:
        end = self.starts[c + 1] if c + 1 < len(self.starts) else len(self.order)
        return np.arange(self.starts[c], end)


class Side:
    """A capture point's trusted rows and their groupings."""

    def __init__(self, name: str, cap: Capture | None):
        self.name = name
        self.cap = cap
        self.memo: dict = {}  # per-side results the analysis steps share (e.g. UDP 4-tuples)
        pk = cap.packets if cap is not None else None
        if pk is None or len(pk) == 0:
            from rig.capture.table import empty_table

            pk = empty_table(0)
        # rows are never copied (a million rows of this dtype are ~200 MB): ``valid`` marks
        # the trusted ones and every grouping below holds indices into ``t``
        self.valid = (pk["status"] <= Undecoded.TRUNCATED_PAYLOAD) & (pk["ipver"] > 0)  # OK or payload cut
        # every protocol's trusted rows from one stable sort of the protocol numbers (one
        # pass over the table, not one per protocol asked)
        proto = np.where(self.valid, pk["proto"], 0)
        by_proto = np.argsort(proto, kind="stable")
        edges = np.searchsorted(proto[by_proto], np.arange(257))
        self._rows_of = {p: by_proto[edges[p]:edges[p + 1]] for p in range(1, 256) if edges[p + 1] > edges[p]}
        self.t = pk
        self.n_total = len(pk)
        self._frame_is_row = bool(np.array_equal(pk["frame"], np.arange(1, len(pk) + 1)))
        self.kernel_drops = int(cap.kernel_drops) if cap is not None else 0
        t = self.t
        ts = t["ts_ns"][self.valid]
        self.ts_min = int(ts.min()) if len(ts) else None
        self.ts_max = int(ts.max()) if len(ts) else None
        self.src_key = addr_key(t["src"]) if len(t) else np.zeros(0, np.uint64)
        self.dst_key = addr_key(t["dst"]) if len(t) else np.zeros(0, np.uint64)
        self.tcp = self._tcp()
        self._icmp()

    # TCP ---------------------------------------------------------------------------
    def _tcp(self) -> TcpConns:
        t = self.t
        rows = self.rows_of(6)
        n = len(rows)
        # endpoints from the address keys already made (not the 16-byte addresses again),
        # and a stable sort on the 4-tuple alone: ``rows`` are in frame order already
        # (measured: 0.18 -> 0.08 s per 700k TCP rows)
        cols = take_fields(t, ("sport", "dport", "flags", "seq", "ack", "plen"), rows)
        eps = _endpoint_key(self.src_key[rows], cols.pop("sport"))
        epd = _endpoint_key(self.dst_key[rows], cols.pop("dport"))
        tup = np.minimum(eps, epd)  # the 4-tuple, whichever way: one multiply-xor of the two
        with np.errstate(over="ignore"):
            tup *= _MIX
            tup ^= np.maximum(eps, epd)
        o = sort_order(tup)
        order = rows[o]
        eps, epd, tup = eps[o], epd[o], tup[o]

        # a column of the TCP rows in connection order: taken from the table in frame
        # order with the others (keys.take_fields), then permuted as a small contiguous
        # array; taking it by ``order`` from the table's rows directly missed the cache
        # on every row (measured: 21 -> 8 ms per column of 700k rows)
        def col(name):
            return cols.pop(name)[o].astype(np.int64)

        flags = col("flags")
        seq = col("seq")
        is_syn = ((flags & SYN) != 0) & ((flags & ACK) == 0)
        is_synack = ((flags & SYN) != 0) & ((flags & ACK) != 0)
        ar = np.arange(n)
        gstart = np.ones(n, bool)
        if n:
            gstart[1:] = tup[1:] != tup[:-1]
        gs = np.maximum.accumulate(np.where(gstart, ar, 0)) if n else ar
        del tup
        # a connection starts at a SYN or SYN-ACK naming another initiator ISN than the
        # last one on this 4-tuple (SYN: seq; SYN-ACK: ack - 1), whichever comes first
        ack = col("ack")
        ack0 = ack
        opener = is_syn | is_synack
        cand_isn = np.where(is_syn, seq, (ack0 - 1) & 0xFFFFFFFF)
        op_pos = np.where(opener, ar, -1)
        prev_op = np.concatenate([[-1], np.maximum.accumulate(op_pos)[:-1]]) if n else ar
        same = (prev_op >= gs) & (cand_isn[np.maximum(prev_op, 0)] == cand_isn)
        new = gstart | (opener & ~same)
        del ack0, opener, cand_isn, op_pos, prev_op, same, gs, gstart, ar
        conn = np.cumsum(new) - 1
        starts = np.flatnonzero(new)
        nc = len(starts)
        syn = _first_per_group(conn, is_syn, nc)
        synack = _first_per_group(conn, is_synack, nc)
        # the initiator: source of the SYN, else destination of the SYN-ACK, else first sender
        first = starts
        init = np.where(syn >= 0, eps[np.maximum(syn, 0)], np.where(synack >= 0, epd[np.maximum(synack, 0)], eps[first] if n else eps))
        fwd = eps == init[conn] if n else np.zeros(0, bool)
        del eps, epd, init
        isn_c = np.where(syn >= 0, seq[np.maximum(syn, 0)], np.where(synack >= 0, (ack[np.maximum(synack, 0)] - 1) & 0xFFFFFFFF, -1))
        isn_s = np.where(synack >= 0, seq[np.maximum(synack, 0)], -1)
        # ports of one row per connection, not of every row (a gather from the table is
        # the costly part: 0.06 s per 700k rows)
        dport, sport = t["dport"], t["sport"]
        resp_port = np.where(syn >= 0, dport[order[np.maximum(syn, 0)]].astype(np.int64),
                             np.where(synack >= 0, sport[order[np.maximum(synack, 0)]].astype(np.int64),
                                      dport[order[first]].astype(np.int64) if n else np.zeros(0, np.int64)))
        base_seq = np.where(fwd, isn_c[conn], isn_s[conn]) if n else seq
        base_ack = np.where(fwd, isn_s[conn], isn_c[conn]) if n else seq
        rel_seq = np.where(base_seq >= 0, rel32(seq, np.maximum(base_seq, 0)), -(1 << 40))
        rel_ack = np.where((base_ack >= 0) & ((flags & ACK) != 0), rel32(ack, np.maximum(base_ack, 0)), 0)
        del base_seq, base_ack, seq, ack
        plen = col("plen")
        del rows, o  # intermediates go as soon as they are used: the peak is ~25 of these arrays
        data_end = np.where(plen > 0, rel_seq + plen, 1)
        rst = (flags & RST) != 0

        def red(fn, vals, empty=0):
            return _reduce(fn, vals, starts, nc, empty)

        cnt = np.add
        self_ = TcpConns(
            order=order, conn=conn, starts=starts, fwd=fwd, rel_seq=rel_seq, rel_ack=rel_ack,
            syn=syn, synack=synack, isn_c=isn_c, isn_s=isn_s, resp_port=resp_port,
            n_syn=red(cnt, (is_syn & fwd).astype(np.int64)),
            n_synack=red(cnt, (is_synack & ~fwd).astype(np.int64)),
            n_rst_fwd=red(cnt, (rst & fwd).astype(np.int64)),
            n_rst_rev=red(cnt, (rst & ~fwd).astype(np.int64)),
            data_end_fwd=red(np.maximum, np.where(fwd, data_end, 1)),
            data_end_rev=red(np.maximum, np.where(~fwd, data_end, 1)),
            ack_fwd=red(np.maximum, np.where(fwd, rel_ack, 0)),
            ack_rev=red(np.maximum, np.where(~fwd, rel_ack, 0)),
            first_data_fwd=_first_per_group(conn, fwd & (plen > 0), nc),
            first_data_rev=_first_per_group(conn, ~fwd & (plen > 0), nc),
            kind=is_syn.astype(np.uint8) | (is_synack.astype(np.uint8) << 1),
        )
        return self_

    # ICMP --------------------------------------------------------------------------
    def _icmp(self) -> None:
        # on the ICMP rows only (a few % of a large capture), not on every row
        rows = np.sort(np.concatenate([self.rows_of(1), self.rows_of(58)]))
        it = take(self.t["icmp_type"], rows).astype(np.int64)
        v4 = take(self.t["proto"], rows) == 1
        self.echo_req = rows[((it == 8) & v4) | ((it == 128) & ~v4)]
        self.echo_rep = rows[((it == 0) & v4) | ((it == 129) & ~v4)]
        self.errors = rows[(v4 & np.isin(it, ICMP4_ERRORS)) | (~v4 & np.isin(it, ICMP6_ERRORS))]

    def frames(self, rows: np.ndarray) -> np.ndarray:
        """The frame numbers of ``rows`` (int64): row + 1, as the table's contract has
        it (checked once per side), without a gather from the table (2-8 ms each, and
        the analysis asks dozens of times)."""
        if self._frame_is_row:
            return np.asarray(rows, dtype=np.int64) + 1
        return take(self.t["frame"], rows).astype(np.int64)

    def rows_of(self, proto: int) -> np.ndarray:
        """Trusted rows of one L4 protocol, in file order (made once per protocol: every
        step asks, and each ask was a pass over all rows)."""
        got = self._rows_of.get(proto)
        return got if got is not None else np.zeros(0, np.int64)

    def echo_key(self, rows: np.ndarray) -> np.ndarray:
        """NAT-invariant key of echo requests/replies: protocol, sequence, payload hash."""
        t = self.t
        return combine(take(t["proto"], rows), take(t["icmp_seq"], rows), take(t["phash"], rows), take(t["plen"], rows), n=len(rows))

    def error_key(self, rows: np.ndarray) -> np.ndarray:
        """NAT-invariant key of the packet an ICMP error quotes (what it is about)."""
        t = self.cap.quoted_at(rows)
        qp = t["q_proto"].astype(np.uint64)
        tcp = combine(6, t["q_seq"], n=len(rows))
        udp = combine(17, t["q_ip_id"], t["q_dport"], n=len(rows))
        echo = combine(1, t["q_seq"].astype(np.int64) & 0xFFFF, n=len(rows))
        return np.where(qp == 6, tcp, np.where(qp == 17, udp, echo))


class Part:
    """Some columns of some rows of a side, copied out (a fast-path batch outlives the
    analysis' big arrays); stands in for the side where only ``name`` and ``t`` are read."""

    def __init__(self, side: Side, rows: np.ndarray, fields):
        self.name = side.name
        self.t = take_fields(side.t, fields, rows)
