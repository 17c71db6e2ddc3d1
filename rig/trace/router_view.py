"""What a capture at the user's router adds to ``rig probe``'s one-ended verdict.

The client's and the router's captures are analysed as ``rig diff client.pcap
router.pcap`` would (``rig.analysis.api.analyse``, the router's WAN capture in the
server's place, joined across the router's NAT): the analysis' outcome of each exchange
then says what happened between the client and the router. Read back for the probe:

- ``lost-return`` there: the reply reached the router and never the client: the loss
  is placed confidently after the router, on the way back (outcome ``lost-return``);
- ``lost-outbound`` there: the request never left the router (outcome ``lost-outbound``);
- ``unanswered`` there: the request left the router and no reply came back to it. Only a
  capture at the destination could tell a request lost past the router from one left
  unanswered or a reply lost before the router: the outcome stays ``incomplete`` and
  ``lost_at`` says why, naming no device.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Hashable

from rig.outcome import Outcome
from rig.trace.locate import trace_evidence
from rig.trace.records import HopRef, LostAt, Trace, TraceEvidence
from rig.trace.words import PACKETS

POINT = "router"


def _host(endpoint: str | None) -> str | None:
    return endpoint.rsplit(":", 1)[0] if endpoint and ":" in endpoint else endpoint


def exchange_key(protocol: str, client: str | None, echo: tuple[int, int] | None) -> Hashable:
    """What ties a probe to the analysis' exchange: the client's endpoint, or for ICMP
    the echo's (id, seq)."""
    return echo if protocol == "icmp" else client


def router_views(client_pcap: Path, router_pcap: Path, server_addr: str) -> dict[Hashable, Any]:
    """The analysis of the client's capture against the router's, by ``exchange_key``."""
    from rig.analysis.api import analyse
    from rig.capture import read_capture

    verdict = analyse(read_capture(str(client_pcap), lean=True), read_capture(str(router_pcap), lean=True),
                      server_addr=server_addr)
    return {exchange_key(e.protocol, e.client, e.echo): e for e in verdict.exchanges}


def with_router(e, seen, trace: Trace, target: str):
    """Exchange ``e`` (the client's one-ended view) with what the router's capture
    showed of it (``seen``: the analysis' exchange, None if it found none)."""
    if seen is None or e.outcome != Outcome.INCOMPLETE:
        return e
    req = PACKETS.get((e.protocol, "out"), f"{e.protocol.upper()} requests")
    rep = PACKETS.get((e.protocol, "return"), f"{e.protocol.upper()} replies")
    client = _host(e.client)
    wan = _host(seen.seen_at_server_as)  # the client as the router's WAN sent it: the router's address
    at_router = TraceEvidence(POINT, None, wan, "request")
    if seen.outcome == Outcome.LOST_RETURN:
        index = trace.arrived_ttl - 1 if trace.reached and trace.arrived_ttl else None  # the router: out hop 1
        lost = LostAt("return", HopRef(index, wan, POINT), HopRef(index + 1 if index else None, client, "client"),
                      (at_router, TraceEvidence(POINT, None, wan, "arrived"), TraceEvidence("client", None, client,
                                                                                          "nothing")))
        return dataclasses.replace(
            e, outcome=Outcome.LOST_RETURN, undecided_because=None, lost_between=(POINT, "client"), lost_at=lost,
            explanation=f"{rep} from {target} reach your router (its capture shows them arrive) and never the client")
    if seen.outcome == Outcome.LOST_OUTBOUND:
        lost = LostAt("out", HopRef(0, client, "client"), HopRef(1, None, POINT),
                      (TraceEvidence("client", None, client, "request"), TraceEvidence(POINT, None, None, "nothing")))
        return dataclasses.replace(
            e, outcome=Outcome.LOST_OUTBOUND, undecided_because=None, lost_between=("client", POINT), lost_at=lost,
            explanation=f"the {req} never leave your router (its capture on the way out does not show them)")
    if seen.outcome == Outcome.UNANSWERED:
        last = trace.last_answer
        past = f"; the forward trace's last answer is hop {last.ttl} ({last.address})" if last and not trace.reached \
            else ""
        where = (f"none arrive at your router, whose capture shows the {req} leave{past}: without a capture at "
                 f"{target} rig cannot tell whether the {req} die on the way there, {target} does not answer, "
                 f"or its {rep} die before your router")
        lost = LostAt("return", None, None, (*trace_evidence(trace), at_router,
                                             TraceEvidence(POINT, None, wan, "nothing")), where)
        why = (f"destination {target} is not rig's and the {rep} never arrive at your router: no capture shows "
               f"whether the {req} arrived there")
        return dataclasses.replace(e, undecided_because=why, lost_at=lost,
                                   explanation=f"no answer reached the client; the {rep} never arrive at your router")
    return e
