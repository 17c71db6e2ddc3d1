"""The verdict of one run: frozen records and their JSON, contract ``rig.verdict/1``.

DESIGN.md §3 is the contract. ``Verdict.to_dict()`` gives exactly that object (plus a
few additive keys: ``frames`` and ``path_mtu`` per exchange, ``clock_offset_s`` per
capture point, ``not_sent`` at the top);
``Verdict.from_dict()`` reads one back, refusing a newer format.
"""

from __future__ import annotations

import json
from collections import Counter, namedtuple
from collections.abc import Sequence
from dataclasses import MISSING, dataclass, field, fields
from functools import lru_cache, partial
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Mapping, Protocol, TextIO

if TYPE_CHECKING:
    from rig.analysis.portuse import PortUse

import numpy as np

from rig import forkparts
from rig.errors import EXIT_CLEAN, EXIT_PROBLEM, InputError
from rig.gcpause import gc_paused
from rig.jsontext import join_compact
from rig.nat.records import NatProfile
from rig.outcome import Outcome
from rig.trace.records import LostAt
from rig.unique import unique

FORMAT = "rig.verdict/1"

OUTCOMES = tuple(Outcome)  # the contract's outcome words, worst first (rig.outcome)
PROTOCOLS = ("tcp", "udp", "icmp")
LINE_EACH_PAST = 500  # exchanges an indented verdict has at most before it writes one per line
# exchanges a forked part of the JSON text has at least (~12 us a record to build and
# encode: 10k is ~0.1 s, well above a fork of the analysed process, ~20 ms at 1M packets)
PART_MIN = 10_000
CHANGE_FIELDS = (
    "ip.ttl",
    "ip.id",
    "ip.dscp",
    "ip.ecn",
    "tcp.mss",
    "tcp.options",
    "tcp.wscale",
    "tcp.isn",
    "icmp.id",
    "payload",
    "fragmented",
)


@dataclass(frozen=True, slots=True)
class CapturePointInfo:
    name: str  # client | server | router | ...
    file: str
    packets: int
    undecoded: int
    kernel_drops: int
    clock_offset_s: float | None = None  # this point's clock minus the client's, if estimated

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "name": self.name,
            "file": self.file,
            "packets": self.packets,
            "undecoded": self.undecoded,
            "kernel_drops": self.kernel_drops,
        }
        if self.clock_offset_s is not None:
            d["clock_offset_s"] = self.clock_offset_s
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "CapturePointInfo":
        return cls(d["name"], d["file"], int(d["packets"]), int(d["undecoded"]), int(d["kernel_drops"]),
                   d.get("clock_offset_s"))


@dataclass(frozen=True, slots=True)
class Change:
    """A field the path altered: its value at the client point and at the server point."""

    field: str  # one of CHANGE_FIELDS
    direction: str  # "out" (client -> server) | "back" (server -> client)
    client: Any
    server: Any
    note: str | None = None  # e.g. "3 hops", "SACK removed"
    offset: int | None = None  # tcp.isn: what the path added to the sender's sequence numbers, mod 2**32

    def to_dict(self) -> dict[str, Any]:
        d = {"field": self.field, "direction": self.direction, "client": self.client, "server": self.server}
        if self.note is not None:
            d["note"] = self.note
        if self.offset is not None:
            d["offset"] = self.offset
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Change":
        return cls(d["field"], d["direction"], d["client"], d["server"], d.get("note"), d.get("offset"))


def evidence_dict(point: str, frame: int, summary: str) -> dict[str, Any]:
    """``Evidence.to_dict`` of the record these fields make (what the fast paths hand
    the JSON writer in its place, ``ExchangeBatch.build``'s ``evidence``)."""
    return {"point": point, "frame": frame, "summary": summary}


@dataclass(frozen=True, slots=True)
class Evidence:
    point: str
    frame: int  # Wireshark's frame.number in that point's capture
    summary: str

    def to_dict(self) -> dict[str, Any]:
        return evidence_dict(self.point, self.frame, self.summary)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Evidence":
        return cls(d["point"], int(d["frame"]), d["summary"])


