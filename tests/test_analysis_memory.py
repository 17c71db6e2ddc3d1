"""The analysis' narrow arrays: a Side keeps row positions, connection ids and counts as
int32 and no per-row address keys, and these give exactly what the plain int64
computation gives (the connections of random TCP tables against a reference built the
straightforward way, sequence numbers wrapping, ISNs unknown, rows untrusted)."""

from __future__ import annotations

import numpy as np
import pytest

from rig.analysis.keys import addr_key, combine, rel32, take, take_fields
from rig.analysis.sides import NO_SEQ, Side
from rig.capture.table import ACK, RST, SYN, Capture, empty_table

FIN = 0x01


def _table(seed: int, n: int = 3000) -> np.ndarray:
    """TCP rows of a few hosts and ports (so 4-tuples repeat and connections reuse them),
    some UDP / ICMP / untrusted rows between; seq / ack anywhere in 32 bits, often near
    the wrap; SYNs and SYN-ACKs that repeat, disagree or are missing."""
    rng = np.random.default_rng(seed)
    t = empty_table(n)
    t["frame"] = np.arange(1, n + 1)
    t["ts_ns"] = np.sort(rng.integers(0, 10**12, n))
    t["ipver"] = rng.choice([4, 6, 0], n, p=[0.6, 0.38, 0.02])
    t["status"] = rng.choice([0, 1, 3], n, p=[0.9, 0.07, 0.03])
    t["proto"] = rng.choice([6, 17, 1, 58], n, p=[0.8, 0.1, 0.05, 0.05])
    hosts = rng.integers(0, 256, (4, 16))
    a, b = rng.integers(0, 4, n), rng.integers(0, 4, n)
    t["src"], t["dst"] = hosts[a], hosts[b]
    t["sport"] = rng.choice([80, 443, 50000, 50001, 50002], n)
    t["dport"] = rng.choice([80, 443, 50000, 50001], n)
    isns = np.array([0, 1, 2**31 - 1, 2**31, 2**32 - 2, 2**32 - 1, 12345, 3_000_000_000], np.uint64)
    t["seq"] = (rng.choice(isns, n) + rng.integers(0, 3000, n).astype(np.uint64)) & 0xFFFFFFFF
    t["ack"] = (rng.choice(isns, n) + rng.integers(0, 3000, n).astype(np.uint64)) & 0xFFFFFFFF
    t["flags"] = rng.choice([SYN, SYN | ACK, ACK, ACK | FIN, RST, RST | ACK, ACK | 0x08], n,
                            p=[0.12, 0.1, 0.5, 0.08, 0.04, 0.04, 0.12])
    t["plen"] = np.where(rng.random(n) < 0.4, rng.integers(1, 1500, n), 0)
    self_talk = rng.random(n) < 0.03  # both ends one endpoint: neither way along the 4-tuple
    t["dst"][self_talk], t["dport"][self_talk] = t["src"][self_talk], t["sport"][self_talk]
    return t


def _capture(t: np.ndarray) -> Capture:
    """A capture of a hand-made table: its 16-byte addresses numbered as the reader numbers
    them (src_i / dst_i into Capture.addrs; index 0 the zero address)."""
    both = np.concatenate([t["src"], t["dst"]]).view("V16").ravel()
    zero = np.zeros(1, "V16")
    uniq, inv = np.unique(np.concatenate([zero, both]), return_inverse=True)
    inv = inv.ravel()
    order = np.argsort(np.unique(inv, return_index=True)[1])  # zero first, then by appearance
    rank = np.empty(len(uniq), np.int64)
    rank[order] = np.arange(len(uniq))
    t["src_i"], t["dst_i"] = rank[inv[1 : 1 + len(t)]], rank[inv[1 + len(t) :]]
    addrs = uniq[order].view(np.uint8).reshape(-1, 16)
    assert not addrs[0].any()
    return Capture("x.pcap", "pcap", (), t, addrs=addrs)


