"""IPv4 beside IPv6: each exchange's family, and the diagnosis that compares them."""

from __future__ import annotations

from rig.analysis.families import compare, diagnose_families, family_of_endpoint
from rig.probes.records import ProbeResult
from rig.verdict import Exchange, NotSentProbe

V4, V6 = "198.51.100.10:80", "[2001:db8:5::10]:80"


def _x(proto: str, outcome: str, server: str, i: int = 0) -> Exchange:
    return Exchange(f"{proto}-{i}", proto, "c", server, None, outcome, "x")


def test_family_of_an_endpoint():
    assert family_of_endpoint(V4) == 4 and family_of_endpoint("198.51.100.10") == 4
    assert family_of_endpoint(V6) == 6 and family_of_endpoint("2001:db8:5::10") == 6


def test_the_verdict_json_says_the_family_as_a_number():
    assert _x("tcp", "delivered", V4).to_dict()["family"] == 4
    assert _x("icmp", "delivered", "2001:db8:5::10").to_dict()["family"] == 6
    # an added key: a record written before it existed still reads
    d = _x("tcp", "delivered", V6).to_dict()
    del d["family"]
    assert Exchange.from_dict(d).family == 6


def test_probe_records_say_their_family():
    def rec(target: str) -> dict:
        return ProbeResult("tcp", "tcp-1", target, "n", 0.0, 1.0, True).to_dict()

    assert rec(V4)["family"] == 4 and rec(V6)["family"] == 6
    assert ProbeResult.from_dict(rec(V6)).target == V6  # the added key does not disturb a reader


def test_ipv6_passes_where_ipv4_tcp_replies_are_lost():
    ex = [_x("tcp", "lost-return", V4, 1), _x("icmp", "delivered", "198.51.100.10"),
          _x("tcp", "delivered", V6, 2), _x("icmp", "delivered", "2001:db8:5::10")]
    cmp = compare(ex)
    assert cmp.families == (4, 6) and cmp.differ
    d = diagnose_families(ex)
    assert d.summary.startswith("IPv6 passes both ways; IPv4: TCP replies are lost between the server and the client")
    assert d.by_protocol == {"tcp": {"lost-return": 1, "delivered": 1}, "icmp": {"delivered": 2}}


def test_ipv4_passes_where_ipv6_fails():
    ex = [_x("tcp", "delivered", V4, 1), _x("tcp", "lost-return", V6, 2)]
    assert diagnose_families(ex).summary.startswith("IPv4 passes both ways; IPv6: TCP replies are lost")


def test_the_same_on_both_families_is_said_once():
    ex = [_x("tcp", "lost-return", V4, 1), _x("tcp", "lost-return", V6, 2)]
    assert diagnose_families(ex).summary.startswith("IPv4 and IPv6 alike: TCP replies are lost")
    big = [NotSentProbe(f"icmp{s}-5", "icmp", t, 1500, "message too long", 1454, "larger than the local interface MTU 1454")
           for s, t in (("", "198.51.100.10"), ("6", "2001:db8:5::10"))]
    ok = [_x("icmp", "delivered", "198.51.100.10"), _x("icmp", "delivered", "2001:db8:5::10")]
    assert diagnose_families(ok, big).summary.startswith("IPv4 and IPv6 alike: ")
    # one family's echo refused locally: the families differ
    assert diagnose_families(ok, big[:1]).summary.startswith("IPv6 passes both ways; IPv4: ")


def test_one_family_is_diagnosed_as_before():
    ex = [_x("tcp", "lost-return", V4, 1), _x("icmp", "delivered", "198.51.100.10")]
    assert diagnose_families(ex).summary.startswith("TCP replies are lost")