@dataclass(frozen=True, slots=True)
class Datagrams:
    """A UDP exchange's datagrams each way: ``sent`` as seen at the sender's capture
    point, ``lost`` never seen at the other (``out``: client to server, ``back``: server
    to client)."""

    out_sent: int
    out_lost: int
    back_sent: int
    back_lost: int

    def to_dict(self) -> dict[str, Any]:
        return {"out": {"sent": self.out_sent, "lost": self.out_lost},
                "back": {"sent": self.back_sent, "lost": self.back_lost}}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Datagrams":
        return cls(int(d["out"]["sent"]), int(d["out"]["lost"]), int(d["back"]["sent"]), int(d["back"]["lost"]))


def _hop(v: Any) -> tuple[str, str] | None:
    """An exchange's ``lost_between`` from JSON: two point names, else unknown (None)."""
    if isinstance(v, (list, tuple)) and len(v) == 2 and all(isinstance(x, str) for x in v):
        return v[0], v[1]
    return None


def _echo(v: Any) -> tuple[int, int] | None:
    """An exchange's ``echo`` from JSON: {"id", "seq"} as integers, else unknown (None)."""
    if isinstance(v, Mapping) and all(isinstance(v.get(k), int) and not isinstance(v.get(k), bool)
                                      for k in ("id", "seq")):
        return v["id"], v["seq"]
    return None


@lru_cache(maxsize=1 << 16)  # a run has fewer servers than exchanges (the mix pair: 5,000+; 4096 thrashed)
def _family(server: str) -> int:
    """``families.family_of_endpoint``, memoised (its import and test were a fifth of ``to_dict``)."""
    from rig.analysis.families import family_of_endpoint

    return family_of_endpoint(server)


@dataclass(frozen=True, slots=True)
class Exchange:
    id: str  # "tcp-1", "icmp-3", ...
    protocol: str  # tcp | udp | icmp
    client: str  # as seen at the client capture point
    server: str  # as the client addressed it
    seen_at_server_as: str | None  # the NAT mapping; None if never seen at the server
    outcome: Outcome
    explanation: str
    changes: tuple[Change, ...] = ()
    evidence: tuple[Evidence, ...] = ()
    frames: tuple[tuple[str, tuple[int, ...]], ...] = ()  # every frame of the exchange per point
    path_mtu: int | None = None  # the next-hop MTU an ICMP frag-needed about this exchange reported
    undecided_because: str | None = None  # why the outcome is 'incomplete' (a short fact), if rig knows
    datagrams: Datagrams | None = None  # UDP: the datagrams each way and how many were lost
    lost_between: tuple[str, str] | None = None  # the last capture point that saw the lost packets, the next
    port_reused: bool = False  # the NAT reused a public port the server still held (TIME_WAIT)
    echo: tuple[int, int] | None = None  # ICMP: (id, seq) of the echo request as the client sent it
    lost_at: LostAt | None = None  # where the traces place the loss (rig.trace.locate)
    seen_at: tuple[tuple[str, str], ...] = ()  # (extra point, the client's endpoint as the request passed it)
    fragments_lost: bool = False  # UDP: the lost datagram's first fragment arrived, its later ones never did

    def frames_at(self, point: str) -> tuple[int, ...]:
        return dict(self.frames).get(point, ())

    @property
    def family(self) -> int:
        """4 or 6: the IP version of the address the client sent to (rig.analysis.families)."""
        return _family(self.server)

    def to_dict(self) -> dict[str, Any]:
        return self._dict()

    def _dict(self, shared: dict[int, tuple[Any, dict[str, Any]]] | None = None) -> dict[str, Any]:
        """``to_dict``; given ``shared``, its lean form for the JSON writer (``record_dict``)."""
        return record_dict(shared, self.id, self.protocol, self.client, self.server, self.seen_at_server_as,
                           self.outcome, self.explanation, self.changes, self.evidence, self.frames, self.path_mtu,
                           self.undecided_because, self.datagrams, self.lost_between, self.port_reused, self.echo,
                           self.lost_at, self.seen_at, self.fragments_lost)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Exchange":
        return cls(
            d["id"], d["protocol"], d["client"], d["server"], d.get("seen_at_server_as"),
            Outcome.parse(d["outcome"], f"exchange {d['id']}"), d["explanation"],
            tuple(Change.from_dict(c) for c in d.get("changes", ())),
            tuple(Evidence.from_dict(e) for e in d.get("evidence", ())),
            tuple((p, tuple(int(x) for x in f)) for p, f in (d.get("frames") or {}).items()),
            None if d.get("path_mtu") is None else int(d["path_mtu"]),
            d.get("undecided_because"),
            Datagrams.from_dict(d["datagrams"]) if d.get("datagrams") else None,
            _hop(d.get("lost_between")),
            d.get("port_reused") is True,
            _echo(d.get("echo")),
            lost_at=LostAt.from_dict(d["lost_at"]) if isinstance(d.get("lost_at"), Mapping) else None,
            seen_at=tuple((str(p), str(a)) for p, a in (d.get("seen_at") or {}).items()),
            fragments_lost=d.get("fragments_lost") is True,
        )


