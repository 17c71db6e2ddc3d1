"""The lab's NAT ground truth: what the NAT profile must say, read from what the lab
builds for a run (rig.lab.config: the access line's NAT nodes, the scenario's masquerade
options and ranges, the MAP-E port sets), not written by hand beside them.

The lab's NATs are Linux nf_nat masquerades, and nf_nat decides a new mapping so
(measured on this kernel, 6.18, with ``rig run --probes nat`` over every scenario, and
``--access map-e`` / ``--access ds-lite``):

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

A MAP-E CE's set of several blocks is one ``masquerade to :lo-hi`` per block, the block
drawn at random per new flow (rig.lab.build). A new flow from a mapped inside source
keeps its mapping only when the draw lands on that mapping's block (1 in ``blocks``),
so the mapping is address-and-port-dependent, and the public ports are random across
the whole set (measured: ``rig run --probes nat --json --access map-e``: UDP and TCP
APDM, 16 ports in 15 blocks, inferred as PSID offset 4, length 8, PSID 18). The
first-block CE of map-e-exhaustion is a single rule: endpoint-independent, random in
its 16 ports. DS-Lite's B4 does not NAT; the AFTR is a plain masquerade (ports kept).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping, Sequence

from rig.lab.scenarios import Scenario
from rig.nat.records import Allocation, Dependence
from rig.portset import PortSet

if TYPE_CHECKING:
    from rig.lab.config import LabConfig

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
    port_set: PortSet | None = None  # the set of several blocks public ports are drawn from (MAP-E)
    nats: tuple[str, ...] = ()  # the NAT nodes, client side first
    public: str | None = None  # the address the last NAT maps to

    @property
    def block(self) -> int | None:
        """The size of the aligned block of ports the range is, when it is one (a port-set NAT)."""
        if self.range is None:
            return None
        lo, hi = self.range
        size = hi - lo + 1
        return size if size & (size - 1) == 0 and lo % size == 0 and size < 4096 else None


def _within(inner: tuple[int, int] | PortSet | None, rng: tuple[int, int]) -> bool:
    """Whether every port ``inner`` may hold lies in ``rng`` (None: any port may arrive)."""
    if inner is None:
        return False
    spans = inner.ranges() if isinstance(inner, PortSet) else [inner]
    return all(rng[0] <= lo and hi <= rng[1] for lo, hi in spans)


def lab_truth(scenario: Scenario, nat_nodes: Sequence[str],
              nat_sets: Mapping[str, PortSet] | None = None, public: str | None = None) -> NatTruth:
    """The behaviour of the NATs on ``nat_nodes`` (client side first) as ``scenario``
    (with its router profile applied) builds them; ``nat_sets``: the nodes whose NAT maps
    into a MAP-E port set (rig.lab.access.nat_sets), as rig.lab.build reads them."""
    random_mapping = False
    changed: tuple[int, int] | PortSet | None = None  # where the last NAT that rewrote the port put it
    rewriters: list[str] = []
    for node in nat_nodes:
        fully_random = "fully-random" in scenario.masquerade.get(node, "")
        pset = (nat_sets or {}).get(node)
        if pset is not None and pset.blocks > 1:
            # one rule per block, a block drawn per new flow: a fresh port in the set
            # unless the draw hits the block of the source's mapping (module docstring)
            random_mapping = True
            changed = pset
            rewriters.append(node)
            continue
        rng = pset.ranges()[0] if pset is not None else scenario.port_set.get(node)
        random_mapping |= fully_random
        if fully_random:
            changed = rng or LINUX_RANGE
            rewriters.append(node)
        elif rng is not None and not _within(changed, rng):
            # ports arriving outside the rule's range (or that may be) are moved into it
            changed = rng
            rewriters.append(node)
    return NatTruth(
        mapping=Dependence.ADDRESS_AND_PORT_DEPENDENT if random_mapping else Dependence.ENDPOINT_INDEPENDENT,
        filtering=Dependence.ADDRESS_AND_PORT_DEPENDENT,
        allocation=Allocation.PRESERVED if changed is None else Allocation.RANDOM,
        range=None if isinstance(changed, PortSet) else changed,
        hairpin=False,
        rewriters=tuple(rewriters),
        port_set=changed if isinstance(changed, PortSet) else None,
        nats=tuple(nat_nodes),
        public=public,
    )


def describe(t: NatTruth) -> str:
    """The truth in words, for ``rig lab scenarios`` (RFC 4787's EIM / APDM / APDF)."""
    from rig.nat.words import ABBREV as short

    if t.port_set is not None:
        ps = t.port_set
        ports = (f"ports random in a {ps.size}-port set (PSID {ps.psid}: {ps.blocks} blocks of "
                 f"{ps.block_size})")
    elif t.range is None:
        ports = "ports kept"
    else:
        ports = f"ports random in {t.range[0]}-{t.range[1]}"
    where = f" ({', '.join(t.nats)})" if t.nats else ""
    return (f"NAT{where}: {short[t.mapping]}M, {short[t.filtering]}F, {ports}, "
            f"{'hairpinning' if t.hairpin else 'no hairpinning'}")


def config_truth(config: LabConfig) -> NatTruth:
    """The truth of the lab ``config`` describes: its topology's NAT nodes, its
    scenario's masquerades and its port sets."""
    topo = config.topology
    nats = [n.node for n in topo.nats]
    public = None
    if topo.nats:
        last = topo.nats[-1]
        tun = next((t for t in topo.tunnels if (t.node, t.tun) == (last.node, last.out_iface)), None)
        addr = tun.addr if tun is not None else topo.endpoint(last.node, last.out_iface).addr
        public = addr.split("/", 1)[0] if addr else None
    return lab_truth(config.scenario, nats, config.nat_sets, public)


def scenario_truth(scenario: Scenario, router: str | None = None, access: str | None = None) -> NatTruth:
    """The truth of ``scenario`` behind ``router`` and ``access`` (None: its own), on the
    NATs the lab builds for them."""
    from rig.lab.config import lab_config

    return config_truth(lab_config(scenario, router, access))
