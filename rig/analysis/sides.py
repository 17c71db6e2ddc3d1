"""One capture point, grouped: TCP connections, ICMP echo, UDP datagrams, ICMP errors.

Everything here is vectorised over the packet table (sorts, cumulative sums, reduceat):
no Python loop runs per packet. A ``Side`` keeps only trusted rows (status OK or
payload-truncated, IP decoded) and the per-connection facts the outcomes need.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from rig.analysis.keys import addr_key, combine, rel32, row_chunks, run_starts, sort_order, take, take_fields
from rig.analysis.summary import AddrTexts
from rig.capture.table import ACK, RST, SYN, Capture, Undecoded
from rig.unique import isin, unique

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
    """Index of the first row (in array order) with ``mask`` in each group; -1 if none
    (int32: row positions). ``group`` is non-decreasing (connection ids of rows in
    connection order), so the first of each group is where the id changes: no sort
    (np.unique sorted it again)."""
    out = np.full(ngroups, -1, dtype=np.int32)
    idx = np.flatnonzero(mask)
    if len(idx):
        g = group[idx]
        first = run_starts(g)
        out[g[first]] = idx[first]
    return out


def _reduce(fn, values: np.ndarray, starts: np.ndarray, n: int, empty) -> np.ndarray:
    if n == 0:
        return np.zeros(0, dtype=values.dtype)
    if len(values) == 0:
        return np.full(n, empty, dtype=values.dtype)
    return fn.reduceat(values, starts, dtype=values.dtype)  # np.add would widen int32 sums to int64


COPY_NS = 1_000_000  # the same bytes twice within this at one point: one packet captured twice
COPY_LOOKBACK = 4  # rows back in the file a copy is looked for (other packets may come between)
# what makes two rows the same IP packet: every header field the table keeps and the
# payload's hash (IP ID and sequence number first, then these, the most selective first:
# each compare runs on the rows still alike)
COPY_FIELDS = ("phash", "ack", "tsval", "src_i", "dst_i", "proto", "sport", "dport", "flags",
               "plen", "pcaplen", "ttl", "tos", "frag", "icmp_type", "icmp_id", "icmp_seq", "mss", "wscale")


def capture_copies(t: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows that repeat an earlier row's packet (identical fields, ``COPY_NS`` apart at
    most, up to ``COPY_LOOKBACK`` rows back): the copies ``tcpdump -i any`` records when a
    packet crosses two interfaces of the host. Returns (copy rows, the row each copies),
    int64, sorted by copy row. A retransmission repeats the bytes too, but hundreds of
    ms later (an RTO is 200 ms at least): it stays a packet of its own.

    Vectorised: for each distance k, the rows k apart with the same IP ID and sequence
    number (compared as whole shifted columns: together they tell most packets apart),
    then the time and every other field on the few rows still alike. Measured on the 1M
    bench capture, where nearly every row is within 1 ms of the next four: ~0.05 s a side
    (gathering every field for the rows close in time took 0.4 s)."""
    n = len(t)
    copy_of = np.full(n, -1, np.int64)
    ks = range(1, min(COPY_LOOKBACK, n - 1) + 1)
    if not len(ks):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    masks = {k: valid[k:] & valid[:-k] for k in ks}
    for f in ("ip_id", "seq"):  # one column in memory at a time
        col = np.ascontiguousarray(t[f])
        for k in ks:
            masks[k] &= col[k:] == col[:-k]
        del col
    ts = t["ts_ns"]
    for k in ks:
        near = np.flatnonzero(masks.pop(k))
        gap = ts[near + k] - ts[near]
        near = near[(gap >= 0) & (gap < COPY_NS)]
        for f in COPY_FIELDS:  # the rest on the rows still alike
            if len(near) == 0:
                break
            col = t[f]
            near = near[col[near] == col[near + k]]
        b = near + k
        b = b[copy_of[b] < 0]  # a copy found nearer stays
        copy_of[b] = b - k
    rows = np.flatnonzero(copy_of >= 0)
    orig = copy_of[rows]
    while len(orig) and (copy_of[orig] >= 0).any():  # a third copy names the first
        orig = np.where(copy_of[orig] >= 0, copy_of[orig], orig)
    return rows.astype(np.int64), orig


