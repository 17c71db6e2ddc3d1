"""Which NAT on the path did what: from the router capture (and, later, the forward trace).

The router capture sees the NAT tests' packets after the user's own router: their
source there, against the client's own socket and the public endpoint the responder
saw, splits the path into the router's NAT and whatever lies beyond it.
``with_layers`` is where a forward trace's per-hop rewrites can be added
(``trace_layers``: None until the trace gives them).
"""

from __future__ import annotations

import dataclasses
from typing import Mapping

from rig.nat.records import NatProfile, Undecided

NO_ROUTER = "no router capture (--capture-at router) and no forward trace"


def trace_layers(profile: NatProfile, facts: Mapping[str, str]) -> NatProfile | None:
    """Hook for the forward trace (quoted packets per hop): None while there is none."""
    return None


def with_layers(profile: NatProfile, router_pcap: str | None, facts: Mapping[str, str]) -> NatProfile:
    """``profile`` with its ``layers`` filled where the evidence allows."""
    traced = trace_layers(profile, facts)
    if traced is not None:
        return traced
    if router_pcap is None:
        protos = {pr: dataclasses.replace(p, layers=Undecided(NO_ROUTER)) for pr, p in profile.protocols.items()}
        return dataclasses.replace(profile, protocols=protos)
    return profile
