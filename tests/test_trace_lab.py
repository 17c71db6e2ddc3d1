"""The traces in the real lab (root): hops, what each one rewrote, where a trace stops.

Every packet goes to addresses inside the lab's own namespaces (198.51.100.10 is the
lab's server namespace; nothing routes out of the lab)."""

from __future__ import annotations

from rig.lab.topology import SERVER_ADDR
from rig.trace.forward import forward
from test_lab_support import lab, needs_lab

pytestmark = needs_lab

ROUTER_LAN, HGW_LAN, INET_CPE = "192.168.1.1", "192.168.0.1", "203.0.113.1"


def hops(trace) -> list[tuple[int, str, str]]:
    return [(h.ttl, h.address, h.kind) for h in trace.hops]


def test_forward_traces_see_every_hop_of_a_healthy_path():
    with lab("healthy") as rig:
        for proto, port in (("tcp", 80), ("udp", 7), ("icmp", 0)):
            t = forward(rig.client_netns, proto, SERVER_ADDR, port)
            assert t.error is None
            assert hops(t) == [(1, ROUTER_LAN, "time-exceeded"), (2, HGW_LAN, "time-exceeded"),
                               (3, INET_CPE, "time-exceeded"), (4, SERVER_ADDR, "reply")], proto
            assert t.arrived_ttl == 4
            assert all(h.changed == () for h in t.hops)


def test_forward_trace_shows_the_mss_clamp_past_the_hgw():
    with lab("mss-clamp") as rig:
        t = forward(rig.client_netns, "tcp", SERVER_ADDR, 80)
        changed = {h.ttl: {c.field: (c.sent, c.seen) for c in h.changed} for h in t.hops}
        assert changed[2] == {}  # the hgw quotes the SYN as it arrived...
        assert changed[3] == {"tcp.mss": (1460, 1414)}  # ...the next hop sees what the hgw sent on


def test_forward_trace_stops_at_the_node_that_drops():
    with lab("outbound-drop") as rig:
        t = forward(rig.client_netns, "tcp", SERVER_ADDR, 80)
        assert hops(t) == [(1, ROUTER_LAN, "time-exceeded"), (2, HGW_LAN, "time-exceeded")]
        assert not t.reached and t.last_answer.address == HGW_LAN
        assert forward(rig.client_netns, "icmp", SERVER_ADDR).reached


def test_forward_trace_shows_pf_rewrites_from_the_router_on():
    with lab("pf-router") as rig:
        t = forward(rig.client_netns, "tcp", SERVER_ADDR, 80)
        fields = {h.ttl: {c.field for c in h.changed} for h in t.hops if h.kind != "reply"}
        assert fields == {1: set(), 2: {"ip.id", "tcp.mss"}, 3: {"ip.id", "tcp.mss"}}


SERVER_GW, HGW_WAN, CLIENT = "198.51.100.1", "203.0.113.2", "192.168.1.10"


def test_return_traces_reach_the_client_through_both_nats_on_a_healthy_path():
    from rig.trace.reverse import NetnsServer, reverse

    with lab("healthy") as rig:
        server = NetnsServer(rig.facts["ns_server"])
        for proto, port in (("tcp", 80), ("udp", 7), ("icmp", 0)):
            t = reverse(rig.client_netns, server, proto, SERVER_ADDR, port)
            assert t.error is None, proto
            assert t.target.split(":")[0] == HGW_WAN  # the client's mapping, as the server saw it
            # the router's time-exceeded leaves through the hgw's NAT: it answers as the hgw
            assert hops(t) == [(1, SERVER_GW, "time-exceeded"), (2, HGW_WAN, "time-exceeded"),
                               (3, HGW_WAN, "time-exceeded"), (4, CLIENT, "reply")], proto
            assert t.arrived_ttl == 4


def test_return_trace_stops_at_the_hgw_that_drops_syn_acks():
    from rig.trace.reverse import NetnsServer, reverse

    with lab("seed") as rig:
        server = NetnsServer(rig.facts["ns_server"])
        t = reverse(rig.client_netns, server, "tcp", SERVER_ADDR, 80)
        assert hops(t) == [(1, SERVER_GW, "time-exceeded"), (2, HGW_WAN, "time-exceeded")]
        assert not t.reached
        assert reverse(rig.client_netns, server, "icmp", SERVER_ADDR).reached


def test_return_trace_over_ssh_runs_the_wire_script_on_the_server():
    """The path an ssh or azure server takes: rig.trace.wire shipped on stdin to
    ``python3 -`` as root over rig's SSH connection (here the lab server's sshd)."""
    from rig.sshclient import SSHClient
    from rig.trace.reverse import SSHServer, reverse

    with lab("seed") as rig, SSHClient(rig.ssh) as ssh:
        t = reverse(rig.client_netns, SSHServer(ssh), "tcp", SERVER_ADDR, 80)
        assert t.error is None
        assert hops(t) == [(1, SERVER_GW, "time-exceeded"), (2, HGW_WAN, "time-exceeded")]
        assert reverse(rig.client_netns, SSHServer(ssh), "icmp", SERVER_ADDR).arrived_ttl == 4