NO_SEQ = -(1 << 40)  # TcpConns.rel_seq_at of a row whose sender's ISN is unknown


NEVER_NS = np.iinfo(np.int64).max  # a time that never came (TcpConns.first_ack_fwd_ns)


@dataclass
class TcpConns:
    """TCP connections at one point. Row arrays are in connection order (``order``).

    Row positions, connection ids and counts are int32 (a table has far fewer than 2**31
    rows); ISNs and byte ends (which can pass 2**31) are int64. Sequence numbers relative
    to an ISN are made for the rows asked (``rel_seq_at``, ``rel_ack_at``: the close look
    and the payload check ask for a few % of the rows), not kept for every row. Two sides
    are built at once, so each 4-byte column saved here is saved twice at the analysis'
    peak."""

    order: np.ndarray  # indices into Side.t, sorted by (connection, frame)
    starts: np.ndarray  # first sorted row of each connection
    fwd: np.ndarray  # row sent by the connection's initiator
    syn: np.ndarray  # sorted-row index of the first SYN (no ACK) per connection, -1
    synack: np.ndarray  # first SYN-ACK, -1
    isn_c: np.ndarray  # initiator's ISN (int64, -1 unknown)
    isn_s: np.ndarray  # responder's ISN (-1 unknown)
    resp_port: np.ndarray  # the responder's port (the service the initiator asked for)
    n_syn: np.ndarray
    n_synack: np.ndarray
    n_rst_fwd: np.ndarray
    n_rst_rev: np.ndarray
    data_end_fwd: np.ndarray  # highest relative data byte sent by the initiator (+1), 1 if none (int64)
    data_end_rev: np.ndarray
    ack_fwd: np.ndarray  # highest relative ack the initiator sent (covers responder data)
    ack_rev: np.ndarray
    first_data_fwd: np.ndarray  # sorted-row index of the initiator's first data segment, -1
    first_data_rev: np.ndarray
    kind: np.ndarray  # per sorted row: SYN_ROW (SYN without ACK) | SYNACK_ROW
    t: np.ndarray  # the side's packet table (not a copy), which ``rel_seq_at`` / ``rel_ack_at`` read

    def __len__(self) -> int:
        return len(self.starts)

    @cached_property
    def first_ack_fwd_ns(self) -> np.ndarray:
        """Per connection, when the initiator first sent an ACK without SYN or RST (an
        ACK of the SYN-ACK, or data): its capture time (int64), ``NEVER_NS`` if never."""
        f = take(self.t["flags"], self.order).astype(np.int64)
        pos = np.flatnonzero(self.fwd & ((f & ACK) != 0) & ((f & (SYN | RST)) == 0))
        first = np.full(len(self.starts), NEVER_NS, np.int64)
        np.minimum.at(first, self.conn_of(pos), take(self.t["ts_ns"], self.order[pos]).astype(np.int64))
        return first

    def rows(self, c: int) -> np.ndarray:
        end = self.starts[c + 1] if c + 1 < len(self.starts) else len(self.order)
        return np.arange(self.starts[c], end)

    def conn_of(self, sr) -> np.ndarray:
        """The connection of each sorted row ``sr`` (int64): the last start at or before
        it (a search of ``starts``, not an id kept for every row)."""
        return np.searchsorted(self.starts, sr, side="right") - 1

    def rel_seq_at(self, sr, seq: np.ndarray | None = None) -> np.ndarray:
        """The seq of sorted rows ``sr`` relative to their sender's ISN (``keys.rel32``,
        int64), ``NO_SEQ`` where that ISN is unknown. ``seq``: those rows' seq, if the
        caller gathered it already."""
        sr = np.asarray(sr, dtype=np.int64)
        c, fwd = self.conn_of(sr), self.fwd[sr]
        if seq is None:
            seq = take(self.t["seq"], self.order[sr])
        base = np.where(fwd, self.isn_c[c], self.isn_s[c])
        out = rel32(seq, np.maximum(base, 0))
        out[base < 0] = NO_SEQ
        return out

    def rel_ack_at(self, sr) -> np.ndarray:
        """The ack of sorted rows ``sr`` relative to the peer's ISN (int64); 0 for a row
        without ACK, or where that ISN is unknown."""
        sr = np.asarray(sr, dtype=np.int64)
        c, fwd, rows = self.conn_of(sr), self.fwd[sr], self.order[sr]
        base = np.where(fwd, self.isn_s[c], self.isn_c[c])
        out = rel32(take(self.t["ack"], rows), np.maximum(base, 0))
        out[(base < 0) | ((take(self.t["flags"], rows) & ACK) == 0)] = 0
        return out


