"""Router profiles: what the user's own router (the lab's ``router`` node) does to the
packets it forwards, as data (no I/O here).

``linux`` is the kernel's plain masquerade. ``pf`` behaves like a FreeBSD/OpenBSD pf box
with ``nat-to`` (a random source port from 50001-65535 for every connection), ``scrub (random-id max-mss 1440)``:
nftables can do those three, so the lab makes them real. What nftables cannot do is in
``cannot_emulate``; rig's analysis covers those with synthetic captures
(tests/test_analysis_pf.py).

``apply`` folds a profile into a scenario (rig.lab.scenarios): the profile's NAT port
range becomes the router's port set and its rules join the scenario's, so any fault
scenario runs behind any router.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from rig.errors import UsageError
from rig.lab.scenarios import PF_MAX_MSS, PF_NAT_PORTS, NftRule, Scenario


@dataclass(frozen=True)
class RouterProfile:
    name: str
    description: str  # what it emulates
    nat_ports: tuple[int, int] | None = None  # tcp/udp source ports the NAT maps into
    nat_random: bool = False  # every mapping gets a random port (pf), not the client's own when free
    random_ip_id: bool = False  # a fresh IP ID on every unfragmented packet sent out the WAN side
    max_mss: int | None = None  # SYNs (both ways) with a larger MSS option get this one
    cannot_emulate: tuple[str, ...] = ()  # what the real router does that the lab cannot

    def rules(self, node: str, wan: str) -> tuple[NftRule, ...]:
        """The nft rules (beside the masquerade) that make this profile on ``node``."""
        out = []
        if self.random_ip_id:
            # forwarded packets only (the hook is forward), never a fragment: a fresh ID
            # on one fragment would break its reassembly (pf's random-id skips them too).
            # Not "mod 65536": nft 1.0.6 turns the 32-bit number to network order and
            # writes its first two bytes, so every ID came out 0 (measured: nft
            # --debug=netlink shows hton(reg, 4, 4) before a 2-byte write). A number over
            # all 32 bits is random in whichever half is written.
            out.append(NftRule(node, "mangle",
                               f'oifname "{wan}" ip frag-off & 0x3fff == 0 ip id set numgen random mod 4294967295'))
        if self.max_mss is not None:
            out.append(NftRule(node, "mangle", f"tcp flags syn tcp option maxseg size > {self.max_mss} "
                                               f"tcp option maxseg size set {self.max_mss}"))
        return tuple(out)

    def apply(self, scenario: Scenario, node: str = "router", wan: str = "wan") -> Scenario:
        """``scenario`` with this profile on ``node`` (its NAT leaves by ``wan``)."""
        port_set = dict(scenario.port_set)
        if self.nat_ports is not None:
            port_set[node] = self.nat_ports
        masquerade = dict(scenario.masquerade)
        if self.nat_random and "fully-random" not in masquerade.get(node, ""):
            masquerade[node] = f"{masquerade.get(node, '')} fully-random".strip()
        return replace(scenario, port_set=port_set, masquerade=masquerade, rules=scenario.rules + self.rules(node, wan))

    def facts(self) -> dict[str, str]:
        """The profile as the bundle's backend facts record it."""
        out = {"router": self.name}
        if self.nat_ports is not None:
            out["router_nat_ports"] = f"{self.nat_ports[0]}-{self.nat_ports[1]}"
        if self.random_ip_id:
            out["router_random_ip_id"] = "true"
        if self.max_mss is not None:
            out["router_max_mss"] = str(self.max_mss)
        if self.cannot_emulate:
            out["router_cannot_emulate"] = "; ".join(self.cannot_emulate)
        return out


ROUTERS: dict[str, RouterProfile] = {
    p.name: p
    for p in (
        RouterProfile("linux", "Linux masquerade: source ports kept where free, IP ID and MSS untouched"),
        RouterProfile(
            "pf",
            f"pf-like: NAT to random source ports in {PF_NAT_PORTS[0]}-{PF_NAT_PORTS[1]}, a random IP ID on every "
            f"packet forwarded out the WAN side (scrub random-id), SYN MSS clamped to {PF_MAX_MSS} (max-mss)",
            nat_ports=PF_NAT_PORTS,
            nat_random=True,
            random_ip_id=True,
            max_mss=PF_MAX_MSS,
            cannot_emulate=(
                "modulate state: pf shifts each connection's TCP sequence numbers, nftables cannot",
                "scrub reassemble tcp: pf modulates TCP timestamps, nftables cannot",
            ),
        ),
    )
}


def get_router(name: str) -> RouterProfile:
    try:
        return ROUTERS[name]
    except KeyError:
        raise UsageError(f"unknown router {name!r} (choose from {', '.join(ROUTERS)})") from None


def router_for(scenario: Scenario, requested: str | None) -> RouterProfile:
    """The profile a lab run uses: ``requested`` (--router), else the scenario's own.
    A scenario made for one profile (pf-router) refuses another: its expectations are
    that profile's."""
    profile = get_router(requested or scenario.router)
    if requested and scenario.router != ROUTERS["linux"].name and requested != scenario.router:
        raise UsageError(f"--router {requested}: scenario {scenario.name} is the {scenario.router} router "
                         f"(drop --router or use --router {scenario.router})")
    return profile
