"""Property: whatever the NATs rewrite and whichever copies the path drops, the outcome
of each exchange is the one the ground truth implies (hypothesis draws the path)."""

from __future__ import annotations

import tempfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rig.capture.synth import Path, Pkt, tcp_seg
from rig.capture.table import ACK, PSH

from tests._analysis_scenarios import run

conn = st.fixed_dictionaries({
    "isn_c": st.integers(0, 2**32 - 1),
    "isn_s": st.integers(0, 2**32 - 1),
    "syn_arrives": st.lists(st.booleans(), min_size=1, max_size=3),
    "synack_arrives": st.booleans(),
    "data": st.booleans(),
})
ping = st.fixed_dictionaries({"arrives": st.booleans(), "answered": st.booleans(), "reply_arrives": st.booleans()})


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(conns=st.lists(conn, min_size=1, max_size=4), pings=st.lists(ping, max_size=3), dgrams=st.lists(ping, max_size=3),
       public_port=st.integers(1024, 65535), echo_id=st.integers(0, 65535), hops=st.integers(1, 30),
       v6=st.booleans(), clamp=st.sampled_from([None, 1400, 1414]))
def test_outcomes_follow_ground_truth(conns, pings, dgrams, public_port, echo_id, hops, v6, clamp):
    w = (Path(client="2001:db8::10", server="2001:db8:1::10", public="2001:db8:ff::2", hops=hops, mss_clamp=clamp,
              port_map=lambda p: (p + public_port) % 64512 + 1024, echo_id_map=lambda i: echo_id)
         if v6 else Path(hops=hops, mss_clamp=clamp, port_map=lambda p: (p + public_port) % 64512 + 1024,
                         echo_id_map=lambda i: echo_id))
    expect = {}
    isns = set()
    for k, c in enumerate(conns):
        if c["isn_c"] in isns:
            continue  # two connections with one ISN: the key cannot tell them apart (by design)
        isns.add(c["isn_c"])
        sport = 30000 + k
        syn = w.syn(sport, c["isn_c"])
        seen = [w.out(syn, arrive=a) for a in c["syn_arrives"]]
        arrived = [s for s, a in zip(seen, c["syn_arrives"]) if a]
        if not arrived:
            expect[("tcp", sport)] = "lost-outbound"
            continue
        w.back(w.synack(arrived[0], c["isn_s"]), arrive=c["synack_arrives"])
        if not c["synack_arrives"]:
            expect[("tcp", sport)] = "lost-return"
            continue
        expect[("tcp", sport)] = "delivered"
        if c["data"]:
            req = b"GET /%d HTTP/1.1\r\n\r\n" % k
            w.out(tcp_seg(w.client, w.server, sport, 80, c["isn_c"] + 1, c["isn_s"] + 1, req, ACK | PSH))
            w.back(tcp_seg(w.server, arrived[0].src, 80, arrived[0].sport, c["isn_s"] + 1, c["isn_c"] + 1 + len(req),
                           b"HTTP/1.1 204 No Content\r\n\r\n", ACK | PSH))
            w.out(tcp_seg(w.client, w.server, sport, 80, c["isn_c"] + 1 + len(req), c["isn_s"] + 1 + 27, b"", ACK))
    for n, p in enumerate(pings):
        proto, req_t, rep_t = (58, 128, 129) if v6 else (1, 8, 0)
        q = w.out(Pkt(w.client, w.server, proto, icmp_type=req_t, icmp_id=7, icmp_seq=n, payload=b"nonce%d" % n),
                  arrive=p["arrives"])
        if p["arrives"] and p["answered"]:
            w.back(Pkt(q.dst, q.src, proto, icmp_type=rep_t, icmp_id=q.icmp_id, icmp_seq=n, payload=q.payload),
                   arrive=p["reply_arrives"])
        expect[("icmp", n)] = ("lost-outbound" if not p["arrives"] else "unanswered" if not p["answered"]
                               else "delivered" if p["reply_arrives"] else "lost-return")
    for n, p in enumerate(dgrams):
        q = w.out(Pkt(w.client, w.server, 17, sport=50000 + n, dport=7, payload=b"udp-nonce-%d" % n, ip_id=n + 1),
                  arrive=p["arrives"])
        if p["arrives"] and p["answered"]:
            w.back(Pkt(q.dst, q.src, 17, sport=7, dport=q.sport, payload=b"echo:udp-nonce-%d" % n),
                   arrive=p["reply_arrives"])
        expect[("udp", 50000 + n)] = ("lost-outbound" if not p["arrives"] else "unanswered" if not p["answered"]
                                      else "delivered" if p["reply_arrives"] else "lost-return")
    # a scanner that happens to use the same ISNs (on another port) must change nothing; it
    # also keeps the server capture non-empty (an empty one makes every absence 'incomplete')
    scanner = "2001:db8:99::1" if v6 else "45.1.2.3"
    for k, isn in enumerate(sorted(isns) or [1]):
        w.at_server(Pkt(scanner, w.server, proto=6, sport=4444 + k, dport=22, seq=isn, flags=0x02, mss=1460))
        w.at_server(Pkt(w.server, scanner, proto=6, sport=22, dport=4444 + k, seq=5, ack=isn + 1, flags=0x12))
    with tempfile.TemporaryDirectory() as d:
        v = run(w, d, server_addr=w.server)
    got = {}
    for e in v.exchanges:
        if e.protocol in ("tcp", "udp"):
            got[(e.protocol, int(e.client.rsplit(":", 1)[1]))] = e.outcome
        else:
            got[("icmp", len([k for k in got if k[0] == "icmp"]))] = e.outcome
    assert got == expect
    for e in v.exchanges:
        if e.outcome == "delivered" and e.protocol == "tcp":
            port = int(e.client.rsplit(":", 1)[1])
            assert e.seen_at_server_as.endswith(f":{(port + public_port) % 64512 + 1024}")
            if clamp:
                assert any(c.field == "tcp.mss" and c.server == clamp for c in e.changes)
