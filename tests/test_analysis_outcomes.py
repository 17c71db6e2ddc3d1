"""Every outcome word, from captures the tests write (synth -> pcap -> read_capture -> analyse)."""

from __future__ import annotations

import numpy as np

from rig.analysis.api import analyse
from rig.capture import read_capture
from rig.capture.synth import ICMP_UNREACH, Path, Pkt, tcp_seg
from rig.capture.table import ACK, PSH, RST, SYN

from tests._analysis_scenarios import by_id, changes, handshake, ping, run, syn_only, tcp_delivered, udp


def test_delivered_through_nat_with_ttl_and_mapping(tmp_path):
    w = Path()
    tcp_delivered(w, 40312, 1_000_000, 9_000_000)
    ping(w, 1)
    udp(w, 50000, 1)
    v = run(w, tmp_path)
    e = by_id(v)
    assert [x.outcome for x in v.exchanges] == ["delivered"] * 3
    t = e["tcp-1"]
    assert (t.client, t.server, t.seen_at_server_as) == ("192.168.1.10:40312", "198.51.100.10:80", "203.0.113.2:40312")
    ttl = changes(t, "ip.ttl", "out")[0]
    assert (ttl.client, ttl.server, ttl.note) == (64, 61, "3 hops")
    back = changes(t, "ip.ttl", "back")[0]
    assert (back.client, back.server) == (61, 64)
    assert "bytes of reply reached the client" in t.explanation
    assert e["icmp-1"].seen_at_server_as == "203.0.113.2"
    assert e["udp-1"].seen_at_server_as == "203.0.113.2:50000"
    assert v.exit_code() == 0
    assert "clean" in v.diagnosis.summary
    assert v.diagnosis.by_protocol == {"tcp": {"delivered": 1}, "udp": {"delivered": 1}, "icmp": {"delivered": 1}}
    # evidence frames: every packet of the exchange at both points
    assert len(t.frames_at("client")) == 7 and len(t.frames_at("server")) == 7


def test_lost_outbound(tmp_path):
    w = Path()
    syn_only(w, 40000, 123456, copies=3, arrive=False)
    ping(w, 1)
    v = run(w, tmp_path, server_addr="198.51.100.10")
    t = by_id(v)["tcp-1"]
    assert t.outcome == "lost-outbound"
    assert t.seen_at_server_as is None
    assert "sent SYN 3 times; none reached the server" in t.explanation
    assert all(e.point == "client" and "last seen here" in e.summary for e in t.evidence)
    assert t.frames_at("client") and not t.frames_at("server")
    assert v.exit_code() == 1
    assert "TCP requests are lost between the client and the server" in v.diagnosis.summary


def test_lost_return_seed_fault_protocol_selective(tmp_path):
    """The seed: SYNs arrive, SYN-ACKs leave the server and die; ping is fine."""
    w = Path()
    for i, sport in enumerate((40000, 40001)):
        syn = w.syn(sport, 7_000 + i)
        for _ in range(3):
            ss = w.out(syn)
            w.back(w.synack(ss, 90_000 + i), arrive=False)
    ping(w, 1)
    ping(w, 2)
    v = run(w, tmp_path)
    e = by_id(v)
    assert e["tcp-1"].outcome == e["tcp-2"].outcome == "lost-return"
    assert e["tcp-1"].explanation == "the server answered SYN with SYN-ACK 3 times; none reached the client"
    assert e["icmp-1"].outcome == e["icmp-2"].outcome == "delivered"
    s = v.diagnosis.summary
    assert s.startswith("TCP replies are lost between the server and the client; ICMP passes both ways")
    assert "protocol-selective filter on the return path" in s
    assert v.diagnosis.by_protocol == {"tcp": {"lost-return": 2}, "icmp": {"delivered": 2}}
    lost = [ev for ev in e["tcp-1"].evidence if ev.point == "server" and "last seen here" in ev.summary]
    assert len(lost) == 3 and all("SYN-ACK" in ev.summary for ev in lost)