_ident = id  # (record_dict's parameter ``id`` is the record's)


def record_dict(shared: dict[int, tuple[Any, dict[str, Any]]] | None, id: str, protocol: str, client: str,
                server: str, seen_at_server_as: str | None, outcome: Outcome, explanation: str,
                changes: tuple[Change, ...] = (), evidence: tuple[Evidence, ...] = (),
                frames: tuple[tuple[str, tuple[int, ...]], ...] = (), path_mtu: int | None = None,
                undecided_because: str | None = None, datagrams: Datagrams | None = None,
                lost_between: tuple[str, str] | None = None, port_reused: bool = False,
                echo: tuple[int, int] | None = None, lost_at: LostAt | None = None,
                seen_at: tuple[tuple[str, str], ...] = (), fragments_lost: bool = False) -> dict[str, Any]:
    """``Exchange.to_dict`` of the record these fields make (``Exchange``'s, in its
    order), the one rule of a record's keys. With ``shared`` (one writer's chunk of
    records), what gives the same JSON text through ``rig.jsontext`` from fewer objects:
    the frames as tuples, and the dict of a ``Change`` or ``Datagrams`` the fast paths
    share between records made once (``shared``: its id -> (it, its dict); the objects
    are kept, so an id stays theirs). The fast paths call it in place of ``Exchange``
    for the writer (``ExchangeList.dicts``), and ``evidence_dict`` in place of
    ``Evidence``: no record object at all. (orjson writes a slotted dataclass at a third
    of a dict's speed, so the evidence is dicts, not its records.)"""
    if shared is None:
        ch = [c.to_dict() for c in changes]
        fr: dict[str, Any] = {p: list(f) for p, f in frames}
    else:
        ch = []
        for c in changes:
            got = shared.get(_ident(c))
            if got is None:
                got = shared[_ident(c)] = (c, c.to_dict())
            ch.append(got[1])
        fr = dict(frames)
    d: dict[str, Any] = {
        "id": id,
        "protocol": protocol,
        "family": _family(server),
        "client": client,
        "server": server,
        "seen_at_server_as": seen_at_server_as,
        "outcome": outcome,
        "explanation": explanation,
        "changes": ch,
        "evidence": [e.to_dict() for e in evidence] if shared is None else
                    [e if type(e) is dict else e.to_dict() for e in evidence],  # (the fast paths': evidence_dict's)
        "frames": fr,
    }
    if path_mtu is not None:
        d["path_mtu"] = path_mtu
    if undecided_because is not None:
        d["undecided_because"] = undecided_because
    if datagrams is not None:
        if shared is None:
            d["datagrams"] = datagrams.to_dict()
        else:  # (the fast paths' delivered records share one)
            got = shared.get(_ident(datagrams))
            if got is None:
                got = shared[_ident(datagrams)] = (datagrams, datagrams.to_dict())
            d["datagrams"] = got[1]
    if lost_between is not None:
        d["lost_between"] = list(lost_between)
    if port_reused:
        d["port_reused"] = True
    if echo is not None:
        d["echo"] = {"id": echo[0], "seq": echo[1]}
    if lost_at is not None:
        d["lost_at"] = lost_at.to_dict()
    if seen_at:
        d["seen_at"] = dict(seen_at)
    if fragments_lost:
        d["fragments_lost"] = True
    return d


