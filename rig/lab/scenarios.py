"""Fault scenarios the lab injects on purpose: each one is a small data entry.

A scenario is a description plus the changes that make it real: nftables rules added to
a node's ``rig`` table, MTU changes on a link, NAT options, an extra HTTP server in the
home gateway, or the port the server's Apache listens on. ``rig.lab.build`` applies
them; nothing here runs a command. ``expect`` is the ground truth the pipeline's
verdicts are tested against (outcome per protocol, or a change seen on the path);
``big_pings`` says what the DF echoes too large for the path's smallest MTU produce,
when a scenario has one (``Scenario.expect_ping`` answers per echo size). ``drops``
names, per protocol, the node where the fault loses the packets and the direction they
were travelling (``DropAt``): the ground truth of the traces' ``lost_at``.

Every scenario keeps the SSH control connection (client -> server tcp/22) working:
rules match tcp/80, or exempt port 22, because configure and the remote capture use it.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Mapping

from rig.errors import UsageError
from rig.lab.access import ACCESS, AFTR_SESSIONS, TUNNEL_MTU, V6PLUS
from rig.outcome import Outcome

# chains of the per-node ``table ip rig`` (see rig.lab.build.base_ruleset)
CHAINS = ("prerouting", "postrouting", "mangle", "forward", "input", "output")
OBJECTS = "objects"  # an NftRule "chain" for a stateful object of the table (a ct timeout), named by rules

PPPOE_MTU = 1454  # NTT Flets PPPoE
SSH_MSS = PPPOE_MTU - 40  # SSH segments that fit a 1454-byte link when frag-needed is dropped
PROXY_PORT = 8080  # where the hgw's own HTTP server listens (transparent-proxy)
PORT_SET = (40000, 40015)  # MAP-E-like set of 16 source ports (port-set)
PF_NAT_PORTS = (50001, 65535)  # pf's default nat-to port range (rig.lab.routers)
PF_MAX_MSS = 1440  # a common pf.conf line: scrub on pppoe0 max-mss 1440
TCP_IDLE = 6  # short-tcp-idle: seconds the hgw keeps an idle established TCP connection (Linux: 5 days)


@dataclass(frozen=True)
class NftRule:
    node: str
    chain: str  # one of CHAINS, or OBJECTS
    rule: str  # nft rule text, e.g. 'iifname "wan" tcp sport != 22 ... drop'
    family: str = "ip"  # the table it goes in: "ip" (IPv4) or "ip6" (IPv6)


@dataclass(frozen=True)
class MtuChange:
    """Set the MTU on both ends of the link that holds ``node``'s ``iface``."""

    node: str
    iface: str
    mtu: int


@dataclass(frozen=True)
class Expected:
    """What one probe must produce: the ``outcome`` of its exchange and the ``path_mtu``
    that exchange reports (an ICMP frag-needed reached the client); or, with ``outcome``
    None, that the probe is never sent because it is larger than the client's own
    interface MTU ``local_mtu`` (it is in the verdict's ``not_sent``, in no exchange)."""

    outcome: Outcome | None
    path_mtu: int | None = None
    local_mtu: int | None = None


@dataclass(frozen=True)
class BigPings:
    """DF echoes larger than ``above`` bytes (total IP size) produce ``expected``."""

    above: int
    expected: Expected