def _no_tcp(t: np.ndarray) -> TcpConns:
    i32, i64 = np.zeros(0, np.int32), np.zeros(0, np.int64)
    return TcpConns(order=i32, starts=i32, fwd=np.zeros(0, bool),
                    syn=i32, synack=i32, isn_c=i64, isn_s=i64, resp_port=i64, n_syn=i32, n_synack=i32,
                    n_rst_fwd=i32, n_rst_rev=i32, data_end_fwd=i64, data_end_rev=i64, ack_fwd=i32, ack_rev=i32,
                    first_data_fwd=i32, first_data_rev=i32, kind=np.zeros(0, np.uint8), t=t)


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
        # rows are never copied (a million rows of the table are ~100 MB): ``valid`` marks
        # the trusted ones and every grouping below holds indices into ``t``
        valid = (pk["status"] <= Undecoded.TRUNCATED_PAYLOAD) & (pk["ipver"] > 0)  # OK or payload cut
        # a packet captured twice (tcpdump -i any: once per interface it crossed) counts once
        self.dup_rows, self.dup_of = capture_copies(pk, valid)
        valid[self.dup_rows] = False
        self._copy_frames: dict[int, list[int]] | None = None
        # every protocol's trusted rows (int32), from one pass that counts the protocols and
        # one compare per protocol present (a stable argsort of all rows kept 8 MB of
        # int64 indices a side)
        proto = np.where(valid, pk["proto"], 0)
        self._rows_of = {p: np.flatnonzero(proto == p).astype(np.int32)
                         for p in np.flatnonzero(np.bincount(proto, minlength=256)).tolist() if p}
        del proto
        self.t = pk
        self.n_total = len(pk)
        self._frame_is_row = bool(np.array_equal(pk["frame"], np.arange(1, len(pk) + 1)))
        self.kernel_drops = int(cap.kernel_drops) if cap is not None else 0
        self.mid_flow = False  # a TCP connection here began before the capture (windows.started_mid_flow)
        ts = pk["ts_ns"]
        has = bool(valid.any())
        # min / max over the trusted rows without a copy of them (8 MB per 1M rows)
        self.ts_min = int(ts.min(where=valid, initial=np.iinfo(np.int64).max)) if has else None
        self.ts_max = int(ts.max(where=valid, initial=np.iinfo(np.int64).min)) if has else None
        del valid
        # addresses are numbered per capture (table.py): one key per distinct address,
        # then a gather for the rows asked (not a hash of 16 bytes per row)
        self.addrs = cap.addrs if cap is not None else np.zeros((1, 16), np.uint8)
        self.addr_text_of = AddrTexts(self.addrs)  # (its Parts share it: texts made once a capture)
        self._akeys = addr_key(self.addrs)
        self._all_akeys: frozenset[int] | None = None
        self.tcp = self._tcp()
        self._icmp()

    # addresses -----------------------------------------------------------------------
    def addr_keys(self, field: str, rows: np.ndarray) -> np.ndarray:
        """``keys.addr_key`` of the ``field`` ("src" / "dst") of ``rows`` (uint64). Made
        for the rows asked, not kept for every row (8 MB a side at 1M rows)."""
        if len(rows) == 0:
            return np.zeros(0, np.uint64)
        return np.take(self._akeys, take(self.t[field + "_i"], rows))

    @property
    def akeys(self) -> np.ndarray:
        """``keys.addr_key`` of each of the capture's addresses, by index (``src_i`` / ``dst_i``)."""
        return self._akeys

    def all_addr_keys(self) -> frozenset[int]:
        """``keys.addr_key`` of every address the capture holds (made once: the
        'incomplete' checks ask it per exchange, ``windows._untied``)."""
        if self._all_akeys is None:
            self._all_akeys = frozenset(unique(self._akeys).tolist())
        return self._all_akeys

    def addr_key1(self, field: str, row: int) -> int:
        """``addr_keys`` of one row, as a Python int."""
        return int(self._akeys[self.t[field + "_i"][row]])

    # TCP ---------------------------------------------------------------------------
    def _tcp(self) -> TcpConns:
        t = self.t
        rows = self.rows_of(6)
        n = len(rows)
        if n == 0:
            return _no_tcp(t)
        # one pass of whole rows (keys.row_chunks) gathers the columns and makes each row's
        # 4-tuple key, whichever way (a multiply-xor of its endpoints' keys, smaller
        # first), and which way it goes (``way``: 1 if its source is the smaller, -1 if
        # the larger, 0 if both ends are one); no per-row address or endpoint keys are
        # kept. Every intermediate goes as soon as it is used: two sides are built at
        # once, so each one's transient peak counts twice.
        tup, way = np.empty(n, np.uint64), np.empty(n, np.int8)
        akeys = self._akeys
        cols = {f: np.empty(n, t.dtype[f]) for f in ("flags", "seq", "ack", "plen")}
        for a, sub in row_chunks(t, rows):
            b = a + len(sub)
            for f, out in cols.items():
                out[a:b] = sub[f]
            eps = _endpoint_key(np.take(akeys, sub["src_i"]), sub["sport"])
            epd = _endpoint_key(np.take(akeys, sub["dst_i"]), sub["dport"])
            way[a:b] = eps < epd
            way[a:b] -= eps > epd
            lo = np.minimum(eps, epd)
            with np.errstate(over="ignore"):
                lo *= _MIX
            lo ^= np.maximum(eps, epd)
            tup[a:b] = lo
        # a stable sort on the 4-tuple alone: ``rows`` are in frame order already
        # (measured: 0.18 -> 0.08 s per 700k TCP rows)
        o, gstart = sort_order(tup, runs=True)
        del tup
        order = rows[o]

        # a column of the TCP rows in connection order: taken from the table in frame
        # order with the others, then permuted as a small contiguous array, in its own
        # width; taking it by ``order`` from the table's rows directly missed the cache
        # on every row (measured: 21 -> 8 ms per column of 700k rows).
        # seq and ack stay uint32: ISN arithmetic wraps mod 2**32 as sequence numbers do
        flags, seq, ack, plen, way = (x[o] for x in (cols.pop("flags"), cols.pop("seq"), cols.pop("ack"),
                                                      cols.pop("plen"), way))
        del o
        is_syn = ((flags & SYN) != 0) & ((flags & ACK) == 0)
        is_synack = ((flags & SYN) != 0) & ((flags & ACK) != 0)
        ar = np.arange(n, dtype=np.int32)
        gs = np.where(gstart, ar, 0)
        np.maximum.accumulate(gs, out=gs)
        # a connection starts at a SYN or SYN-ACK naming another initiator ISN than the
        # last one on this 4-tuple (SYN: seq; SYN-ACK: ack - 1), whichever comes first
        opener = is_syn | is_synack
        cand_isn = np.where(is_syn, seq, ack - np.uint32(1))
        op_pos = np.where(opener, ar, -1).astype(np.int32, copy=False)
        del ar
        prev_op = np.empty(n, np.int32)
        prev_op[0] = -1
        np.maximum.accumulate(op_pos[:-1], out=prev_op[1:])
        del op_pos
        same = prev_op >= gs
        same &= cand_isn[np.maximum(prev_op, 0)] == cand_isn
        del cand_isn, prev_op, gs
        new = opener & ~same
        new |= gstart
        del opener, same, gstart
        conn = np.cumsum(new, dtype=np.int32)
        conn -= 1
        starts = np.flatnonzero(new).astype(np.int32)
        del new
        nc = len(starts)
        syn = _first_per_group(conn, is_syn, nc)
        synack = _first_per_group(conn, is_synack, nc)
        has_syn, has_synack = syn >= 0, synack >= 0
        syn0, synack0 = np.maximum(syn, 0), np.maximum(synack, 0)
        # the initiator: source of the SYN, else destination of the SYN-ACK, else first
        # sender; a row is forward if it goes the initiator's way along its 4-tuple
        init_way = np.where(has_syn, way[syn0], np.where(has_synack, -way[synack0], way[starts]))
        fwd = way == init_way[conn]
        del way, init_way
        isn_c = np.where(has_syn, seq[syn0].astype(np.int64),
                         np.where(has_synack, (ack[synack0] - np.uint32(1)).astype(np.int64), -1))
        isn_s = np.where(has_synack, seq[synack0].astype(np.int64), -1)
        # ports of one row per connection, not of every row (a gather from the table is
        # the costly part: 0.06 s per 700k rows)
        dport, sport = t["dport"], t["sport"]
        resp_port = np.where(has_syn, dport[order[syn0]].astype(np.int64),
                             np.where(has_synack, sport[order[synack0]].astype(np.int64),
                                      dport[order[starts]].astype(np.int64)))
        # sequence numbers relative to an ISN, for the per-connection ends below (then
        # dropped: rel_seq_at / rel_ack_at make them again for the rows asked):
        # (a - isn) mod 2**32 read as int32 is keys.rel32, without its int64 temporaries
        known_c, known_s = isn_c >= 0, isn_s >= 0
        base_c, base_s = np.maximum(isn_c, 0).astype(np.uint32), np.maximum(isn_s, 0).astype(np.uint32)
        base = np.where(fwd, base_c[conn], base_s[conn])
        seq -= base
        rel_seq32 = seq.view(np.int32)
        known = np.where(fwd, known_c[conn], known_s[conn])
        rel_seq32[~known] = 0
        base = np.where(fwd, base_s[conn], base_c[conn])
        ack -= base
        rel_ack = ack.view(np.int32)
        del base, seq, ack
        keep_ack = np.where(fwd, known_s[conn], known_c[conn])
        keep_ack &= (flags & ACK) != 0
        rel_ack[~keep_ack] = 0
        del keep_ack
        rst = (flags & RST) != 0
        del flags
        has_data = plen > 0
        # the highest data byte (+1) of each row: rel seq + length, 1 for a row without data
        data_end = np.where(known, rel_seq32, np.int64(NO_SEQ))  # an int scalar would wrap to int32
        del known
        data_end += plen
        data_end[~has_data] = 1
        del plen

        def red(fn, vals, empty=0):
            return _reduce(fn, vals, starts, nc, empty)

        def count(mask):
            return red(np.add, mask.astype(np.int32))

        cnt_fwd = count(is_syn & fwd)
        cnt_rev = count(is_synack & ~fwd)
        return TcpConns(
            order=order, starts=starts, fwd=fwd,
            syn=syn, synack=synack, isn_c=isn_c, isn_s=isn_s, resp_port=resp_port,
            n_syn=cnt_fwd, n_synack=cnt_rev,
            n_rst_fwd=count(rst & fwd),
            n_rst_rev=count(rst & ~fwd),
            data_end_fwd=red(np.maximum, np.where(fwd, data_end, 1)),
            data_end_rev=red(np.maximum, np.where(~fwd, data_end, 1)),
            ack_fwd=red(np.maximum, np.where(fwd, rel_ack, 0).astype(np.int32, copy=False)),
            ack_rev=red(np.maximum, np.where(~fwd, rel_ack, 0).astype(np.int32, copy=False)),
            first_data_fwd=_first_per_group(conn, fwd & has_data, nc),
            first_data_rev=_first_per_group(conn, ~fwd & has_data, nc),
            kind=is_syn.astype(np.uint8) | (is_synack.astype(np.uint8) << 1),
            t=t,
        )

    # ICMP --------------------------------------------------------------------------
    def _icmp(self) -> None:
        # on the ICMP rows only (a few % of a large capture), not on every row
        rows = np.sort(np.concatenate([self.rows_of(1), self.rows_of(58)]))
        it = take(self.t["icmp_type"], rows).astype(np.int64)
        v4 = take(self.t["proto"], rows) == 1
        self.echo_req = rows[((it == 8) & v4) | ((it == 128) & ~v4)]
        self.echo_rep = rows[((it == 0) & v4) | ((it == 129) & ~v4)]
        self.errors = rows[(v4 & isin(it, ICMP4_ERRORS)) | (~v4 & isin(it, ICMP6_ERRORS))]

    def frames(self, rows: np.ndarray, dtype=np.int64) -> np.ndarray:
        """The frame numbers of ``rows`` (int64, or ``dtype``): row + 1, as the table's
        contract has it (checked once per side), without a gather from the table (2-8 ms
        each, and the analysis asks dozens of times)."""
        if self._frame_is_row:
            out = np.asarray(rows).astype(dtype)
            out += 1
            return out
        return take(self.t["frame"], rows).astype(dtype)

    def copy_frames(self) -> dict[int, list[int]]:
        """Frame of each packet captured more than once -> the frames of its other copies
        (made once; {} without copies)."""
        got = self._copy_frames
        if got is None:
            got = {}
            for o, d in zip(self.frames(self.dup_of).tolist(), self.frames(self.dup_rows).tolist()):
                got.setdefault(o, []).append(d)
            self._copy_frames = got
        return got

    def rows_at(self, frames) -> np.ndarray:
        """The rows of frame numbers ``frames`` (the inverse of ``frames``)."""
        fr = np.asarray(frames, dtype=np.int64)
        if self._frame_is_row:
            return fr - 1
        return np.searchsorted(self.t["frame"], fr)

    def rows_of(self, proto: int) -> np.ndarray:
        """Trusted rows of one L4 protocol, in file order (made once per protocol: every
        step asks, and each ask was a pass over all rows)."""
        got = self._rows_of.get(proto)
        return got if got is not None else np.zeros(0, np.int32)

    def echo_key(self, rows: np.ndarray) -> np.ndarray:
        """NAT-invariant key of echo requests/replies: protocol, sequence, payload hash."""
        t = self.t
        return combine(take(t["proto"], rows), take(t["icmp_seq"], rows), take(t["phash"], rows), take(t["plen"], rows), n=len(rows))

    def error_key(self, rows: np.ndarray) -> np.ndarray:
        """NAT-invariant key of the packet an ICMP error quotes (what it is about)."""
        if self.cap is None:
            raise ValueError(f"rows asked of {self.name}, which has no capture")
        t = self.cap.quoted_at(rows)
        qp = t["q_proto"].astype(np.uint64)
        tcp = combine(6, t["q_seq"], n=len(rows))
        # UDP: the quoted 4-tuple, which every NAT between the error's sender and this
        # point translates back to this point's view; not the quoted IP ID, which a
        # rewriter of IDs (pf's scrub random-id) changed on the way out and nothing restores
        udp = combine(17, addr_key(t["q_src"]), t["q_sport"], addr_key(t["q_dst"]), t["q_dport"], n=len(rows))
        # an echo: its addresses, id and sequence number as quoted (a NAT translates the
        # quoted id back with the addresses, or the sender could not match the error)
        echo = combine(1, addr_key(t["q_src"]), addr_key(t["q_dst"]), t["q_seq"], n=len(rows))
        return np.where(qp == 6, tcp, np.where(qp == 17, udp, echo))

    def echo_error_key(self, rows: np.ndarray) -> np.ndarray:
        """What an ICMP error quoting these echo requests is filed under (``error_key``)."""
        t = self.t
        quoted = (take(t["icmp_id"], rows).astype(np.int64) << 16) | take(t["icmp_seq"], rows).astype(np.int64)
        return combine(1, self.addr_keys("src", rows), self.addr_keys("dst", rows), quoted, n=len(rows))

    def udp_error_key(self, rows: np.ndarray) -> np.ndarray:
        """What an ICMP error quoting these UDP datagrams is filed under (``error_key``)."""
        t = self.t
        return combine(17, self.addr_keys("src", rows), take(t["sport"], rows), self.addr_keys("dst", rows),
                       take(t["dport"], rows), n=len(rows))


class Part:
    """Some columns of some rows of a side, copied out (a fast-path batch outlives the
    analysis' big arrays); stands in for the side where only ``name``, ``t`` and
    ``addr_texts`` are read. Addresses are kept as the table has them: 4-byte indexes
    into the capture's ``Capture.addrs``."""

    def __init__(self, side: Side, rows: np.ndarray, fields):
        self.name = side.name
        self.addrs = side.addrs
        self.addr_text_of = side.addr_text_of
        self.t = take_fields(side.t, fields, rows)

    def addr_texts(self, field: str, rows: np.ndarray) -> list[str]:
        """``summary.addr_texts`` of the ``field`` ("src" / "dst") of ``rows`` (indices into this part)."""
        return self.addr_text_of(self.t[field + "_i"][rows])
