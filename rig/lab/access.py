"""Access profiles: how the home gateway reaches the Internet, as topology data.

``plain`` is the seed's generic line (rig.lab.topology.seed_topology). The others are
NTT's NGN as its users meet it (../shared/MISSION.md): the home gateway's WAN side is
the IPv6-only NGN, and a provider's node stands between the NGN and the IPv4 Internet:

    map-e    client - router - hgw (the CE: NAPT into its port set, IPv4 in IPv6)
             - NGN - br (the border relay: decapsulates, drops ports outside the set
             and non-first fragments) - inet - server
    ds-lite  client - router - hgw (the B4: IPv4 in IPv6, no NAT) - NGN - aftr
             (decapsulates and NATs, with a per-subscriber session cap and its own
             UDP mapping timeout) - inet - server
    pppoe    client - router - hgw - bas (the PPPoE session's far end: MTU 1454,
             MSS clamped to 1414) - inet - server

IPv6 is native everywhere (the home's delegated prefix routed through the NGN). The
IPv4-in-IPv6 tunnels are TUN devices driven by rig.lab.tunnel, because these machines'
kernel has no tunnel modules (ip6tnl, sit, gre, ipip all fail to load): the NGN link
still carries real IPv6 packets with next header 4. PPPoE is emulated by its effects on
a plain link (MTU 1454 on both ends, the BAS clamping the MSS): the kernel has no pppoe
module either, and what the path does to the probes is the MTU and the MSS.
``AccessProfile.facts`` records in the bundle which way was used.
"""

from __future__ import annotations

from dataclasses import dataclass

from rig.errors import UsageError
from rig.lab.topology import (HGW_WAN_ADDR, HOME_PREFIX6, Endpoint, Link, Nat, Route, Topology, Tunnel,
                              home_links, home_routes, seed_topology, server_aliases, server_link)
from rig.portset import PortSet

TUNNEL_MTU = 1460  # IPv4 inside IPv6 on a 1500-byte link: 1500 - 40
PPPOE_MTU = 1454  # NTT Flets PPPoE
PPPOE_MSS = PPPOE_MTU - 40
V6PLUS = PortSet(offset=4, length=8, psid=0x12)  # v6plus-like: 15 blocks of 16 ports = 240
AFTR_SESSIONS = 1024  # a DS-Lite AFTR's usual cap of sessions per subscriber
AFTR_UDP_TIMEOUT = 60  # seconds the lab's AFTR keeps an idle UDP mapping (Linux: 30 unreplied, 120 replied)
B4_ADDR = "192.0.0.2"  # RFC 6333's well-known B4 address
CE6, PROVIDER6 = "2001:db8:ff::2", "2001:db8:ff::1"  # the two ends of the NGN link (and of the tunnel)


@dataclass(frozen=True)
class AccessProfile:
    name: str
    description: str
    provider: str | None = None  # the provider's node: br, aftr, bas (None: plain)
    encapsulation: str = "none"  # how IPv4 crosses the access: none, ipv4-in-ipv6 (tun), mtu-only
    mtu4: int | None = None  # the path MTU the access leaves IPv4 (None: 1500, Ethernet's)
    mtu6: int | None = None  # the same for IPv6
    # the kernel's NAT into a small port set may take a port whose last connection the
    # server still holds in TIME_WAIT (Linux reuses a TIME_WAIT tuple): the new SYN meets
    # the old connection's ACK and waits for its retransmission. Real on a MAP-E CE, and
    # named by the verdict (port_reused); a run with a short --timeout may see it lost
    reuses_held_ports: bool = False

    def facts(self, port_set: PortSet | None = None) -> dict[str, str]:
        """The profile as the bundle's backend facts record it."""
        out = {"access": self.name, "access_encapsulation": self.encapsulation}
        if self.encapsulation == "ipv4-in-ipv6":
            out["access_tunnel"] = f"user-space encapsulator on TUN (rig.lab.tunnel), MTU {TUNNEL_MTU}"
        if self.name == "pppoe":
            out["access_mtu"] = str(PPPOE_MTU)
        if port_set is not None:
            lo, hi = port_set.ranges()[0]
            out["access_port_set"] = (f"PSID offset {port_set.offset}, length {port_set.length}, PSID {port_set.psid}: "
                                      f"{port_set.blocks} blocks of {port_set.block_size} ports = {port_set.size} "
                                      f"(first {lo}-{hi})")
        return out


