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


def test_a_server_capture_that_holds_only_later_syn_copies_joins_on_their_timestamps(tmp_path):
    """The server's tcpdump began after the client's first SYNs: the server capture holds
    a second and third copy first, each with its own TCP timestamp (NATs keep it), while
    the ISN is modulated, the ports rewritten and the IP ID says nothing. Two attempts left
    at once look alike by their timing; the timestamps of the later copies tell which one
    the server saw (unanswered) and which never arrived (lost-outbound)."""
    from dataclasses import replace

    from rig.capture.synth_capture import now, trimmed

    w = Path(isn_delta_out=0x1234567, port_map=lambda p: p + 7000)
    ping(w, 1)
    a, b = w.syn(40000, 1000, ip_id=0), w.syn(40001, 2000, ip_id=0)
    start = None
    for k in range(3):
        w.out(replace(a, ts=(71_000 + 1000 * k, 0)))
        w.out(replace(b, ts=(93_000 + 1000 * k, 0)), arrive=False)
        if k == 0:
            w._now += 300_000_000
            start = now(w)  # the server's tcpdump starts between the first and second copies
        w._now += 700_000_000
    ping(w, 2)
    trimmed(w, "server", start_ns=start)
    e = {x.client: x for x in run(w, tmp_path, files_only=True).exchanges if x.protocol == "tcp"}
    got_a, got_b = e["192.168.1.10:40000"], e["192.168.1.10:40001"]
    assert got_a.outcome == "unanswered", got_a.explanation
    assert got_a.seen_at_server_as == "203.0.113.2:47000"
    assert got_b.outcome == "lost-outbound", got_b.explanation