@dataclass(frozen=True, slots=True)
class NotSentProbe:
    """A probe whose request never left the client (the kernel refused the send), so no
    capture shows it and no exchange stands for it: from the probe's own record."""

    id: str  # the probe's id, "icmp-6"
    protocol: str  # tcp | udp | icmp
    target: str  # as the client addressed it
    size: int | None  # total IP size of the packet refused (DF echoes), None if the probe has none
    error: str  # the probe's error phrase ("message too long", "network unreachable", ...)
    local_mtu: int | None  # the MTU of the interface it would have left by, when it was too large
    reason: str  # the same as a short fact: "larger than the local interface MTU 1500"

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "protocol": self.protocol, "target": self.target, "size": self.size,
                "error": self.error, "local_mtu": self.local_mtu, "reason": self.reason}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "NotSentProbe":
        size, mtu = d.get("size"), d.get("local_mtu")
        return cls(d["id"], d["protocol"], d["target"], None if size is None else int(size), d["error"],
                   None if mtu is None else int(mtu), d["reason"])


# an exchange's fields as a plain named tuple, read like the record (its attributes);
# built from Exchange's own fields, in their order, with their defaults: what the table
# view builds for the exchanges it prints (rig.grouping; a frozen record's 19 fields cost
# ~2 us each time)
_VIEW_DEFAULTS = [f.default for f in fields(Exchange) if f.default is not MISSING]
ExchangeView = namedtuple("ExchangeView", [f.name for f in fields(Exchange)],  # type: ignore[misc]
                          defaults=_VIEW_DEFAULTS)  # type: ignore[misc]  # (mypy reads literal lists only)


@dataclass(frozen=True)
class EndpointCols:
    """Endpoints of some exchanges as columns: ``addr`` indexes into ``addrs`` (a
    capture's ``Capture.addrs``), ``port`` the ports (None: bare addresses, ICMP). The
    texts are ``summary.endpoints``'; the table view counts distinct ones without them."""

    addr: np.ndarray
    port: np.ndarray | None
    addrs: np.ndarray


@dataclass(frozen=True)
class TableCodes:
    """What the table view groups a batch's exchanges by, as columns (``rig.grouping``):
    ``story`` (n, k) ints, equal rows only where the records' server and explanation are
    equal; ``server`` (n,) ints, equal exactly where the records' server is; the client's
    endpoints and the server's view of them (``seen_at_server_as``)."""

    story: np.ndarray
    client: EndpointCols
    seen: EndpointCols
    server: np.ndarray


