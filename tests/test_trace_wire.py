"""The trace's packet builders and readers (rig.trace.wire), on bytes."""

from __future__ import annotations

import struct

from rig.checksum import internet_checksum
from rig.trace import wire
from rig.trace.records import FieldChange, Hop, Trace, quote_changes

SRC, DST = "192.168.1.10", "198.51.100.10"


def test_a_syn_reads_back_with_valid_checksums():
    seg = wire.tcp(SRC, DST, 40312, 80, 1000, 0, wire.SYN, wire.mss_option(1460))
    pkt = wire.ipv4(SRC, DST, wire.TCP, seg, ttl=3, ident=77, tos=0x2D)
    assert internet_checksum(pkt[:20]) == 0
    pseudo = wire._pseudo(SRC, DST, wire.TCP, len(seg))
    assert internet_checksum(pseudo + seg) == 0
    d = wire.parse(pkt)
    assert d["src"] == SRC and d["dst"] == DST and d["ttl"] == 3 and d["id"] == 77
    assert (d["dscp"], d["ecn"], d["df"]) == (0x2D >> 2, 1, True)
    assert (d["sport"], d["dport"], d["seq"], d["flags"], d["mss"], d["kinds"]) == (40312, 80, 1000, wire.SYN, 1460, [2])


def test_udp_and_echo_checksums_hold():
    dg = wire.udp(SRC, DST, 5000, 7, b"abc")
    assert internet_checksum(wire._pseudo(SRC, DST, wire.UDP, len(dg)) + dg) == 0
    echo = wire.icmp_echo(wire.ECHO_REQUEST, 9, 10, b"xyz")
    assert internet_checksum(echo) == 0
    d = wire.parse(wire.ipv4(SRC, DST, wire.ICMP, echo, 1, 1))
    assert (d["icmp_type"], d["icmp_id"], d["icmp_seq"]) == (8, 9, 10)


def test_a_time_exceeded_names_its_sender_and_the_quoted_packet_cut_short():
    syn = wire.ipv4("192.168.0.2", DST, wire.TCP, wire.tcp("192.168.0.2", DST, 1, 80, 5, 0, wire.SYN), 1, 3)
    quote = syn[:28]  # RFC 792's minimum: the header and 8 bytes
    icmp = struct.pack("!BBHI", wire.TIME_EXCEEDED, 0, 0, 0) + quote
    err = wire.icmp_error(wire.ipv4("192.168.0.1", SRC, wire.ICMP, icmp, 64, 0))
    assert err["from"] == "192.168.0.1" and err["type"] == wire.TIME_EXCEEDED
    assert err["quoted"]["seq"] == 5 and "mss" not in err["quoted"] and "flags" not in err["quoted"]
    assert wire.icmp_error(wire.ipv4(SRC, DST, wire.ICMP, wire.icmp_echo(8, 1, 1, b""), 64, 0)) is None


def test_quote_changes_compare_only_what_the_quote_holds():
    sent = {"src": SRC, "id": 1, "mss": 1460, "ttl": 3, "seq": 9}
    assert quote_changes(sent, {"src": SRC, "id": 1, "ttl": 1}) == ()
    assert quote_changes(sent, {"src": "192.168.0.2", "id": 1, "mss": 1414, "seq": 9}) == (
        FieldChange("tcp.mss", 1460, 1414), FieldChange("ip.src", SRC, "192.168.0.2"))


def test_a_trace_survives_json():
    t = Trace("out", "tcp", f"{SRC}:1", f"{DST}:80", 16,
              (Hop(1, "192.168.1.1", "time-exceeded", (FieldChange("tcp.mss", 1460, 1414),)), Hop(2, DST, "reply")),
              2, None, "tcp-1")
    assert Trace.from_dict(t.to_dict()) == t
    assert t.last_answer == t.hops[0] and t.reached
