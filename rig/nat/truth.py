"""The lab's NAT ground truth: what the NAT profile must say, read from the NAT rules the
lab builds (rig.lab.build), not written by hand beside them.

The lab's NATs are Linux nf_nat masquerades, and nf_nat decides a new mapping so
(measured on this kernel, 6.18, with ``rig run --probes nat`` over every scenario):

- without ``fully-random`` it reuses the mapping the same inside source already has
  when that mapping's port is in the rule's range (``find_appropriate_src``): the
  mapping is endpoint-independent; ``fully-random`` draws a fresh port per new
  5-tuple: address-and-port-dependent;
- it keeps the source port when it is in the rule's range (1024-65535 without
  ``to :lo-hi``) and free; otherwise, and always under ``fully-random``, it starts at
  a random port of the range: random allocation confined to that range;
- conntrack lets in only replies to the 5-tuple: address-and-port-dependent
  filtering, for every rule;
- nothing in the lab reflects a packet to the NAT's own public address back inside:
  no hairpinning.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from rig.lab.scenarios import Scenario
from rig.nat.records import Allocation, Dependence

LINUX_RANGE = (1024, 65535)  # where nf_nat maps a source port >= 1024 without "to :lo-hi"


@dataclass(frozen=True)
class NatTruth:
    """What the lab's NATs do, together, as seen from the responder (the same for UDP and TCP)."""

    mapping: Dependence
    filtering: Dependence
    allocation: Allocation
    range: tuple[int, int] | None  # the range public ports are confined to; None when ports are kept
    hairpin: bool
    rewriters: tuple[str, ...] = ()  # the NAT nodes that move source ports (the others keep them)

    @property
    def block(self) -> int | None:
        """The size of the aligned block of ports the range is, when it is one (a port-set NAT)."""
        if self.range is None:
            return None
        lo, hi = self.range
        size = hi - lo + 1
        return size if size & (size - 1) == 0 and lo % size == 0 and size < 4096 else None


def lab_truth(scenario: Scenario, nat_nodes: Sequence[str]) -> NatTruth:
    """The behaviour of the NATs on ``nat_nodes`` (client side first) as ``scenario``
    (with its router profile applied) builds them."""
    random_mapping = False
    changed: tuple[int, int] | None = None  # the range of the last NAT that rewrote the port
    rewriters: list[str] = []
    for node in nat_nodes:
        fully_random = "fully-random" in scenario.masquerade.get(node, "")
        rng = scenario.port_set.get(node)
        random_mapping |= fully_random
        if fully_random:
            changed = rng or LINUX_RANGE
            rewriters.append(node)
        elif rng is not None and (changed is None or not (rng[0] <= changed[0] and changed[1] <= rng[1])):
            # ports arriving outside the rule's range (or that may be) are moved into it
            changed = rng
            rewriters.append(node)
    return NatTruth(
        mapping=Dependence.ADDRESS_AND_PORT_DEPENDENT if random_mapping else Dependence.ENDPOINT_INDEPENDENT,
        filtering=Dependence.ADDRESS_AND_PORT_DEPENDENT,
        allocation=Allocation.PRESERVED if changed is None else Allocation.RANDOM,
        range=changed,
        hairpin=False,
        rewriters=tuple(rewriters),
    )


def describe(t: NatTruth) -> str:
    """The truth in words, for ``rig lab scenarios`` (RFC 4787's EIM / APDM / APDF)."""
    from rig.nat.words import ABBREV as short

    ports = "ports kept" if t.range is None else f"ports random in {t.range[0]}-{t.range[1]}"
    return (f"NAT: {short[t.mapping]}M, {short[t.filtering]}F, {ports}, "
            f"{'hairpinning' if t.hairpin else 'no hairpinning'}")


def scenario_truth(scenario: Scenario) -> NatTruth:
    """The truth of ``scenario`` behind its own router profile, on the seed topology's NATs."""
    from rig.lab.routers import router_for
    from rig.lab.topology import seed_topology

    applied = router_for(scenario, None).apply(scenario, node="router", wan="wan")
    return lab_truth(applied, [n.node for n in seed_topology().nats])