def _reference(side: Side) -> dict[str, np.ndarray]:
    """The connections computed the plain way: int64 everywhere, a stable argsort, every
    row's address keys (the Side's code before its arrays were narrowed)."""
    t = side.t
    rows = side.rows_of(6).astype(np.int64)
    n = len(rows)
    mix = np.uint64(0x9E3779B97F4A7C15)
    with np.errstate(over="ignore"):
        eps = (t["sport"][rows].astype(np.uint64) * mix) ^ addr_key(t["src"][rows])
        epd = (t["dport"][rows].astype(np.uint64) * mix) ^ addr_key(t["dst"][rows])
        tup = (np.minimum(eps, epd) * mix) ^ np.maximum(eps, epd)
    o = np.argsort(tup, kind="stable")
    order, eps, epd, tup = rows[o], eps[o], epd[o], tup[o]
    flags, seq, ack, plen = (t[f][order].astype(np.int64) for f in ("flags", "seq", "ack", "plen"))
    is_syn = ((flags & SYN) != 0) & ((flags & ACK) == 0)
    is_synack = ((flags & SYN) != 0) & ((flags & ACK) != 0)
    ar = np.arange(n)
    gstart = np.ones(n, bool)
    gstart[1:] = tup[1:] != tup[:-1]
    gs = np.maximum.accumulate(np.where(gstart, ar, 0))
    opener = is_syn | is_synack
    cand = np.where(is_syn, seq, (ack - 1) & 0xFFFFFFFF)
    prev = np.concatenate([[-1], np.maximum.accumulate(np.where(opener, ar, -1))[:-1]])
    same = (prev >= gs) & (cand[np.maximum(prev, 0)] == cand)
    new = gstart | (opener & ~same)
    conn = np.cumsum(new) - 1
    starts = np.flatnonzero(new)

    def first(mask):
        out = np.full(len(starts), -1, np.int64)
        for i in np.flatnonzero(mask)[::-1]:
            out[conn[i]] = i
        return out

    syn, synack = first(is_syn), first(is_synack)
    s0, a0 = np.maximum(syn, 0), np.maximum(synack, 0)
    init = np.where(syn >= 0, eps[s0], np.where(synack >= 0, epd[a0], eps[starts]))
    fwd = eps == init[conn]
    isn_c = np.where(syn >= 0, seq[s0], np.where(synack >= 0, (ack[a0] - 1) & 0xFFFFFFFF, -1))
    isn_s = np.where(synack >= 0, seq[a0], -1)
    base_seq = np.where(fwd, isn_c[conn], isn_s[conn])
    base_ack = np.where(fwd, isn_s[conn], isn_c[conn])
    rel_seq = np.where(base_seq >= 0, rel32(seq, np.maximum(base_seq, 0)), NO_SEQ)
    rel_ack = np.where((base_ack >= 0) & ((flags & ACK) != 0), rel32(ack, np.maximum(base_ack, 0)), 0)
    data_end = np.where(plen > 0, rel_seq + plen, 1)
    rst = (flags & RST) != 0

    def red(fn, v):
        return fn.reduceat(v, starts)

    return dict(
        order=order, conn=conn, starts=starts, fwd=fwd, syn=syn, synack=synack, isn_c=isn_c,
        isn_s=isn_s, n_syn=red(np.add, (is_syn & fwd).astype(np.int64)),
        n_synack=red(np.add, (is_synack & ~fwd).astype(np.int64)),
        n_rst_fwd=red(np.add, (rst & fwd).astype(np.int64)), n_rst_rev=red(np.add, (rst & ~fwd).astype(np.int64)),
        data_end_fwd=red(np.maximum, np.where(fwd, data_end, 1)), data_end_rev=red(np.maximum, np.where(~fwd, data_end, 1)),
        ack_fwd=red(np.maximum, np.where(fwd, rel_ack, 0)), ack_rev=red(np.maximum, np.where(~fwd, rel_ack, 0)),
        first_data_fwd=first(fwd & (plen > 0)), first_data_rev=first(~fwd & (plen > 0)),
        kind=is_syn.astype(np.uint8) | (is_synack.astype(np.uint8) << 1), rel_seq=rel_seq, rel_ack=rel_ack,
    )


