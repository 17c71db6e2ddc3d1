"""Naming the hops of a trace: which node (the lab) or role (elsewhere) an address is.

A namer is ``name(direction, index, address) -> str | None``, ``index`` counted from the
sender of that direction. In the lab the topology knows every address and the order of
the nodes along the path; a hop behind a NAT answers from that NAT's public address (its
ICMP error is masqueraded on the way back), so a repeated NAT address at the hop where
the path says another node stands is that node. Elsewhere only the ends are known: the
server, and the client's public address as the server saw it.
"""

from __future__ import annotations

from collections import deque
from typing import Callable

from rig.lab.topology import Topology
from rig.trace.records import Trace

Namer = Callable[[str, int, str], "str | None"]


def path_nodes(topo: Topology) -> list[str]:
    """The nodes from the client to the server, both included (breadth-first on links)."""
    start, goal = topo.roles.get("client", "client"), topo.roles.get("server", "server")
    prev: dict[str, str | None] = {start: None}
    todo = deque([start])
    while todo:
        node = todo.popleft()
        for link in topo.links:
            for a, b in ((link.a.node, link.b.node), (link.b.node, link.a.node)):
                if a == node and b not in prev:
                    prev[b] = node
                    todo.append(b)
    path: list[str] = []
    at: str | None = goal
    while at is not None:
        path.append(at)
        at = prev.get(at)
    return path[::-1]


def lab_namer(topo: Topology) -> Namer:
    # IPv4 addresses (an NGN link end has none), a tunnel end's too
    owner = {e.ip: e.node for link in topo.links for e in (link.a, link.b) if e.addr is not None}
    owner.update({t.addr.split("/", 1)[0]: t.node for t in topo.tunnels if t.addr is not None})
    nats = {n.node for n in topo.nats}
    out = path_nodes(topo)
    back = out[::-1]

    def name(direction: str, index: int, address: str) -> str | None:
        path = out if direction == "out" else back
        who = owner.get(address)
        expected = path[index] if 0 < index < len(path) else None
        if not address:  # no address: the node the path has there
            return expected
        if expected is None or who == expected:
            return who
        if who in nats and who in path[1:index]:
            return expected
        return who

    return name


def ends_namer(server_addr: str, client_public: str | None) -> Namer:
    def name(direction: str, index: int, address: str) -> str | None:
        if address == server_addr:
            return "server"
        if client_public and address == client_public:
            return "client-public"
        return None

    return name


def named(trace: Trace, name: Namer) -> Trace:
    """``trace`` with each hop's ``node`` filled in by ``name``."""
    import dataclasses

    hops = tuple(dataclasses.replace(h, node=name(trace.direction, h.ttl, h.address)) for h in trace.hops)
    return dataclasses.replace(trace, hops=hops)
