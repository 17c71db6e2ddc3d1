"""TCP and a router's frag-needed: the path MTU the ICMP error quotes reaches the exchange,
both for a SYN refused as too big and for data segments lost after the handshake."""

from __future__ import annotations

from rig.capture.synth import ICMP_UNREACH, Path, Pkt, tcp_seg
from rig.capture.table import ACK, PSH

from tests._analysis_scenarios import handshake, run


def _conn(v, sport: int):
    return next(e for e in v.exchanges if e.protocol == "tcp" and e.client.endswith(f":{sport}"))


def test_frag_needed_gives_a_tcp_exchange_its_path_mtu(tmp_path):
    w = Path()
    syn = w.syn(40001, 1000)
    w.out(syn, arrive=False)
    w.at_client(Pkt("192.168.0.1", w.client, 1, icmp_type=ICMP_UNREACH, icmp_code=4, mtu=1400, quoted=syn))
    handshake(w, 40002, 5000, 7000)
    seg = tcp_seg(w.client, w.server, 40002, 80, 5001, 7001, b"x" * 1460, ACK | PSH)
    for _ in range(3):
        w.out(seg, arrive=False)
    w.at_client(Pkt("192.168.0.1", w.client, 1, icmp_type=ICMP_UNREACH, icmp_code=4, mtu=1380, quoted=seg))
    w.out(w.syn(40003, 9000), arrive=False)
    v = run(w, tmp_path)

    refused = _conn(v, 40001)
    assert (refused.outcome, refused.path_mtu) == ("lost-outbound", 1400)
    assert refused.explanation == ("the SYN never reached the server: 192.168.0.1 answered that it is too big "
                                   "for the path (ICMP frag-needed, next-hop MTU 1400)")
    lost = _conn(v, 40002)
    assert (lost.outcome, lost.path_mtu) == ("lost-outbound", 1380)
    assert "an ICMP frag-needed reached the client, which did not resend smaller segments" in lost.explanation
    assert ("192.168.0.1 > 192.168.1.10 ICMP frag-needed about TCP to 198.51.100.10:80 mtu 1380 ttl 64"
            " — frag-needed") in [x.summary for x in lost.evidence]
    assert _conn(v, 40003).path_mtu is None
