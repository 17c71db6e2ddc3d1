"""The NAT profile as typed values, and its JSON (the verdict's optional ``nat`` key).

Every test result is either a value from a fixed vocabulary (RFC 4787 / 5382 words, a
port range, a port set, a number of seconds) or ``Undecided`` with the fact that kept
the test from deciding. JSON shape (README, "The NAT profile"): each key maps a
protocol to its value, an undecided one is ``{"undecided": "<reason>"}``::

    "nat": {
      "responder": {"addresses": 2, "ports": 2},
      "mapping":   {"udp": "endpoint-independent", "tcp": "endpoint-independent"},
      "filtering": {"udp": "address-and-port-dependent", ...},
      "port_allocation": {"udp": {"kind": "random", "low": 50112, "high": 65010,
                                  "samples": 16, "range": [50001, 65535]}, ...},
      "port_set":  {"udp": {"kind": "range", "samples": 16, ...}, ...},
      "hairpin":   {"udp": false, "tcp": false},
      "udp_binding_s": {"udp": {"at_least": 28.0, "at_most": 32.0}, "tcp": {"at_least": 16.0, "at_most": 32.0}},
      "layers":    {"udp": [{"index": 1, ...}], "tcp": {"undecided": "..."}}
    }
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Mapping, Union

from rig.portset import PortSet, PortSetEstimate


class Proto(StrEnum):
    UDP = "udp"
    TCP = "tcp"


class Dependence(StrEnum):
    """RFC 4787 §4.1 (mapping) and §5 (filtering) words."""

    ENDPOINT_INDEPENDENT = "endpoint-independent"
    ADDRESS_DEPENDENT = "address-dependent"
    ADDRESS_AND_PORT_DEPENDENT = "address-and-port-dependent"


class Allocation(StrEnum):
    """How the public port of a new mapping is chosen (RFC 4787 §4.2)."""

    PRESERVED = "preserved"  # the client's own port
    SEQUENTIAL = "sequential"  # each new mapping the next port (or close to it)
    RANDOM = "random"


@dataclass(frozen=True)
class Undecided:
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"undecided": self.reason}


@dataclass(frozen=True)
class PortAllocation:
    kind: Allocation
    low: int  # smallest public port seen
    high: int
    samples: int  # distinct public ports seen
    range: tuple[int, int] | None = None  # the range the ports are confined to, when one fits

    def to_dict(self) -> dict[str, Any]:
        return {"kind": str(self.kind), "low": self.low, "high": self.high, "samples": self.samples,
                "range": list(self.range) if self.range else None}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PortAllocation:
        r = d.get("range")
        return cls(Allocation(d["kind"]), int(d["low"]), int(d["high"]), int(d["samples"]),
                   (int(r[0]), int(r[1])) if r else None)


@dataclass(frozen=True)
class Binding:
    """Binding lifetime, UDP's or TCP's established-idle one (the JSON key
    ``udp_binding_s`` holds both, per protocol): the mapping survived ``at_least`` s of
    silence and was gone after ``at_most`` s (None: still there when the search's budget
    ran out)."""

    at_least: float
    at_most: float | None

    def to_dict(self) -> dict[str, Any]:
        return {"at_least": self.at_least, "at_most": self.at_most}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Binding:
        return cls(float(d["at_least"]), None if d.get("at_most") is None else float(d["at_most"]))


@dataclass(frozen=True)
class Layer:
    """One NAT on the path, counted from the client: where it was seen (the capture point
    after it, or "beyond <point>" for what lies past the last point), the source address
    before and after it, and whether it kept the client's source ports."""

    index: int
    at: str
    address_in: str
    address_out: str
    ports_preserved: bool
    mapping: Dependence | Undecided

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "at": self.at, "address_in": self.address_in, "address_out": self.address_out,
                "ports_preserved": self.ports_preserved, "mapping": _out(self.mapping)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Layer:
        return cls(int(d["index"]), d["at"], d["address_in"], d["address_out"], bool(d["ports_preserved"]),
                   _in(d["mapping"], Dependence))


def estimate_to_dict(e: PortSetEstimate) -> dict[str, Any]:
    d: dict[str, Any] = {"kind": e.kind, "samples": e.samples, "low": e.low, "high": e.high,
                         "chance": e.chance}
    if e.port_set is not None:
        ps = e.port_set
        d.update(size=ps.size, blocks=ps.blocks, block_size=ps.block_size, psid_offset=ps.offset,
                 psid_length=ps.length, psid=ps.psid)
    if e.reason:
        d["reason"] = e.reason
    return d


