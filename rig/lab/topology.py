"""The lab's network as data: nodes, links, addresses, routes and NAT (no I/O here).

Like Mininet's ``Topo``, this module only *describes* the network; ``rig.lab.build``
makes a description real with ``ip`` and ``nft``. The default description is the seed's
path (DESIGN.md §6)::

    client 192.168.1.10 - router (NAT, the user's own) - hgw (NAT, the ISP's home
    gateway, WAN 203.0.113.2) - inet - server 198.51.100.10

Every link is dual-stack: IPv6 from the documentation prefix 2001:db8::/32, routed
without NAT as a real one is. The home holds the delegated prefix 2001:db8:10::/48
(the hgw's LAN 2001:db8:10::/64, the router's LAN 2001:db8:10:1::/64), the server is
2001:db8:5::10; inet routes only the home's prefix and its connected networks, so
nothing, IPv4 or IPv6, routes out of the lab.

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
    addr: str | None  # "192.168.1.10/24"; None on an IPv6-only link (the NGN)
    addr6: str | None = None  # "2001:db8:10:1::10/64", or None on an IPv4-only end

    @property
    def ip(self) -> str:
        if self.addr is None:
            raise KeyError(f"{self.node}:{self.iface} has no IPv4 address")
        return self.addr.split("/", 1)[0]

    @property
    def ip6(self) -> str:
        if self.addr6 is None:
            raise KeyError(f"{self.node}:{self.iface} has no IPv6 address")
        return self.addr6.split("/", 1)[0]


@dataclass(frozen=True)
class Link:
    """A veth pair made straight between two namespaces."""

    a: Endpoint
    b: Endpoint
    mtu: int = 1500


@dataclass(frozen=True)
class Route:
    node: str
    dest: str  # "default", "::/0" or a CIDR (the family follows the addresses)
    via: str | None = None  # the next hop's address; None: straight out of ``dev``
    dev: str | None = None  # the interface (a tunnel end has no next-hop address)


@dataclass(frozen=True)
class Nat:
    """Source NAT on a node: masquerade everything leaving ``out_iface``."""

    node: str
    out_iface: str


@dataclass(frozen=True)
class Tunnel:
    """One end of an IPv4-in-IPv6 tunnel: the TUN device ``tun`` on ``node`` (IPv4
    address ``addr``, or none), carried by rig.lab.tunnel between the IPv6 addresses
    ``local`` and ``remote``. ``port_set`` makes the end a MAP-E border relay:
    "OFFSET:LENGTH:PSID" of the subscriber's set (rig.lab.tunnel.admit)."""

    node: str
    tun: str
    local: str
    remote: str
    mtu: int
    addr: str | None = None
    port_set: str | None = None


@dataclass(frozen=True)
class Topology:
    nodes: tuple[str, ...]
    links: tuple[Link, ...]
    routes: tuple[Route, ...]
    nats: tuple[Nat, ...]
    forwarding: tuple[str, ...]  # nodes that forward IPv4 and IPv6
    roles: dict[str, str] = field(default_factory=dict)  # "client"/"server"/... -> node
    tunnels: tuple[Tunnel, ...] = ()  # IPv4-in-IPv6 tunnel ends (MAP-E, DS-Lite)
    access: str = "plain"  # the access profile it was made for (rig.lab.access)
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
            if n.out_iface not in {t.tun for t in self.tunnels if t.node == n.node}:
                self.endpoint(n.node, n.out_iface)
        for alias in self.aliases:
            self.endpoint(alias.node, alias.iface)
        for t in self.tunnels:
            if t.node not in known:
                raise ValueError(f"tunnel on unknown node {t.node!r}")


# The seed's double NAT. Addresses come from the documentation ranges (RFC 5737, RFC
# 3849) and private space; nothing here routes outside the lab.
CLIENT_ADDR = "192.168.1.10"
ROUTER_WAN_ADDR = "192.168.0.2"
HGW_WAN_ADDR = "203.0.113.2"
SERVER_ADDR = "198.51.100.10"
SERVER_ADDR2 = "198.51.100.11"  # the server's second address (the NAT tests' responder)
HOME_PREFIX6 = "2001:db8:10::/48"  # delegated to the home (the hgw's LAN and the router's)
CLIENT_ADDR6 = "2001:db8:10:1::10"
ROUTER_WAN_ADDR6 = "2001:db8:10::2"
HGW_WAN_ADDR6 = "2001:db8:ff::2"
SERVER_ADDR6 = "2001:db8:5::10"


def home_routes() -> tuple[Route, ...]:
    """The home side's routes, both families (the same behind every access)."""
    return (
        Route("client", "default", "192.168.1.1"),
        Route("client", "::/0", "2001:db8:10:1::1"),
        Route("router", "default", "192.168.0.1"),
        Route("router", "::/0", "2001:db8:10::1"),
        Route("hgw", "2001:db8:10:1::/64", ROUTER_WAN_ADDR6),  # the router's part of the delegated prefix
        Route("server", "default", "198.51.100.1"),
        Route("server", "::/0", "2001:db8:5::1"),
    )


def home_links() -> tuple[Link, ...]:
    return (
        Link(Endpoint("client", "eth0", f"{CLIENT_ADDR}/24", f"{CLIENT_ADDR6}/64"),
             Endpoint("router", "lan", "192.168.1.1/24", "2001:db8:10:1::1/64")),
        Link(Endpoint("router", "wan", f"{ROUTER_WAN_ADDR}/24", f"{ROUTER_WAN_ADDR6}/64"),
             Endpoint("hgw", "lan", "192.168.0.1/24", "2001:db8:10::1/64")),
    )


def server_aliases() -> tuple[Endpoint, ...]:
    """The server's further addresses: the second one the NAT tests answer from (rig.nat)."""
    return (Endpoint("server", "eth0", f"{SERVER_ADDR2}/24"),)


def server_link() -> Link:
    return Link(Endpoint("inet", "srv", "198.51.100.1/24", "2001:db8:5::1/64"),
                Endpoint("server", "eth0", f"{SERVER_ADDR}/24", f"{SERVER_ADDR6}/64"))


def seed_topology() -> Topology:
    """client - router (NAT) - hgw (NAT) - inet - server, dual-stack."""
    links = (
        *home_links(),
        Link(Endpoint("hgw", "wan", f"{HGW_WAN_ADDR}/24", f"{HGW_WAN_ADDR6}/64"),
             Endpoint("inet", "cpe", "203.0.113.1/24", "2001:db8:ff::1/64")),
        server_link(),
    )
    routes = (
        *home_routes(),
        Route("hgw", "default", "203.0.113.1"),
        Route("hgw", "::/0", "2001:db8:ff::1"),
        # inet knows its connected networks and the home's delegated prefix, nothing else:
        # there is no route out of the lab
        Route("inet", HOME_PREFIX6, HGW_WAN_ADDR6),
    )
    topo = Topology(
        nodes=("client", "router", "hgw", "inet", "server"),
        links=links,
        routes=routes,
        nats=(Nat("router", "wan"), Nat("hgw", "wan")),
        forwarding=("router", "hgw", "inet"),
        roles={"client": "client", "router": "router", "hgw": "hgw", "server": "server"},
        aliases=server_aliases(),
    )
    topo.validate()
    return topo


def new_prefix() -> str:
    """A fresh per-run prefix, e.g. ``rig-1a2b3c``."""
    return f"rig-{secrets.token_hex(3)}"


def ns_name(prefix: str, node: str) -> str:
    return f"{prefix}-{node}"