class ExchangeBatch(Protocol):
    """Exchanges of one protocol, all delivered, kept as columns until someone reads them."""

    protocol: str

    def build(self, idx: np.ndarray, numbers: list[int], light: bool = False,
              make: Callable[..., Any] = Exchange, evidence: Callable[..., Any] = Evidence) -> list[Any]:
        """The records of the batch's exchanges ``idx``, numbered ``numbers`` (their ids);
        ``light``: without evidence and frames (empty tuples). ``make`` is called with
        ``Exchange``'s arguments for each, ``evidence`` with ``Evidence``'s for each piece
        of evidence (the JSON writer's: ``record_dict`` and ``evidence_dict``)."""

    def changes_each(self, idx: np.ndarray) -> list[tuple[Change, ...]]:
        """The ``changes`` of each exchange ``idx`` (what ``build`` puts in its records)."""

    def change_keys(self, idx: np.ndarray) -> np.ndarray:
        """A key (int64) of each exchange ``idx``: equal keys, equal ``changes_each``
        (by value), so the table reads the changes once a key; a negative key is an
        exchange's own."""

    def table_codes(self, idx: np.ndarray) -> TableCodes:
        """What the table view groups exchanges ``idx`` by (``TableCodes``)."""

    def change_notes(self, idx: np.ndarray, field: str) -> set[str]:
        """The notes of every change of ``field`` among exchanges ``idx``."""

    def seen_at_server(self, idx: np.ndarray) -> list[str]:
        """``seen_at_server_as`` of exchanges ``idx``."""

    def change_fields(self, idx: np.ndarray) -> set[tuple[str, str]]:
        """(field, direction) of every change among exchanges ``idx``."""

    def datagram_sums(self, idx: np.ndarray) -> tuple[int, int, int, int]:
        """The ``datagrams`` of exchanges ``idx`` added up: (out sent, out lost, back
        sent, back lost); zeros where the records have none (TCP, echo)."""


def datagram_sums(records: Iterable[Any]) -> tuple[int, int, int, int]:
    """The ``datagrams`` of the delivered ones of ``records`` added up: (out sent, out
    lost, back sent, back lost)."""
    n = [0, 0, 0, 0]
    for e in records:
        g = e.datagrams
        if g is not None and e.outcome == Outcome.DELIVERED:
            for i, x in enumerate((g.out_sent, g.out_lost, g.back_sent, g.back_lost)):
                n[i] += x
    return n[0], n[1], n[2], n[3]


def batch_id(protocol: str, number: int) -> str:
    """The id of a batch's exchange numbered ``number`` (what its ``build`` writes)."""
    return f"{protocol}-{number}"


