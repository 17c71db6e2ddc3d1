"""Matching across NATs: rewritten ports and echo ids, clamped MSS, stripped options,
rewritten ISNs, retransmissions, IPv6, scanners at the server, unrelated client traffic."""

from __future__ import annotations

import random

from rig.capture.synth import LINKTYPE_SLL, Path, Pkt, tcp_seg
from rig.capture.table import ACK, PSH
from rig.capture.synth_capture import windows_of

from tests._analysis_scenarios import by_id, changes, handshake, ping, run, scanner_noise, syn_only, tcp_delivered, udp


def _random_ports(seed: int):
    rng = random.Random(seed)
    return lambda p: rng.randrange(1024, 65535)


def test_fully_random_ports_and_rewritten_echo_ids(tmp_path):
    w = Path(port_map=_random_ports(7), echo_id_map=lambda i: (i * 7919 + 13) & 0xFFFF)
    tcp_delivered(w, 40000, 111, 222)
    tcp_delivered(w, 40001, 333, 444)
    ping(w, 1)
    udp(w, 50000, 5)
    v = run(w, tmp_path)
    e = by_id(v)
    assert [x.outcome for x in v.exchanges] == ["delivered"] * 4
    for xid, sport in (("tcp-1", 40000), ("tcp-2", 40001)):
        mapped = e[xid].seen_at_server_as
        assert mapped.startswith("203.0.113.2:") and mapped == f"203.0.113.2:{w.public_sport(sport)}"
    assert e["udp-1"].seen_at_server_as == f"203.0.113.2:{w.public_sport(50000)}"
    idc = changes(e["icmp-1"], "icmp.id", "out")[0]
    assert (idc.client, idc.server) == (77, (77 * 7919 + 13) & 0xFFFF)


def test_mss_clamp_and_stripped_sack(tmp_path):
    w = Path(mss_clamp=1414, strip_sack=True)
    tcp_delivered(w, 40000, 1, 2)
    v = run(w, tmp_path)
    t = v.exchanges[0]
    mss = changes(t, "tcp.mss", "out")[0]
    assert (mss.client, mss.server, mss.note) == (1460, 1414, "clamped 1460->1414")
    back = changes(t, "tcp.mss", "back")[0]  # the server's MSS clamped on its way back
    assert (back.server, back.client) == (1460, 1414)
    opts = changes(t, "tcp.options", "out")[0]
    assert "removed SACK-permitted" in opts.note
    assert "SACK-permitted" in opts.client and "SACK-permitted" not in opts.server
    assert "clamps the TCP MSS" in v.diagnosis.summary


def test_dscp_ecn_and_ip_id_changes(tmp_path):
    w = Path()
    syn = w.syn(40000, 5, tos=0xB8 | 1, ip_id=4000)
    ss = w.nat_out(syn)
    w.out(syn, server_sees=[Pkt(**{**ss.__dict__, "tos": 0, "ip_id": 99})])
    w.back(w.synack(ss, 6))
    v = run(w, tmp_path)
    fields = {c.field: c for c in v.exchanges[0].changes if c.direction == "out"}
    assert (fields["ip.dscp"].client, fields["ip.dscp"].server) == (46, 0)
    assert (fields["ip.ecn"].client, fields["ip.ecn"].server) == (1, 0)
    assert (fields["ip.id"].client, fields["ip.id"].server) == (4000, 99)


def test_isn_rewriting_path_still_matches(tmp_path):
    """A pf 'modulate state' NAT rewrites the client's sequence numbers."""
    w = Path(isn_delta_out=123_456_789)
    tcp_delivered(w, 40000, 1000, 2000)
    v = run(w, tmp_path)
    t = v.exchanges[0]
    assert t.outcome == "delivered", t.explanation
    isn = changes(t, "tcp.isn", "out")[0]
    assert (isn.client, isn.server) == (1000, 1000 + 123_456_789)


def test_retransmitted_syn_first_copy_lost(tmp_path):
    w = Path()
    tcp_delivered(w, 40000, 1000, 2000, syn_lost=2)
    v = run(w, tmp_path)
    t = v.exchanges[0]
    assert t.outcome == "delivered"
    assert len(t.frames_at("client")) == 9  # 3 SYNs + 6
    assert t.explanation.startswith("handshake completed after 2 lost SYNs;")
    assert len(t.frames_at("server")) == 7


def test_reused_port_gives_two_exchanges(tmp_path):
    w = Path()
    tcp_delivered(w, 40000, 1000, 2000)
    syn_only(w, 40000, 5000, copies=2, arrive=False)
    ping(w, 1)
    v = run(w, tmp_path)
    e = by_id(v)
    assert (e["tcp-1"].outcome, e["tcp-2"].outcome) == ("delivered", "lost-outbound")


