"""How long a trace waits for answers: from the round trips the run's own probes measured.

A trace sends its TTL-limited copies at once and then waits for the hops' ICMP errors
and the far end's answer; what never comes (the copies that died, the replies lost on
the way back) costs the whole wait. Linux traceroute bounds that wait by what it has
already seen: no more than NEAR (10) times the round trip of a farther hop that
answered, capped at MAX (5 s). rig's probes measured the round trip to the far end
itself, on the same path, before any trace: every hop is nearer than that, so
``FACTOR`` times the slowest round trip the probes saw bounds each answer a trace waits
for. It is capped at ``forward.WAIT`` (1 s), which is also the wait when no probe
measured a round trip on that path, and floored: at ``FLOOR`` on a real path (a router
answers time-exceeded from its slow path, later than it forwards), at ``LAB_FLOOR`` in
the lab, whose hops are namespaces of this machine (their errors were measured back
0.1 ms after the copies left: the kernel makes them inside the sender's own system
call; the floor is for a loaded machine's scheduling).
"""

from __future__ import annotations

from typing import Iterable

from rig.probes.records import ProbeResult
from rig.trace.forward import WAIT

FACTOR = 10  # traceroute's NEAR factor
FLOOR = 0.5  # seconds
LAB_FLOOR = 0.15


def round_trips(probes: Iterable[ProbeResult], server_addr: str) -> list[float]:
    """The round trips (seconds) the probes to ``server_addr`` measured: each echo's
    reply, each TCP connect that completed (the handshake is one round trip), and the
    kernel's smoothed RTT of each connection that got an ACK."""
    out: list[float] = []
    for p in probes:
        if not p.ok or p.host != server_addr:
            continue
        rtt_ms = p.seen.get("rtt_ms")
        if p.kind == "icmp" and isinstance(rtt_ms, (int, float)):
            out.append(rtt_ms / 1000)
        elapsed = p.seen.get("elapsed")
        if p.kind == "tcp" and p.seen.get("connected") is True and isinstance(elapsed, (int, float)):
            out.append(float(elapsed))
        if p.tcp is not None and p.tcp.rtt_us > 0:
            out.append(p.tcp.rtt_us / 1e6)
    return out


def trace_wait(probes: Iterable[ProbeResult], server_addr: str, backend: str = "") -> float:
    """Seconds a trace toward ``server_addr`` waits for answers, on a rig of ``backend``
    (see the module's docstring)."""
    rtts = round_trips(probes, server_addr)
    if not rtts:
        return WAIT
    return min(WAIT, max(LAB_FLOOR if backend == "lab" else FLOOR, FACTOR * max(rtts)))
