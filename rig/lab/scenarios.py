"""Fault scenarios the lab injects on purpose: each one is a small data entry.

A scenario is a description plus the changes that make it real: nftables rules added to
a node's ``rig`` table, MTU changes on a link, NAT options, an extra HTTP server in the
home gateway, or the port the server's Apache listens on. ``rig.lab.build`` applies
them; nothing here runs a command. ``expect`` is the ground truth the pipeline's
verdicts are tested against (outcome per protocol, or a change seen on the path).

Every scenario keeps the SSH control connection (client -> server tcp/22) working:
rules match tcp/80, or exempt port 22, because configure and the remote capture use it.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Mapping

from rig.errors import UsageError

# chains of the per-node ``table ip rig`` (see rig.lab.build.base_ruleset)
CHAINS = ("prerouting", "postrouting", "mangle", "forward", "input", "output")

SSH_MSS = 1414  # SSH segments that fit a 1454-byte link when frag-needed is dropped
PROXY_PORT = 8080  # where the hgw's own HTTP server listens (transparent-proxy)
PORT_SET = (40000, 40015)  # MAP-E-like set of 16 source ports (port-set)


@dataclass(frozen=True)
class NftRule:
    node: str
    chain: str  # one of CHAINS
    rule: str  # nft rule text, e.g. 'iifname "wan" tcp sport != 22 ... drop'


@dataclass(frozen=True)
class MtuChange:
    """Set the MTU on both ends of the link that holds ``node``'s ``iface``."""

    node: str
    iface: str
    mtu: int


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    expect: Mapping[str, str] = field(default_factory=dict)  # "tcp" -> outcome, "change" -> field
    rules: tuple[NftRule, ...] = ()
    mtu: tuple[MtuChange, ...] = ()
    masquerade: Mapping[str, str] = field(default_factory=dict)  # node -> masquerade options
    port_set: Mapping[str, tuple[int, int]] = field(default_factory=dict)  # node -> tcp/udp ports
    proxy: bool = False  # run an HTTP server in the hgw (transparent-proxy)
    http_port: int = 80  # where the server's Apache listens


_SYNACK = "tcp flags & (syn | ack) == syn | ack"
_SYN = "tcp flags & (syn | ack) == syn"

SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "healthy",
            "no fault: every probe is delivered",
            expect={"tcp": "delivered", "icmp": "delivered", "udp": "delivered"},
        ),
        Scenario(
            "seed",
            "the seed: hgw drops TCP SYN-ACKs coming from the Internet; ping works",
            expect={"tcp": "lost-return", "icmp": "delivered"},
            rules=(NftRule("hgw", "forward", f'iifname "wan" tcp sport != 22 {_SYNACK} drop'),),
        ),
        Scenario(
            "outbound-drop",
            "hgw drops the client's TCP SYNs to the server on the way out",
            expect={"tcp": "lost-outbound", "icmp": "delivered"},
            rules=(NftRule("hgw", "forward", f'iifname "lan" ip daddr 198.51.100.10 tcp dport != 22 {_SYN} drop'),),
        ),
        Scenario(
            "mtu-blackhole",
            "PPPoE-like MTU 1454 between hgw and inet, ICMP frag-needed dropped: large replies stall",
            expect={"tcp": "mtu-blackhole", "icmp": "delivered"},
            mtu=(MtuChange("hgw", "wan", 1454),),
            rules=(
                NftRule("inet", "output", "icmp type destination-unreachable icmp code frag-needed drop"),
                NftRule("inet", "forward", "icmp type destination-unreachable icmp code frag-needed drop"),
                # keep SSH usable: its segments fit the small link
                NftRule("hgw", "mangle", f"tcp dport 22 tcp flags syn tcp option maxseg size set {SSH_MSS}"),
                NftRule("hgw", "mangle", f"tcp sport 22 tcp flags syn tcp option maxseg size set {SSH_MSS}"),
            ),
        ),
        Scenario(
            "mss-clamp",
            "hgw clamps the MSS of SYNs to 1414 (NTT Flets PPPoE); everything still delivered",
            expect={"tcp": "delivered", "change": "tcp.mss"},
            rules=(NftRule("hgw", "mangle",
                           "tcp flags syn tcp option maxseg size > 1414 tcp option maxseg size set 1414"),),
        ),
        Scenario(
            "transparent-proxy",
            "hgw redirects tcp/80 to its own HTTP server: the client gets 200, the server sees nothing",
            expect={"tcp": "answered-by-middlebox"},
            rules=(NftRule("hgw", "prerouting", f'iifname "lan" tcp dport 80 redirect to :{PROXY_PORT}'),),
            proxy=True,
        ),
        Scenario(
            "rst-inject",
            "hgw answers the client's SYN to port 80 with a RST; the server never sees it",
            expect={"tcp": "reset-by-middlebox"},
            rules=(NftRule("hgw", "forward", f'iifname "lan" tcp dport 80 {_SYN} reject with tcp reset'),),
        ),
        Scenario(
            "edge-filter-icmp",
            "inet drops ICMP toward the server before it arrives (like Azure's NSG)",
            expect={"icmp": "lost-outbound", "tcp": "delivered"},
            rules=(NftRule("inet", "forward", 'oifname "srv" ip protocol icmp drop'),),
        ),
        Scenario(
            "host-firewall-icmp",
            "the server's own firewall drops ICMP echo requests on input",
            expect={"icmp": "unanswered", "tcp": "delivered"},
            rules=(NftRule("server", "input", "icmp type echo-request drop"),),
        ),
        Scenario(
            "no-listener",
            "nothing listens on tcp/80 (Apache is on 8080): the server's kernel answers RST",
            expect={"tcp": "refused", "icmp": "delivered"},
            http_port=8080,
        ),
        Scenario(
            "port-set",
            "hgw NATs into a MAP-E-like set of 16 source ports: a larger burst fails",
            expect={"burst": "lost-outbound", "icmp": "delivered"},
            port_set={"hgw": PORT_SET},
        ),
        Scenario(
            "fully-random",
            "router and hgw masquerade with fully-random: ports and echo ids rewritten, all delivered",
            expect={"tcp": "delivered", "icmp": "delivered", "udp": "delivered"},
            masquerade={"router": "fully-random", "hgw": "fully-random"},
        ),
    )
}


def get(name: str) -> Scenario:
    try:
        return SCENARIOS[name]
    except KeyError:
        raise UsageError(f"unknown scenario {name!r}; choose one of: {', '.join(SCENARIOS)}") from None


def cli_scenarios(args: argparse.Namespace) -> int:
    """``rig lab scenarios``: one line per scenario."""
    width = max(len(n) for n in SCENARIOS)
    for s in SCENARIOS.values():
        print(f"{s.name:<{width}}  {s.description}")
    return 0
