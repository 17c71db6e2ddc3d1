"""Run the probes from the client side, all kinds at once, and collect their results.

One thread per kind, each inside the client's network namespace (rig.netns.in_netns),
so a run costs about one time-out however many probes fail: the seed scenario (every
SYN-ACK dropped) finishes in ~``timeout`` s, not the sum.

The single-connection probes (tcp, http, large) send their SYNs first; icmp and burst
start once those SYNs are out (a few ms), so the probes do not distort each other:
- burst: on a NAT with a small port set, the single probes get their ports first and
  the burst alone runs out;
- icmp: a frag-needed answering a DF echo teaches the client's kernel the path MTU,
  which then lowers the MSS in its next SYNs — it would hide an MTU black hole from
  the large probe if the large probe's SYN went out after it.

Probe ids are stable per run: icmp-1 (the small echo), icmp-2.. (one per DF size in
``icmp_sizes[1:]``), tcp-1, http-1, large-1, udp-1, burst-1. Every probe gets its own
nonce (records.make_nonce). Bad arguments raise UsageError, a missing namespace
InfraError; a failed probe is a ProbeResult with ok=False.
"""

from __future__ import annotations

import ipaddress
import os
import threading
from typing import Callable, Sequence

from rig.concurrency import run_all
from rig.errors import InfraError, UsageError
from rig.netns import NETNS_DIR, in_netns
from rig.probes.burst import probe_burst
from rig.probes.http import probe_http, probe_large
from rig.probes.icmp import HEADERS, ICMP_SIZES, probe_icmp
from rig.probes.records import ProbeResult, make_nonce
from rig.probes.tcp import probe_tcp
from rig.probes.udp import probe_udp

PROBE_KINDS: tuple[str, ...] = ("icmp", "tcp", "http", "large", "udp", "burst")
_CONNECTING = ("tcp", "http", "large")  # the burst waits for their SYNs
MAX_BURST = 4096


def parse_kinds(text: str | Sequence[str] | None) -> tuple[str, ...]:
    """"icmp,tcp" (or a sequence) -> validated kinds in PROBE_KINDS order; empty/None: all."""
    if text is None:
        return PROBE_KINDS
    items = [k.strip() for k in (text.split(",") if isinstance(text, str) else text) if k.strip()]
    if not items:
        return PROBE_KINDS
    unknown = [k for k in items if k not in PROBE_KINDS]
    if unknown:
        raise UsageError(f"unknown probe kind {', '.join(unknown)}: choose from {', '.join(PROBE_KINDS)}")
    return tuple(k for k in PROBE_KINDS if k in items)


def _check(netns: str | None, server_addr: str, kinds: Sequence[str], timeout: float, burst: int,
           icmp_sizes: Sequence[int], ports: Sequence[int]) -> tuple[str, ...]:
    if isinstance(kinds, str):
        raise UsageError("kinds must be a sequence of probe kinds, not a string")
    kinds = parse_kinds(kinds)
    try:
        ipaddress.IPv4Address(server_addr)
    except ValueError:
        raise UsageError(f"server address {server_addr!r} is not an IPv4 address") from None
    if not timeout > 0:
        raise UsageError(f"probe time-out must be positive, got {timeout}")
    if not 1 <= burst <= MAX_BURST:
        raise UsageError(f"burst must be between 1 and {MAX_BURST}, got {burst}")
    if not icmp_sizes or any(not HEADERS + 44 <= s <= 65535 for s in icmp_sizes):
        raise UsageError(f"ICMP sizes must be total IP sizes from {HEADERS + 44} to 65535, got {list(icmp_sizes)}")
    if any(not 0 < p < 65536 for p in ports):
        raise UsageError(f"bad port in {list(ports)}")
    if netns is not None and not os.path.exists(os.path.join(NETNS_DIR, netns)):
        raise InfraError(f"network namespace {netns!r} does not exist")
    return kinds


def run_probes(netns: str | None, server_addr: str, kinds: Sequence[str] = PROBE_KINDS, *,
               timeout: float = 3.0, burst: int = 32, run_tag: str = "", tcp_port: int = 80,
               udp_port: int = 7, icmp_sizes: Sequence[int] = ICMP_SIZES) -> list[ProbeResult]:
    """Probe ``server_addr`` from namespace ``netns`` (None: this host); results in
    PROBE_KINDS order, icmp echoes by size."""
    kinds = _check(netns, server_addr, kinds, timeout, burst, icmp_sizes, (tcp_port, udp_port))
    syn_sent = {k: threading.Event() for k in _CONNECTING if k in kinds}

    def one(kind: str) -> Callable[[], list[ProbeResult]]:
        pid = f"{kind}-1"
        nonce = make_nonce(run_tag, pid)
        if kind == "icmp":
            echoes = [(f"icmp-{i}", make_nonce(run_tag, f"icmp-{i}"), size)
                      for i, size in enumerate(icmp_sizes, 1)]

            def icmp_after_syns() -> list[ProbeResult]:
                _wait_syns()
                return probe_icmp(echoes, server_addr, timeout)

            return icmp_after_syns
        if kind == "tcp":
            return lambda: [probe_tcp(pid, nonce, server_addr, tcp_port, timeout, syn_sent["tcp"])]
        if kind == "http":
            return lambda: [probe_http(pid, nonce, server_addr, tcp_port, timeout, syn_sent["http"])]
        if kind == "large":
            return lambda: [probe_large(pid, nonce, server_addr, tcp_port, timeout, syn_sent["large"])]
        if kind == "udp":
            return lambda: [probe_udp(pid, nonce, server_addr, udp_port, timeout)]

        def burst_after_syns() -> list[ProbeResult]:
            _wait_syns()
            return [probe_burst(pid, nonce, server_addr, tcp_port, timeout, burst)]

        return burst_after_syns

    def _wait_syns() -> None:
        for ev in syn_sent.values():
            ev.wait(timeout)

    def worker(kind: str) -> Callable[[], list[ProbeResult]]:
        fn = one(kind)

        def body() -> list[ProbeResult]:
            try:
                return in_netns(netns, fn)  # an exception here is a bug, not a failed probe
            finally:
                if kind in syn_sent:
                    syn_sent[kind].set()  # never leave the burst waiting on a crashed probe

        return body

    out = run_all([worker(k) for k in kinds], names=[f"probe:{k}" for k in kinds])
    return [r for results in out for r in results]
