"""Probes from the client side, each tagged with a nonce the analysis finds in the captures.

    from rig.probes import run_probes, PROBE_KINDS, ProbeResult
    results = run_probes("rig1-client", "198.51.100.10", timeout=3.0, burst=32, run_tag=run_id)
    write_jsonl(results, bundle / "probes.jsonl")

Modules: records (ProbeResult, TcpState from TCP_INFO, nonces, probes.jsonl), httpwire
(HTTP request/response as pure functions of bytes), one module per kind (icmp, tcp,
http for http+large, udp, burst), and runner (all kinds at once, one thread each,
inside the client's namespace).
"""

from rig.probes.records import ProbeResult, TcpState, read_jsonl, write_jsonl
from rig.probes.runner import PROBE_KINDS, parse_kinds, run_probes

__all__ = ["PROBE_KINDS", "ProbeResult", "TcpState", "parse_kinds", "read_jsonl", "run_probes", "write_jsonl"]
