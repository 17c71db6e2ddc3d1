"""The trace stage for a provisioned Rig: where each side runs, and how hops are named.

The lab: the client and server namespaces, nodes named from the topology. Another
server (ssh, azure): the client side is this host, the return-path trace runs on the
server over SSH with sudo, hops are named by role (the server, the client's public
address). When rig cannot reach the server for it, the return-path trace is not made and
``lost_at`` says why: a trace never fails a run.
"""

from __future__ import annotations

from rig.errors import InfraError
from rig.outcome import Outcome
from rig.trace.nodes import ends_namer, lab_namer
from rig.trace.forward import WAIT
from rig.trace.reverse import NetnsServer, SSHServer
from rig.trace.stage import family_of, groups, trace_verdict, traced


def trace_run(verdict, rig, wait: float = WAIT):
    """(verdict with lost_at, traces) for ``verdict`` of a run on ``rig``; each trace
    waits ``wait`` s for answers (``rig.trace.wait``)."""
    if rig.backend == "lab" and rig.facts.get("ns_server"):
        from rig.lab.access import access_topology

        # hops named from the topology of the access line the lab built (the facts say which)
        return trace_verdict(verdict, rig.client_netns, NetnsServer(rig.facts["ns_server"]), rig.server_addr,
                             lab_namer(access_topology(rig.facts.get("access", "plain"))), wait=wait)
    from rig.sshclient import SSHClient

    family = family_of(rig.server_addr)
    public = next((e.seen_at_server_as.rsplit(":", 1)[0] for e in verdict.exchanges
                   if e.seen_at_server_as and e.family == family), None)
    name = ends_namer(rig.server_addr, public)
    if not any(g.outcome == Outcome.LOST_RETURN and traced(g, family) for g in groups(verdict.exchanges, family)):
        return trace_verdict(verdict, rig.client_netns, None, rig.server_addr, name, wait=wait)  # no SSH needed
    try:
        ssh = SSHClient(rig.ssh).connect()
    except InfraError as exc:
        return trace_verdict(verdict, rig.client_netns, None, rig.server_addr, name,
                             wait=wait, no_server=f"no return-path trace: {exc}")
    with ssh:
        return trace_verdict(verdict, rig.client_netns, SSHServer(ssh), rig.server_addr, name, wait=wait)
