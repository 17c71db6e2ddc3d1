"""Property tests of the capture reader: random and mutated bytes never crash or hang it,
the counts are consistent, and the fast path gives exactly the reference decoder's rows."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rig.capture import fast as fastpath
from rig.capture import read_capture, read_capture_bytes
from rig.capture.table import PACKET_DTYPE, QUOTED_DTYPE, Undecoded
from rig.errors import InputError
from test_capture_golden import (LINUX_SYN_OPTS, NNT, block, eth, icmp, idb, ip4, ip6, opt, pcap, shb, epb, tcp,
                                 udp)

from tests._corpus import CORPUS
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check_consistent(data: bytes, cap) -> None:
    p = cap.packets
    assert p.dtype == PACKET_DTYPE
    assert list(p["frame"]) == list(range(1, len(p) + 1))
    nz = int((p["status"] != 0).sum())
    assert sum(cap.undecoded.values()) == nz
    for name, n in cap.undecoded.items():
        assert int((p["status"] == Undecoded[name]).sum()) == n
    usable = np.isin(p["status"], (Undecoded.OK, Undecoded.TRUNCATED_PAYLOAD))
    assert (p["pcaplen"][usable] <= p["plen"][usable]).all()
    assert (p["poff"].astype(np.int64) + p["pcaplen"] <= len(data)).all()
    assert ((p["pcaplen"] == 0) == (p["phash"] == 0)).all()
    q = cap.quoted  # ICMP errors only, one record each, by row
    assert q.dtype == QUOTED_DTYPE and (np.diff(q["row"].astype(np.int64)) > 0).all()
    assert (q["row"] < len(p)).all() and np.isin(p["proto"][q["row"]], (1, 58)).all()
    assert (p["icmp_type"][q["row"]] >= 0).all()


def read_both(data: bytes):
    """Both decoders on the same bytes: the same InputError, or identical tables."""
    try:
        a = read_capture_bytes(data, fast=True)
    except InputError as exc:
        with pytest.raises(InputError):
            read_capture_bytes(data, fast=False)
        assert "\n" not in str(exc)
        return None
    b = read_capture_bytes(data, fast=False)
    assert_same_rows(a.packets, b.packets)
    assert_same_rows(a.quoted, b.quoted)
    assert a.undecoded == b.undecoded and a.truncated_tail == b.truncated_tail
    check_consistent(data, a)
    assert_addresses_indexed(a), assert_addresses_indexed(b)
    return a


def assert_addresses_indexed(cap) -> None:
    """``addrs[src_i]`` is ``src`` (and dst) on every row; each address is listed once."""
    p, addrs = cap.packets, cap.addrs
    assert addrs.shape[1:] == (16,) and not addrs[0].any()
    assert len(np.unique(addrs, axis=0)) == len(addrs)
    for name in ("src", "dst"):
        assert (addrs[p[name + "_i"]] == p[name]).all(), name


def assert_same_rows(a: np.ndarray, b: np.ndarray) -> None:
    """Same fields in every row: two packet tables, or two ``Capture.quoted`` tables.
    (Not the address indexes: the decoders number addresses in the order each meets them;
    ``assert_addresses_indexed`` checks that each index names its row's address.)"""
    assert len(a) == len(b) and a.dtype == b.dtype
    which = "frame" if "frame" in a.dtype.names else "row"
    for name in a.dtype.names:
        if name in ("src_i", "dst_i"):
            continue
        eq = a[name] == b[name]
        if eq.ndim > 1:
            eq = eq.all(axis=1)
        if not eq.all():
            i = int(np.flatnonzero(~eq)[0])
            raise AssertionError(f"field {name} differs at {which} {a[which][i]}: fast {a[name][i]} ref {b[name][i]}")


# --------------------------------------------------------------- generated packets

addr4 = st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t)))
addr6 = st.binary(min_size=16, max_size=16).map(lambda b: __import__("ipaddress").IPv6Address(b).compressed)
TCP_OPTS = [b"", NNT, LINUX_SYN_OPTS, bytes.fromhex("020405b4"), bytes.fromhex("020405b4010303080101" + "0402"),
            b"\x01\x01\x05\x0a" + b"\x00" * 8, NNT + b"\x01\x01\x05\x0a" + b"\x00" * 8, b"\x02\x04\x05", b"\x03\x03"]