def test_unanswered(tmp_path):
    w = Path()
    syn_only(w, 40000, 5555, copies=2)
    ping(w, 1, reply=False)
    v = run(w, tmp_path)
    e = by_id(v)
    assert e["tcp-1"].outcome == "unanswered"
    assert "received SYN 2 times and sent nothing back" in e["tcp-1"].explanation
    assert e["icmp-1"].outcome == "unanswered"


def test_refused_by_rst_and_by_port_unreachable(tmp_path):
    w = Path()
    ss = syn_only(w, 40000, 4242, copies=1, dport=81)[0]
    w.back(Pkt(ss.dst, ss.src, 6, sport=81, dport=ss.sport, seq=0, ack=ss.seq + 1, flags=RST | ACK))
    q = w.out(Pkt(w.client, w.server, 17, sport=50001, dport=9999, payload=b"rig-udp-nonce", ip_id=321))
    w.back(Pkt(w.server, q.src, 1, icmp_type=ICMP_UNREACH, icmp_code=3, quoted=q))
    v = run(w, tmp_path)
    e = by_id(v)
    assert e["tcp-1"].outcome == "refused"
    assert "port 81" in e["tcp-1"].explanation
    assert e["udp-1"].outcome == "refused"
    assert "ICMP error" in e["udp-1"].explanation


def test_rst_lost_on_the_way_back_is_lost_return(tmp_path):
    w = Path()
    ss = syn_only(w, 40000, 4242, copies=1)[0]
    w.back(Pkt(ss.dst, ss.src, 6, sport=80, dport=ss.sport, seq=0, ack=ss.seq + 1, flags=RST | ACK), arrive=False)
    v = run(w, tmp_path)
    assert v.exchanges[0].outcome == "lost-return"
    assert "RST" in v.exchanges[0].explanation


def test_answered_by_middlebox_transparent_proxy(tmp_path):
    """A proxy on the path answers tcp/80: SYN-ACK with another TTL, HTTP 200; the server sees nothing."""
    w = Path()
    syn = w.syn(40000, 777)
    w.out(syn, arrive=False)
    w.at_client(Pkt(w.server, w.client, 6, sport=80, dport=40000, seq=31337, ack=778, flags=SYN | ACK, ttl=63, mss=1460))
    w.out(tcp_seg(w.client, w.server, 40000, 80, 778, 31338, b"GET / HTTP/1.1\r\n\r\n", ACK | PSH), arrive=False)
    w.at_client(tcp_seg(w.server, w.client, 80, 40000, 31338, 778 + 18, b"HTTP/1.1 200 OK\r\n\r\ncached", ACK | PSH, ttl=63))
    ping(w, 1)  # the server is there: its capture works
    ping(w, 9, arrive=False)
    w.at_client(Pkt(w.server, w.client, 1, icmp_type=0, icmp_id=77, icmp_seq=9, payload=b"rig-nonce-%08d" % 9))
    v = run(w, tmp_path)
    e = by_id(v)
    assert e["tcp-1"].outcome == "answered-by-middlebox"
    assert e["tcp-1"].seen_at_server_as is None
    assert any("never sent" in ev.summary for ev in e["tcp-1"].evidence)
    assert e["icmp-2"].outcome == "answered-by-middlebox"
    assert "answers TCP and ICMP (1 of 2) in the server's place" in v.diagnosis.summary


def test_reset_by_middlebox(tmp_path):
    w = Path()
    syn_only(w, 40000, 1111, copies=1, arrive=False)
    w.at_client(Pkt(w.server, w.client, 6, sport=80, dport=40000, seq=0, ack=1112, flags=RST | ACK, ttl=60))
    # a connection the server accepted, then reset on the path (injected RST)
    ss, ca = handshake(w, 40001, 2222, 8888)
    w.out(tcp_seg(w.client, w.server, 40001, 80, 2223, 8889, b"GET /blocked HTTP/1.1\r\n\r\n", ACK | PSH))
    w.at_client(tcp_seg(w.server, w.client, 80, 40001, 8889, 2223, b"", RST | ACK, ttl=55))
    ping(w, 1)
    v = run(w, tmp_path)
    e = by_id(v)
    assert e["tcp-1"].outcome == "reset-by-middlebox"
    assert e["tcp-2"].outcome == "reset-by-middlebox"
    assert "something on the path reset it" in e["tcp-2"].explanation


