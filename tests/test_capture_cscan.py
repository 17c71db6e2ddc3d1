"""The walk that picks as it goes (_fast.c's ``walkscan``, ``focus._Reader.scan``) reads a
busy capture focused exactly as decoding every record and filtering does (the numpy
path, ``RIG_PURE_READER=1``): the same rows bit for bit, the same ICMP error records,
addresses, counts of what was not decoded and of what was skipped. On each golden pair's
server capture with unrelated traffic merged in, with segments small enough that peers
are anchored late and earlier segments walked again, on big-endian and nanosecond files,
on captures of every link type the fast path reads and one it does not, and on damaged
ones. And it does pick: most records of a busy capture are never decoded.
"""

from __future__ import annotations

import os
import struct
import types
from pathlib import Path

import numpy as np
import pytest

from rig.capture import container, fast, read_capture
from rig.capture.focus import K_ECHO_REP, K_ECHO_REQ, K_SYN_ISN, K_SYN_TS, K_SYNACK_ISN, K_UDP, Focus, focus_of, read_focused
from rig.capture.synth_busy import merge_pcap, unrelated
from rig.capture.synth_columns import concat, file_header, packets, records, sort_by_time
from tests.test_capture_focus import _busy

pytestmark = pytest.mark.skipif(fast._fast is None, reason="the compiled fast path (rig/capture/_fast.c) did not "
                                "build (pip install -e . builds it where a C compiler and the Python headers are)")

DATA = Path(__file__).parent / "data" / "analysis"
PAIRS = sorted(p.name for p in DATA.iterdir() if (p / "server.pcap").exists())


@pytest.fixture
def scans(monkeypatch):
    """The compiled walk that picks, counting the records it walked and those it kept,
    and the rows the compiled decode was given: a test comparing it with the numpy path
    must also show it ran."""
    seen = {"walked": 0, "picked": 0, "decoded": 0}
    real = fast._fast

    def walkscan(*args):
        got = real.walkscan(*args)
        seen["walked"] += got[0]
        seen["picked"] += got[4]
        return got

    def rows(*args):
        seen["decoded"] += len(args[1])
        return real.rows(*args)

    monkeypatch.setattr(fast, "_fast", types.SimpleNamespace(rows=rows, walkscan=walkscan))
    monkeypatch.delenv("RIG_PURE_READER", raising=False)
    return seen


def _focused(path: Path, client: str | Path, pure: bool):
    if pure:
        os.environ["RIG_PURE_READER"] = "1"
    try:
        return read_focused(str(path), focus_of(read_capture(str(client), lean=True)))
    finally:
        os.environ.pop("RIG_PURE_READER", None)


def _same(path: Path, client: str | Path):
    """Both ways agree; returns what the walk that picks read (None: not read focused)."""
    c, p = _focused(path, client, False), _focused(path, client, True)
    assert (c is None) == (p is None)
    if c is None or p is None:
        return None
    assert c.packets.dtype == p.packets.dtype and len(c.packets) == len(p.packets)
    if c.packets.tobytes() != p.packets.tobytes():
        for name in c.packets.dtype.names:
            ne = c.packets[name] != p.packets[name]
            ne = ne.any(axis=tuple(range(1, ne.ndim))) if ne.ndim > 1 else ne
            assert not ne.any(), f"{name} differs at row {int(np.flatnonzero(ne)[0])}"
    assert c.quoted.tobytes() == p.quoted.tobytes()
    assert np.array_equal(c.addrs, p.addrs)
    assert (c.undecoded, c.skipped, c.format, c.interfaces) == (p.undecoded, p.skipped, p.format, p.interfaces)
    return c


@pytest.mark.parametrize("name", PAIRS)
def test_picking_while_walking_keeps_what_decoding_everything_keeps(scans, tmp_path, name):
    busy = tmp_path / "server.pcap"
    frames = _busy(name, busy, 40_000, seed=7)
    client = len(read_capture(str(DATA / name / "client.pcap")).packets)
    scans.update(walked=0, picked=0, decoded=0)
    got = _same(busy, DATA / name / "client.pcap")
    assert got is not None and got.skipped > 35_000
    assert scans["walked"] == len(frames) + 40_000
    # the records left out were never decoded (the client's capture is, whole)
    assert scans["decoded"] == scans["picked"] + client and scans["picked"] < 0.2 * scans["walked"]


@pytest.mark.parametrize("seed", [1, 2])
def test_peers_anchored_late_in_small_segments(scans, tmp_path, monkeypatch, seed):
    """Segments of 64 KB: the client's public address is met (scanners reusing it) in
    segments before its first anchor, which are walked again knowing it."""
    monkeypatch.setattr(container, "SEGMENT", 1 << 16)
    busy = tmp_path / "server.pcap"
    _busy("seed", busy, 20_000, seed=seed, before_s=30)
    assert _same(busy, DATA / "seed" / "client.pcap") is not None
    assert scans["walked"] > 20_000 + 1000  # some segments twice


