"""The lab's network as data: nodes, links, addresses, routes and NAT (no I/O here).

Like Mininet's ``Topo``, this module only *describes* the network; ``rig.lab.build``
makes a description real with ``ip`` and ``nft``. The default description is the seed's
path (DESIGN.md §6)::

    client 192.168.1.10 - router (NAT, the user's own) - hgw (NAT, the ISP's home
    gateway, WAN 203.0.113.2) - inet - server 198.51.100.10

Node names are roles ("client", "router", ...); a per-run prefix turns them into
namespace names (``rig-1a2b3c-client``). Interface names are local to their namespace,
so they stay short and fixed ("eth0", "lan", "wan").
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field

PREFIX_RE = re.compile(r"^rig-[0-9a-f]{6}$")
IFNAME_MAX = 15


@dataclass(frozen=True)
class Endpoint:
    """One end of a link: a node, its interface name there, and its address (CIDR)."""

    node: str
    iface: str
    addr: str  # "192.168.1.10/24"

    @property
    def ip(self) -> str:
        return self.addr.split("/", 1)[0]


@dataclass(frozen=True)
class Link:
    """A veth pair made straight between two namespaces."""

    a: Endpoint
    b: Endpoint
    mtu: int = 1500


@dataclass(frozen=True)
class Route:
    node: str
    dest: str  # "default" or a CIDR
    via: str


@dataclass(frozen=True)
class Nat:
    """Source NAT on a node: masquerade everything leaving ``out_iface``."""

    node: str
    out_iface: str


@dataclass(frozen=True)
class Topology:
    nodes: tuple[str, ...]
    links: tuple[Link, ...]
    routes: tuple[Route, ...]
    nats: tuple[Nat, ...]
    forwarding: tuple[str, ...]  # nodes that forward IPv4
    roles: dict[str, str] = field(default_factory=dict)  # "client"/"server"/... -> node
    aliases: tuple[Endpoint, ...] = ()  # further addresses on an interface a link already made

    def endpoint(self, node: str, iface: str) -> Endpoint:
        for link in self.links:
            for end in (link.a, link.b):
                if end.node == node and end.iface == iface:
                    return end
        raise KeyError(f"{node}:{iface}")

    def ifaces(self, node: str) -> tuple[Endpoint, ...]:
        return tuple(e for link in self.links for e in (link.a, link.b) if e.node == node)

    def link_of(self, node: str, iface: str) -> Link:
        for link in self.links:
            if (link.a.node, link.a.iface) == (node, iface) or (link.b.node, link.b.iface) == (node, iface):
                return link
        raise KeyError(f"{node}:{iface}")

    def validate(self) -> None:
        """Raise ValueError if the description cannot be built (names, references)."""
        known = set(self.nodes)
        for link in self.links:
            for end in (link.a, link.b):
                if end.node not in known:
                    raise ValueError(f"link end on unknown node {end.node!r}")
                if len(end.iface) > IFNAME_MAX:
                    raise ValueError(f"interface name {end.iface!r} is longer than {IFNAME_MAX}")
        for node in known:
            names = [e.iface for e in self.ifaces(node)]
            if len(names) != len(set(names)):
                raise ValueError(f"duplicate interface name on {node}")
        for r in self.routes:
            if r.node not in known:
                raise ValueError(f"route on unknown node {r.node!r}")
        for n in self.nats:
            self.endpoint(n.node, n.out_iface)
        for alias in self.aliases:
            self.endpoint(alias.node, alias.iface)


# The seed's double NAT. Addresses come from the documentation ranges (RFC 5737) and
# private space; nothing here routes outside the lab.
CLIENT_ADDR = "192.168.1.10"
ROUTER_WAN_ADDR = "192.168.0.2"
HGW_WAN_ADDR = "203.0.113.2"
SERVER_ADDR = "198.51.100.10"
SERVER_ADDR2 = "198.51.100.11"  # the server's second address (the NAT tests' responder)


def seed_topology() -> Topology:
    """client - router (NAT) - hgw (NAT) - inet - server."""
    links = (
        Link(Endpoint("client", "eth0", f"{CLIENT_ADDR}/24"), Endpoint("router", "lan", "192.168.1.1/24")),
        Link(Endpoint("router", "wan", f"{ROUTER_WAN_ADDR}/24"), Endpoint("hgw", "lan", "192.168.0.1/24")),
        Link(Endpoint("hgw", "wan", f"{HGW_WAN_ADDR}/24"), Endpoint("inet", "cpe", "203.0.113.1/24")),
        Link(Endpoint("inet", "srv", "198.51.100.1/24"), Endpoint("server", "eth0", f"{SERVER_ADDR}/24")),
    )
    routes = (
        Route("client", "default", "192.168.1.1"),
        Route("router", "default", "192.168.0.1"),
        Route("hgw", "default", "203.0.113.1"),
        Route("server", "default", "198.51.100.1"),
        # inet knows only its two connected networks: there is no route out of the lab
    )
    topo = Topology(
        nodes=("client", "router", "hgw", "inet", "server"),
        links=links,
        routes=routes,
        nats=(Nat("router", "wan"), Nat("hgw", "wan")),
        forwarding=("router", "hgw", "inet"),
        roles={"client": "client", "router": "router", "hgw": "hgw", "server": "server"},
        aliases=(Endpoint("server", "eth0", f"{SERVER_ADDR2}/24"),),
    )
    topo.validate()
    return topo


def new_prefix() -> str:
    """A fresh per-run prefix, e.g. ``rig-1a2b3c``."""
    return f"rig-{secrets.token_hex(3)}"


def ns_name(prefix: str, node: str) -> str:
    return f"{prefix}-{node}"