def _mtu_blackhole(w: Path, tso: bool) -> None:
    """Handshake and the small request pass; the server's full-size segments never arrive."""
    w.mss_clamp = None
    ss, ca = handshake(w, 40000, 10_000, 50_000)
    req = b"GET /big HTTP/1.1\r\n\r\n"
    w.out(tcp_seg(w.client, w.server, 40000, 80, 10_001, 50_001, req, ACK | PSH))
    hdr = b"HTTP/1.1 200 OK\r\nContent-Length: 524288\r\n\r\n"
    s_seq = 50_001
    w.back(tcp_seg(w.server, ss.src, 80, ss.sport, s_seq, 10_001 + len(req), hdr, ACK | PSH))  # small: passes
    s_seq += len(hdr)
    body = bytes(range(256)) * 29
    if tso:  # one 7 KB TSO frame at the server (IP total length 0), never arriving
        w.back(tcp_seg(w.server, ss.src, 80, ss.sport, s_seq, 10_001 + len(req), body[:7240], ACK,
                       zero_total_length=True), arrive=False)
    else:
        for k in range(3):
            w.back(tcp_seg(w.server, ss.src, 80, ss.sport, s_seq + 1448 * k, 10_001 + len(req), body[:1448], ACK),
                   arrive=False)
    for _ in range(3):  # retransmissions of the first full segment
        w.back(tcp_seg(w.server, ss.src, 80, ss.sport, s_seq, 10_001 + len(req), body[:1448], ACK), arrive=False)
    w.out(tcp_seg(w.client, w.server, 40000, 80, 10_001 + len(req), s_seq, b"", ACK))


def test_mtu_blackhole(tmp_path):
    w = Path()
    _mtu_blackhole(w, tso=False)
    ping(w, 1)
    v = run(w, tmp_path)
    t = by_id(v)["tcp-1"]
    assert t.outcome == "mtu-blackhole", t.explanation
    assert "1448 bytes from the server never reached the client" in t.explanation
    assert "no ICMP frag-needed reached the server" in t.explanation
    assert "path MTU black hole" in v.diagnosis.summary


def test_mtu_blackhole_with_tso_frame_at_the_sender(tmp_path):
    w = Path()
    _mtu_blackhole(w, tso=True)
    v = run(w, tmp_path)
    assert by_id(v)["tcp-1"].outcome == "mtu-blackhole", by_id(v)["tcp-1"].explanation


def test_small_data_lost_is_not_a_blackhole(tmp_path):
    w = Path()
    ss, ca = handshake(w, 40000, 10_000, 50_000)
    req = b"GET / HTTP/1.1\r\n\r\n"
    w.out(tcp_seg(w.client, w.server, 40000, 80, 10_001, 50_001, req, ACK | PSH))
    for _ in range(3):
        w.back(tcp_seg(w.server, ss.src, 80, ss.sport, 50_001, 10_001 + len(req), b"HTTP/1.1 200 OK\r\n\r\nhi", ACK),
               arrive=False)
    v = run(w, tmp_path)
    t = v.exchanges[0]
    assert t.outcome == "lost-return"
    assert "data segment" in t.explanation


