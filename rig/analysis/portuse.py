"""Which public source ports the IPv4 connections left with, and what set they imply.

A MAP-E subscriber owns a port set (rig.portset): its border relay drops anything that
leaves with a port outside it, and a burst larger than the set runs out of ports. Both
look like "TCP dies, ping works". The facts come from the captures only:

- the public ports of the connections that worked, as the server saw them, and the port
  set they imply (rig.portset.infer);
- the public ports of the connections that failed, where a capture point past the home
  NATs saw them leave (``Exchange.seen_at``; the NGN capture of the lab), and which of
  them fall outside that set;
- exhaustion: connections lost on the way out while every port of the set was in use.

``port_use`` returns None when there is nothing to say (no IPv4 TCP/UDP exchange with a
public port, or a run too large to look at record by record: see families.MAX_SPLIT).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from rig.analysis.families import IPV4, MAX_SPLIT
from rig.outcome import Outcome
from rig.portset import PortSet, PortSetEstimate, infer

MIN_SAMPLES = 3  # fewer public ports than this say nothing about a set


def _port(endpoint: str | None) -> int | None:
    """The port of an "addr:port" endpoint rig wrote (None without one)."""
    if not endpoint or ":" not in endpoint:
        return None
    tail = endpoint.rsplit(":", 1)[1]
    return int(tail) if tail.isdigit() else None


@dataclass(frozen=True)
class PortUse:
    """The public ports of a run's IPv4 TCP and UDP exchanges, and what they imply."""

    delivered_ports: tuple[int, ...]  # distinct, as the server saw them
    estimate: PortSetEstimate
    failed: tuple[tuple[str, int], ...]  # (exchange id, public port) of ones lost on the way out whose port a point saw
    outside: tuple[str, ...]  # ids of failed exchanges whose public port is outside the estimated set
    lost_outbound: int  # failed on the way out (with or without a known port)
    exhausted: bool  # lost on the way out while the set (or block) was fully in use
    icmp_delivered: bool = False  # an IPv4 ICMP echo went through

    @property
    def set_size(self) -> int | None:
        ps = self.estimate.port_set
        return None if ps is None else ps.size

    def to_dict(self) -> dict[str, Any]:
        est = self.estimate
        d: dict[str, Any] = {"kind": est.kind, "ports_seen": len(self.delivered_ports), "low": est.low,
                             "high": est.high, "delivered_ports": list(self.delivered_ports),
                             "lost_outbound": self.lost_outbound}
        if est.port_set is not None:
            ps = est.port_set
            d.update({"psid_offset": ps.offset, "psid_length": ps.length, "psid": ps.psid, "blocks": ps.blocks,
                      "block_size": ps.block_size, "size": ps.size, "chance": est.chance})
        if est.reason:
            d["reason"] = est.reason
        if self.failed:
            d["failed_ports"] = {i: p for i, p in self.failed}
        if self.outside:
            d["outside"] = list(self.outside)
        if self.exhausted:
            d["exhausted"] = True
        if self.icmp_delivered:
            d["icmp_delivered"] = True
        return d

    @property
    def worth_saying(self) -> bool:
        """A port set was found, or the ports explain a failure (else the verdict omits it)."""
        return self.estimate.kind == "port-set" or self.sentence() is not None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "PortUse":
        ps = PortSet(int(d["psid_offset"]), int(d["psid_length"]), int(d["psid"])) if "psid" in d else None
        est = PortSetEstimate(str(d["kind"]), int(d["ports_seen"]), int(d["low"]), int(d["high"]), ps,
                              float(d.get("chance", 1.0)), d.get("reason"))
        failed = tuple((str(i), int(p)) for i, p in (d.get("failed_ports") or {}).items())
        return cls(tuple(int(p) for p in d.get("delivered_ports", ())), est, failed,
                   tuple(str(i) for i in d.get("outside", ())), int(d.get("lost_outbound", 0)),
                   d.get("exhausted") is True, d.get("icmp_delivered") is True)

    def sentence(self) -> str | None:
        """One plain sentence for the diagnosis, or None when the ports say nothing."""
        est = self.estimate
        ps = est.port_set
        if self.outside and ps is not None:
            n = len(self.failed) + len(self.delivered_ports)
            return (f"{len(self.outside)} of {n} connections left with public ports outside the {ps.size}-port set "
                    f"your other connections use ({ps.blocks} blocks of {ps.block_size}): a MAP-E border relay "
                    "drops those")
        if self.exhausted and ps is not None:
            return (f"{self.lost_outbound} connections were lost on the way out while all {ps.size} public ports "
                    f"of the set were in use: the port set is exhausted")
        if self.failed and ps is None:
            ports = sorted(p for _, p in self.failed)
            n = len(self.delivered_ports)
            others = f" ({n} other{'s' if n > 1 else ''} did)" if n else ""
            icmp = (": ICMP, which has no ports, passes — a port filter, such as a MAP-E border relay's port set, fits"
                    if self.icmp_delivered else "")
            return (f"the {len(self.failed)} connections that failed left with public ports {ports[0]}-{ports[-1]} "
                    f"and never reached the server{others}{icmp}")
        return None


def port_use(exchanges) -> PortUse | None:
    if len(exchanges) > MAX_SPLIT:
        return None
    light = getattr(exchanges, "light", None)
    records: Iterable = light() if callable(light) else exchanges
    delivered: set[int] = set()
    failed: list[tuple[str, int]] = []
    lost_outbound = 0
    icmp = False
    for e in records:
        if e.family != IPV4:
            continue
        outcome = Outcome(e.outcome)
        if e.protocol == "icmp":
            icmp = icmp or outcome == Outcome.DELIVERED
            continue
        if e.protocol not in ("tcp", "udp"):
            continue
        if outcome == Outcome.DELIVERED:
            p = _port(e.seen_at_server_as)
            if p is not None:
                delivered.add(p)
            continue
        if outcome != Outcome.LOST_OUTBOUND:
            continue  # it reached the server: its port passed whatever filters ports
        lost_outbound += 1
        # the last point past the NATs that saw it leave
        p = _port(e.seen_at[-1][1]) if e.seen_at else None
        if p is not None:
            failed.append((e.id, p))
    if len(delivered) < MIN_SAMPLES and not failed:
        return None
    est = infer(delivered)
    ps = est.port_set
    outside = tuple(i for i, p in failed if ps is not None and est.kind == "port-set" and not ps.contains(p))
    exhausted = ps is not None and lost_outbound > 0 and len(delivered) >= ps.size
    return PortUse(tuple(sorted(delivered)), est, tuple(failed), outside, lost_outbound, exhausted, icmp)