def test_ipv6_without_nat(tmp_path):
    w = Path(client="2001:db8::10", server="2001:db8:1::10", public="2001:db8::10", hops=5)
    tcp_delivered(w, 40000, 1, 2)
    ss = syn_only(w, 40001, 77, copies=3)
    for s in ss:
        w.back(w.synack(s, 99), arrive=False)
    ping(w, 1)
    v = run(w, tmp_path)
    e = by_id(v)
    assert (e["tcp-1"].outcome, e["tcp-2"].outcome, e["icmp-1"].outcome) == ("delivered", "lost-return", "delivered")
    assert e["tcp-1"].client == "[2001:db8::10]:40000"
    hops = changes(e["tcp-1"], "ip.ttl", "out")[0]
    assert hops.note == "5 hops"


def test_scanner_noise_at_the_server_changes_nothing(tmp_path):
    def scenario(noise: bool) -> Path:
        w = Path()
        if noise:
            scanner_noise(w, 30)
        tcp_delivered(w, 40000, 1, 2)
        if noise:
            scanner_noise(w, 30)
        for s in syn_only(w, 40001, 50, copies=3):
            w.back(w.synack(s, 60), arrive=False)
        ping(w, 1)
        if noise:
            scanner_noise(w, 30)
        return w

    quiet = run(scenario(False), tmp_path / "quiet")
    noisy = run(scenario(True), tmp_path / "noisy")
    strip = lambda v: [(e.id, e.outcome, e.seen_at_server_as, e.explanation, e.changes) for e in v.exchanges]  # noqa: E731
    assert strip(quiet) == strip(noisy)
    assert len(noisy.exchanges) == 3
    assert noisy.diagnosis.summary == quiet.diagnosis.summary


def test_unrelated_client_traffic_makes_no_exchanges(tmp_path):
    w = Path()
    tcp_delivered(w, 40000, 1, 2)
    # the client also talks to a resolver and another web site, which the server never sees
    w.at_client(Pkt(w.client, "9.9.9.9", 17, sport=53000, dport=53, payload=b"\x12\x34query"))
    w.at_client(Pkt("9.9.9.9", w.client, 17, sport=53, dport=53000, payload=b"\x12\x34answer"))
    w.at_client(Pkt(w.client, "93.184.216.34", 6, sport=41000, dport=443, seq=5, flags=0x02, mss=1460))
    w.at_client(Pkt(w.client, "1.1.1.1", 1, icmp_type=8, icmp_id=5, icmp_seq=1, payload=b"x"))
    ping(w, 1)
    v = run(w, tmp_path)
    assert [(e.id, e.server) for e in v.exchanges] == [("tcp-1", "198.51.100.10:80"), ("icmp-1", "198.51.100.10")]
    assert v.exit_code() == 0
    # naming the server explicitly gives the same
    v2 = run(w, tmp_path / "again", server_addr="198.51.100.10")
    assert [e.id for e in v2.exchanges] == ["tcp-1", "icmp-1"]


def test_dnat_server_address_differs_from_what_the_client_addressed(tmp_path):
    """Azure: the client probes the public IP; the VM sees its private address."""
    w = Path(server="20.1.2.3", server_seen_as="10.0.0.4")
    tcp_delivered(w, 40000, 1, 2)
    ping(w, 1)
    v = run(w, tmp_path)
    assert [(e.server, e.outcome) for e in v.exchanges] == [("20.1.2.3:80", "delivered"), ("20.1.2.3", "delivered")]


def test_router_capture_says_where_it_died(tmp_path):
    from rig.analysis.api import analyse
    from rig.capture import read_capture
    from rig.capture.synth import encoded, frame, write_pcap

    w = Path()
    syn = w.syn(40000, 4444)
    router_frames = []
    for _ in range(2):
        w.out(syn, arrive=False)
        router_frames.append((w.t0_ns + w._now, Pkt(**{**syn.__dict__, "src": "192.168.0.2", "ttl": 63})))
    ping(w, 1)
    c, s = w.write(tmp_path)
    r = tmp_path / "router.pcap"
    write_pcap(r, ((t, frame(b)) for t, b in encoded(router_frames)))
    v = analyse(read_capture(str(c)), read_capture(str(s)), extra={"router": read_capture(str(r))},
                windows=windows_of(w))
    t = by_id(v)["tcp-1"]
    assert t.outcome == "lost-outbound"
    assert "router saw SYN 2 times" in t.explanation
    assert len(t.frames_at("router")) == 2
    router_ev = [e for e in t.evidence if e.point == "router"]
    assert router_ev and router_ev[-1].summary.endswith("last seen here, never reached the server")
    assert not any("last seen" in e.summary for e in t.evidence if e.point == "client")
    assert [p.name for p in v.capture_points] == ["client", "server", "router"]