def _swapped(data: bytes) -> bytes:
    """The same little-endian pcap written big-endian (file and record headers)."""
    out = bytearray(data)
    out[:24] = struct.pack(">IHHiIII", *struct.unpack_from("<IHHiIII", data, 0))
    off = 24
    while off < len(data):
        h = struct.unpack_from("<IIII", data, off)
        out[off:off + 16] = struct.pack(">IIII", *h)
        off += 16 + h[2]
    return bytes(out)


@pytest.mark.parametrize("form", ["ns", "big-endian"])
def test_big_endian_and_nanosecond_files(scans, tmp_path, form):
    busy = tmp_path / "server.pcap"
    _busy("port-set", busy, 20_000, seed=3)
    if form == "big-endian":
        busy.write_bytes(_swapped(busy.read_bytes()))
        assert _same(busy, DATA / "port-set" / "client.pcap") is not None
        assert scans["walked"] and scans["picked"] < scans["walked"] / 2
        return
    # nanosecond timestamps: the pair's own packets and busy traffic, written as ns
    p = unrelated(np.random.default_rng(5), 20_000, 1_700_000_000 * 10**9, 1_700_000_060 * 10**9, (0, 0xC6336410),
                  reuse_addr=0xCB007102, reuse_ports=np.arange(40000, 40100))
    rb, _ = records(p, ns=True)
    busy.write_bytes(file_header(ns=True) + rb.tobytes())
    client = tmp_path / "client.pcap"
    cp = {k: v[::500].copy() for k, v in p.items()}  # a few of the same packets, as the small capture
    cb, _ = records(cp, ns=True)
    client.write_bytes(file_header(ns=True) + cb.tobytes())
    got = _same(busy, client)
    assert got is not None and scans["walked"] == 20_000


def _relinked(src: Path, dst: Path, linktype: int) -> None:
    """An Ethernet pcap written with another link type: raw IP (the 14-byte header cut),
    Linux cooked (SLL: 16 bytes in its place), or BSD loopback (0: the address family in
    4 bytes)."""
    data = src.read_bytes()
    parts = [data[:20] + struct.pack("<I", linktype)]
    off = 24
    while off < len(data):
        ts, sub, cap, wire = struct.unpack_from("<IIII", data, off)
        body = data[off + 16:off + 16 + cap]
        off += 16 + cap
        if linktype in (101, 228, 229):
            body = body[14:]
        elif linktype == 113:
            body = b"\0\0\0\1\0\6" + b"\2" * 6 + b"\0\0" + body[12:14] + body[14:]
        elif linktype == 0:
            body = struct.pack("<I", 2 if body[12:14] == b"\x08\x00" else 28) + body[14:]
        parts.append(struct.pack("<IIII", ts, sub, len(body), wire - cap + len(body)) + body)
    dst.write_bytes(b"".join(parts))


@pytest.mark.parametrize("linktype", [101, 113, 0])
def test_other_links(scans, tmp_path, linktype):
    """Raw IP and Linux cooked captures are picked as Ethernet is; a link type the fast
    path does not read (0, BSD loopback: pf's own captures on lo0) leaves every record to
    the full decoder, and the filter after it."""
    busy, client = tmp_path / "server.pcap", tmp_path / "client.pcap"
    _busy("seed", tmp_path / "eth.pcap", 20_000, seed=4)
    _relinked(tmp_path / "eth.pcap", busy, linktype)
    _relinked(DATA / "seed" / "client.pcap", client, linktype)
    scans.update(walked=0, picked=0, decoded=0)
    got = _same(busy, client)
    assert scans["walked"] > 20_000
    assert got is not None and got.skipped > 18_000
    if linktype == 0:
        assert scans["picked"] == scans["walked"] and scans["decoded"] == 0
    else:
        assert scans["picked"] < 2_000


@pytest.mark.parametrize("seed", range(6))
def test_damaged_packets(scans, tmp_path, seed):
    """Bytes changed at random in a busy capture (record headers too: then the file is
    not read focused at all, either way)."""
    busy = tmp_path / "server.pcap"
    _busy("mtu-blackhole", busy, 20_000, seed=seed)
    data = np.frombuffer(busy.read_bytes(), np.uint8).copy()
    rng = np.random.default_rng(seed)
    at = rng.integers(24, len(data), 300 if seed % 2 else 3)
    data[at] = rng.integers(0, 256, len(at), dtype=np.uint8)
    busy.write_bytes(data.tobytes())
    _same(busy, DATA / "mtu-blackhole" / "client.pcap")