ACCESS: dict[str, AccessProfile] = {
    a.name: a
    for a in (
        AccessProfile("plain", "a generic IPv4 double NAT behind an ISP's home gateway"),
        AccessProfile("pppoe", f"IPv4 over a PPPoE session to the provider's BAS: MTU {PPPOE_MTU}, MSS {PPPOE_MSS} "
                               "(emulated on a plain link: no pppoe kernel module here; IPv6 rides the same session)", "bas",
                      "mtu-only", PPPOE_MTU, PPPOE_MTU),
        AccessProfile("map-e", f"MAP-E over the IPv6-only NGN: the CE NAPTs into a {V6PLUS.size}-port set and "
                               "tunnels IPv4 in IPv6 to the BR", "br", "ipv4-in-ipv6", TUNNEL_MTU,
                      reuses_held_ports=True),
        AccessProfile("ds-lite", "DS-Lite over the IPv6-only NGN: the B4 tunnels IPv4 in IPv6 to the AFTR, "
                                 f"which NATs (at most {AFTR_SESSIONS} sessions per subscriber)", "aftr",
                      "ipv4-in-ipv6", TUNNEL_MTU),
    )
}


def get_access(name: str) -> AccessProfile:
    try:
        return ACCESS[name]
    except KeyError:
        raise UsageError(f"unknown access {name!r} (choose from {', '.join(ACCESS)})") from None


def access_for(scenario, requested: str | None) -> AccessProfile:
    """The access a lab run uses: ``requested`` (--access), else the scenario's own. A
    scenario made for one access refuses another (its faults sit on that access's
    nodes); only ``healthy`` runs on any."""
    access = get_access(requested or scenario.access)
    if requested and requested != scenario.access and scenario.name != "healthy":
        raise UsageError(f"--access {requested}: scenario {scenario.name} needs --access {scenario.access} "
                         f"(drop --access, or use --scenario healthy)")
    return access


def nat_sets(access: AccessProfile, scenario) -> dict:
    """node -> the PortSet its NAT maps into: a MAP-E CE's set (or its first block only,
    or nothing when the scenario has the CE pass ports through unchanged)."""
    if access.name != "map-e" or scenario.ce_nat == "unchanged":
        return {}
    if scenario.ce_nat == "first-block":
        # the first block alone, as a PortSet: offset 0 and the set's PSID bits and A=1 on top
        lo, _hi = V6PLUS.ranges()[0]
        return {"hgw": PortSet(0, 16 - V6PLUS.block_bits, lo >> V6PLUS.block_bits)}
    return {"hgw": V6PLUS}


def access_rules(access: AccessProfile, scenario) -> tuple:
    """The nft rules the access itself puts on the provider's node (beside the scenario's)."""
    from rig.lab.scenarios import OBJECTS, NftRule

    if access.name == "ds-lite":
        cap = scenario.sessions or AFTR_SESSIONS
        # the AFTR's per-subscriber session cap (one subscriber here: its tunnel); the
        # lab's own SSH control connection is exempt, as every scenario keeps it working
        udp = f"{{ protocol udp; l3proto ip; policy = {{ unreplied : {AFTR_UDP_TIMEOUT}, replied : {AFTR_UDP_TIMEOUT} }}; }}"
        return (NftRule("aftr", "forward", f'iifname "tun0" tcp dport != 22 ct state new ct count over {cap} drop'),
                # its own UDP mapping timeout, on the flows from its subscribers
                NftRule("aftr", OBJECTS, f"ct timeout aftr-udp {udp}"),
                NftRule("aftr", "forward", 'iifname "tun0" meta l4proto udp ct timeout set "aftr-udp"'))
    if access.name == "pppoe":
        return (NftRule("bas", "mangle", f"tcp flags syn tcp option maxseg size > {PPPOE_MSS} "
                                         f"tcp option maxseg size set {PPPOE_MSS}"),)
    return ()