def estimate_from_dict(d: Mapping[str, Any]) -> PortSetEstimate:
    ps = PortSet(int(d["psid_offset"]), int(d["psid_length"]), int(d["psid"])) if "psid" in d else None
    return PortSetEstimate(d["kind"], int(d["samples"]), int(d["low"]), int(d["high"]), ps,
                           float(d.get("chance", 1.0)), d.get("reason"))


Value = Union[Dependence, PortAllocation, PortSetEstimate, bool, Binding, tuple, Undecided]


def _out(v: Any) -> Any:
    if isinstance(v, Undecided):
        return v.to_dict()
    if isinstance(v, StrEnum):
        return str(v)
    if isinstance(v, PortSetEstimate):
        return estimate_to_dict(v)
    if isinstance(v, tuple):
        return [x.to_dict() for x in v]
    if hasattr(v, "to_dict"):
        return v.to_dict()
    return v


def _in(raw: Any, kind: Any) -> Any:
    if isinstance(raw, Mapping) and "undecided" in raw:
        return Undecided(str(raw["undecided"]))
    return kind(raw)


@dataclass(frozen=True)
class Trail:
    """What the mapping test sent, for finding it again in a capture (rig.nat.layers): the
    client's local port, the request towards (A1,P1), (A2,P1), (A1,P2) (None: not sent)
    and the public endpoint the responder saw for each. Not part of the JSON."""

    local_port: int
    payloads: tuple[bytes | None, ...]
    public: tuple[str | None, ...]


@dataclass(frozen=True)
class ProtoProfile:
    """What the tests found for one protocol."""

    mapping: Dependence | Undecided
    filtering: Dependence | Undecided
    port_allocation: PortAllocation | Undecided
    port_set: PortSetEstimate | Undecided
    hairpin: bool | Undecided
    binding: Binding | Undecided
    layers: tuple[Layer, ...] | Undecided
    public: str | None = None  # the public address:port the responder saw first (None: nothing answered)
    trail: Trail | None = field(default=None, compare=False, repr=False)  # this run's only (rig.nat.layers)


# the JSON keys, in order, and the ProtoProfile field each one holds
KEYS = (("mapping", "mapping"), ("filtering", "filtering"), ("port_allocation", "port_allocation"),
        ("port_set", "port_set"), ("hairpin", "hairpin"), ("udp_binding_s", "binding"), ("layers", "layers"))


def _read(key: str, raw: Any) -> Any:
    if isinstance(raw, Mapping) and "undecided" in raw:
        return Undecided(str(raw["undecided"]))
    if key in ("mapping", "filtering"):
        return Dependence(raw)
    if key == "port_allocation":
        return PortAllocation.from_dict(raw)
    if key == "port_set":
        return estimate_from_dict(raw)
    if key == "hairpin":
        return bool(raw)
    if key == "udp_binding_s":
        return Binding.from_dict(raw)
    return tuple(Layer.from_dict(x) for x in raw)


@dataclass(frozen=True)
class NatProfile:
    """The verdict's ``nat`` section: one ProtoProfile per protocol tested."""

    protocols: Mapping[Proto, ProtoProfile]
    addresses: int  # the responder's addresses and ports the tests could use
    ports: int

    @property
    def reached(self) -> bool:
        """Some test got an answer from the responder (the path carried the tests)."""
        return any(p.public is not None for p in self.protocols.values())

    @property
    def complete(self) -> bool:
        """Every protocol's tests got an answer (a path that carries UDP but not TCP to the
        responder is not clean)."""
        return bool(self.protocols) and all(p.public is not None for p in self.protocols.values())

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"responder": {"addresses": self.addresses, "ports": self.ports}}
        d["public"] = {str(pr): p.public for pr, p in self.protocols.items()}
        for key, attr in KEYS:
            d[key] = {str(pr): _out(getattr(p, attr)) for pr, p in self.protocols.items()}
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> NatProfile:
        protos = {}
        for name in d.get("mapping", {}):
            pr = Proto(name)
            fields = {attr: _read(key, d[key][name]) for key, attr in KEYS}
            protos[pr] = ProtoProfile(**fields, public=d.get("public", {}).get(name))
        resp = d.get("responder", {})
        return cls(protos, int(resp.get("addresses", 0)), int(resp.get("ports", 0)))
