"""Golden tests of the capture reader: small captures built byte by byte here (an
encoder independent of rig.capture.synth), with the expected fields written out."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from rig.capture import read_capture, read_capture_bytes
from rig.capture.table import (ACK, FRAG_LATER, FRAG_MF, QUOTED_DTYPE, SYN, Undecoded, addr_bytes, format_addr,
                               payload_hash)
from rig.errors import InputError

# ------------------------------------------------------------------ tiny encoder


def ip4(src, dst, proto, body, ttl=64, ip_id=0x1234, tos=0, df=True, mf=False, frag_off=0, tl=None, opts=b""):
    ihl = (20 + len(opts)) // 4
    fl = (0x4000 if df else 0) | (0x2000 if mf else 0) | frag_off
    total = 20 + len(opts) + len(body) if tl is None else tl
    h = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, tos, total, ip_id, fl, ttl, proto, 0,
                    addr_bytes(src)[12:], addr_bytes(dst)[12:])
    return h + opts + body


def ip6(src, dst, nh, body, hlim=64, tc=0, plen=None):
    vtf = (6 << 28) | (tc << 20)
    return struct.pack("!IHBB16s16s", vtf, len(body) if plen is None else plen, nh, hlim,
                       addr_bytes(src), addr_bytes(dst)) + body


def tcp(sport, dport, seq, ack, flags, win=65535, opts=b"", payload=b""):
    opts += b"\x00" * (-len(opts) % 4)
    doff = (20 + len(opts)) // 4
    return struct.pack("!HHIIBBHHH", sport, dport, seq, ack, doff << 4 | (flags >> 8), flags & 0xFF,
                       win, 0, 0) + opts + payload


def udp(sport, dport, payload=b""):
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def icmp(t, code, rest, payload=b""):
    return struct.pack("!BBH", t, code, 0) + rest + payload


LINUX_SYN_OPTS = bytes.fromhex("020405b4") + b"\x04\x02" + b"\x08\x0a" + struct.pack("!II", 1000, 0) + b"\x01\x03\x03\x07"
NNT = b"\x01\x01\x08\x0a" + struct.pack("!II", 77, 66)


def eth(payload, et=0x0800, tags=()):
    h = b"\x02" * 6 + b"\x04" * 6
    for tpid, vid in tags:
        h += struct.pack("!HH", tpid, vid)
    return h + struct.pack("!H", et) + payload


def pcap(frames, linktype=1, ns=False, bo="<", snaplen=65535, caplens=None):
    magic = 0xA1B23C4D if ns else 0xA1B2C3D4
    out = struct.pack(bo + "IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype)
    for i, f in enumerate(frames):
        wire = len(f)
        cut = f if caplens is None else f[: caplens[i]]
        out += struct.pack(bo + "IIII", 1_700_000_000 + i, 5 + i, len(cut), wire) + cut
    return out


def block(bt, body, bo="<"):
    body += b"\x00" * (-len(body) % 4)
    n = len(body) + 12
    return struct.pack(bo + "II", bt, n) + body + struct.pack(bo + "I", n)


def opt(code, val, bo="<"):
    return struct.pack(bo + "HH", code, len(val)) + val + b"\x00" * (-len(val) % 4)


def shb(bo="<"):
    return block(0x0A0D0D0A, struct.pack(bo + "IHHq", 0x1A2B3C4D, 1, 0, -1), bo)


def idb(lt, tsresol=None, name=None, bo="<", snap=0):
    opts = b""
    if name:
        opts += opt(2, name.encode(), bo)
    if tsresol is not None:
        opts += opt(9, bytes([tsresol]), bo)
    if opts:
        opts += opt(0, b"", bo)
    return block(1, struct.pack(bo + "HHI", lt, 0, snap) + opts, bo)


def epb(iface, ticks, data, bo="<", wire=None):
    return block(6, struct.pack(bo + "IIIII", iface, ticks >> 32, ticks & 0xFFFFFFFF, len(data),
                                len(data) if wire is None else wire) + data, bo)


def row(cap, i=0):
    return cap.packets[i]


C4, S4 = "192.168.1.10", "198.51.100.10"
C6, S6 = "2001:db8::10", "2001:db8:1::80"

# ------------------------------------------------------------------ tests


def test_ethernet_ipv4_linux_syn_every_field():
    pkt = eth(ip4(C4, S4, 6, tcp(40312, 80, 0xDEADBEEF, 0, SYN, 64240, LINUX_SYN_OPTS), ttl=61, tos=0x2A))
    cap = read_capture_bytes(pcap([pkt]))
    r = row(cap)
    assert cap.format == "pcap" and cap.undecoded == {} and not cap.truncated_tail
    assert (r["frame"], r["status"], r["linktype"], r["ipver"], r["tunnel"]) == (1, 0, 1, 4, 0)
    assert format_addr(r["src"]) == C4 and format_addr(r["dst"]) == S4
    assert (r["ttl"], r["tos"], r["ip_id"], r["df"], r["frag"], r["proto"]) == (61, 0x2A, 0x1234, 1, 0, 6)
    assert (r["sport"], r["dport"], r["seq"], r["ack"], r["flags"], r["win"]) == (40312, 80, 0xDEADBEEF, 0, SYN, 64240)
    assert (r["mss"], r["wscale"], r["sackok"], r["has_ts"], r["tsval"], r["tsecr"]) == (1460, 7, 1, 1, 1000, 0)
    assert r["optsig"] != 0 and r["icmp_type"] == -1
    assert (r["ip_len"], r["plen"], r["pcaplen"], r["poff"], r["phash"]) == (60, 0, 0, 0, 0)
    assert r["ts_ns"] == 1_700_000_000 * 10**9 + 5 * 1000


def test_optsig_is_the_same_for_the_same_layout_and_differs_otherwise():
    a = eth(ip4(C4, S4, 6, tcp(1, 2, 3, 4, ACK, opts=NNT)))
    b = eth(ip4(S4, C4, 6, tcp(9, 8, 7, 6, ACK, opts=b"\x01\x01\x08\x0a" + struct.pack("!II", 5, 5))))
    c = eth(ip4(C4, S4, 6, tcp(1, 2, 3, 4, ACK, opts=b"\x08\x0a" + struct.pack("!II", 5, 5) + b"\x01\x01")))
    p = read_capture_bytes(pcap([a, b, c])).packets
    assert p["optsig"][0] == p["optsig"][1] != p["optsig"][2]
    assert list(p["tsval"]) == [77, 5, 5] and list(p["tsecr"]) == [66, 5, 5]


def test_payload_offset_and_hash_point_into_the_file():
    data = b"GET /?nonce=abc HTTP/1.1\r\n\r\n"
    cap = read_capture_bytes(pcap([eth(ip4(C4, S4, 6, tcp(1, 80, 10, 20, ACK | 0x08, opts=NNT, payload=data)))]))
    r = row(cap)
    assert (r["plen"], r["pcaplen"]) == (len(data), len(data))
    assert cap.payload(0) == data and r["phash"] == payload_hash(data)


def test_nanosecond_big_endian_pcap():
    cap = read_capture_bytes(pcap([eth(ip4(C4, S4, 17, udp(53, 5353, b"x")))], ns=True, bo=">"))
    r = row(cap)
    assert cap.format == "pcap-ns" and r["ts_ns"] == 1_700_000_000 * 10**9 + 5
    assert (r["proto"], r["sport"], r["dport"], r["plen"]) == (17, 53, 5353, 1)


@pytest.mark.parametrize("tags,vlan", [((), 0), (((0x8100, 0x2064),), 100), (((0x88A8, 10), (0x8100, 20)), 10),
                                        (((0x9100, 30), (0x8100, 40)), 30)])
def test_vlan_and_qinq(tags, vlan):
    cap = read_capture_bytes(pcap([eth(ip4(C4, S4, 6, tcp(1, 2, 3, 4, SYN)), tags=tags)]))
    assert row(cap)["vlan"] == vlan and row(cap)["status"] == 0 and row(cap)["sport"] == 1


@pytest.mark.parametrize("ppp,inner", [(0x0021, ip4(C4, S4, 1, icmp(8, 0, struct.pack("!HH", 7, 9)))),
                                       (0x0057, ip6(C6, S6, 58, icmp(128, 0, struct.pack("!HH", 7, 9))))])
def test_pppoe_session(ppp, inner):
    pppoe = struct.pack("!BBHHH", 0x11, 0, 0x1234, len(inner) + 2, ppp) + inner
    r = row(read_capture_bytes(pcap([eth(pppoe, et=0x8864)])))
    assert r["status"] == 0 and (r["icmp_id"], r["icmp_seq"]) == (7, 9)
    assert r["ipver"] == (4 if ppp == 0x21 else 6)


def test_pppoe_non_ip_is_counted():
    pppoe = struct.pack("!BBHHH", 0x11, 0, 1, 4, 0xC021) + b"\x01\x01\x00\x04"
    cap = read_capture_bytes(pcap([eth(pppoe, et=0x8864), eth(b"\x00" * 28, et=0x0806)]))
    assert cap.undecoded == {"NOT_IP": 2}


def test_linux_sll_and_sll2():
    ip = ip4(C4, S4, 17, udp(1000, 2000, b"hello"))
    sll = struct.pack("!HHH8sH", 0, 1, 6, b"\x02" * 8, 0x0800) + ip
    sll2 = struct.pack("!HHIHBB8s", 0x0800, 0, 3, 1, 0, 6, b"\x02" * 8) + ip
    for lt, f in ((113, sll), (276, sll2)):
        r = row(read_capture_bytes(pcap([f], linktype=lt)))
        assert (r["status"], r["linktype"], r["sport"], r["dport"], r["plen"]) == (0, lt, 1000, 2000, 5)


@pytest.mark.parametrize("lt", [101, 12, 14, 228, 229])
def test_raw_ip_link_types(lt):
    v4 = ip4(C4, S4, 6, tcp(5, 6, 7, 8, ACK))
    v6 = ip6(C6, S6, 6, tcp(5, 6, 7, 8, ACK))
    frames = {228: [v4], 229: [v6]}.get(lt, [v4, v6])
    cap = read_capture_bytes(pcap(frames, linktype=lt))
    assert cap.undecoded == {} and list(cap.packets["sport"]) == [5] * len(frames)
    # the wrong version for a version-specific link type is malformed, not guessed
    if lt in (228, 229):
        wrong = read_capture_bytes(pcap([v6 if lt == 228 else v4], linktype=lt))
        assert wrong.undecoded == {"MALFORMED": 1}


@pytest.mark.parametrize("lt,fam,bo", [(0, 2, "<"), (0, 2, ">"), (0, 24, "<"), (0, 28, ">"), (0, 30, "<"),
                                       (108, 2, ">"), (108, 30, "<")])
def test_bsd_null_and_loop(lt, fam, bo):
    ip = ip4(C4, S4, 17, udp(1, 2)) if fam == 2 else ip6(C6, S6, 17, udp(1, 2))
    r = row(read_capture_bytes(pcap([struct.pack(bo + "I", fam) + ip], linktype=lt)))
    assert r["status"] == 0 and r["ipver"] == (4 if fam == 2 else 6) and r["dport"] == 2


def test_ipv4_options_and_tso_length_zero():
    opts = b"\x94\x04\x00\x00"  # router alert
    a = eth(ip4(C4, S4, 6, tcp(1, 2, 3, 4, ACK, payload=b"z" * 100), opts=opts))
    b = eth(ip4(C4, S4, 6, tcp(1, 2, 3, 4, ACK, opts=NNT, payload=b"y" * 3000), tl=0))
    p = read_capture_bytes(pcap([a, b])).packets
    assert p["status"][0] == 0 and p["plen"][0] == 100 and p["sport"][0] == 1
    assert p["status"][1] == 0 and p["ip_len"][1] == 20 + 32 + 3000 and p["plen"][1] == 3000


def test_ipv6_extension_headers_before_tcp():
    hbh = bytes([43, 0]) + b"\x01\x04\x00\x00\x00\x00"  # hop-by-hop -> routing
    rt = bytes([60, 0, 0, 0]) + b"\x00" * 4  # routing -> dest opts
    do = bytes([6, 0]) + b"\x01\x04\x00\x00\x00\x00"  # dest opts -> tcp
    r = row(read_capture_bytes(pcap([eth(ip6(C6, S6, 0, hbh + rt + do + tcp(443, 5555, 1, 2, SYN | ACK)), et=0x86DD)])))
    assert (r["status"], r["proto"], r["sport"], r["flags"], r["ip_len"]) == (0, 6, 443, SYN | ACK, 40 + 24 + 20)


def test_ip_fragments():
    body = tcp(1, 2, 3, 4, ACK, payload=b"a" * 100)
    first = eth(ip4(C4, S4, 6, body[:64], df=False, mf=True, ip_id=77))
    later = eth(ip4(C4, S4, 6, body[64:], df=False, frag_off=8, ip_id=77))
    fh = struct.pack("!BBHI", 6, 0, 0 | 1, 0xABCDEF)  # offset 0, M=1
    fh2 = struct.pack("!BBHI", 6, 0, (8 << 3), 0xABCDEF)
    v6first = eth(ip6(C6, S6, 44, fh + body[:64]), et=0x86DD)
    v6later = eth(ip6(C6, S6, 44, fh2 + body[64:]), et=0x86DD)
    p = read_capture_bytes(pcap([first, later, v6first, v6later])).packets
    assert list(p["frag"]) == [FRAG_MF, FRAG_LATER, FRAG_MF, FRAG_LATER]
    assert list(p["status"]) == [Undecoded.TRUNCATED_PAYLOAD * 0, Undecoded.FRAGMENT, 0, Undecoded.FRAGMENT]
    assert p["sport"][0] == 1 and p["sport"][1] == 0 and p["sport"][2] == 1
    assert p["plen"][0] == 44 and p["ip_id"][2] == 0xABCDEF and p["ip_id"][0] == 77


def test_ipv4_in_ipv6_tunnel_describes_the_inner_packet():
    inner = ip4("192.0.2.1", S4, 6, tcp(40000, 80, 9, 0, SYN), ttl=63, ip_id=4242)
    r = row(read_capture_bytes(pcap([eth(ip6(C6, S6, 4, inner, hlim=10), et=0x86DD)])))
    assert (r["status"], r["tunnel"], r["ipver"], r["ttl"], r["ip_id"], r["sport"]) == (0, 1, 4, 63, 4242, 40000)
    assert format_addr(r["src"]) == "192.0.2.1" and format_addr(r["dst"]) == S4


@pytest.mark.parametrize("fast", [True, False])
def test_icmp_echo_and_errors_quote_the_packet(fast):
    echo = eth(ip4(C4, S4, 1, icmp(8, 0, struct.pack("!HH", 0x77, 3), b"nonce-1")))
    quoted = ip4(C4, S4, 6, tcp(40312, 80, 0x01020304, 0, ACK), ip_id=999)[:28]
    need = eth(ip4("10.0.0.1", C4, 1, icmp(3, 4, struct.pack("!HH", 0, 1400), quoted)))
    q_echo = ip4(C4, S4, 1, icmp(8, 0, struct.pack("!HH", 0x77, 4)))
    tex = eth(ip4("10.0.0.1", C4, 1, icmp(11, 0, b"\x00" * 4, q_echo)))
    q6 = ip6(C6, S6, 17, udp(5000, 53, b"q" * 10))
    ptb = eth(ip6("2001:db8::1", C6, 58, icmp(2, 0, struct.pack("!I", 1280), q6)), et=0x86DD)
    cap = read_capture_bytes(pcap([echo, need, tex, ptb]), fast=fast)
    p = cap.packets
    assert list(cap.quoted["row"]) == [1, 2, 3]  # the errors only, by row
    q = cap.quoted_at(np.arange(len(p)))
    assert (p["icmp_type"][0], p["icmp_id"][0], p["icmp_seq"][0], p["plen"][0]) == (8, 0x77, 3, 7)
    assert q[0].tobytes() == bytes(QUOTED_DTYPE.itemsize)  # row 0, the echo: quotes nothing
    assert (p["icmp_type"][1], p["icmp_code"][1], q["icmp_mtu"][1], q["q_proto"][1]) == (3, 4, 1400, 6)
    assert (q["q_sport"][1], q["q_dport"][1], q["q_seq"][1], q["q_ip_id"][1]) == (40312, 80, 0x01020304, 999)
    assert format_addr(q["q_src"][1]) == C4 and format_addr(q["q_dst"][1]) == S4
    assert p["icmp_type"][2] == 11 and q["q_seq"][2] == (0x77 << 16 | 4) and q["q_proto"][2] == 1
    assert (p["icmp_type"][3], q["icmp_mtu"][3], q["q_proto"][3], q["q_dport"][3]) == (2, 1280, 17, 53)
    assert format_addr(q["q_src"][3]) == C6
    assert cap.quoted_at(3).tobytes() == q[3].tobytes() and cap.quoted_at(2)["row"] == 2  # one row, one record


def test_snaplen_cuts_payload_or_header():
    f = eth(ip4(C4, S4, 6, tcp(1, 2, 3, 4, ACK, opts=NNT, payload=b"p" * 500)))
    cap = read_capture_bytes(pcap([f, f, f], caplens=[100, 40, 10], snaplen=100))
    p = cap.packets
    assert list(p["status"]) == [Undecoded.TRUNCATED_PAYLOAD, Undecoded.TRUNCATED_HEADER, Undecoded.TRUNCATED_HEADER]
    assert (p["plen"][0], p["pcaplen"][0]) == (500, 100 - 14 - 20 - 32)
    assert p["ttl"][1] == 64 and format_addr(p["src"][1]) == C4  # IP decoded before the cut TCP header
    assert cap.undecoded == {"TRUNCATED_PAYLOAD": 1, "TRUNCATED_HEADER": 2}
    assert p["wirelen"][0] == len(f) and p["caplen"][0] == 100


def test_unknown_link_type_and_unsupported_l4_are_counted():
    cap = read_capture_bytes(pcap([b"\x00" * 40, b"\x01" * 10], linktype=147))
    assert cap.undecoded == {"UNKNOWN_LINKTYPE": 2} and len(cap.packets) == 2
    gre = read_capture_bytes(pcap([eth(ip4(C4, S4, 47, b"\x00" * 8))]))
    assert gre.undecoded == {"UNSUPPORTED_L4": 1} and row(gre)["proto"] == 47


def test_file_cut_mid_record_keeps_complete_records():
    f = eth(ip4(C4, S4, 17, udp(1, 2, b"x" * 50)))
    data = pcap([f, f, f])
    cap = read_capture_bytes(data[:-30])
    assert len(cap.packets) == 2 and cap.truncated_tail and "byte" in cap.tail_note


def test_pcapng_interfaces_resolutions_sections_and_drops():
    v4 = eth(ip4(C4, S4, 6, tcp(1, 2, 3, 4, SYN)))
    raw6 = ip6(C6, S6, 17, udp(7, 8, b"abc"))
    isb = block(5, struct.pack("<III", 0, 0, 0) + opt(5, struct.pack("<Q", 42)) + opt(0, b""))
    spb = block(3, struct.pack("<I", len(v4)) + v4)
    opb = block(2, struct.pack("<HHIIII", 0, 0, 0, 1_000_000, len(v4), len(v4)) + v4)
    sec1 = (shb() + idb(1, name="eth0") + idb(101, tsresol=9) + epb(0, 1_700_000_000_000_001, v4)
            + epb(1, 1_700_000_000_000_000_007, raw6) + spb + opb + isb)
    # a second section, big-endian, with its own interface numbering and 2^-10 s ticks
    sec2 = shb(">") + idb(229, tsresol=0x8A, bo=">") + epb(0, 3 * 1024 + 512, raw6, bo=">")
    cap = read_capture_bytes(sec1 + sec2)
    p = cap.packets
    assert cap.format == "pcapng" and len(p) == 5 and cap.undecoded == {}
    assert [i.linktype for i in cap.interfaces] == [1, 101, 229]
    assert cap.interfaces[0].name == "eth0" and cap.interfaces[1].ts_resolution_ns == 1
    assert cap.interfaces[0].kernel_drops == 42 and cap.kernel_drops == 42
    assert list(p["iface"]) == [0, 1, 0, 0, 2] and list(p["linktype"]) == [1, 101, 1, 1, 229]
    assert p["ts_ns"][0] == 1_700_000_000_000_001_000 and p["ts_ns"][1] == 1_700_000_000_000_000_007
    assert p["ts_ns"][3] == 1_000_000 * 1000 and p["ts_ns"][4] == 3_500_000_000
    assert list(p["sport"]) == [1, 7, 1, 1, 7] and list(p["frame"]) == [1, 2, 3, 4, 5]


def test_pcapng_unknown_interface_and_cut_block():
    v4 = eth(ip4(C4, S4, 6, tcp(1, 2, 3, 4, SYN)))
    data = shb() + idb(1) + epb(5, 0, v4) + epb(0, 0, v4)
    cap = read_capture_bytes(data + epb(0, 0, v4)[:-8])
    assert cap.undecoded == {"MALFORMED": 1} and len(cap.packets) == 2 and cap.truncated_tail


@pytest.mark.parametrize("data,msg", [
    (b"", "not a capture"), (b"\x00\x01", "not a capture"), (b"hello world, not a capture", "magic"),
    (b"\xd4\xc3\xb2\xa1\x02\x00", "cut short"), (struct.pack("<IHHiIII", 0xA1B2C3D4, 3, 0, 0, 0, 0, 1), "version"),
    (b"\x0a\x0d\x0d\x0a\x1c\x00\x00\x00", "cut short"),
    (struct.pack("<II", 0x0A0D0D0A, 28) + b"\x00" * 20, "byte-order"),
])
def test_unusable_files_raise_one_line_input_error(data, msg):
    with pytest.raises(InputError) as ei:
        read_capture_bytes(data, "f.pcap")
    assert msg in str(ei.value) and "\n" not in str(ei.value) and str(ei.value).startswith("f.pcap")


def test_missing_unreadable_and_directory(tmp_path):
    for path in (tmp_path / "nope.pcap", tmp_path):
        with pytest.raises(InputError):
            read_capture(path)
    empty = tmp_path / "empty.pcap"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match="not a capture"):
        read_capture(empty)


def test_read_capture_maps_the_file(tmp_path):
    f = tmp_path / "a.pcap"
    data = b"payload-bytes"
    f.write_bytes(pcap([eth(ip4(C4, S4, 17, udp(1, 2, data)))]))
    cap = read_capture(f)
    assert cap.payload(0) == data and cap.path == str(f)
    assert np.array_equal(cap.packets, read_capture(f, fast=False).packets)


def test_out_of_range_microseconds_are_counted_not_guessed():
    f = eth(ip4(C4, S4, 17, udp(1, 2)))
    data = bytearray(pcap([f, f]))
    struct.pack_into("<I", data, 24 + 16 + len(f) + 4, 1_500_000)  # second record: 1.5 s of "microseconds"
    cap = read_capture_bytes(bytes(data))
    assert cap.bad_timestamps == 1 and cap.undecoded == {}
    assert cap.packets["ts_ns"][1] == (1_700_000_001 + 1) * 10**9 + 500_000_000


def test_a_pipe_is_read_too(tmp_path):
    import os
    import threading

    fifo = tmp_path / "cap.fifo"
    os.mkfifo(fifo)
    data = pcap([eth(ip4(C4, S4, 17, udp(1, 2, b"through a pipe")))])
    writer = threading.Thread(target=lambda: fifo.write_bytes(data))
    writer.start()
    cap = read_capture(fifo)
    writer.join()
    assert cap.payload(0) == b"through a pipe"


def test_ip_length_beyond_the_wire_is_malformed_not_truncated():
    lie4 = eth(ip4(C4, S4, 17, udp(1, 2, b"x" * 10), tl=900))  # not cut by snaplen: the header lies
    lie6 = eth(ip6(C6, S6, 17, udp(1, 2, b"x" * 10), plen=900), et=0x86DD)
    cut = eth(ip4(C4, S4, 17, udp(1, 2, b"x" * 900)))
    cap = read_capture_bytes(pcap([lie4, lie6, cut], caplens=[len(lie4), len(lie6), 60]))
    p = cap.packets
    assert list(p["status"]) == [Undecoded.MALFORMED, Undecoded.MALFORMED, Undecoded.TRUNCATED_PAYLOAD]
    assert p["ttl"][0] == 64 and p["ip_len"][1] == 940 and p["plen"][2] == 900
