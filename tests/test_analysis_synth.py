"""The synth packet builder the analysis tests stand on: checksums (checked by tshark),
and what the real reader makes of its TSO frames, fragments, link types and pcapng."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from rig.capture import read_capture
from rig.capture.synth import (LINKTYPE_ETHERNET, LINKTYPE_NULL, LINKTYPE_RAW, LINKTYPE_SLL, Path, Pkt, encode,
                               fragments, frame, tcp_seg, write_pcap, write_pcapng)
from rig.capture.table import FRAG_LATER, FRAG_MF, Undecoded, format_addr

from tests._analysis_scenarios import ping, tcp_delivered, udp


def _every_kind(v6: bool) -> Path:
    w = Path(client="2001:db8::10", server="2001:db8:1::10", public="2001:db8::10") if v6 else Path()
    tcp_delivered(w, 40000, 1, 2)
    ping(w, 1)
    udp(w, 5000, 1)
    q = w.out(Pkt(w.client, w.server, 6, sport=50001, dport=80, seq=5, ack=1, flags=0x18, payload=b"y" * 1400))
    if v6:
        w.back(Pkt(w.server, q.src, 58, icmp_type=2, mtu=1280, quoted=q))
    else:
        w.back(Pkt(w.server, q.src, 1, icmp_type=3, icmp_code=4, mtu=1400, quoted=q))
    return w


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
@pytest.mark.parametrize("v6", [False, True])
def test_checksums_are_correct(tmp_path, v6):
    c, s = _every_kind(v6).write(tmp_path)
    for f in (c, s):
        out = subprocess.run(
            ["tshark", "-r", str(f), "-o", "tcp.check_checksum:TRUE", "-o", "ip.check_checksum:TRUE",
             "-o", "udp.check_checksum:TRUE", "-T", "fields", "-e", "ip.checksum.status", "-e", "tcp.checksum.status",
             "-e", "udp.checksum.status", "-e", "icmp.checksum.status", "-e", "icmpv6.checksum.status"],
            capture_output=True, text=True, timeout=60, check=True).stdout
        lines = out.strip().splitlines()
        assert len(lines) == 13
        for line in lines[:-1]:  # the last quotes a packet cut short: its inner TCP cannot be checked
            statuses = [x for field in line.split("\t") for x in field.split(",") if x]
            assert statuses and set(statuses) == {"1"}, line  # 1: good


def test_reader_sees_tso_frames_fragments_and_link_types(tmp_path):
    big = tcp_seg("198.51.100.10", "203.0.113.2", 80, 40000, 1, 1, bytes(7240), zero_total_length=True)
    dgram = Pkt("192.168.1.10", "198.51.100.10", 17, sport=5, dport=7, payload=bytes(3000), ip_id=77, df=False)
    frags = fragments(dgram, 1500)
    for lt in (LINKTYPE_ETHERNET, LINKTYPE_SLL, LINKTYPE_RAW, LINKTYPE_NULL):
        f = tmp_path / f"lt{lt}.pcap"
        write_pcap(f, [(1_000_000_000 + i, frame(b, lt)) for i, b in enumerate([encode(big), *frags])], lt,
                   nanosecond=(lt == LINKTYPE_SLL))
        t = read_capture(str(f)).packets
        assert t["ip_len"][0] == 20 + 20 + 7240 and t["plen"][0] == 7240
        assert (t["frag"][1], t["frag"][2], t["frag"][3]) == (FRAG_MF, FRAG_MF | FRAG_LATER, FRAG_LATER)
        assert t["status"][2] == t["status"][3] == Undecoded.FRAGMENT
        assert len(frags) == 3 and t["ip_id"][1] == 77


def test_pcapng_with_two_interfaces_and_drops(tmp_path):
    p = tmp_path / "two.pcapng"
    a = encode(Pkt("192.168.1.10", "198.51.100.10", 1, icmp_type=8, icmp_id=1, icmp_seq=1, payload=b"x"))
    b = encode(Pkt("2001:db8::1", "2001:db8::2", 58, icmp_type=128, icmp_id=1, icmp_seq=1, payload=b"x"))
    write_pcapng(p, [(LINKTYPE_ETHERNET, "eth0"), (LINKTYPE_RAW, "tun0")],
                 [(0, 5_000_000_000, frame(a)), (1, 5_000_001_000, b)], drops={0: 3}, tsresol_ns=True)
    cap = read_capture(str(p))
    assert cap.format == "pcapng" and cap.kernel_drops == 3
    assert [format_addr(x) for x in cap.packets["src"]] == ["192.168.1.10", "2001:db8::1"]
    assert cap.packets["ts_ns"].tolist() == [5_000_000_000, 5_000_001_000]