def test_tso_frame_vs_segments_is_delivered(tmp_path):
    """The server's capture shows one 7240-byte TSO frame; the client sees five 1448-byte segments."""
    w = Path()
    ss, ca = handshake(w, 40000, 10_000, 50_000)
    req = b"GET /big HTTP/1.1\r\n\r\n"
    w.out(tcp_seg(w.client, w.server, 40000, 80, 10_001, 50_001, req, ACK | PSH))
    body = bytes(range(256)) * 29
    ack = 10_001 + len(req)
    big = tcp_seg(w.server, ss.src, 80, ss.sport, 50_001, ack, body[:7240], ACK, zero_total_length=True)
    segs = [tcp_seg(w.server, w.client, 80, 40000, 50_001 + 1448 * k, ack, body[1448 * k:1448 * (k + 1)], ACK, ttl=61)
            for k in range(5)]
    w.back(big, client_sees=segs)
    w.out(tcp_seg(w.client, w.server, 40000, 80, ack, 50_001 + 7240, b"", ACK))
    v = run(w, tmp_path)
    t = v.exchanges[0]
    assert t.outcome == "delivered", t.explanation
    assert "7240 bytes of reply reached the client" in t.explanation


def test_incomplete_when_the_server_capture_is_empty(tmp_path):
    w = Path()
    syn_only(w, 40000, 1, copies=2, arrive=False)
    ping(w, 1, arrive=False)
    v = run(w, tmp_path, server_addr="198.51.100.10")
    assert {e.outcome for e in v.exchanges} == {"incomplete"}
    assert "server capture holds no packets" in v.exchanges[0].explanation
    assert v.exit_code() == 1
    assert "cannot decide" in v.diagnosis.summary and "(the server capture holds no packets)" in v.diagnosis.summary


def test_incomplete_when_the_server_dropped_packets(tmp_path):
    from rig.analysis.api import analyse
    from rig.capture import read_capture

    w = Path()
    syn_only(w, 40000, 1, copies=2)  # unanswered ... but the server capture lost packets
    tcp_delivered(w, 40001, 2, 3)
    c, s = w.write(tmp_path)
    v = analyse(read_capture(str(c)), read_capture(str(s)), kernel_drops={"server": 12})
    e = by_id(v)
    assert e["tcp-1"].outcome == "incomplete"
    assert "dropped by the kernel" in e["tcp-1"].explanation
    assert e["tcp-2"].outcome == "delivered"  # what did arrive is proof enough
    assert [p.kernel_drops for p in v.capture_points] == [0, 12]


def test_incomplete_when_the_server_capture_stopped_early(tmp_path):
    w = Path()
    tcp_delivered(w, 40001, 2, 3)
    w._now += 60_000_000_000  # a minute later, after the server's tcpdump stopped
    syn_only(w, 40000, 1, copies=2, arrive=False)
    v = run(w, tmp_path, files_only=True)
    e = by_id(v)
    assert e["tcp-1"].outcome == "delivered"
    assert e["tcp-2"].outcome == "incomplete"
    assert e["tcp-2"].undecided_because == "server capture stopped 60.0 s earlier"
    assert e["tcp-1"].undecided_because is None and "undecided_because" not in e["tcp-1"].to_dict()
    server = [p for p in v.capture_points if p.name == "server"][0]
    assert abs(server.clock_offset_s - 3.0) < 0.001  # estimated from matched pairs, latency cancels


def test_incomplete_from_pcapng_interface_statistics(tmp_path):
    """tcpdump's pcapng Interface Statistics Block says the kernel dropped packets."""
    from rig.analysis.api import analyse
    from rig.capture import read_capture
    from rig.capture.synth import encoded, frame, write_pcap, write_pcapng

    w = Path()
    syn_only(w, 40000, 1, copies=2, arrive=False)
    ping(w, 1)
    c = tmp_path / "client.pcap"
    s = tmp_path / "server.pcapng"
    write_pcap(c, ((t, frame(b)) for t, b in encoded(w.client_frames)))
    write_pcapng(s, [(1, "eth0")], ((0, t, frame(b)) for t, b in encoded(w.server_frames)), drops={0: 7})
    v = analyse(read_capture(str(c)), read_capture(str(s)))
    e = by_id(v)
    assert e["tcp-1"].outcome == "incomplete"
    assert "lost 7 packets" in e["tcp-1"].explanation
    assert e["icmp-1"].outcome == "delivered"
    assert v.capture_points[1].kernel_drops == 7


