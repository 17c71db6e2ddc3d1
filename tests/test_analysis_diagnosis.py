"""The diagnosis sentence and counts, as a free function of outcomes."""

from __future__ import annotations

from rig.analysis.diagnosis import diagnose
from rig.verdict import Change, Exchange


def _x(proto: str, outcome: str, i: int = 0, changes=()) -> Exchange:
    return Exchange(f"{proto}-{i}", proto, "c", "s", None, outcome, "x", tuple(changes))


def test_seed_fault_sentence():
    d = diagnose([_x("tcp", "lost-return", 1), _x("tcp", "lost-return", 2), _x("icmp", "delivered")])
    assert d.summary == ("TCP replies are lost between the server and the client; ICMP passes both ways"
                         " — a protocol-selective filter on the return path")
    assert d.by_protocol == {"tcp": {"lost-return": 2}, "icmp": {"delivered": 1}}


def test_clean_path_mentions_the_mss_clamp():
    ch = Change("tcp.mss", "out", 1460, 1414, "clamped 1460->1414")
    d = diagnose([_x("tcp", "delivered", 1, [ch]), _x("udp", "delivered")])
    assert d.summary == "Every exchange (2) was delivered both ways: the path is clean; the path clamps the TCP MSS (clamped 1460->1414)"


def test_mixed_outcomes_give_counts_and_worst_first():
    d = diagnose([_x("tcp", "delivered", 1), _x("tcp", "mtu-blackhole", 2), _x("udp", "lost-return"),
                  _x("icmp", "lost-return"), _x("icmp", "delivered", 2)])
    assert d.summary.startswith("Large TCP (1 of 2) segments never arrive")
    assert "UDP and ICMP (1 of 2) replies are lost" in d.summary
    assert "protocol-selective" not in d.summary


def test_middlebox_and_outbound_filter():
    d = diagnose([_x("tcp", "answered-by-middlebox")])
    assert "answers TCP in the server's place (a proxy or cache)" in d.summary
    d = diagnose([_x("udp", "lost-outbound"), _x("tcp", "delivered")])
    assert d.summary.endswith("— a protocol-selective filter on the way out")


def test_no_exchanges():
    d = diagnose([])
    assert d.summary.startswith("No exchange") and d.by_protocol == {}