class ExchangeList(Sequence):
    """A run's exchanges in verdict order, built on demand.

    Measured at 1M packets (bench/diff.py): building the ~220k records of exchanges the
    fast paths decide in bulk took 5 of the analysis' 7 s and ~500 MB; most runs read
    only the counts (diagnosis, exit code). Position ``i`` is either a record built
    eagerly (``eager[loc[i]]``) or exchange ``loc[i]`` of ``batches[src[i]]``, numbered
    ``num[i]``. Compares equal to the tuple of its records.
    """

    CHUNK = 4096  # records built per batch call while iterating

    def __init__(self, eager: list[Exchange], batches: list[ExchangeBatch], src: np.ndarray, loc: np.ndarray,
                 num: np.ndarray):
        self.eager, self.batches = eager, batches
        self.src, self.loc, self.num = src, loc, num

    def __len__(self) -> int:
        return len(self.src)

    def _build(self, lo: int, hi: int, shared: dict[int, tuple[Any, dict[str, Any]]] | None = None) -> list[Any]:
        """Records ``lo`` to ``hi``; given ``shared``, their ``record_dict`` lean forms instead."""
        src, loc = self.src[lo:hi], self.loc[lo:hi]
        out: list[Any] = [None] * (hi - lo)
        for b in unique(src).tolist():
            pos = np.flatnonzero(src == b)
            if b < 0:
                items = [self.eager[j] for j in loc[pos].tolist()]
                if shared is not None:
                    items = [e._dict(shared) for e in items]
            elif shared is not None:
                items = self.batches[b].build(loc[pos], self.num[lo:hi][pos].tolist(), False,
                                              partial(record_dict, shared), evidence_dict)
            else:
                items = self.batches[b].build(loc[pos], self.num[lo:hi][pos].tolist())
            for p, e in zip(pos.tolist(), items):
                out[p] = e
        return out

    def __getitem__(self, i):
        if isinstance(i, slice):
            return tuple(self[j] for j in range(*i.indices(len(self))))
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError("exchange index out of range")
        if self.src[i] < 0:
            return self.eager[self.loc[i]]
        return self._build(i, i + 1)[0]

    def __iter__(self) -> Iterator[Exchange]:
        for chunk in self.chunks():
            yield from chunk

    def chunks(self) -> Iterator[list[Exchange]]:
        """The records in verdict order, ``CHUNK`` at a time (what a writer of them all
        reads: a record at a time through ``__iter__`` costs a generator step each)."""
        for lo in range(0, len(self), self.CHUNK):
            yield self._build(lo, min(lo + self.CHUNK, len(self)))

    def dicts(self, start: int = 0, stop: int | None = None) -> Iterator[list[dict[str, Any]]]:
        """The records' ``record_dict`` lean forms (what the JSON writer encodes), in
        verdict order, ``CHUNK`` at a time (of records ``start`` to ``stop``): the fast
        paths make them from their columns without a record object (measured on the
        1M-packet bench pair: ~1 s of rig diff --json's 4 s of writing)."""
        stop = len(self) if stop is None else stop
        for lo in range(start, stop, self.CHUNK):
            # (the dicts of Change and Datagrams objects shared within a chunk; record_dict)
            yield self._build(lo, min(lo + self.CHUNK, stop), shared={})

    def __eq__(self, other) -> bool:
        if isinstance(other, (tuple, list, ExchangeList)):
            return len(self) == len(other) and tuple(self) == tuple(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __repr__(self) -> str:
        return f"ExchangeList({len(self)} exchanges, {len(self.eager)} built)"

    def outcomes(self) -> list[tuple[str, str]]:
        """(id, outcome) of every exchange in verdict order, without building a record
        (the batches' exchanges are delivered)."""
        out: list[tuple[str, str]] = [("", "")] * len(self)
        for p, j in zip(np.flatnonzero(self.src < 0).tolist(), self.loc[self.src < 0].tolist()):
            e = self.eager[j]
            out[p] = (e.id, e.outcome)
        for b, batch in enumerate(self.batches):
            at = np.flatnonzero(self.src == b)
            for p, n in zip(at.tolist(), self.num[at].tolist()):
                out[p] = (batch_id(batch.protocol, n), Outcome.DELIVERED)
        return out

    def counts(self) -> Counter:
        """(protocol, outcome) -> number of exchanges, without building any record."""
        n = Counter((e.protocol, e.outcome) for e in self.eager)
        for b, k in zip(*np.unique(self.src[self.src >= 0], return_counts=True)):
            n[(self.batches[int(b)].protocol, Outcome.DELIVERED)] += int(k)
        n = +n
        return n

    def _idx(self, b: int) -> np.ndarray:
        return self.loc[self.src == b]

    def change_notes(self, field: str) -> set[str]:
        notes = {ch.note for e in self.eager for ch in e.changes if ch.field == field and ch.note}
        for b, batch in enumerate(self.batches):
            notes |= batch.change_notes(self._idx(b), field)
        return notes

    def change_fields(self) -> set[tuple[str, str]]:
        """(field, direction) of every change of every exchange, without building the batches' records."""
        out = {(ch.field, ch.direction) for e in self.eager for ch in e.changes}
        for b, batch in enumerate(self.batches):
            out |= batch.change_fields(self._idx(b))
        return out

    def datagram_sums(self) -> tuple[int, int, int, int]:
        """``datagram_sums`` of every exchange, without building the batches' records."""
        n = list(datagram_sums(self.eager))
        for b, batch in enumerate(self.batches):
            for i, x in enumerate(batch.datagram_sums(self._idx(b))):
                n[i] += x
        return n[0], n[1], n[2], n[3]

    def seen_at_server(self, protocol: str) -> list[str]:
        """``seen_at_server_as`` of every exchange of ``protocol`` that has one (any order)."""
        out = [e.seen_at_server_as for e in self.eager if e.protocol == protocol and e.seen_at_server_as]
        for b, batch in enumerate(self.batches):
            if batch.protocol == protocol:
                out += [x for x in batch.seen_at_server(self._idx(b)) if x]
        return out


@dataclass(frozen=True, slots=True)
class Diagnosis:
    summary: str
    by_protocol: Mapping[str, Mapping[str, int]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"summary": self.summary, "by_protocol": {p: dict(c) for p, c in self.by_protocol.items()}}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Diagnosis":
        return cls(d["summary"], {p: dict(c) for p, c in d.get("by_protocol", {}).items()})


@dataclass(frozen=True, slots=True)
class Orientation:
    """The two captures were analysed the other way round than given: ``client`` is the
    file analysed as the initiating side's (given second), ``because`` says why."""

    client: str
    server: str
    because: str

    def to_dict(self) -> dict[str, Any]:
        return {"swapped": True, "client": self.client, "server": self.server, "because": self.because}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Orientation":
        return cls(d["client"], d["server"], d["because"])


@dataclass(frozen=True, slots=True)
class Verdict:
    capture_points: tuple[CapturePointInfo, ...]
    exchanges: tuple[Exchange, ...] | ExchangeList
    diagnosis: Diagnosis
    # the probes that never left the client; None when no probe records were read (rig diff)
    not_sent: tuple[NotSentProbe, ...] | None = None
    orientation: Orientation | None = None  # set when the captures were analysed swapped
    nat: NatProfile | None = None  # the NAT profile (rig.nat), when the run measured one
    port_set: "PortUse | None" = None  # the public ports and the set they imply (rig.analysis.portuse)

    def exit_code(self) -> int:
        """0 when there are exchanges and every one is clean (delivered), else 1 (DESIGN.md §2)."""
        ex = self.exchanges
        outcomes = {o for _, o in ex.counts()} if isinstance(ex, ExchangeList) else {e.outcome for e in ex}
        measured = bool(outcomes) or (self.nat is not None and self.nat.reached)  # `--probes nat` alone
        ok = measured and all(Outcome(o).clean for o in outcomes) and (self.nat is None or self.nat.complete)
        return EXIT_CLEAN if ok else EXIT_PROBLEM

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "format": FORMAT,
            "capture_points": [c.to_dict() for c in self.capture_points],
            "exchanges": [e.to_dict() for e in self.exchanges],
            "diagnosis": self.diagnosis.to_dict(),
        }
        self._add_optional(d)
        return d

    def _add_optional(self, d: dict[str, Any]) -> None:
        """The top-level keys present only when they say something (``not_sent``, ``orientation``, ``nat``)."""
        if self.not_sent is not None:
            d["not_sent"] = [p.to_dict() for p in self.not_sent]
        if self.orientation is not None:
            d["orientation"] = self.orientation.to_dict()
        if self.nat is not None:
            d["nat"] = self.nat.to_dict()
        if self.port_set is not None:
            d["port_set"] = self.port_set.to_dict()

    def to_json(self, indent: int | None = 2) -> str:
        """The JSON text; indented for people, but one exchange per line past 500 exchanges
        (an indented list of frame numbers is a line per number)."""
        return "".join(piece for part in self._json_parts(indent, 1) for piece in part())

    def write_json(self, out, indent: int | None = 2) -> None:
        """``to_json()`` written to the text file ``out`` a piece at a time: the same
        characters without the whole text in memory (1M-packet bench pair, 220k exchanges:
        ``rig diff --json`` peaked at ~1 GB holding the records' texts, their join and the
        document; written this way, at the analysis' own peak). A long list of exchanges
        is written in parts, the later ones made by forked children on the other cores
        (``rig.forkparts``)."""
        n = len(self.exchanges)
        k = min(forkparts.cores(), forkparts.MAX_PARTS, max(1, n // PART_MIN))  # (one process where no fork)
        with gc_paused():  # records, dicts and texts a chunk at a time, no cycles (rig.gcpause)
            forkparts.write_parts(out, self._json_parts(indent, k))

    def _json_parts(self, indent: int | None, k: int) -> list[Callable[[], Iterator[str]]]:
        """The JSON text as ``k`` consecutive parts (``forkparts.Part``), each a generator
        of pieces; the exchanges split between them in verdict order."""
        if indent is None or len(self.exchanges) <= LINE_EACH_PAST:
            return [lambda: iter((json.dumps(self.to_dict(), indent=indent),))]
        pad = " " * indent
        # one record at a time: a dict of every exchange at once is ~1 GB at 200k exchanges
        mark = '"@@exchanges@@"'
        d = {"format": FORMAT, "capture_points": [c.to_dict() for c in self.capture_points], "exchanges": mark[1:-1],
             "diagnosis": self.diagnosis.to_dict()}
        self._add_optional(d)
        head, tail = json.dumps(d, indent=indent).split(mark, 1)
        sep = ",\n" + pad * 2
        ranges = list(forkparts.split(len(self.exchanges), k))

        def part(i: int) -> Iterator[str]:
            lo, hi = ranges[i]
            yield head + f"[\n{pad * 2}" if i == 0 else sep
            for n, dicts in enumerate(_dicts(self.exchanges, lo, hi)):
                if n:
                    yield sep
                yield join_compact(dicts, sep)
            if i == k - 1:
                yield f"\n{pad}]" + tail

        return [partial(part, i) for i in range(k)]

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Verdict":
        fmt = d.get("format") if isinstance(d, Mapping) else None
        if not isinstance(fmt, str) or not fmt.startswith("rig.verdict/"):
            raise InputError(f"not a rig verdict (format {fmt!r})")
        if fmt != FORMAT:
            raise InputError(f"verdict format {fmt} is newer than this rig understands ({FORMAT})")
        try:
            return cls(
                tuple(CapturePointInfo.from_dict(c) for c in d["capture_points"]),
                tuple(Exchange.from_dict(e) for e in d["exchanges"]),
                Diagnosis.from_dict(d["diagnosis"]),
                None if d.get("not_sent") is None else tuple(NotSentProbe.from_dict(p) for p in d["not_sent"]),
                Orientation.from_dict(d["orientation"]) if d.get("orientation") else None,
                nat=NatProfile.from_dict(d["nat"]) if d.get("nat") else None,
                port_set=_port_use(d.get("port_set")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"malformed {FORMAT} verdict: {exc!r}") from exc

    @classmethod
    def from_json(cls, text: str) -> "Verdict":
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as exc:
            raise InputError(f"verdict is not JSON: {exc}") from exc


def _dicts(exchanges: Sequence[Exchange], start: int, stop: int) -> Iterator[list[dict[str, Any]]]:
    """The lean forms of ``exchanges[start:stop]`` (``record_dict``), ``ExchangeList.CHUNK`` at a time."""
    if isinstance(exchanges, ExchangeList):
        yield from exchanges.dicts(start, stop)
        return
    for lo in range(start, stop, ExchangeList.CHUNK):
        shared: dict[int, tuple[Any, dict[str, Any]]] = {}  # (as long as the chunk's records)
        yield [e._dict(shared) for e in exchanges[lo:min(lo + ExchangeList.CHUNK, stop)]]


def _port_use(d: Any) -> "PortUse | None":
    if not d:
        return None
    from rig.analysis.portuse import PortUse

    return PortUse.from_dict(d)


def write_verdict_json(verdict: Verdict | Mapping[str, Any], out: TextIO) -> None:
    """The one writer of ``rig.verdict/1`` text, and a newline: ``rig diff --json``,
    ``rig show --json``, ``rig run --json`` and a bundle's verdict.json. A ``Verdict``
    is written a piece at a time (``Verdict.write_json``); a verdict already read as a
    mapping (a bundle's) is written as it is, indented."""
    if isinstance(verdict, Verdict):
        verdict.write_json(out)
    else:
        out.write(json.dumps(dict(verdict), indent=2, default=str))
    out.write("\n")
