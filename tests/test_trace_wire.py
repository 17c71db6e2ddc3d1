"""The trace's packet builders and readers (rig.trace.wire), on bytes."""

from __future__ import annotations

import struct
import sys

import pytest

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


# /proc/net/tcp of the seed lab's server right after a probe's SYN-ACKs were lost
# (recorded on this x86 machine: addresses print as 32-bit words in host order)
_TABLE = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0A6433C6:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 11532659 1 0 100 0 0 10 0
   1: 0A6433C6:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 11532210 2 0 100 0 0 10 0
   2: 0A6433C6:0050 027100CB:B758 03 00000000:00000000 01:000000B5 00000001     0        0 0 0 0
   3: 0A6433C6:AA16 0A6433C6:0050 06 00000000:00000000 03:000016F7 00000000     0        0 0 3 0
"""


@pytest.mark.skipif(sys.byteorder != "little", reason="the table was recorded on a little-endian machine")
def test_the_server_knows_it_holds_the_probes_connection_half_open():
    """Where the probe's SYN-ACKs were lost the server keeps the connection in SYN_RECV
    and answers a new SYN on it with no SYN-ACK: the responder does not wait for one."""
    assert wire.half_open(_TABLE, DST, 80, "203.0.113.2", 46936)
    assert not wire.half_open(_TABLE, DST, 80, "203.0.113.2", 46937)  # another mapping
    assert not wire.half_open(_TABLE, DST, 22, "203.0.113.2", 46936)
    assert not wire.half_open(_TABLE, DST, 80, DST, 43542)  # TIME_WAIT, not half-open
    assert not wire.half_open(_TABLE.replace(" 03 ", " 01 "), DST, 80, "203.0.113.2", 46936)  # established
    assert not wire.half_open("", DST, 80, "203.0.113.2", 46936)


def _seen(src: str, dst: str, sport: int, dport: int, flags: int) -> bytes:
    return wire.ipv4(src, dst, wire.TCP, wire.tcp(src, dst, sport, dport, 7, 8, flags), 64, 0)


def test_the_kernels_first_answer_to_the_request_ends_the_wait_for_its_syn_ack():
    """A half-open 5-tuple draws a bare ACK, a closed port a RST: either is the kernel's
    answer (no SYN-ACK will follow); only a SYN-ACK gives the copies its sequence number."""
    req = {"src": "203.0.113.2", "sport": 46936, "dst": DST, "dport": 80}
    keep = wire._kernel_answer(req)
    out = wire.PACKET_OUTGOING
    ack = keep(_seen(DST, "203.0.113.2", 80, 46936, wire.ACK), (None, None, out))
    synack = keep(_seen(DST, "203.0.113.2", 80, 46936, wire.SYN | wire.ACK), (None, None, out))
    assert ack is not None and synack is not None
    assert keep(_seen(DST, "203.0.113.2", 80, 46936, wire.ACK), (None, None, 0)) is None  # arriving, not sent
    assert keep(_seen(DST, "203.0.113.2", 80, 40000, wire.ACK), (None, None, out)) is None  # another client port
    assert keep(_seen(DST, "203.0.113.2", 8080, 46936, wire.ACK), (None, None, out)) is None
    assert wire._kernel_synack([synack]) == synack
    assert wire._kernel_synack([ack]) is None and wire._kernel_synack([]) is None