def _provider_links(provider: str, hgw_wan: Endpoint, mtu_ngn: int = 1500) -> tuple[Link, ...]:
    """hgw - provider (the access link) and provider - inet (the provider's IPv4 and IPv6 uplink)."""
    return (
        Link(hgw_wan, Endpoint(provider, "ngn", "203.0.113.1/24" if hgw_wan.addr else None, f"{PROVIDER6}/64"),
             mtu_ngn),
        Link(Endpoint(provider, "wan", "192.0.2.2/24", "2001:db8:fe::2/64"),
             Endpoint("inet", "cpe", "192.0.2.1/24", "2001:db8:fe::1/64")),
    )


def _provider_routes(provider: str) -> tuple[Route, ...]:
    return (
        Route("hgw", "::/0", PROVIDER6),
        Route(provider, "default", "192.0.2.1"),
        Route(provider, "::/0", "2001:db8:fe::1"),
        Route(provider, HOME_PREFIX6, CE6),
        Route("inet", HOME_PREFIX6, "2001:db8:fe::2"),
        # the provider's public IPv4 (the CE's shared address, or the AFTR's own) is behind it
        Route("inet", "203.0.113.0/24", "192.0.2.2"),
    )


def access_topology(name: str, port_set: PortSet | None = V6PLUS, sessions: int | None = None) -> Topology:
    """The lab's topology behind access ``name``. ``port_set``: the BR's idea of the
    subscriber's set (map-e)."""
    access = get_access(name)
    if access.provider is None:
        return seed_topology()
    prov = access.provider
    nodes = ("client", "router", "hgw", prov, "inet", "server")
    roles = {"client": "client", "router": "router", "hgw": "hgw", "server": "server", "provider": prov}
    forwarding = ("router", "hgw", prov, "inet")
    if name == "pppoe":
        links = (*home_links(), *_provider_links(prov, Endpoint("hgw", "wan", f"{HGW_WAN_ADDR}/24", f"{CE6}/64"),
                                                 PPPOE_MTU), server_link())
        routes = (*home_routes(), Route("hgw", "default", "203.0.113.1"), *_provider_routes(prov))
        topo = Topology(nodes, links, routes, (Nat("router", "wan"), Nat("hgw", "wan")), forwarding, roles,
                        access=name, aliases=server_aliases())
    else:
        ngn = Endpoint("hgw", "wan", None, f"{CE6}/64")  # the NGN: IPv6 only
        links = (*home_links(), *_provider_links(prov, ngn), server_link())
        if name == "map-e":
            # the CE holds the shared public IPv4 address on its tunnel; the BR routes it back in
            tunnels = (Tunnel("hgw", "tun0", CE6, PROVIDER6, TUNNEL_MTU, f"{HGW_WAN_ADDR}/32"),
                       Tunnel(prov, "tun0", PROVIDER6, CE6, TUNNEL_MTU, None,
                              None if port_set is None else f"{port_set.offset}:{port_set.length}:{port_set.psid}"))
            back = Route(prov, f"{HGW_WAN_ADDR}/32", dev="tun0")
            nats = (Nat("router", "wan"), Nat("hgw", "tun0"))
        else:  # ds-lite: the B4 does not NAT; the AFTR NATs the home's private IPv4 to its own
            tunnels = (Tunnel("hgw", "tun0", CE6, PROVIDER6, TUNNEL_MTU, f"{B4_ADDR}/29"),
                       Tunnel(prov, "tun0", PROVIDER6, CE6, TUNNEL_MTU, "192.0.0.1/29"))
            back = Route(prov, "192.168.0.0/16", dev="tun0")
            nats = (Nat("router", "wan"), Nat(prov, "wan"))
        routes = (*home_routes(), Route("hgw", "default", dev="tun0"), back, *_provider_routes(prov))
        topo = Topology(nodes, links, routes, nats, forwarding, roles, tunnels, access=name,
                        aliases=server_aliases())
    topo.validate()
    return topo
