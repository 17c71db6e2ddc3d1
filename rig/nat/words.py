"""The NAT profile in words, for the table view, the report and the diagnosis: written
here once, from the typed profile (rig.nat.records), never parsed back."""

from __future__ import annotations

from typing import Any, Mapping

from rig.nat.records import Allocation, Binding, Dependence, Layer, NatProfile, PortAllocation, Undecided
from rig.portset import PortSetEstimate

# RFC 4787's abbreviations, without the M(apping) / F(iltering) they are followed by
ABBREV = {Dependence.ENDPOINT_INDEPENDENT: "EI", Dependence.ADDRESS_DEPENDENT: "AD",
          Dependence.ADDRESS_AND_PORT_DEPENDENT: "APD"}

# row label, ProtoProfile attribute
ROWS = (("mapping", "mapping"), ("filtering", "filtering"), ("public ports", "port_allocation"),
        ("port set", "port_set"), ("hairpinning", "hairpin"), ("binding lifetime", "binding"),
        ("layers", "layers"))


def _allocation(a: PortAllocation) -> str:
    seen = f"{a.samples} ports seen, {a.low}-{a.high}"
    if a.kind is Allocation.PRESERVED:
        return f"preserved (the client's own ports; {seen})"
    within = f" within {a.range[0]}-{a.range[1]}" if a.range else ""
    return f"{a.kind}{within} ({seen})"


def _port_set(e: PortSetEstimate) -> str:
    ps = e.port_set
    if e.kind == "port-set" and ps is not None:
        return (f"{ps.size} ports: {ps.blocks} blocks of {ps.block_size} (PSID {ps.psid}, offset {ps.offset}, "
                f"length {ps.length}; {e.samples} ports seen, chance of an accident {e.chance:.0e})")
    if ps is not None:
        lo, hi = ps.ranges()[0]
        return f"one block of {ps.size} ports, {lo}-{hi} ({e.samples} ports seen)"
    if e.kind == "undecided":
        return f"undecided: {e.reason}"
    return f"none found ({e.reason})" if e.reason else "none found"


def _binding(b: Binding) -> str:
    if b.at_most is None:
        return f"more than {b.at_least:g} s (still there when the search's budget ran out)"
    return f"{b.at_least:g}-{b.at_most:g} s"


def _layer(x: Layer) -> str:
    ports = "ports kept" if x.ports_preserved else "ports rewritten"
    return f"{x.index}: at {x.at}, {x.address_in} -> {x.address_out}, {ports}"


def value(v: Any) -> str:
    """One cell: a profile value in words."""
    if isinstance(v, Undecided):
        return f"undecided: {v.reason}"
    if isinstance(v, Dependence):
        return str(v)
    if isinstance(v, PortAllocation):
        return _allocation(v)
    if isinstance(v, PortSetEstimate):
        return _port_set(v)
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, Binding):
        return _binding(v)
    if isinstance(v, tuple):
        return "; ".join(_layer(x) for x in v) or "none"
    return str(v)


def rows(profile: NatProfile) -> list[tuple[str, list[str]]]:
    """(label, one cell per protocol in ``profile.protocols`` order) for every row."""
    return [(label, [value(getattr(p, attr)) for p in profile.protocols.values()]) for label, attr in ROWS]


def note(profile: NatProfile) -> str:
    """The pipeline's one-line stage note: mapping / filtering per protocol."""
    def one(v: Any) -> str:
        return ABBREV[v] if isinstance(v, Dependence) else "?"

    return ", ".join(f"{pr.name} {one(p.mapping)}M/{one(p.filtering)}F" for pr, p in profile.protocols.items())


def summary(profile: NatProfile) -> str:
    """One sentence: the mapping and filtering per protocol, or why nothing was measured."""
    if not profile.reached:
        reasons = {value(p.mapping) for p in profile.protocols.values()}
        return f"NAT profile: nothing measured ({'; '.join(sorted(reasons))})"
    return "NAT profile: " + "; ".join(f"{proto.name} mapping {value(p.mapping)}, filtering {value(p.filtering)}"
                                       for proto, p in profile.protocols.items())


SMALL_SET = 4096  # a set or block of public ports at most this large can run out (MAP-E: 240, 1008)


def failure_clause(profile: NatProfile, by_protocol: Mapping[str, Mapping[str, int]]) -> str | None:
    """What the profile adds to a diagnosis with failed exchanges: the public ports of a
    protocol that failed are confined to a small set or block (the port-set exhaustion
    and out-of-set drops of MAP-E lines). None when it adds nothing."""
    from rig.outcome import Outcome

    out = []
    for proto, p in profile.protocols.items():
        failed = sum(n for o, n in by_protocol.get(str(proto), {}).items() if not Outcome(o).clean)
        est = p.port_set
        if not failed or not isinstance(est, PortSetEstimate) or est.port_set is None or est.port_set.size > SMALL_SET:
            continue
        ps = est.port_set
        shape = (f"a {ps.size}-port set ({ps.blocks} blocks of {ps.block_size})" if est.kind == "port-set"
                 else "one block of {} ports, {}-{}".format(ps.size, *ps.ranges()[0]))
        out.append(f"the NAT profile finds {proto.name}'s public ports confined to {shape}, "
                   f"and {failed} {proto.name} exchange(s) failed")
    return "; ".join(out) or None