def test_sll_and_raw_link_types(tmp_path):
    w = Path()
    tcp_delivered(w, 40000, 1, 2)
    ping(w, 1)
    c, s = w.write(tmp_path, linktype=LINKTYPE_SLL, server_linktype=101)
    from rig.analysis.api import analyse
    from rig.capture import read_capture

    v = analyse(read_capture(str(c)), read_capture(str(s)))
    assert [e.outcome for e in v.exchanges] == ["delivered", "delivered"]


def test_payload_altered_on_the_way(tmp_path):
    w = Path()
    ss, ca = handshake(w, 40000, 10, 20)
    req = b"GET / HTTP/1.1\r\nAccept-Encoding: gzip\r\n\r\n"
    p = tcp_seg(w.client, w.server, 40000, 80, 11, 21, req, ACK | PSH)
    altered = w.nat_out(p)
    w.out(p, server_sees=[Pkt(**{**altered.__dict__, "payload": req.replace(b"gzip", b"none")})])
    w.back(tcp_seg(w.server, ss.src, 80, ss.sport, 21, 11 + len(req), b"HTTP/1.1 200 OK\r\n\r\n", ACK | PSH))
    w.out(tcp_seg(w.client, w.server, 40000, 80, 11 + len(req), 21 + 19, b"", ACK))
    v = run(w, tmp_path)
    t = v.exchanges[0]
    assert t.outcome == "delivered"
    assert changes(t, "payload", "out")


def test_nat_reusing_a_port_the_server_holds_in_time_wait(tmp_path):
    """A port-set NAT maps a new connection onto the public port of one that just closed:
    the server answers the SYN with an ACK of the old connection, the client resets."""
    w = Path(port_map=lambda p: 40001)
    tcp_delivered(w, 39000, 1000, 2000)
    ss = w.out(w.syn(39906, 340154710))
    stale = tcp_seg(w.server, ss.src, 80, 40001, 2000 + 1 + 21, 1000 + 1 + 40, b"", ACK)
    w.back(stale)
    w.out(tcp_seg(w.client, w.server, 39906, 80, 1000 + 41, 0, b"", 0x04))
    ping(w, 1)
    v = run(w, tmp_path)
    e = by_id(v)["tcp-2"]
    assert e.outcome == "refused"
    assert "the NAT reused a public port the server still held (TIME_WAIT); the client reset it" in e.explanation
    assert e.seen_at_server_as == "203.0.113.2:40001"
    assert "reused a public port the server still held for 1 connection" in v.diagnosis.summary


def test_client_capture_inside_a_map_e_tunnel(tmp_path):
    """The client point captures on the CE's IPv6 side: IPv4 inside IPv6 (MAP-E / DS-Lite)."""
    from rig.capture.synth import encoded, ip4in6

    w = Path()
    tcp_delivered(w, 40000, 1, 2)
    ping(w, 1)
    tunnelled = [(t, ip4in6(b, "2001:db8:ce::1", "2001:db8:b0::1") if b[0] >> 4 == 4 else b)
                 for t, b in encoded(w.client_frames)]
    w.client_frames[:] = tunnelled
    v = run(w, tmp_path)
    assert [(e.id, e.outcome) for e in v.exchanges] == [("tcp-1", "delivered"), ("icmp-1", "delivered")]
    assert v.exchanges[0].client == "192.168.1.10:40000"


def test_router_point_locates_lost_echo_replies(tmp_path):
    from rig.analysis.api import analyse
    from rig.capture import read_capture
    from rig.capture.synth import encoded, frame, write_pcap

    w = Path()
    router = []
    p = Pkt(w.client, w.server, 1, icmp_type=8, icmp_id=7, icmp_seq=1, payload=b"nonce-1")
    q = w.out(p)
    router.append((w.t0_ns + w._now, Pkt(**{**p.__dict__, "src": "192.168.0.2", "ttl": 63})))
    r = Pkt(q.dst, q.src, 1, icmp_type=0, icmp_id=q.icmp_id, icmp_seq=1, payload=q.payload)
    w.back(r, arrive=False)
    router.append((w.t0_ns + w._now, Pkt(**{**r.__dict__, "dst": "192.168.0.2", "ttl": 62})))  # got to the router
    c, s = w.write(tmp_path)
    rp = tmp_path / "router.pcap"
    write_pcap(rp, ((t, frame(b)) for t, b in encoded(router)))
    v = analyse(read_capture(str(c)), read_capture(str(s)), extra={"router": read_capture(str(rp))},
                windows=windows_of(w))
    e = v.exchanges[0]
    assert e.outcome == "lost-return"
    assert e.explanation.endswith("lost between the router and the client")
    assert "ICMP replies are lost between the router and the client" in v.diagnosis.summary
    last = [ev for ev in e.evidence if "last seen here" in ev.summary]
    assert [ev.point for ev in last] == ["router"] and e.frames_at("router")