@pytest.mark.parametrize("seed", range(6))
def test_connections_equal_the_plain_int64_computation(seed):
    side = Side("client", _capture(_table(seed)))
    cc, ref = side.tcp, _reference(side)
    assert len(cc) == len(ref["starts"]) > 50
    for name, want in ref.items():
        every = np.arange(len(cc.order))
        at = {"rel_seq": cc.rel_seq_at, "rel_ack": cc.rel_ack_at, "conn": cc.conn_of}.get(name)
        got = at(every) if at is not None else getattr(cc, name)
        assert got.tolist() == want.tolist(), name
    assert (ref["rel_seq"] == NO_SEQ).any() and (ref["rel_seq"] < -(1 << 30)).any()  # the cases that matter were there


def test_side_arrays_are_narrow():
    side = Side("client", _capture(_table(1)))
    cc = side.tcp
    for name in ("order", "starts", "syn", "synack", "n_syn", "n_synack", "n_rst_fwd",
                 "n_rst_rev", "ack_fwd", "ack_rev", "first_data_fwd", "first_data_rev"):
        assert getattr(cc, name).dtype == np.int32, name
    for name in ("isn_c", "isn_s", "data_end_fwd", "data_end_rev"):  # values past 2**31 (or the -1 of a 32-bit ISN)
        assert getattr(cc, name).dtype == np.int64, name
    assert all(r.dtype == np.int32 for r in side._rows_of.values())
    big = [k for k, v in vars(side).items() if isinstance(v, np.ndarray) and len(v) == side.n_total and k != "t"]
    assert big == []  # nothing per row of the whole table (src/dst keys were 16 bytes a row)


def test_empty_and_tcp_less_sides():
    for t in (empty_table(0), _table(2)[_table(2)["proto"] != 6]):
        side = Side("server", _capture(t))
        assert len(side.tcp) == 0 and side.tcp.order.dtype == np.int32
        assert side.addr_keys("src", side.rows_of(6)).dtype == np.uint64


def test_address_keys_made_on_demand_equal_the_whole_column_ones():
    t = _table(3)
    side = Side("client", _capture(t))
    whole = addr_key(t["src"])
    for rows in (np.arange(len(t)), np.array([5, 1, 5, 2999]), side.rows_of(17), np.zeros(0, np.int32)):
        assert side.addr_keys("src", rows).tolist() == whole[rows].tolist()
    assert [side.addr_key1("dst", r) for r in (0, 7, 2999)] == addr_key(t["dst"])[[0, 7, 2999]].tolist()
    rows = np.random.default_rng(0).integers(0, len(t), 20000).astype(np.int32)  # several chunks of rows
    got = take_fields(t, ("seq", "src"), rows)
    assert got["seq"].tolist() == take(t["seq"], rows).tolist() and (got["src"] == t["src"][rows]).all()
    # int32 ids hash as int64 ones do (combine widens them; keys meet keys made elsewhere)
    ids = np.array([0, 1, 7, 2**31 - 1], np.int32)
    assert combine(ids, 5).tolist() == combine(ids.astype(np.int64), 5).tolist()


@pytest.mark.parametrize("distinct", [1, 3, 16, 17, 200])
def test_part_address_texts_are_the_addresses_texts(distinct):
    from rig.analysis.sides import Part
    from rig.analysis.summary import addr_text

    t = _table(4)
    rng = np.random.default_rng(distinct)
    pool = rng.integers(0, 256, (distinct, 16)).astype(np.uint8)
    pool[0, :12] = [0] * 10 + [0xFF, 0xFF]  # an IPv4-mapped one among them
    t["src"] = pool[rng.integers(0, distinct, len(t))]
    side = Side("client", _capture(t))
    rows = side.rows_of(17)
    part = Part(side, rows, ("sport", "src_i", "dst_i"))
    assert part.t["src_i"].dtype == np.uint32  # 4 bytes a row, as in the table
    idx = rng.integers(0, len(rows), 300)
    for f in ("src", "dst"):
        assert part.addr_texts(f, idx) == [addr_text(a) for a in t[f][rows[idx]]]
    assert part.addr_texts("src", idx[:0]) == []


def test_one_arena_is_asked_of_glibc_only():
    import platform

    from rig.analysis.heap import one_arena

    assert one_arena() is (platform.libc_ver()[0] == "glibc")