def _seed_server() -> tuple[int, int, np.ndarray, int]:
    """The seed pair's server and client-public IPv4 addresses (as the server capture has
    them), the client's source ports, and the capture's last timestamp."""
    s = read_capture(str(DATA / "seed" / "server.pcap"), lean=True)
    t = s.packets
    syn = (t["proto"] == 6) & ((t["flags"] & 0x12) == 0x02)
    server = int(np.bincount(t["dst_i"][syn]).argmax())
    public = int(np.bincount(t["src_i"][syn]).argmax())
    ipv4 = [int.from_bytes(bytes(s.addrs[i][12:]), "big") for i in (server, public)]
    return ipv4[0], ipv4[1], np.unique(t["sport"][syn & (t["src_i"] == public)]), int(t["ts_ns"].max())


def test_errors_quoting_a_peer_and_the_files_last_row(scans, tmp_path):
    """ICMP errors from a third address (a router) to the server, quoting the server's
    packets to the client's public address: kept for what they quote alone; and the
    file's last decodable row, unrelated and after everything, kept for the window."""
    server, public, ports, end = _seed_server()
    rng = np.random.default_rng(11)
    s0 = read_capture(str(DATA / "seed" / "server.pcap"), lean=True).packets["ts_ns"]
    noise = unrelated(rng, 20_000, int(s0.min()), end, (0, server))
    err = packets(60)
    err["t"] = np.sort(rng.integers(int(s0.min()), end, 60))
    err["src_lo"][:] = 0x0A630001  # a router
    err["dst_lo"][:] = server
    err["ttl"][:] = 250
    err["proto"][:] = 1
    err["itype"][:] = 11
    err["q_proto"][:] = 6
    err["q_src"][:] = server
    err["q_dst"][:] = public
    err["q_sport"][:] = 80
    err["q_dport"][:] = rng.choice(ports, 60)
    last = packets(1)
    last["t"][:] = end + 10**9
    last["src_lo"][:], last["dst_lo"][:] = 0x0A640002, server
    last["proto"][:], last["flags"][:], last["ttl"][:] = 6, 0x10, 50
    busy = tmp_path / "server.pcap"
    merge_pcap(str(DATA / "seed" / "server.pcap"), str(busy), [sort_by_time(concat([noise, err])), last])
    got = _same(busy, DATA / "seed" / "client.pcap")
    assert got is not None
    t = got.packets
    router = np.flatnonzero((got.addrs[:, 12:] == np.frombuffer((0x0A630001).to_bytes(4, "big"), np.uint8)).all(1))
    assert len(router) == 1 and ((t["src_i"] == router[0]) & (t["icmp_type"] == 11)).sum() == 60
    assert t["ts_ns"][-1] == end + 10**9


_KINDS = {"syn-isn": K_SYN_ISN, "syn-ts": K_SYN_TS, "synack-isn": K_SYNACK_ISN, "echo-request": K_ECHO_REQ,
          "echo-reply": K_ECHO_REP, "udp": K_UDP}


@pytest.mark.parametrize("pair", ["seed", "port-set", "sampled"])
@pytest.mark.parametrize("kind", sorted(_KINDS))
def test_each_kind_of_anchor_alone(scans, tmp_path, kind, pair):
    """Only one kind of the small capture's keys known (as when pf rewrote the others: a
    modulated ISN, a shifted timestamp): the peers it anchors, and only those, are found
    the same both ways, from the source or the destination as the kind says. ``sampled``:
    the small capture is a few packets of the busy traffic itself (IPv6 pings and replies,
    QUIC-like and DNS-like UDP, other users' SYNs and SYN-ACKs)."""
    busy = tmp_path / "server.pcap"
    if pair == "sampled":
        p = unrelated(np.random.default_rng(6), 20_000, 1_700_000_000 * 10**9, 1_700_000_060 * 10**9,
                      (0, 0xC6336410))
        rb, _ = records(p)
        busy.write_bytes(file_header() + rb.tobytes())
        cb, _ = records({k: v[::97].copy() for k, v in p.items()})
        client = tmp_path / "client.pcap"
        client.write_bytes(file_header() + cb.tobytes())
    else:
        _busy(pair, busy, 20_000, seed=5)
        client = DATA / pair / "client.pcap"
    c = read_capture(str(client), lean=True)
    f = focus_of(c)
    tag = np.uint64(_KINDS[kind]) << np.uint64(56)
    only = Focus(f.out[(f.out & ~np.uint64((1 << 56) - 1)) == tag], f.back[(f.back & ~np.uint64((1 << 56) - 1)) == tag])
    got = []
    for pure in (False, True):
        if pure:
            os.environ["RIG_PURE_READER"] = "1"
        try:
            got.append(read_focused(str(busy), only))
        finally:
            os.environ.pop("RIG_PURE_READER", None)
    a, b = got
    assert (a is None) == (b is None) == only.empty
    assert pair != "sampled" or not only.empty
    if a is not None and b is not None:
        assert a.packets.tobytes() == b.packets.tobytes() and a.quoted.tobytes() == b.quoted.tobytes()
        assert np.array_equal(a.addrs, b.addrs) and (a.undecoded, a.skipped) == (b.undecoded, b.skipped)
