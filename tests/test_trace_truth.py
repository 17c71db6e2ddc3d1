"""The scenarios' ground truth for the traces: where each fault loses its packets."""

from __future__ import annotations

from rig.lab.scenarios import SCENARIOS, DropAt
from rig.outcome import Outcome

LOST = {Outcome.LOST_OUTBOUND, Outcome.LOST_RETURN, Outcome.UNANSWERED}


def test_every_lost_protocol_names_the_node_that_drops_it():
    """A scenario whose expected outcome for a protocol is lost-* or unanswered says which
    node loses those packets, and in which direction the outcome implies."""
    missing = [(s.name, proto) for s in SCENARIOS.values() for proto, outcome in s.expect.items()
               if proto in ("tcp", "udp", "icmp") and outcome in LOST and proto not in s.drops]
    assert missing == []
    for s in SCENARIOS.values():
        for proto, drop in s.drops.items():
            want = "return" if s.expect[proto] == Outcome.LOST_RETURN else "out"
            assert drop.direction == want, (s.name, proto)


def test_drop_nodes_are_nodes_of_the_lab():
    from rig.lab.access import access_topology

    for s in SCENARIOS.values():
        nodes = set(access_topology(s.access).nodes)  # the access line's own nodes (map-e: br)
        for drop in s.drops.values():
            assert isinstance(drop, DropAt) and drop.node in nodes, s.name


def test_the_issues_ground_truth():
    assert SCENARIOS["seed"].drops == {"tcp": DropAt("hgw", "return")}
    assert SCENARIOS["outbound-drop"].drops == {"tcp": DropAt("hgw", "out")}
    assert SCENARIOS["edge-filter-icmp"].drops == {"icmp": DropAt("inet", "out")}
    assert SCENARIOS["host-firewall-icmp"].drops == {"icmp": DropAt("server", "out")}
