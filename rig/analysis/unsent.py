"""The probes that never left the client, joined to a verdict built from the captures.

A request the client's kernel refused to send (a DF echo larger than the interface MTU,
a connect with no route or no local port) is in no capture, so the analysis cannot see
it; its probe record says so (``ProbeResult.not_sent``). ``with_probes`` lists those
probes in the verdict's ``not_sent`` and counts them in the diagnosis (``rig run``
from its ProbeResults, ``rig show`` from the bundle's probes.jsonl). The reason is
written here, once, from the record's facts.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable, Mapping

from rig.analysis.families import diagnose_families
from rig.errors import InputError
from rig.probes.records import FORMAT as PROBE_FORMAT
from rig.probes.records import MSG_TOO_LONG, NotSent, ProbeResult, not_sent_of_record
from rig.verdict import NotSentProbe, Verdict

PROTOCOL_OF_KIND = {"icmp": "icmp", "tcp": "tcp", "http": "tcp", "large": "tcp", "burst": "tcp", "udp": "udp"}


def reason(ns: NotSent) -> str:
    """Why the kernel refused the send, as a short fact."""
    if ns.error == MSG_TOO_LONG:
        if ns.local_mtu is not None:
            return f"larger than the local interface MTU {ns.local_mtu}"
        return f"larger than the client's kernel would send ({MSG_TOO_LONG})"
    return f"the client's kernel refused to send it ({ns.error})"


def _entry(pid: str, kind: str, target: str, ns: NotSent) -> NotSentProbe:
    return NotSentProbe(pid, PROTOCOL_OF_KIND.get(kind, kind), target, ns.size, ns.error, ns.local_mtu, reason(ns))


def not_sent_of(probes: Iterable[ProbeResult]) -> tuple[NotSentProbe, ...]:
    """The verdict entries of the probes whose request never left the client, in probe order."""
    return tuple(_entry(p.id, p.kind, p.target, p.not_sent) for p in probes if p.not_sent is not None)


def not_sent_in_records(records: Iterable[Mapping[str, Any]]) -> tuple[NotSentProbe, ...]:
    """The same from probe records as a bundle holds them (``probes.jsonl`` lines, JSON
    data): only ``rig.probe/1`` records, and only what ``not_sent`` needs of them."""
    out = []
    for d in records:
        if not isinstance(d, Mapping) or d.get("format") != PROBE_FORMAT:
            continue
        try:
            ns = not_sent_of_record(d)
            if ns is not None:
                out.append(_entry(str(d["id"]), str(d["kind"]), str(d["target"]), ns))
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"probe record {d.get('id', '?')!r} is incomplete: {exc!r}") from exc
    return tuple(out)


def with_probes(verdict: Verdict, not_sent: tuple[NotSentProbe, ...]) -> Verdict:
    """``verdict`` with ``not_sent`` (empty when every probe left) and a diagnosis that counts them."""
    diagnosis = diagnose_families(verdict.exchanges, not_sent) if not_sent else verdict.diagnosis
    return dataclasses.replace(verdict, not_sent=not_sent, diagnosis=diagnosis)
