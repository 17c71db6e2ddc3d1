"""What a trace found, as typed values: the hops that answered, what each one quoted back
changed, and how far the packet got.

A ``Trace`` is one direction for one protocol: ``out`` (TTL-limited copies of the
client's request, sent from the client) or ``return`` (TTL-limited copies of the
server's reply into the client's NAT mapping, sent from the server). Hop ``ttl`` counts
from the sender of that direction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

# quoted-packet fields -> the verdict's change names (DESIGN.md §3 ``changes``)
FIELD_NAMES = {"id": "ip.id", "dscp": "ip.dscp", "ecn": "ip.ecn", "mss": "tcp.mss", "kinds": "tcp.options",
               "seq": "tcp.isn", "sport": "port.src", "dport": "port.dst", "src": "ip.src", "icmp_id": "icmp.id"}


@dataclass(frozen=True)
class FieldChange:
    """A field of the packet a hop quoted that differs from what was sent."""

    field: str  # FIELD_NAMES value
    sent: Any
    seen: Any

    def to_dict(self) -> dict[str, Any]:
        return {"field": self.field, "sent": self.sent, "seen": self.seen}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "FieldChange":
        return cls(d["field"], d["sent"], d["seen"])


@dataclass(frozen=True)
class Hop:
    """One TTL's answer: an ICMP error from ``address`` quoting the copy (``kind``
    "time-exceeded" or "unreachable"), or the far end itself (``kind`` "reply")."""

    ttl: int
    address: str
    kind: str
    changed: tuple[FieldChange, ...] = ()
    node: str | None = None  # the node or role it is, where rig knows (rig.trace.nodes)

    def to_dict(self) -> dict[str, Any]:
        return {"ttl": self.ttl, "address": self.address, "kind": self.kind,
                "changed": [c.to_dict() for c in self.changed], "node": self.node}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Hop":
        return cls(int(d["ttl"]), d["address"], d["kind"], tuple(FieldChange.from_dict(c) for c in d["changed"]),
                   d.get("node"))


@dataclass(frozen=True)
class Trace:
    direction: str  # "out" | "return"
    protocol: str  # tcp | udp | icmp
    source: str  # the sender as it addressed the copies ("192.168.1.10:40312")
    target: str  # where the copies went ("198.51.100.10:80"; return: the client's NAT mapping)
    max_ttl: int
    hops: tuple[Hop, ...]  # by TTL; TTLs that drew no answer are absent
    arrived_ttl: int | None = None  # the smallest TTL that reached the far end (None: none did)
    error: str | None = None  # why the trace could not be made (nothing was learnt)
    exchange: str | None = None  # the id of the exchange whose 5-tuple it copied
    # hops that answered with a quote rig could not number (the copy was rewritten on
    # the way: pf's modulate state shifts the sequence numbers, scrub random-id the IP ID)
    unnumbered: tuple[str, ...] = ()

    @property
    def last_answer(self) -> Hop | None:
        """The farthest hop that sent an ICMP error (not the far end's reply)."""
        errs = [h for h in self.hops if h.kind != "reply"]
        return errs[-1] if errs else None

    @property
    def reached(self) -> bool:
        return self.arrived_ttl is not None

    def to_dict(self) -> dict[str, Any]:
        return {"direction": self.direction, "protocol": self.protocol, "source": self.source, "target": self.target,
                "max_ttl": self.max_ttl, "hops": [h.to_dict() for h in self.hops], "arrived_ttl": self.arrived_ttl,
                "error": self.error, "exchange": self.exchange,
                **({"unnumbered": list(self.unnumbered)} if self.unnumbered else {})}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Trace":
        return cls(d["direction"], d["protocol"], d["source"], d["target"], int(d["max_ttl"]),
                   tuple(Hop.from_dict(h) for h in d["hops"]), d.get("arrived_ttl"), d.get("error"),
                   d.get("exchange"), tuple(str(a) for a in d.get("unnumbered") or ()))


def quote_changes(sent: Mapping[str, Any], quoted: Mapping[str, Any]) -> tuple[FieldChange, ...]:
    """The fields of ``quoted`` (a hop's copy of the packet) that differ from ``sent``; a
    field the quote does not hold (cut short) is not compared. TTL is not: it ran out."""
    out = []
    for key, name in FIELD_NAMES.items():
        if key in sent and key in quoted and sent[key] != quoted[key]:
            out.append(FieldChange(name, sent[key], quoted[key]))
    return tuple(out)


@dataclass(frozen=True)
class HopRef:
    """A hop of a trace as the verdict names it: its ``index`` counted from the sender of
    that direction, its ``address``, and the ``node`` it is, where rig knows (the lab's
    node names, or a role elsewhere: "server", "client-public")."""

    index: int | None
    address: str | None
    node: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "address": self.address, "node": self.node}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "HopRef":
        return cls(d.get("index"), d.get("address"), d.get("node"))


@dataclass(frozen=True)
class TraceEvidence:
    """One fact a trace or a capture gave: at ``ttl`` (``to_ttl``: a range) of the
    ``trace`` ("out" / "return" / a capture point name) ``address`` sent ``saw``
    ("time-exceeded", "unreachable", "reply", "arrived", "nothing", "request")."""

    trace: str
    ttl: int | None
    address: str | None
    saw: str
    to_ttl: int | None = None

    def to_dict(self) -> dict[str, Any]:
        d = {"trace": self.trace, "ttl": self.ttl, "address": self.address, "saw": self.saw}
        if self.to_ttl is not None:
            d["to_ttl"] = self.to_ttl
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TraceEvidence":
        return cls(d["trace"], d.get("ttl"), d.get("address"), d["saw"], d.get("to_ttl"))


@dataclass(frozen=True)
class LostAt:
    """Where a lost exchange's packets died (the verdict's ``lost_at``): the last hop
    known to have received them (``after_hop``) and the next one, when known. When the
    traces cannot decide, ``undecided_because`` says why and the hops are None."""

    direction: str  # "out" | "return"
    after_hop: HopRef | None
    before_hop: HopRef | None = None
    evidence: tuple[TraceEvidence, ...] = ()
    undecided_because: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"direction": self.direction,
                             "after_hop": None if self.after_hop is None else self.after_hop.to_dict(),
                             "before_hop": None if self.before_hop is None else self.before_hop.to_dict(),
                             "evidence": [e.to_dict() for e in self.evidence]}
        if self.undecided_because is not None:
            d["undecided_because"] = self.undecided_because
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "LostAt":
        return cls(d["direction"], HopRef.from_dict(d["after_hop"]) if d.get("after_hop") else None,
                   HopRef.from_dict(d["before_hop"]) if d.get("before_hop") else None,
                   tuple(TraceEvidence.from_dict(e) for e in d.get("evidence", ())), d.get("undecided_because"))