ICMP_ERRORS = {False: [3, 4, 5, 11, 12], True: [1, 2, 3, 4]}  # by v6: the types decode._icmp reads a quote of


@st.composite
def quoted_l4(draw, proto: int) -> bytes:
    """The L4 bytes an ICMP error quotes: a header of ``proto``, often cut short of 8 bytes."""
    if proto == 6:
        b = tcp(draw(st.integers(0, 65535)), draw(st.integers(0, 65535)), draw(st.integers(0, 2**32 - 1)), 0, 2)
    elif proto == 17:
        b = udp(draw(st.integers(0, 65535)), draw(st.integers(0, 65535)), b"d" * 12)
    elif proto in (1, 58):
        b = icmp(draw(st.sampled_from([8, 0, 3, 128, 129, 1])), 0,
                 struct.pack("!HH", draw(st.integers(0, 65535)), draw(st.integers(0, 65535))))
    else:
        b = draw(st.binary(min_size=8, max_size=8))
    return b[: draw(st.sampled_from([0, 3, 4, 6, 7, 8, 8, 8, 12, 20]))]


@st.composite
def quote(draw, v6: bool) -> bytes:
    """The packet an ICMP error quotes: IPv4 (with options, a later fragment) or IPv6 (with
    an extension or fragment header), of either family, cut anywhere, or not IP at all."""
    if draw(st.integers(0, 4)) == 0:
        v6 = not v6
    src, dst = (draw(addr6), draw(addr6)) if v6 else (draw(addr4), draw(addr4))
    proto = draw(st.sampled_from([6, 17, 58 if v6 else 1, 58 if not v6 else 1, 47]))
    body = draw(quoted_l4(proto))
    if v6:
        ext = draw(st.sampled_from([None, None, None, 0, 44, 44]))
        if ext == 0:  # hop-by-hop options, then the L4 header
            q = ip6(src, dst, 0, bytes([proto, 0]) + b"\x01\x04" + b"\x00" * 4 + body, plen=0)
        elif ext == 44:  # a fragment header: the first fragment or a later one
            fo = draw(st.sampled_from([0, 1, 185 << 3]))
            q = ip6(src, dst, 44, struct.pack("!BBHI", proto, 0, fo, draw(st.integers(0, 2**32 - 1))) + body)
        else:
            q = ip6(src, dst, proto, body, plen=draw(st.sampled_from([None, 1000])))
    else:
        opts = draw(st.sampled_from([b"", b"", b"\x01\x01\x01\x00", b"\x94\x04\x00\x00" * 2]))
        q = ip4(src, dst, proto, body, ip_id=draw(st.integers(0, 65535)), opts=opts,
                frag_off=draw(st.sampled_from([0, 0, 0, 185, 0x1000])), mf=draw(st.booleans()))
    how = draw(st.sampled_from(["whole"] * 6 + ["cut", "version", "ihl"]))
    if how == "cut":  # shorter than the IP header, or anywhere in the L4 header
        q = q[: draw(st.integers(0, len(q)))]
    elif how == "version":
        q = bytes([draw(st.integers(0, 255))]) + q[1:]
    elif how == "ihl" and not v6:
        q = bytes([0x40 | draw(st.integers(0, 15))]) + q[1:]
    return q


