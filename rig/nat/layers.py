"""Which NAT on the path did what: from the router capture (and, later, the forward trace).

The router capture (``--capture-at router``) sees the NAT tests' packets after the
user's own router. The mapping test's requests are found there by their payload (the
capture table's ``phash``); their source there, against the client's own socket and the
public endpoint the responder saw, splits the path into the router's NAT and whatever
lies beyond it, each with its own mapping behaviour. ``trace_layers`` is where a
forward trace's per-hop rewrites can be added (None until the trace gives them).
"""

from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

import numpy as np

from rig.nat import classify
from rig.nat.records import Dependence, Layer, NatProfile, Proto, ProtoProfile, Undecided
from rig.errors import InputError

NO_ROUTER = "no router capture (--capture-at router) and no forward trace"
NOT_IN_CAPTURE = "the mapping test's packets are not in the router capture"
IP_PROTO = {Proto.UDP: 17, Proto.TCP: 6}


def trace_layers(profile: NatProfile, facts: Mapping[str, str]) -> NatProfile | None:
    """Hook for the forward trace (quoted packets per hop): None while there is none."""
    return None


def _seen_at(cap, proto: Proto, payloads: Sequence[bytes | None]) -> list[str | None]:
    """The source address:port each payload had in ``cap`` (None: not found)."""
    from rig.capture.table import format_addr, payload_hash

    pk = cap.packets
    out: list[str | None] = []
    for payload in payloads:
        if payload is None:
            out.append(None)
            continue
        rows = np.flatnonzero((pk["proto"] == IP_PROTO[proto]) & (pk["phash"] == payload_hash(payload)))
        if len(rows) == 0:
            out.append(None)
            continue
        row = pk[rows[0]]
        out.append(f"{format_addr(cap.addrs[row['src_i']])}:{int(row['sport'])}")
    return out


def _split(endpoint: str) -> tuple[str, int]:
    addr, port = endpoint.rsplit(":", 1)
    return addr, int(port)


def proto_layers(p: ProtoProfile, proto: Proto, cap, client_addr: str, addresses: int,
                 ports: int) -> tuple[Layer, ...] | Undecided:
    """The NATs before and beyond the router capture for one protocol."""
    if p.trail is None or p.trail.public[0] is None:
        return Undecided(classify.NO_ANSWER)
    at_router = _seen_at(cap, proto, p.trail.payloads)
    if at_router[0] is None:
        return Undecided(NOT_IN_CAPTURE)
    inside: list[str | None] = [f"{client_addr}:{p.trail.local_port}"] * 3
    stages: list[tuple[str, list[str | None], list[str | None]]] = [
        ("router", inside, at_router), ("beyond router", at_router, list(p.trail.public))]
    layers: list[Layer] = []
    before_dependent = False
    for at, before, after in stages:
        if before[0] is None or after[0] is None:
            continue
        (a_in, port_in), (a_out, port_out) = _split(before[0]), _split(after[0])
        if (a_in, port_in) == (a_out, port_out) and before == after:
            continue  # nothing rewritten here: no NAT
        if before_dependent:
            mapping: Dependence | Undecided = Undecided("the NAT before it already maps per destination")
        elif len({e for e in before if e is not None}) == 1:
            mapping = classify.mapping(after[0], after[1], after[2], addresses, ports)
        else:
            mapping = Undecided("its inside endpoint differs per destination")
        before_dependent = before_dependent or isinstance(mapping, Undecided) or mapping != Dependence.ENDPOINT_INDEPENDENT
        layers.append(Layer(len(layers) + 1, at, a_in, a_out, port_in == port_out, mapping))
    return tuple(layers)


def with_layers(profile: NatProfile, router_pcap: str | None, facts: Mapping[str, str]) -> NatProfile:
    """``profile`` with its ``layers`` filled where the evidence allows."""
    traced = trace_layers(profile, facts)
    if traced is not None:
        return traced
    if router_pcap is None:
        protos = {pr: dataclasses.replace(p, layers=Undecided(NO_ROUTER)) for pr, p in profile.protocols.items()}
        return dataclasses.replace(profile, protocols=protos)
    from rig.capture import read_capture

    try:
        cap = read_capture(router_pcap, lean=True)
    except (InputError, ValueError, OSError) as exc:
        why = Undecided(f"the router capture cannot be read: {exc}")
        return dataclasses.replace(profile, protocols={pr: dataclasses.replace(p, layers=why)
                                                       for pr, p in profile.protocols.items()})
    client = facts.get("client_addr", "client")
    protos = {pr: dataclasses.replace(p, layers=proto_layers(p, pr, cap, client, profile.addresses, profile.ports))
              for pr, p in profile.protocols.items()}
    return dataclasses.replace(profile, protocols=protos)