def test_udp_fragmented_on_the_way(tmp_path):
    from rig.capture.synth import fragments

    w = Path()
    big = Pkt(w.client, w.server, 17, sport=50000, dport=7, payload=bytes(range(256)) * 8, ip_id=4321, df=False)
    nat = w.nat_out(big)
    w.out(big, arrive=False)
    t = w.t0_ns + w._now + w.server_clock_offset_ns
    for i, f in enumerate(fragments(nat, 1400)):
        w.server_frames.append((t + i, f))
    v = run(w, tmp_path)
    u = v.exchanges[0]
    assert u.seen_at_server_as == "203.0.113.2:50000"
    assert [c.note for c in u.changes if c.field == "fragmented"] == ["fragmented on the way"]
    assert u.outcome == "unanswered"


def test_empty_udp_datagram_matches_on_its_port(tmp_path):
    w = Path()
    q = w.out(Pkt(w.client, w.server, 17, sport=50000, dport=9, payload=b"", ip_id=1))
    w.back(Pkt(w.server, q.src, 17, sport=9, dport=q.sport, payload=b"", ip_id=2))
    v = run(w, tmp_path)
    assert v.exchanges[0].outcome == "delivered"


def test_too_big_for_the_path_is_lost_outbound_with_the_mtu(tmp_path):
    """A DF-sized ping answered by a router's frag-needed: the path's MTU, not a middlebox."""
    w = Path()
    big = Pkt(w.client, w.server, 1, icmp_type=8, icmp_id=9, icmp_seq=1, payload=bytes(1472), ip_id=5)
    w.out(big, arrive=False)
    w.at_client(Pkt("192.168.0.1", w.client, 1, icmp_type=ICMP_UNREACH, icmp_code=4, mtu=1454, quoted=big, ttl=63))
    ping(w, 2)
    v = run(w, tmp_path)
    e = by_id(v)["icmp-1"]
    assert (e.outcome, e.path_mtu) == ("lost-outbound", 1454)
    assert by_id(v)["icmp-2"].path_mtu is None
    assert "192.168.0.1 answered that it is too big for the path (ICMP frag-needed, next-hop MTU 1454)" in e.explanation
    assert ("192.168.0.1 > 192.168.1.10 ICMP frag-needed about ICMP to 198.51.100.10 mtu 1454 ttl 63"
            " — ICMP error from the path") in [x.summary for x in e.evidence]
    assert "a router reports a path MTU of 1454" in v.diagnosis.summary
    # a router that rejects (admin prohibited) is a middlebox answering for the server
    w2 = Path()
    syn = w2.syn(40000, 5)
    w2.out(syn, arrive=False)
    w2.at_client(Pkt("192.168.0.1", w2.client, 1, icmp_type=ICMP_UNREACH, icmp_code=13, quoted=syn))
    ping(w2, 1)
    v2 = run(w2, tmp_path / "2")
    assert by_id(v2)["tcp-1"].outcome == "reset-by-middlebox"


def test_fast_path_evidence_reads_like_the_close_look(tmp_path):
    """Bulk-built records use the same words as per-packet summaries."""
    from rig.analysis.summary import summarize
    from rig.capture import read_capture
    from rig.verdict import ExchangeList

    w = Path()
    tcp_delivered(w, 40000, 1, 2)
    ping(w, 1)
    udp(w, 5000, 1)
    v = run(w, tmp_path)
    # every record here was built by a fast path (else this compares the close look with itself)
    assert isinstance(v.exchanges, ExchangeList) and len(v.exchanges.batches) == 3 and (v.exchanges.src >= 0).all()
    caps = {"client": read_capture(str(tmp_path / "client.pcap")), "server": read_capture(str(tmp_path / "server.pcap"))}
    for e in v.exchanges:
        assert e.outcome == "delivered"
        for ev in e.evidence:
            text, _, note = ev.summary.partition(" — ")
            cap = caps[ev.point]
            assert text == summarize(cap.packets[ev.frame - 1], cap.addrs, cap.quoted_at(ev.frame - 1)) and note


