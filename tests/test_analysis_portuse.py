"""Public ports and port sets in the verdict (rig.analysis.portuse), from exchange records."""

from __future__ import annotations

from rig.analysis.families import diagnose_families
from rig.analysis.portuse import PortUse, port_use
from rig.portset import PortSet
from rig.verdict import Exchange

V6PLUS = PortSet(4, 8, 0x12)
SERVER = "198.51.100.10:80"


def _x(i: int, outcome: str, seen_port: int | None, ngn_port: int | None = None, server: str = SERVER) -> Exchange:
    seen = None if seen_port is None else f"203.0.113.2:{seen_port}"
    at = () if ngn_port is None else (("ngn", f"203.0.113.2:{ngn_port}"),)
    return Exchange(f"tcp-{i}", "tcp", f"192.168.1.10:{40000 + i}", server, seen, outcome, "x", seen_at=at)


def _in_set(n: int) -> list[int]:
    ports = [p for lo, hi in V6PLUS.ranges() for p in range(lo, hi + 1)]
    return ports[:: max(1, len(ports) // n)][:n]


def test_the_set_of_the_working_connections_and_the_ones_outside_it():
    ok = [_x(i, "delivered", p) for i, p in enumerate(_in_set(12))]
    bad = [_x(100, "lost-outbound", None, 50123), _x(101, "lost-outbound", None, 61000)]
    use = port_use(ok + bad)
    assert use is not None and use.estimate.kind == "port-set" and use.estimate.port_set == V6PLUS
    assert use.outside == ("tcp-100", "tcp-101")
    assert use.sentence() == ("2 of 14 connections left with public ports outside the 240-port set your other "
                              "connections use (15 blocks of 16): a MAP-E border relay drops those")
    d = use.to_dict()
    assert (d["kind"], d["size"], d["blocks"], d["psid"], d["outside"]) == ("port-set", 240, 15, 0x12, ["tcp-100", "tcp-101"])
    assert PortUse.from_dict(d).to_dict() == d
    assert diagnose_families(ok + bad).summary.endswith("a MAP-E border relay drops those")


def test_exhaustion_when_every_port_of_a_block_was_in_use():
    block = range(V6PLUS.ranges()[0][0], V6PLUS.ranges()[0][1] + 1)
    ok = [_x(i, "delivered", p) for i, p in enumerate(block)]
    lost = [_x(100 + i, "lost-outbound", None) for i in range(5)]
    use = port_use(ok + lost)
    assert use is not None and use.exhausted and use.set_size == 16
    assert use.sentence() == ("5 connections were lost on the way out while all 16 public ports of the set were in "
                              "use: the port set is exhausted")


def test_nothing_to_say_about_a_plain_healthy_run():
    ok = [_x(i, "delivered", 33000 + 7 * i) for i in range(3)]
    use = port_use(ok)
    assert use is not None and not use.worth_saying
    assert port_use([_x(1, "delivered", 40000)]) is None  # too few ports
    # IPv6 exchanges have no NAT'd port to look at
    assert port_use([_x(i, "lost-outbound", None, 50000 + i, "[2001:db8:5::10]:80") for i in range(4)]) is None


def test_failing_ports_with_too_little_delivered_to_infer_a_set():
    bad = [_x(i, "lost-outbound", None, 50001 + 97 * i) for i in range(6)]
    use = port_use(bad)
    assert use is not None and use.worth_saying and not use.outside
    assert use.sentence() == "the 6 connections that failed left with public ports 50001-50486 and never reached the server"
    ping = Exchange("icmp-1", "icmp", "192.168.1.10", "198.51.100.10", "203.0.113.2", "delivered", "x")
    use = port_use([*bad, _x(50, "delivered", 53540), ping])  # one of pf's ports happened to be in the set
    assert use is not None and use.estimate.port_set is None
    assert use.sentence() == ("the 6 connections that failed left with public ports 50001-50486 and never reached "
                              "the server (1 other did): ICMP, which has no ports, passes — a port filter, such as "
                              "a MAP-E border relay's port set, fits")
    assert PortUse.from_dict(use.to_dict()) == use


def test_seen_at_is_an_added_key_of_the_exchange():
    e = _x(1, "lost-outbound", None, 50001)
    d = e.to_dict()
    assert d["seen_at"] == {"ngn": "203.0.113.2:50001"}
    assert Exchange.from_dict(d) == e
    assert "seen_at" not in _x(2, "delivered", 4387).to_dict()


def test_only_connections_lost_on_the_way_out_count_as_failed_ports():
    """A request the server saw (unanswered, refused, lost on the way back) passed any
    port filter on the way out: its port says nothing against the set."""
    ok = [_x(i, "delivered", p) for i, p in enumerate(_in_set(6))]
    reached = [_x(50, "unanswered", 50123, 50123), _x(51, "lost-return", 61000, 61000)]
    use = port_use(ok + reached)
    assert use is not None and use.failed == () and use.outside == () and use.sentence() is None