@st.composite
def l4_packet(draw):
    v6 = draw(st.booleans())
    src, dst = (draw(addr6), draw(addr6)) if v6 else (draw(addr4), draw(addr4))
    payload = draw(st.binary(max_size=90))
    kind = draw(st.sampled_from(["tcp", "udp", "icmp", "icmp-err", "icmp-err"]))
    if kind == "tcp":
        body, proto = tcp(draw(st.integers(0, 65535)), draw(st.integers(0, 65535)), draw(st.integers(0, 2**32 - 1)),
                          draw(st.integers(0, 2**32 - 1)), draw(st.integers(0, 0x1FF)), draw(st.integers(0, 65535)),
                          draw(st.sampled_from(TCP_OPTS)), payload), 6
    elif kind == "udp":
        body, proto = udp(draw(st.integers(0, 65535)), draw(st.integers(0, 65535)), payload), 17
    else:
        if kind == "icmp-err":  # every error type, frag-needed / packet too big with their MTUs
            t = draw(st.sampled_from(ICMP_ERRORS[v6]))
            code = draw(st.sampled_from([0, 1, 3, 4, 4, 5]))
            rest = struct.pack("!I", draw(st.sampled_from([0, 576, 1280, 1400, 70000, 2**32 - 1])))
            payload = draw(quote(v6))
        else:
            t = draw(st.sampled_from([128, 129, 1, 2, 135, 136] if v6 else [0, 8, 3, 11, 5, 13]))
            code = draw(st.integers(0, 5))
            rest = struct.pack("!HH", draw(st.integers(0, 65535)), draw(st.integers(0, 65535)))
        body = icmp(t, code, rest, payload)
        proto = 58 if v6 else 1
        if draw(st.integers(0, 9)) == 0:  # the other family's ICMP number: not ICMP to decode
            proto = 1 if v6 else 58
    if v6:
        return ip6(src, dst, proto, body, hlim=draw(st.integers(0, 255)), tc=draw(st.integers(0, 255)),
                   plen=draw(st.sampled_from([None, None, 0])))
    # IPv4 fragments: a first one (its datagram cut short, as a path cuts it: the L4 header
    # keeps the whole datagram's length) and later ones (no L4 header at all)
    mf, frag_off = draw(st.sampled_from([(False, 0)] * 4 + [(True, 0), (True, 0), (True, 185), (False, 370)]))
    if mf and not frag_off and draw(st.booleans()):
        body = body[:max(8, len(body) // 2)]
    return ip4(src, dst, proto, body, ttl=draw(st.integers(0, 255)), ip_id=draw(st.integers(0, 65535)),
               df=draw(st.booleans()), tl=draw(st.sampled_from([None, None, 0])), mf=mf, frag_off=frag_off)


def on_link(lt: int, ip: bytes, tags=()) -> bytes:
    """``ip`` framed for link type ``lt`` (Ethernet with ``tags``, SLL, SLL2, or raw)."""
    et = 0x86DD if ip[0] >> 4 == 6 else 0x0800
    if lt == 1:
        return eth(ip, et=et, tags=tags)
    if lt == 113:
        return struct.pack("!HHH8sH", 0, 1, 6, b"\x02" * 8, et) + ip
    if lt == 276:
        return struct.pack("!HHIHBB8s", et, 0, 3, 1, 0, 6, b"\x02" * 8) + ip
    return ip


@st.composite
def framed(draw):
    ip = draw(l4_packet())
    lt = draw(st.sampled_from([1, 1, 113, 276, 101, 228, 229]))
    tags = draw(st.sampled_from([(), ((0x8100, 5),), ((0x88A8, 1), (0x8100, 2))])) if lt == 1 else ()
    return lt, on_link(lt, ip, tags)


@SETTINGS
@given(st.lists(framed(), min_size=1, max_size=12), st.data())
def test_fast_path_equals_reference_on_generated_packets(frames, data):
    lt = frames[0][0]
    pkts = [f for link, f in frames if link == lt]
    caplens = [data.draw(st.integers(0, len(f))) if data.draw(st.booleans()) else len(f) for f in pkts]
    cap = read_both(pcap(pkts, linktype=lt, caplens=caplens))
    assert cap is not None and len(cap.packets) == len(pkts)


def test_fast_path_claims_the_common_layouts():
    """The fast path must actually run on common rows (else the equality test proves nothing)."""
    frames = [eth(ip4("10.0.0.1", "10.0.0.2", 6, tcp(1, 2, 3, 4, 0x10, opts=o, payload=b"d" * 10)))
              for o in TCP_OPTS[:7]]
    frames += [eth(ip6("2001:db8::1", "2001:db8::2", 17, udp(1, 2, b"x")), et=0x86DD)]
    frames += [on_link(1, ip4("10.0.0.1", "10.0.0.2", 1, icmp(t, 0, b"\x00\x01\x00\x02", b"p"))) for t in (8, 0, 13)]
    frames += [on_link(1, ip6("2001:db8::1", "2001:db8::2", 58, icmp(t, 0, b"\x00\x01\x00\x02", b"p")))
               for t in (128, 129, 135)]
    big = udp(1, 2, b"u" * 200)  # a datagram a path cut in two: the first fragment, then the later one
    frames += [eth(ip4("10.0.0.1", "10.0.0.2", 17, big[:120], mf=True)),
               eth(ip4("10.0.0.1", "10.0.0.2", 17, big[120:], frag_off=15))]
    data = pcap(frames)
    from rig.capture import container
    from rig.capture.addresses import AddressBook
    from rig.capture.table import empty_table

    recs = container.walk(data, "x")
    t = empty_table(len(frames))
    claimed, _ = fastpath.decode_rows(t, np.frombuffer(data, np.uint8), recs, 0, len(frames), AddressBook())
    assert claimed.all()
    read_both(data)


# every ICMP error the fast path reads: (v6, type, code, the 4 bytes after the checksum)
ERROR_HEADS = [(False, 3, 3, b"\0" * 4), (False, 3, 4, struct.pack("!HH", 0, 1400)), (False, 3, 4, b"\0" * 4),
               (False, 11, 0, b"\0" * 4), (False, 5, 1, bytes([10, 0, 0, 9])), (False, 4, 0, b"\0" * 4),
               (False, 12, 0, bytes([20, 0, 0, 0])), (True, 1, 4, b"\0" * 4), (True, 2, 0, struct.pack("!I", 1280)),
               (True, 2, 0, struct.pack("!I", 70000)), (True, 3, 0, b"\0" * 4), (True, 4, 1, struct.pack("!I", 48))]


def error_quotes() -> list[tuple[bytes, bool]]:
    """Packets an ICMP error may quote, whole, and whether the fast path reads them (not an
    IPv6 quote with an extension header: the reference decoder's)."""
    out = []
    for v6 in (False, True):
        src, dst = ("2001:db8::7", "2001:db8:1::9") if v6 else ("192.0.2.7", "198.51.100.9")
        for proto in (6, 17, 1, 58, 47):
            l4 = {6: tcp(40000, 443, 0xA1B2C3D4, 0, 2), 17: udp(5353, 53, b"q" * 4),
                  1: icmp(8, 0, struct.pack("!HH", 0x1234, 7)), 58: icmp(128, 0, struct.pack("!HH", 0x4321, 9)),
                  47: b"\x00\x00\x08\x00\x01\x02\x03\x04"}[proto]
            if v6:
                out.append((ip6(src, dst, proto, l4), True))
                out.append((ip6(src, dst, 0, bytes([proto, 0]) + b"\x01\x04" + b"\0" * 4 + l4), False))
                out.append((ip6(src, dst, 44, struct.pack("!BBHI", proto, 0, 0, 77) + l4), False))
            else:
                out.append((ip4(src, dst, proto, l4, ip_id=4242), True))
                out.append((ip4(src, dst, proto, l4, ip_id=4243, opts=b"\x94\x04\x00\x00"), True))
                out.append((ip4(src, dst, proto, l4[:8], ip_id=4244, frag_off=0x1000, mf=True), True))
    return out


def error_frames(cut_quotes: bool) -> tuple[list[bytes], list[bool]]:
    """IP packets: every error of ``ERROR_HEADS`` quoting every packet of ``error_quotes``
    (``cut_quotes``: cut to every length, as a router quotes fewer bytes), each with
    whether the fast path claims it."""
    ips, fast = [], []
    for v6, t, code, rest in ERROR_HEADS:
        for q, readable in error_quotes():
            for n in range(len(q) + 1) if cut_quotes else (len(q),):
                body = icmp(t, code, rest, q[:n])
                if v6:
                    ips.append(ip6("2001:db8::1", "2001:db8::2", 58, body))
                else:
                    ips.append(ip4("10.0.0.1", "10.0.0.2", 1, body))
                fast.append(readable or n < 40)
    return ips, fast


def test_fast_path_equals_reference_on_every_icmp_error():
    """Every error type of both families, quoting TCP / UDP / echo / other packets of both
    families (IPv4 options, a later fragment; IPv6 extension headers), each quote cut at
    every length; then the same captured with every snaplen, and on every fast link. The
    fast path claims all but the IPv6 quotes with extension headers, and gives the
    reference decoder's rows and quoted records."""
    from rig.capture import container
    from rig.capture.addresses import AddressBook
    from rig.capture.table import empty_table

    ips, fast = error_frames(cut_quotes=True)
    data = pcap([on_link(1, ip) for ip in ips])
    recs = container.walk(data, "x")
    claimed, quoted = fastpath.decode_rows(empty_table(len(ips)), np.frombuffer(data, np.uint8), recs, 0, len(ips),
                                           AddressBook())
    assert list(claimed) == fast and fast.count(False) < 0.2 * len(ips)
    cap = read_both(data)
    q = cap.quoted_at(np.arange(len(ips)))
    assert len(cap.quoted) == len(quoted) + fast.count(False)  # (each IPv6 quote left over is whole enough to read)
    assert {6, 17, 1, 58, 47} <= set(q["q_proto"].tolist()) and {1400, 1280, 0xFFFF} <= set(q["icmp_mtu"].tolist())
    assert (q["q_seq"] == 0xA1B2C3D4).any() and (q["q_seq"] == 0x12340007).any() and (q["q_seq"] == 0x43210009).any()

    whole, _ = error_frames(cut_quotes=False)
    frames = [on_link(1, ip) for ip in whole]
    caplens = [n for f in frames for n in range(len(f) + 1)]
    read_both(pcap([f for f in frames for _ in range(len(f) + 1)], caplens=caplens))
    for lt, tags in ((1, ((0x8100, 5),)), (1, ((0x88A8, 1), (0x8100, 2))), (113, ()), (276, ()), (101, ()),
                     (228, ()), (229, ())):
        ips = [ip for ip in whole if lt != 228 + (ip[0] >> 4 == 4)]  # (228: IPv4 only, 229: IPv6 only)
        read_both(pcap([on_link(lt, ip, tags) for ip in ips], linktype=lt))


# --------------------------------------------------------------- random and mutated bytes

BASE = [
    pcap([eth(ip4("10.0.0.1", "10.0.0.2", 6, tcp(1, 2, 3, 4, 2, opts=LINUX_SYN_OPTS))),
          eth(ip6("2001:db8::1", "2001:db8::2", 6, tcp(1, 2, 3, 4, 0x10, opts=NNT, payload=b"q" * 20)), et=0x86DD),
          eth(ip4("10.0.0.1", "10.0.0.2", 1, icmp(3, 4, b"\x00\x00\x05\x00", ip4("1.1.1.1", "2.2.2.2", 17, udp(3, 4))))),
          eth(ip6("2001:db8::1", "2001:db8::2", 4, ip4("10.0.0.1", "10.0.0.2", 17, udp(1, 2, b"t"))), et=0x86DD)]),
    shb() + idb(1) + idb(101, tsresol=9) + epb(0, 5, eth(ip4("10.0.0.1", "10.0.0.2", 17, udp(1, 2, b"x"))))
    + epb(1, 6, ip4("10.0.0.1", "10.0.0.2", 1, icmp(8, 0, b"\x00\x01\x00\x02")))
    + block(5, struct.pack("<III", 0, 0, 0) + opt(5, struct.pack("<Q", 1)) + opt(0, b"")),
]


@SETTINGS
@given(st.binary(max_size=400))
def test_random_bytes_never_crash(data):
    read_both(data)


@SETTINGS
@given(st.binary(max_size=300))
def test_random_bytes_behind_a_valid_header_never_crash(body):
    read_both(BASE[0][:24] + body)
    read_both(BASE[1][:28] + body)


@st.composite
def mutated(draw):
    data = bytearray(draw(st.sampled_from(BASE)))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "delete", "byte"]))
        if not data:
            break
        i = draw(st.integers(0, len(data) - 1))
        if op == "flip":
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "byte":
            data[i] = draw(st.integers(0, 255))
        elif op == "cut":
            del data[i:]
        elif op == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
        else:
            del data[i : i + draw(st.integers(1, 8))]
    return bytes(data)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_captures_never_crash_and_both_decoders_agree(data):
    read_both(data)


