"""From traces to ``lost_at``: where a lost exchange's packets died (free functions).

The rule is Linux's and most routers': a node checks the TTL before its forward filter,
so a node that drops a packet still answers time-exceeded for the copy whose TTL runs
out there. The farthest hop that answered is where the packets died (or the link after
it), provided no copy got through; when one did, the loss did not repeat and the trace
cannot say. Traces never change an outcome: they only add where.
"""

from __future__ import annotations

from rig.outcome import Outcome
from rig.trace.nodes import Namer
from rig.trace.records import HopRef, LostAt, Trace, TraceEvidence

LOCATED = (Outcome.LOST_OUTBOUND, Outcome.LOST_RETURN, Outcome.UNANSWERED)


def trace_evidence(trace: Trace) -> tuple[TraceEvidence, ...]:
    """Each hop's answer, then the TTLs past the last one that drew nothing."""
    ev = [TraceEvidence(trace.direction, h.ttl, h.address, "arrived" if h.kind == "reply" and
                        trace.direction == "return" else h.kind) for h in trace.hops]
    last = max((h.ttl for h in trace.hops), default=0)
    if not trace.reached and last < trace.max_ttl:
        ev.append(TraceEvidence(trace.direction, last + 1, None, "nothing", trace.max_ttl))
    return tuple(ev)


def _undecided(direction: str, why: str, trace: Trace | None = None) -> LostAt:
    return LostAt(direction, None, None, trace_evidence(trace) if trace else (), why)


def _host(endpoint: str) -> str:
    first = endpoint.split(" ", 1)[0]
    return first.rsplit(":", 1)[0] if ":" in first else first


def _next_hop(direction: str, index: int, other: Trace | None, name: Namer) -> HopRef | None:
    """The hop after ``index`` (the first that never got the packets), from the trace of
    the other direction laid on the same line: return hop i stands where forward hop
    n - i does (n: the forward trace's length), and the other way round. Without an
    address, the name alone, where the namer knows the path (the lab)."""
    address: str | None = None
    if other is not None and other.arrived_ttl is not None:
        col = other.arrived_ttl - index - 1  # the other trace's TTL at the next hop
        if col == 0 and direction == "return":
            address = _host(other.source) or None  # the client itself
        else:
            address = next((h.address for h in other.hops if h.ttl == col and h.kind != "reply"), None)
    other_dir = "out" if direction == "return" else "return"
    if address is not None and other is not None and other.arrived_ttl is not None:
        node = name(other_dir, other.arrived_ttl - index - 1, address)
    else:
        node = name(direction, index + 1, "")
    if address is None and node is None:
        return None
    return HopRef(index + 1, address, node)


def _from_trace(trace: Trace | None, direction: str, name: Namer, other: Trace | None = None) -> LostAt:
    if trace is None:
        return _undecided(direction, f"no {'forward' if direction == 'out' else 'return-path'} trace was made")
    if trace.error:
        return _undecided(direction, trace.error)
    if trace.reached:
        return _undecided(direction, f"the trace's copies got through (from TTL {trace.arrived_ttl}): "
                                     "the loss did not repeat", trace)
    last = trace.last_answer
    if trace.unnumbered:  # hops answered that cannot be placed: the silence is not a place
        return _undecided(direction, f"{', '.join(trace.unnumbered)} answered the trace with copies rewritten on "
                                     "the way (pf's modulate state or random-id), which rig cannot number: where "
                                     "the packets stop cannot be told", trace)
    if last is None:
        return _undecided(direction, "no hop answered the trace", trace)
    after = HopRef(last.ttl, last.address, name(direction, last.ttl, last.address))
    return LostAt(direction, after, _next_hop(direction, last.ttl, other, name), trace_evidence(trace))


def locate(outcome: Outcome, server_addr: str, forward: Trace | None, reverse: Trace | None,
           name: Namer) -> LostAt | None:
    """``lost_at`` for an exchange of ``outcome`` (None for outcomes that lose nothing)."""
    if outcome == Outcome.LOST_OUTBOUND:
        return _from_trace(forward, "out", name, reverse)
    if outcome == Outcome.LOST_RETURN:
        return _from_trace(reverse, "return", name, forward)
    if outcome == Outcome.UNANSWERED:  # the server capture holds the request: it got that far
        ev: tuple[TraceEvidence, ...] = ()
        index = None
        if forward is not None and not forward.error:
            ev = trace_evidence(forward)
            last = forward.last_answer
            index = forward.arrived_ttl or (last.ttl + 1 if last else None)
        server = HopRef(index, server_addr, name("out", index or 0, server_addr) or "server")
        return LostAt("out", server, None, (*ev, TraceEvidence("server", None, server_addr, "request")))
    return None
