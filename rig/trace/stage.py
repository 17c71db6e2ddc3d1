"""The trace stage of ``rig run``: which traces to make, making them, and the verdict
with ``lost_at`` added.

For each protocol and outcome that lost packets (lost-outbound, lost-return,
unanswered) one group is traced, from its first exchange's 5-tuple: the forward trace,
and for lost-return the return-path trace too; and one healthy exchange is traced
forward, so a run always shows the path. Every exchange of a group gets the group's
``lost_at``. Traces never change an outcome. An exchange a router answered with
frag-needed is not traced: the router said where and why (``path_mtu``).

Groups are per IP version too. The traces go to the server's address only (one
family: the lab's and Azure's IPv4); a lost group of the other family gets ``lost_at``
undecided, saying so, rather than a place found by following the other family's packets.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from dataclasses import dataclass

from rig.outcome import Outcome
from rig.trace.forward import forward
from rig.trace.locate import LOCATED, locate
from rig.trace.nodes import Namer, named
from rig.trace.records import LostAt, Trace
from rig.trace.reverse import ServerSide, reverse
from rig.trace.words import place, with_places
from rig.verdict import Exchange


@dataclass(frozen=True)
class Group:
    protocol: str
    outcome: Outcome
    exchange: Exchange  # the first of the group, whose 5-tuple is copied
    family: int = 4  # the IP version of its exchanges

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.protocol, str(self.outcome), self.family)


def _port(endpoint: str | None) -> int | None:
    if not endpoint or ":" not in endpoint:
        return None
    try:
        return int(endpoint.rsplit(":", 1)[1])
    except ValueError:
        return None


def _host(endpoint: str | None) -> str | None:
    return endpoint.rsplit(":", 1)[0] if endpoint and ":" in endpoint else endpoint


def family_of(address: str) -> int | None:
    """The IP version of the address the traces go to (None: not an IP address)."""
    try:
        return ipaddress.ip_address(address).version
    except ValueError:
        return None


def groups(exchanges, family: int | None = None) -> list[Group]:
    """The groups to trace: each (protocol, outcome, IP version) that lost packets, then
    one healthy exchange (TCP first) if any, of ``family`` (None: any)."""
    out: dict[tuple[str, Outcome, int], Group] = {}
    healthy: dict[str, Exchange] = {}
    for e in exchanges:
        if e.outcome in LOCATED and (e.path_mtu is not None or e.fragments_lost):
            continue  # a router said where and why (frag-needed); a lost later fragment: see FRAGMENTS
        if e.outcome in LOCATED and (e.protocol, e.outcome, e.family) not in out:
            out[(e.protocol, e.outcome, e.family)] = Group(e.protocol, Outcome(e.outcome), e, e.family)
        elif (e.outcome == Outcome.DELIVERED and e.protocol not in healthy
              and (family is None or e.family == family)):
            healthy[e.protocol] = e
    found = list(out.values())
    for proto in ("tcp", "icmp", "udp"):
        if proto in healthy:
            found.append(Group(proto, Outcome.DELIVERED, healthy[proto], healthy[proto].family))
            break
    return found


# why a datagram that lost its later fragments is not traced: a copy is one packet, and
# a router sends ICMP errors about a datagram's first fragment only (RFC 792)
FRAGMENTS = ("only their later fragments were lost: a trace copy is one packet, and routers answer for "
             "first fragments only")


def _fragments_lost_at(e: Exchange) -> LostAt:
    return LostAt("return" if e.outcome == Outcome.LOST_RETURN else "out", None, None, (), FRAGMENTS)


def traced(g: Group, family: int | None) -> bool:
    """Whether the traces (to an address of ``family``) can follow ``g``'s packets."""
    return family is None or g.family == family


def _untraced(g: Group, family: int) -> LostAt:
    direction = "return" if g.outcome == Outcome.LOST_RETURN else "out"
    return LostAt(direction, None, None, (),
                  f"the traces are IPv{family}-only: no trace follows these IPv{g.family} packets")


def trace_group(g: Group, client_netns: str | None, server: ServerSide | None, server_addr: str,
                max_ttl: int, wait: float) -> list[Trace]:
    e = g.exchange
    dport = _port(e.server) or 0
    sport = _port(e.client)
    echo_id = e.echo[0] if e.echo is not None else None
    fwd = forward(client_netns, g.protocol, server_addr, dport, sport, echo_id, max_ttl=max_ttl, wait=wait)
    traces = [dataclasses.replace(fwd, exchange=e.id)]
    if g.outcome == Outcome.LOST_RETURN and server is not None:
        back = reverse(client_netns, server, g.protocol, server_addr, dport, sport, _host(e.seen_at_server_as),
                       max_ttl=max_ttl, wait=wait)
        traces.append(dataclasses.replace(back, exchange=e.id))
    return traces