# --------------------------------------------------------------- the corpus


@pytest.mark.skipif(not CORPUS.is_dir(), reason=f"corpus {CORPUS} is not here")
def test_every_corpus_file_reads_or_is_refused_and_decoders_agree():
    files = sorted(p for p in CORPUS.iterdir() if p.is_file())
    read = refused = rows = quotes = 0
    for f in files:
        try:
            a = read_capture(f)
        except InputError as exc:
            assert "\n" not in str(exc)
            refused += 1
            continue
        read += 1
        rows += len(a.packets)
        b = read_capture(f, fast=False)
        assert_same_rows(a.packets, b.packets)
        assert_same_rows(a.quoted, b.quoted)
        quotes += len(a.quoted)
        check_consistent(f.read_bytes(), a)
        assert_addresses_indexed(a), assert_addresses_indexed(b)
    assert read > 800 and rows > 10000 and quotes > 20, (read, refused, rows, quotes)


# --------------------------------------------------------------- other encoders


def test_synth_packets_read_back_with_their_fields(tmp_path):
    """rig.capture.synth (the analysis tests' encoder) and the reader agree on fields."""
    from rig.capture import synth

    pkts = [
        synth.Pkt("192.168.1.10", "198.51.100.10", 6, ttl=61, ip_id=7, sport=40000, dport=80, seq=123, flags=synth.SYN,
                  mss=1460, wscale=7, sackok=True, ts=(5, 0)),
        synth.Pkt("2001:db8::1", "2001:db8::2", 6, sport=1, dport=2, seq=9, ack=10, flags=synth.ACK, ts=(1, 2),
                  payload=b"x" * 100),
        synth.Pkt("192.168.1.10", "198.51.100.10", 17, sport=5, dport=53, payload=b"nonce"),
        synth.Pkt("192.168.1.10", "198.51.100.10", 1, icmp_type=8, icmp_id=3, icmp_seq=4, payload=b"p" * 56),
        synth.Pkt("192.168.1.10", "198.51.100.10", 6, sport=1, dport=2, flags=synth.ACK, payload=b"t" * 3000,
                  zero_total_length=True, ts=(1, 1)),
    ]
    for lt in (synth.LINKTYPE_ETHERNET, synth.LINKTYPE_SLL, synth.LINKTYPE_RAW, synth.LINKTYPE_NULL):
        f = tmp_path / f"lt{lt}.pcap"
        synth.write_pcap(f, [(i * 1000, synth.frame(synth.encode(p), lt)) for i, p in enumerate(pkts)], linktype=lt)
        cap = read_both(f.read_bytes())
        p = cap.packets
        assert cap.undecoded == {}, (lt, cap.undecoded)
        assert list(p["sport"]) == [40000, 1, 5, 0, 1] and list(p["icmp_seq"]) == [0, 0, 0, 4, 0]
        assert (p["mss"][0], p["wscale"][0], p["sackok"][0], p["tsval"][1], p["tsecr"][1]) == (1460, 7, 1, 1, 2)
        assert list(p["plen"]) == [0, 100, 5, 56, 3000] and p["ttl"][0] == 61
        assert cap.payload(2) == b"nonce"
    frags = synth.fragments(synth.Pkt("10.0.0.1", "10.0.0.2", 17, sport=1, dport=2, payload=b"f" * 3000), 1500)
    f = tmp_path / "frag.pcapng"
    synth.write_pcapng(f, [(1, "eth0"), (101, "tun0")], [(0, 1, synth.frame(frags[0])), (1, 2, frags[1]), (1, 3, frags[2])],
                       drops={1: 3}, tsresol_ns=True)
    cap = read_both(f.read_bytes())
    assert list(cap.packets["frag"]) == [1, 3, 2] and cap.undecoded == {"FRAGMENT": 2} and cap.kernel_drops == 3


def test_bench_generator_captures_decode_identically():
    """The bench's vectorised writer: every row claimed by the fast path, same as the reference."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_diff", Path(__file__).parent.parent / "bench" / "diff.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    tr = bench.traffic(6000)
    p = bench.point(tr, "server")
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        f = os.path.join(d, "s.pcap")
        bench.write_pcap(f, p)
        data = Path(f).read_bytes()
    cap = read_both(data)
    pk = cap.packets
    assert len(pk) == p["n"] and cap.undecoded == {}
    assert set(np.unique(pk["proto"])) == {1, 6, 17, 58}
    syn = pk[(pk["flags"] == 2)]
    assert set(np.unique(syn["mss"])) == {1400, 1460} and (syn["wscale"] == 7).all()
    assert (pk["seq"][pk["proto"] == 6] == p["seq"][p["proto"] == 6]).all()
