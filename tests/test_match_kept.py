"""The last TCP join uses what the path is measured to keep (rig.analysis.kept): where
every joined connection kept its ISN, a server connection with another ISN is not a
client attempt; where the path rewrote ISNs, or nothing of that kind was joined, the
same captures stay undecided."""

from __future__ import annotations

import pytest

from rig.capture.synth import ACK, RST, SYN

from tests._analysis_scenarios import Path, Pkt, ping, run, tcp_delivered


def _two_reset_attempts_and_a_stranger(isn_delta: int, delivered_port: int) -> Path:
    """Two connections delivered to ``delivered_port``; then two SYNs to port 80 that a
    firewall near the client resets (the server never sees them) while the server sees
    one SYN from the client's public address with another ISN, and answers nothing (the
    client capture does not hold its sender: another host behind the NAT, or a SYN
    sent after the client capture stopped)."""
    w = Path(port_map=lambda p: p + 1000, strip_ts=True, isn_delta_out=isn_delta)
    ping(w, 1)
    tcp_delivered(w, 40000, 1000, 2000, dport=delivered_port)
    tcp_delivered(w, 40001, 3000, 4000, nonce=2, dport=delivered_port)
    for k in range(2):
        w.out(w.syn(42000 + k, 500 + k), arrive=False)
        w.at_client(Pkt(w.server, w.client, 6, sport=80, dport=42000 + k, seq=0, ack=501 + k, flags=RST | ACK))
        if k == 0:
            w.at_server(Pkt(w.public, w.server, 6, sport=61000, dport=80, seq=777_777, flags=SYN, mss=1460,
                            wscale=7, sackok=True, ip_id=0))
    ping(w, 2)
    return w


@pytest.mark.parametrize(("isn_delta", "delivered_port", "outcome"), [
    (0, 80, "reset-by-middlebox"),  # the ISN is kept: the stranger is neither attempt
    (0x1234567, 80, "incomplete"),  # pf's modulate state: either attempt may be the stranger
    (0, 443, "incomplete"),  # nothing joined to port 80 says what the path does there
], ids=["isn-kept", "isn-rewritten", "kept-elsewhere"])
def test_a_server_connection_with_another_isn_is_not_the_attempt(tmp_path, isn_delta, delivered_port, outcome):
    v = run(_two_reset_attempts_and_a_stranger(isn_delta, delivered_port), tmp_path)
    attempts = [x for x in v.exchanges if x.protocol == "tcp" and x.client.endswith((":42000", ":42001"))]
    assert [x.outcome for x in attempts] == [outcome] * 2, [x.explanation for x in attempts]
    if outcome == "incomplete":
        assert all(x.undecided_because for x in attempts)
    delivered = [x for x in v.exchanges if x.protocol == "tcp" and x not in attempts]
    assert [x.outcome for x in delivered] == ["delivered"] * 2