@dataclass(frozen=True)
class DropAt:
    """Where a scenario's fault loses one protocol's packets: the lab ``node`` that drops
    them and the ``direction`` they were travelling, "out" (client to server) or
    "return" (server to client). A host firewall that drops a request on input is the
    server itself, on the way out. ``on_arrival``: the node drops them as they arrive,
    before it routes them (the MAP-E BR's tunnel end checks the port set as it
    decapsulates), so it never answers a trace's copies either: seen from the path the
    loss lies between the hop before it and the node. ``fragments_only``: the node drops
    only non-first fragments; a trace's copies are small, whole packets that pass it, so
    the trace cannot place the loss (``lost_at`` stays undecided)."""

    node: str
    direction: str  # "out" | "return"
    on_arrival: bool = False
    fragments_only: bool = False


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    expect: Mapping[str, str] = field(default_factory=dict)  # "tcp" -> Outcome, "change" -> field
    rules: tuple[NftRule, ...] = ()
    mtu: tuple[MtuChange, ...] = ()
    masquerade: Mapping[str, str] = field(default_factory=dict)  # node -> masquerade options
    port_set: Mapping[str, tuple[int, int]] = field(default_factory=dict)  # node -> tcp/udp ports
    proxy: bool = False  # run an HTTP server in the hgw (transparent-proxy)
    http_port: int = 80  # where the server's Apache listens
    probe_port: int | None = None  # where the TCP/HTTP probes go (None: http_port)
    big_pings: BigPings | None = None  # DF echoes above the smallest MTU; the others produce expect["icmp"]
    router: str = "linux"  # the router profile it needs (rig.lab.routers); --router picks it for the others
    drops: Mapping[str, DropAt] = field(default_factory=dict)  # protocol -> where the fault loses its packets
    access: str = "plain"  # the access line it needs (rig.lab.access); --access picks it for healthy
    expect6: Mapping[str, str] = field(default_factory=dict)  # the same as ``expect``, for the IPv6 probes
    ce_nat: str = "port-set"  # map-e: the CE NAPTs into its port-set, its "first-block" only, or "unchanged" ports
    sessions: int | None = None  # ds-lite: the AFTR's cap of TCP sessions per subscriber (None: AFTR_SESSIONS)
    probes: tuple[str, ...] = ()  # the probe kinds a run uses when --probes names none (empty: the default set)

    def expect_ping(self, size: int, family: int = 4) -> Expected | None:
        """What an ICMP echo of ``size`` bytes (total IP size, DF set) must produce; None
        when the scenario says nothing about ICMP. ``family`` 6: an ICMPv6 echo, whose
        truth is ``expect6``, or the IPv4 one where the fault is on both families' path
        (``big_pings`` from a link's MTU, ``expect6`` unset)."""
        expect = self.expect6 or self.expect if family == 6 else self.expect
        if self.big_pings is not None and size > self.big_pings.above and not (family == 6 and self.expect6):
            return self.big_pings.expected
        # the access line's own MTU for the family (a tunnel's 1460, PPPoE's 1454): the
        # hop in front of it answers frag-needed / packet too big
        access = ACCESS[self.access]
        mtu = access.mtu4 if family == 4 else access.mtu6
        if mtu is not None and size > mtu and "icmp" in expect:
            return Expected(Outcome.LOST_OUTBOUND, path_mtu=mtu)
        return Expected(Outcome(expect["icmp"])) if "icmp" in expect else None


_SYNACK = "tcp flags & (syn | ack) == syn | ack"
_ALL_DELIVERED = {"tcp": Outcome.DELIVERED, "icmp": Outcome.DELIVERED, "udp": Outcome.DELIVERED}
_SMALL_CAP = 16  # ds-lite-session-cap: small enough for the default burst (32) to exceed
_SYN = "tcp flags & (syn | ack) == syn"

SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "healthy",
            "no fault: every probe is delivered",
            expect={"tcp": Outcome.DELIVERED, "icmp": Outcome.DELIVERED, "udp": Outcome.DELIVERED},
        ),
        Scenario(
            "seed",
            "the seed: hgw drops TCP SYN-ACKs coming from the Internet; ping works",
            expect={"tcp": Outcome.LOST_RETURN, "icmp": Outcome.DELIVERED},
            drops={"tcp": DropAt("hgw", "return")},
            rules=(NftRule("hgw", "forward", f'iifname "wan" tcp sport != 22 {_SYNACK} drop'),),
        ),
        Scenario(
            "router-drop-return",
            "the user's own router drops TCP SYN-ACKs arriving on its WAN: they reach the router and die there",
            expect={"tcp": Outcome.LOST_RETURN, "icmp": Outcome.DELIVERED},
            drops={"tcp": DropAt("router", "return")},
            rules=(NftRule("router", "forward", f'iifname "wan" tcp sport != 22 {_SYNACK} drop'),),
        ),
        Scenario(
            "outbound-drop",
            "hgw drops the client's TCP SYNs to the server on the way out",
            expect={"tcp": Outcome.LOST_OUTBOUND, "icmp": Outcome.DELIVERED},
            drops={"tcp": DropAt("hgw", "out")},
            rules=(NftRule("hgw", "forward", f'iifname "lan" ip daddr 198.51.100.10 tcp dport != 22 {_SYN} drop'),),
        ),
        Scenario(
            "mtu-blackhole",
            f"PPPoE-like MTU {PPPOE_MTU} between hgw and inet, inet drops ICMP frag-needed: large TCP replies stall; "
            f"DF pings above {PPPOE_MTU} get the hgw's own frag-needed",
            expect={"tcp": Outcome.MTU_BLACKHOLE, "icmp": Outcome.DELIVERED},
            # the way out: the hgw, in front of the small link, answers frag-needed itself,
            # and nothing on the way back to the client drops it
            big_pings=BigPings(PPPOE_MTU, Expected(Outcome.LOST_OUTBOUND, path_mtu=PPPOE_MTU)),
            mtu=(MtuChange("hgw", "wan", PPPOE_MTU),),
            rules=(
                NftRule("inet", "output", "icmp type destination-unreachable icmp code frag-needed drop"),
                NftRule("inet", "forward", "icmp type destination-unreachable icmp code frag-needed drop"),
                # keep SSH usable: its segments fit the small link
                NftRule("hgw", "mangle", f"tcp dport 22 tcp flags syn tcp option maxseg size set {SSH_MSS}"),
                NftRule("hgw", "mangle", f"tcp sport 22 tcp flags syn tcp option maxseg size set {SSH_MSS}"),
            ),
        ),
        Scenario(
            "local-mtu",
            f"the client's own link has MTU {PPPOE_MTU} (a PPPoE or tunnel interface on the user's machine): "
            f"DF pings above it cannot leave the client; everything sent is delivered",
            expect={"tcp": Outcome.DELIVERED, "icmp": Outcome.DELIVERED, "udp": Outcome.DELIVERED},
            big_pings=BigPings(PPPOE_MTU, Expected(None, local_mtu=PPPOE_MTU)),
            mtu=(MtuChange("client", "eth0", PPPOE_MTU),),
        ),
        Scenario(
            "mss-clamp",
            "hgw clamps the MSS of SYNs to 1414 (NTT Flets PPPoE); everything still delivered",
            expect={"tcp": Outcome.DELIVERED, "change": "tcp.mss"},
            rules=(NftRule("hgw", "mangle",
                           "tcp flags syn tcp option maxseg size > 1414 tcp option maxseg size set 1414"),),
        ),
        Scenario(
            "transparent-proxy",
            "hgw redirects tcp/80 to its own HTTP server: the client gets 200, the server sees nothing",
            expect={"tcp": Outcome.ANSWERED_BY_MIDDLEBOX},
            rules=(NftRule("hgw", "prerouting", f'iifname "lan" tcp dport 80 redirect to :{PROXY_PORT}'),),
            proxy=True,
        ),
        Scenario(
            "rst-inject",
            "hgw answers the client's SYN to port 80 with a RST; the server never sees it",
            expect={"tcp": Outcome.RESET_BY_MIDDLEBOX},
            rules=(NftRule("hgw", "forward", f'iifname "lan" tcp dport 80 {_SYN} reject with tcp reset'),),
        ),
        Scenario(
            "edge-filter-icmp",
            "inet drops ICMP toward the server before it arrives (like Azure's NSG)",
            expect={"icmp": Outcome.LOST_OUTBOUND, "tcp": Outcome.DELIVERED},
            drops={"icmp": DropAt("inet", "out")},
            rules=(NftRule("inet", "forward", 'oifname "srv" ip protocol icmp drop'),),
        ),
        Scenario(
            "host-firewall-icmp",
            "the server's own firewall drops ICMP echo requests on input",
            expect={"icmp": Outcome.UNANSWERED, "tcp": Outcome.DELIVERED},
            drops={"icmp": DropAt("server", "out")},
            rules=(NftRule("server", "input", "icmp type echo-request drop"),),
        ),
        Scenario(
            "no-listener",
            "nothing listens on tcp/80 (Apache is on 8080): the server's kernel answers RST",
            expect={"tcp": Outcome.REFUSED, "icmp": Outcome.DELIVERED},
            http_port=8080,
            probe_port=80,
        ),
        Scenario(
            "port-set",
            "hgw NATs into a MAP-E-like set of 16 source ports: a larger burst fails",
            expect={"burst": Outcome.LOST_OUTBOUND, "icmp": Outcome.DELIVERED},
            port_set={"hgw": PORT_SET},
        ),
        Scenario(
            "fully-random",
            "router and hgw masquerade with fully-random: ports and echo ids rewritten, all delivered",
            expect={"tcp": Outcome.DELIVERED, "icmp": Outcome.DELIVERED, "udp": Outcome.DELIVERED},
            masquerade={"router": "fully-random", "hgw": "fully-random"},
        ),
        Scenario(
            "short-tcp-idle",
            f"the hgw forgets an established TCP connection after {TCP_IDLE} s of silence (Linux keeps one for "
            "5 days): a long-idle connection dies silently; every probe delivered",
            expect={"tcp": Outcome.DELIVERED, "icmp": Outcome.DELIVERED, "udp": Outcome.DELIVERED},
            rules=(
                NftRule("hgw", OBJECTS, f"ct timeout hgw-tcp {{ protocol tcp; l3proto ip; "
                                        f"policy = {{ established : {TCP_IDLE} }}; }}"),
                # the lab's own SSH control connection keeps Linux's timeout
                NftRule("hgw", "forward", 'meta l4proto tcp tcp dport != 22 ct timeout set "hgw-tcp"'),
            ),
        ),
        Scenario(
            "pf-router",
            "the user's router is pf-like (--router pf), healthy path: every probe delivered; the server sees "
            f"source ports {PF_NAT_PORTS[0]}-{PF_NAT_PORTS[1]}, IP IDs rewritten on the way out, SYN MSS clamped "
            f"to {PF_MAX_MSS}",
            expect={"tcp": Outcome.DELIVERED, "icmp": Outcome.DELIVERED, "udp": Outcome.DELIVERED, "change": "ip.id"},
            router="pf",  # the ports and the MSS are the profile's (rig.lab.routers.ROUTERS["pf"])
        ),
        # --- the NGN (rig.lab.access): each says the access line it needs ---
        Scenario(
            "map-e-outside-set",
            f"MAP-E behind a pf router (--router pf): the router NATs to ports in {PF_NAT_PORTS[0]}-{PF_NAT_PORTS[1]}, "
            f"the CE passes them through unchanged, and the BR drops every packet whose port is outside the "
            f"subscriber's {V6PLUS.size}-port set (all but the few in it); ping (no ports) and IPv6 work",
            expect={"tcp": Outcome.LOST_OUTBOUND, "udp": Outcome.LOST_OUTBOUND, "icmp": Outcome.DELIVERED},
            expect6=_ALL_DELIVERED,
            access="map-e", router="pf", ce_nat="unchanged",
            drops={"tcp": DropAt("br", "out", on_arrival=True), "udp": DropAt("br", "out", on_arrival=True)},
        ),
        Scenario(
            "map-e-exhaustion",
            f"MAP-E whose CE NATs into only the first {V6PLUS.block_size}-port block of its set (a known CE bug): "
            "a burst larger than the block fails on the way out; ping and IPv6 work",
            expect={"burst": Outcome.LOST_OUTBOUND, "icmp": Outcome.DELIVERED},
            expect6=_ALL_DELIVERED,
            access="map-e", ce_nat="first-block",
        ),
        Scenario(
            "ds-lite-session-cap",
            f"DS-Lite whose AFTR allows {_SMALL_CAP} TCP sessions per subscriber (a real one allows about "
            f"{AFTR_SESSIONS}): a larger burst fails on the way out; ping and IPv6 work",
            expect={"burst": Outcome.LOST_OUTBOUND, "icmp": Outcome.DELIVERED},
            expect6=_ALL_DELIVERED,
            access="ds-lite", sessions=_SMALL_CAP,
        ),
        Scenario(
            "tunnel-mtu-blackhole",
            f"MAP-E with MTU {TUNNEL_MTU} inside the tunnel, and the BR drops the ICMP frag-needed it would send: "
            f"large TCP replies over IPv4 stall; DF pings above {TUNNEL_MTU} get the CE's own frag-needed; "
            "IPv6 (native, MTU 1500) works",
            expect={"tcp": Outcome.MTU_BLACKHOLE, "icmp": Outcome.DELIVERED},
            expect6=_ALL_DELIVERED,
            access="map-e",  # DF pings above the tunnel's MTU: the access's own (Scenario.expect_ping)
            rules=(
                NftRule("br", "output", "icmp type destination-unreachable icmp code frag-needed drop"),
                # keep SSH usable: its segments fit the tunnel, both ways (the SYN-ACK's
                # MSS too: the client's upload in 1500-byte packets would draw the CE's
                # frag-needed, and the path MTU its kernel learns from it lowers the MSS
                # of every later SYN to the server, the probes' too: no blackhole left)
                NftRule("hgw", "mangle", f"tcp dport 22 tcp flags syn tcp option maxseg size set {TUNNEL_MTU - 40}"),
                NftRule("hgw", "mangle", f"tcp sport 22 tcp flags syn tcp option maxseg size set {TUNNEL_MTU - 40}"),
            ),
        ),
        Scenario(
            "br-drops-fragments",
            "MAP-E, whose BR drops every non-first IPv4 fragment (it carries no ports to check): a large UDP "
            "datagram the client's kernel fragments reaches the server as its first fragment only and is never "
            "delivered; ping and IPv6 ping work",
            expect={"udp": Outcome.LOST_OUTBOUND, "icmp": Outcome.DELIVERED},
            expect6={"icmp": Outcome.DELIVERED},
            access="map-e",  # the BR's tunnel end drops them (rig.lab.tunnel.admit): nothing more to inject
            probes=("icmp", "large-udp"),
            drops={"udp": DropAt("br", "out", on_arrival=True, fragments_only=True)},
        ),
        Scenario(
            "ipv6-works-ipv4-fails",
            "MAP-E where the BR drops IPv4 TCP SYN-ACKs coming from the Internet (the seed's symptom, IPv4 only): "
            "IPv4 TCP replies are lost, ping works; everything over IPv6 works",
            expect={"tcp": Outcome.LOST_RETURN, "icmp": Outcome.DELIVERED},
            expect6=_ALL_DELIVERED,
            access="map-e",
            rules=(NftRule("br", "forward", f'iifname "wan" tcp sport != 22 {_SYNACK} drop'),),
            drops={"tcp": DropAt("br", "return")},
        ),
        Scenario(
            "ipv4-works-ipv6-fails",
            "MAP-E where the home gateway's IPv6 firewall drops inbound TCP SYN-ACKs: IPv6 TCP replies are lost, "
            "ICMPv6 works; everything over IPv4 works",
            expect=_ALL_DELIVERED,
            expect6={"tcp": Outcome.LOST_RETURN, "icmp": Outcome.DELIVERED, "udp": Outcome.DELIVERED},
            access="map-e",
            rules=(NftRule("hgw", "forward", f'iifname "wan" {_SYNACK} drop', family="ip6"),),
        ),
    )
}


def get(name: str) -> Scenario:
    try:
        return SCENARIOS[name]
    except KeyError:
        raise UsageError(f"unknown scenario {name!r}; choose one of: {', '.join(SCENARIOS)}") from None


def cli_scenarios(args: argparse.Namespace) -> int:
    """``rig lab scenarios``: one line per scenario, with what its NATs do (rig.nat.truth,
    read from the same rules the lab builds)."""
    from rig.nat.truth import describe, scenario_truth

    width = max(len(n) for n in SCENARIOS)
    access = max(len(s.access) for s in SCENARIOS.values())
    for s in SCENARIOS.values():
        print(f"{s.name:<{width}}  {s.access:<{access}}  {s.description} [{describe(scenario_truth(s))}]")
    return 0