def add_lost_at(verdict, located: dict[tuple[str, str, int], LostAt]):
    """``verdict`` with ``lost_at`` on every exchange of each located group, and the
    diagnosis saying where. Only records built eagerly can be lost (the bulk batches
    hold delivered exchanges only)."""
    from rig.verdict import Diagnosis, ExchangeList

    def mark(e):
        if e.path_mtu is not None:
            return e  # the router that sent frag-needed is where (groups)
        la = _fragments_lost_at(e) if e.fragments_lost else located.get((e.protocol, str(e.outcome), e.family))
        return dataclasses.replace(e, lost_at=la) if la is not None else e

    ex = verdict.exchanges
    eager = ex.eager if isinstance(ex, ExchangeList) else list(ex)
    marked = [mark(e) for e in eager]
    ex = ExchangeList(marked, ex.batches, ex.src, ex.loc, ex.num) if isinstance(ex, ExchangeList) else tuple(marked)
    clauses = [place(proto, la) for (proto, _, _), la in located.items()]
    cut = {(e.protocol, e.lost_at.direction): e.lost_at for e in marked if e.fragments_lost and e.lost_at}
    clauses += [place(proto, la) for (proto, _), la in cut.items()]
    diagnosis = Diagnosis(with_places(verdict.diagnosis.summary, clauses), verdict.diagnosis.by_protocol)
    return dataclasses.replace(verdict, exchanges=ex, diagnosis=diagnosis)


def trace_verdict(verdict, client_netns: str | None, server: ServerSide | None, server_addr: str, name: Namer,
                  max_ttl: int = 16, wait: float = 1.0,
                  no_server: str = "no return-path trace: rig cannot run one on this server"):
    """Make the traces a verdict calls for; returns (verdict with lost_at, traces).
    ``server`` None: no return-path trace, for the reason ``no_server``."""
    traces: list[Trace] = []
    family = family_of(server_addr)
    for g in groups(verdict.exchanges, family):
        if not traced(g, family):
            continue
        traces += [named(t, name) for t in trace_group(g, client_netns, server, server_addr, max_ttl, wait)]
    return place_traces(verdict, traces, server_addr, name, None if server is not None else no_server), traces


def place_traces(verdict, traces: list[Trace], server_addr: str, name: Namer, no_server: str | None = None):
    """``verdict`` with the ``lost_at`` its traces give (each group's traces are those
    that copied its first exchange). ``no_server``: why no return-path trace was made."""
    located: dict[tuple[str, str, int], LostAt] = {}
    family = family_of(server_addr)
    for g in groups(verdict.exchanges, family):
        if g.outcome not in LOCATED:
            continue
        if family is not None and not traced(g, family):
            located[g.key] = _untraced(g, family)
            continue
        mine = [t for t in traces if t.exchange == g.exchange.id and t.protocol == g.protocol]
        fwd = next((t for t in mine if t.direction == "out"), None)
        back = next((t for t in mine if t.direction == "return"), None)
        la: LostAt | None
        if g.outcome == Outcome.LOST_RETURN and back is None and no_server is not None:
            la = LostAt("return", None, None, (), no_server)
        else:
            la = locate(g.outcome, server_addr, fwd, back, name)
        if la is not None:
            located[g.key] = la
    return add_lost_at(verdict, located)


def recorded_namer(traces: list[Trace], server_addr: str) -> Namer:
    """Hop names as the traces recorded them (``rig show``: the topology is not at hand)."""
    known = {(t.direction, h.ttl, h.address): h.node for t in traces for h in t.hops}
    at: dict[tuple[str, int], str] = {}  # (direction, index) -> node, for a hop named without an address
    for t in traces:
        for h in t.hops:
            if h.node:
                at.setdefault((t.direction, h.ttl), h.node)
                if t.arrived_ttl is not None and t.arrived_ttl > h.ttl:
                    other = "return" if t.direction == "out" else "out"
                    at.setdefault((other, t.arrived_ttl - h.ttl), h.node)
    # the client: the forward traces' source; on the way back it stands at the path's
    # length, which a node named in both directions gives (out hop k + return hop j)
    clients = {_host(t.source) for t in traces if t.direction == "out" and t.source}
    outs = {h.node: h.ttl for t in traces if t.direction == "out" for h in t.hops if h.node}
    for t in traces:
        for h in t.hops:
            if t.direction == "return" and h.node in outs:
                at.setdefault(("return", h.ttl + outs[h.node]), "client")

    def name(direction: str, index: int, address: str) -> str | None:
        if not address:
            return at.get((direction, index))
        return known.get((direction, index, address)) or ("server" if address == server_addr else
                                                          "client" if address in clients else None)

    return name


def relocate(verdict, traces_json: list, server_addr: str, name: Namer | None = None):
    """``verdict`` (re-analysed) with ``lost_at`` from a bundle's logs/traces.json; hops
    named by ``name`` (the lab's topology, as the run named them), else as recorded."""
    traces = [Trace.from_dict(t) for t in traces_json]
    return place_traces(verdict, traces, server_addr, name or recorded_namer(traces, server_addr),
                        "no return-path trace was recorded")
