"""IPv4 beside IPv6: which family each exchange used, and the diagnosis that compares them.

A dual-stack run probes the server's IPv4 and IPv6 addresses at once; the first
question of anyone on an IPv4-over-IPv6 access line is "does IPv6 work where IPv4 does
not?". ``FamilyComparison`` holds the facts (the outcome counts per family and protocol);
``diagnose_families`` writes the one sentence: each family's own diagnosis
(rig.analysis.diagnosis), a family whose exchanges were all delivered said in four
words ("IPv6 passes both ways; IPv4: TCP replies are lost between ...").

A run of one family is diagnosed as before, without building any record. Past
``MAX_SPLIT`` exchanges the families are not compared: telling them apart builds every
record the fast paths keep as columns (seconds at 200k exchanges), and a capture that
large is not a dual-stack probe run.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Iterable, Mapping

from rig.outcome import Outcome

IPV4, IPV6 = 4, 6  # the verdict's ``family`` key (DESIGN.md §3)
FAMILIES = (IPV4, IPV6)
NAMES = {IPV4: "IPv4", IPV6: "IPv6"}
MAX_SPLIT = 20_000


def family_of_endpoint(text: str) -> int:
    """6 for "[2001:db8::1]:80" or a bare IPv6 address, else 4."""
    return IPV6 if text.startswith("[") or text.count(":") > 1 else IPV4


@dataclass(frozen=True)
class FamilyComparison:
    """Outcome counts per family and protocol: {4: {"tcp": {"lost-return": 3}}}."""

    counts: Mapping[int, Mapping[str, Mapping[str, int]]]

    @property
    def families(self) -> tuple[int, ...]:
        return tuple(f for f in FAMILIES if f in self.counts)

    def clean(self, family: int) -> bool:
        """Every exchange of ``family`` delivered (or otherwise clean)."""
        by = self.counts.get(family, {})
        return bool(by) and all(Outcome(o).clean for c in by.values() for o in c)

    @property
    def differ(self) -> bool:
        """Both families were probed and one is clean where the other is not."""
        return len(self.families) == 2 and self.clean(IPV4) != self.clean(IPV6)


def compare(exchanges: Iterable) -> FamilyComparison:
    counts: dict[int, dict[str, Counter]] = {}
    for e in exchanges:
        counts.setdefault(e.family, {}).setdefault(e.protocol, Counter())[str(e.outcome)] += 1
    return FamilyComparison({f: {p: dict(c) for p, c in by.items()} for f, by in counts.items()})


def _records(exchanges) -> list | None:
    """The exchanges as records (light where the fast paths kept columns); None when
    there are too many to tell the families apart (see MAX_SPLIT)."""
    if len(exchanges) > MAX_SPLIT:
        return None
    light = getattr(exchanges, "light", None)
    return list(light()) if callable(light) else list(exchanges)


def _unsent_facts(not_sent: Sequence) -> list[tuple]:
    """What tells two families' unsent probes apart: protocol, size, error, interface MTU."""
    return sorted((p.protocol, p.size or 0, p.error, p.local_mtu or 0) for p in not_sent)


def diagnose_families(exchanges, not_sent: Sequence = ()):
    """The run's Diagnosis: rig.analysis.diagnosis.diagnose, with the two families
    compared when the run probed both (``by_protocol`` counts both together)."""
    from rig.analysis.diagnosis import diagnose

    whole = diagnose(exchanges, not_sent)
    records = _records(exchanges)
    if records is None:
        return whole
    return _with_ports(_compared(whole, records, not_sent), records)


def _with_ports(diagnosis, records):
    """The diagnosis with what the public ports say (rig.analysis.portuse), if anything."""
    from rig.analysis.portuse import port_use
    from rig.verdict import Diagnosis

    use = port_use(records)
    said = use.sentence() if use is not None else None
    return diagnosis if said is None else Diagnosis(f"{diagnosis.summary}; {said}", diagnosis.by_protocol)


def _compared(whole, records, not_sent):
    from rig.analysis.diagnosis import diagnose
    from rig.verdict import Diagnosis

    cmp = compare(records)
    if len(cmp.families) < 2:
        return whole
    unsent = {f: [p for p in not_sent if family_of_endpoint(p.target) == f] for f in FAMILIES}
    if cmp.counts[IPV4] == cmp.counts[IPV6] and _unsent_facts(unsent[IPV4]) == _unsent_facts(unsent[IPV6]):
        # the same outcomes on both: one diagnosis that counts both
        return Diagnosis(f"IPv4 and IPv6 alike: {whole.summary}", whole.by_protocol)
    parts = []
    for family in FAMILIES:
        own = [e for e in records if e.family == family]
        if cmp.clean(family) and not unsent[family]:
            parts.append(f"{NAMES[family]} passes both ways")
        else:
            parts.append(f"{NAMES[family]}: {diagnose(own, unsent[family]).summary}")
    # the family that works first, as a person on the line says it
    parts.sort(key=lambda p: not p.endswith("passes both ways"))
    return Diagnosis("; ".join(parts), whole.by_protocol)
