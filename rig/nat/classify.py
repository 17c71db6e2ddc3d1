"""From what the responder saw to the NAT's behaviour: pure functions, no I/O.

The tests (rig.nat.client) collect observations; these functions turn them into the
words of RFC 4787 (UDP) and RFC 5382 (TCP), following RFC 5780's tests: the public
address:port of one inside socket towards the responder's (A1, P1), (A2, P1) and
(A1, P2) gives the mapping; which of the responder's other endpoints can send back to a
fresh mapping gives the filtering; a burst of new mappings gives the port allocation
and, through rig.portset.infer, the port set.
"""

from __future__ import annotations

from typing import Sequence

from rig.nat.records import Allocation, Dependence, PortAllocation, Undecided
from rig.portset import MAX_CHANCE, PortSetEstimate, infer

NO_ANSWER = "no answer from the responder"
ONE_ADDRESS = "the responder has one address"
ONE_PORT = "the responder has one port"

# ranges NATs and kernels are known to allocate from, smallest first: the allocation's
# range is the smallest of these that holds every port seen
KNOWN_RANGES: tuple[tuple[int, int], ...] = tuple(sorted(
    ((50001, 65535),  # pf's nat-to default (PF_NAT_PROXY_PORT_LOW/HIGH)
     (49152, 65535),  # IANA dynamic ports (Windows, BSD ephemeral)
     (32768, 60999),  # Linux ip_local_port_range
     (1024, 65535)),  # Linux NAT: any unprivileged port
    key=lambda r: r[1] - r[0]))
# consecutive new mappings this close (or closer) count as sequential allocation
MAX_SEQUENTIAL_STEP = 4
MIN_SAMPLES = 3


def mapping(base: str | None, other_address: str | None, other_port: str | None,
            addresses: int, ports: int) -> Dependence | Undecided:
    """The mapping behaviour from one inside socket's public endpoints towards (A1, P1)
    ``base``, (A2, P1) ``other_address`` and (A1, P2) ``other_port`` (None: not
    tested, or no answer)."""
    if base is None:
        return Undecided(NO_ANSWER)
    if addresses > 1 and other_address is None or ports > 1 and other_port is None:
        return Undecided(f"{NO_ANSWER} on its other address or port")
    if other_port is not None and other_port != base:
        return Dependence.ADDRESS_AND_PORT_DEPENDENT  # changes with the responder's port alone
    if other_address is not None:
        if other_address == base:
            if other_port is None:
                return Undecided(f"endpoint-independent across addresses; {ONE_PORT}")
            return Dependence.ENDPOINT_INDEPENDENT
        if other_port is None:
            return Undecided(f"address-dependent or address-and-port-dependent: {ONE_PORT}")
        return Dependence.ADDRESS_DEPENDENT
    if other_port is None:
        return Undecided(f"{ONE_ADDRESS} and one port")
    return Undecided(f"endpoint-independent or address-dependent: {ONE_ADDRESS}")


_ORDER = (Dependence.ENDPOINT_INDEPENDENT, Dependence.ADDRESS_DEPENDENT, Dependence.ADDRESS_AND_PORT_DEPENDENT)


def combine(trials: Sequence[Dependence | Undecided]) -> Dependence | Undecided:
    """The mapping over several trials: the most dependent one any trial showed (a trial
    that looks less dependent drew the same port by chance); undecided only when every
    trial is."""
    decided = [d for d in trials if isinstance(d, Dependence)]
    if not decided:
        return trials[0] if trials else Undecided(NO_ANSWER)
    return max(decided, key=_ORDER.index)


def filtering(confirmed: bool, from_other_address: bool | None, from_other_port: bool | None) -> Dependence | Undecided:
    """The filtering behaviour: whether a packet from the responder's other address
    (and port), or from its same address and another port, reached a fresh mapping
    (None: that endpoint does not exist). ``confirmed``: the mapping's own reply came."""
    if not confirmed:
        return Undecided(NO_ANSWER)
    if from_other_address:
        return Dependence.ENDPOINT_INDEPENDENT
    if from_other_port is None:
        if from_other_address is None:
            return Undecided(f"{ONE_ADDRESS} and one port")
        return Undecided(f"address-dependent or address-and-port-dependent: {ONE_PORT}")
    if from_other_port:
        if from_other_address is None:
            return Undecided(f"endpoint-independent or address-dependent: {ONE_ADDRESS}")
        return Dependence.ADDRESS_DEPENDENT
    return Dependence.ADDRESS_AND_PORT_DEPENDENT


def _known_range(low: int, high: int) -> tuple[int, int] | None:
    for lo, hi in KNOWN_RANGES:
        if lo <= low and high <= hi:
            return (lo, hi)
    return None


def edge_chance(est: PortSetEstimate) -> float:
    """How likely ports drawn from a true set would all share a bit beside its PSID field
    by chance (then the field inferred is one bit too long, and the set wrong): 2^-(n-1)
    per neighbouring bit (the one above, and the one below unless the field starts at
    bit 0). rig.portset.infer's ``chance`` is the other question: random ports agreeing."""
    if est.port_set is None:
        return 1.0
    edges = 1 + (est.port_set.block_bits > 0)
    return min(1.0, edges * 2.0 ** -(est.samples - 1))


def settled(est: PortSetEstimate) -> PortSetEstimate:
    """``est``, or undecided when its ports are too few to fix the set's edges: a NAT
    profile names a port set only when it is that set (never a confident wrong one)."""
    if est.kind != "port-set" or edge_chance(est) <= MAX_CHANCE:
        return est
    return PortSetEstimate(
        "undecided", est.samples, est.low, est.high, chance=est.chance,
        reason=(f"{est.samples} ports share a PSID-like field, too few to fix its edges: ports of one set "
                f"share a bit beside it {edge_chance(est):.2g} of the time"))


def allocation(pairs: Sequence[tuple[int, int]]) -> tuple[PortAllocation | Undecided, PortSetEstimate | Undecided]:
    """Port allocation and port set from a burst of new mappings: (local port, public
    port) in the order the mappings were made."""
    publics = [pub for _, pub in pairs]
    distinct = len(set(publics))
    if distinct < MIN_SAMPLES:
        why = Undecided(f"{distinct} distinct public port(s) seen; at least {MIN_SAMPLES} are needed")
        return why, why
    est = settled(infer(publics))
    low, high = min(publics), max(publics)
    if all(local == pub for local, pub in pairs):
        return PortAllocation(Allocation.PRESERVED, low, high, distinct), est
    steps = [(b - a) % 65536 for a, b in zip(publics, publics[1:])]
    kind = Allocation.SEQUENTIAL if all(1 <= s <= MAX_SEQUENTIAL_STEP for s in steps) else Allocation.RANDOM
    if est.kind == "range" and est.port_set is not None and est.port_set.size < 4096:
        confined: tuple[int, int] | None = est.port_set.ranges()[0]  # one aligned block
    elif est.kind == "port-set":
        confined = None  # the port set says more than a range
    else:
        confined = _known_range(low, high)
    return PortAllocation(kind, low, high, distinct, confined), est