def test_data_after_the_clients_reset_is_not_a_loss(tmp_path):
    w = Path()
    ss, ca = handshake(w, 40000, 10, 20)
    req = b"GET /big HTTP/1.1\r\n\r\n"
    w.out(tcp_seg(w.client, w.server, 40000, 80, 11, 21, req, ACK | PSH))
    w.back(tcp_seg(w.server, ss.src, 80, ss.sport, 21, 11 + len(req), b"HTTP/1.1 200 OK\r\n\r\n", ACK | PSH))
    w.out(tcp_seg(w.client, w.server, 40000, 80, 11 + len(req), 21 + 19, b"", RST | ACK))  # the client gives up
    for k in range(3):  # the server's segments in flight after the RST arrived: dropped by the client's stack
        w.back(tcp_seg(w.server, ss.src, 80, ss.sport, 21 + 19 + 1448 * k, 11 + len(req), bytes(1448), ACK), arrive=False)
    v = run(w, tmp_path)
    assert v.exchanges[0].outcome == "delivered", v.exchanges[0].explanation


def test_reply_bytes_after_the_server_capture_ended_are_not_a_middlebox(tmp_path):
    """The server's tcpdump stopped a moment early: the client got data the server capture lacks."""
    w = Path()
    ss, ca = handshake(w, 40000, 10, 20)
    req = b"GET / HTTP/1.1\r\n\r\n"
    w.out(tcp_seg(w.client, w.server, 40000, 80, 11, 21, req, ACK | PSH))
    w.back(tcp_seg(w.server, ss.src, 80, ss.sport, 21, 11 + len(req), b"HTTP/1.1 200 OK\r\n\r\n", ACK | PSH))
    tail = tcp_seg(w.server, ss.src, 80, ss.sport, 21 + 19, 11 + len(req), b"more body", ACK | PSH)
    w.client_frames.append((w.t0_ns + w._now + w.step_ns, w.nat_back(tail)))  # captured at the client only
    v = run(w, tmp_path, files_only=True)
    assert v.exchanges[0].outcome == "incomplete"
    assert "the server capture ended about when this connection did" in v.exchanges[0].explanation


def test_udp_tuple_reused_after_a_lost_reply(tmp_path):
    """One 4-tuple asked four times: the first reply is lost on return, the last request
    is answered twice. Each exchange keeps its own reply (pairing the k-th request with
    the k-th reply on the tuple would hand exchange 2 the reply of exchange 3)."""
    from rig.analysis.reqrep import _sole_answer
    from rig.analysis.sides import Side

    w = Path()
    udp(w, 50000, 1, reply_arrives=False)
    udp(w, 50000, 2)
    udp(w, 50000, 3)
    p = Pkt(w.client, w.server, 17, sport=50000, dport=7, payload=b"rig-udp-%08d" % 4, ip_id=4)
    q = w.out(p)
    for _ in range(2):
        w.back(Pkt(q.dst, q.src, 17, sport=q.dport, dport=q.sport, payload=b"echo:" + q.payload, ip_id=5))
    c, s = w.write(tmp_path)
    cap_c, cap_s = read_capture(str(c)), read_capture(str(s))
    v = analyse(cap_c, cap_s)
    e = by_id(v)
    assert [e[f"udp-{i}"].outcome for i in range(1, 5)] == ["lost-return", "delivered", "delivered", "delivered"]
    # client frames: 1 req, 2 req, 2 rep, 3 req, 3 rep, 4 req, 4 rep, 4 rep
    assert e["udp-2"].frames_at("client") == (2, 3) and e["udp-3"].frames_at("client") == (4, 5)
    assert e["udp-4"].frames_at("client") == (6, 7, 8)
    side = Side("client", cap_c)
    rows = side.rows_of(17)
    ans = _sole_answer(side, rows, np.array([True, True, False, True, False, True, False, False]))
    assert ans.tolist() == [-1, 2, -1, 4, -1, -1, -1, -1]  # two answers to the last: not certain
