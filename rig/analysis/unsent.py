"""The probes that never left the client, joined to a verdict built from the captures.

A request the client's kernel refused to send (a DF echo larger than the interface MTU,
a connect with no route or no local port) is in no capture, so the analysis cannot see
it; its probe record says so (``ProbeResult.not_sent``). ``with_probes`` lists those
probes in the verdict's ``not_sent`` and counts them in the diagnosis. The reason is
written here, once, from the record's facts.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable, Mapping

from rig.analysis.diagnosis import diagnose
from rig.probes.records import FORMAT as PROBE_FORMAT
from rig.probes.records import MSG_TOO_LONG, NotSent, ProbeResult
from rig.verdict import NotSentProbe, Verdict

PROTOCOL_OF_KIND = {"icmp": "icmp", "tcp": "tcp", "http": "tcp", "large": "tcp", "burst": "tcp", "udp": "udp"}


def reason(ns: NotSent) -> str:
    """Why the kernel refused the send, as a short fact."""
    if ns.error == MSG_TOO_LONG:
        if ns.local_mtu is not None:
            return f"larger than the local interface MTU {ns.local_mtu}"
        return f"larger than the client's kernel would send ({MSG_TOO_LONG})"
    return f"the client's kernel refused to send it ({ns.error})"


def not_sent_of(probes: Iterable[ProbeResult]) -> tuple[NotSentProbe, ...]:
    """The verdict entries of the probes whose request never left the client, in probe order."""
    out = []
    for p in probes:
        ns = p.not_sent
        if ns is None:
            continue
        out.append(NotSentProbe(p.id, PROTOCOL_OF_KIND.get(p.kind, p.kind), p.target, ns.size, ns.error,
                                ns.local_mtu, reason(ns)))
    return tuple(out)


def read_probes(records: Iterable[Mapping[str, Any]]) -> list[ProbeResult]:
    """Probe records as a bundle holds them (``probes.jsonl`` lines); lines that are not
    ``rig.probe/1`` records are not probes rig wrote and are left out."""
    return [ProbeResult.from_dict(r) for r in records if isinstance(r, Mapping) and r.get("format") == PROBE_FORMAT]


def with_probes(verdict: Verdict, probes: Iterable[ProbeResult]) -> Verdict:
    """``verdict`` with ``not_sent`` (empty when every probe left) and a diagnosis that counts them."""
    not_sent = not_sent_of(probes)
    diagnosis = diagnose(verdict.exchanges, not_sent) if not_sent else verdict.diagnosis
    return dataclasses.replace(verdict, not_sent=not_sent, diagnosis=diagnosis)
