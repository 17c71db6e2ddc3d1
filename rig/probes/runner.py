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
``icmp_sizes[1:]``), tcp-1, http-1, large-1, udp-1, burst-1, and on request (not in
DEFAULT_KINDS) large-udp-1, a UDP datagram the client's kernel fragments. Given the server's IPv6
address too (``server_addr6``), the same kinds but the burst go there as well, at the
same time: icmp6-1.. (ICMPv6 echoes of the IPv6 sizes, rig.probes.icmp6), tcp6-1,
http6-1, large6-1, udp6-1 (their ``kind`` is the plain one; the ``6`` and the target
say the family). Every probe gets its own nonce (records.make_nonce). Bad arguments raise UsageError, a missing namespace
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
from rig.probes.icmp6 import ICMP6_SIZES, probe_icmp6
from rig.probes.records import ProbeResult, make_nonce
from rig.probes.tcp import probe_tcp
from rig.probes.udp import LARGE_UDP, probe_udp

PROBE_KINDS: tuple[str, ...] = ("icmp", "tcp", "http", "large", "udp", "burst", "large-udp")
# what runs when no kinds are named: large-udp only on request (a MAP-E line loses it by
# design: its border relay drops non-first fragments)
DEFAULT_KINDS: tuple[str, ...] = tuple(k for k in PROBE_KINDS if k != "large-udp")
_CONNECTING = ("tcp", "http", "large")  # the burst waits for their SYNs
IPV6_KINDS = ("icmp", "tcp", "http", "large", "udp")  # what goes to the server's IPv6 address too
MAX_BURST = 4096


def parse_kinds(text: str | Sequence[str] | None) -> tuple[str, ...]:
    """"icmp,tcp" (or a sequence) -> validated kinds in PROBE_KINDS order; empty/None:
    DEFAULT_KINDS."""
    if text is None:
        return DEFAULT_KINDS
    items = [k.strip() for k in (text.split(",") if isinstance(text, str) else text) if k.strip()]
    if not items:
        return DEFAULT_KINDS
    unknown = [k for k in items if k not in PROBE_KINDS]
    if unknown:
        raise UsageError(f"unknown probe kind {', '.join(unknown)}: choose from {', '.join(PROBE_KINDS)}")
    return tuple(k for k in PROBE_KINDS if k in items)


def _check(netns: str | None, server_addr: str, kinds: Sequence[str], timeout: float, burst: int,
           icmp_sizes: Sequence[int], ports: Sequence[int], server_addr6: str | None = None) -> tuple[str, ...]:
    if isinstance(kinds, str):
        raise UsageError("kinds must be a sequence of probe kinds, not a string")
    kinds = parse_kinds(kinds)
    try:
        ipaddress.IPv4Address(server_addr)
    except ValueError:
        raise UsageError(f"server address {server_addr!r} is not an IPv4 address") from None
    if server_addr6 is not None:
        try:
            ipaddress.IPv6Address(server_addr6)
        except ValueError:
            raise UsageError(f"server address {server_addr6!r} is not an IPv6 address") from None
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


def run_probes(netns: str | None, server_addr: str, kinds: Sequence[str] = DEFAULT_KINDS, *,
               timeout: float = 3.0, burst: int = 32, run_tag: str = "", tcp_port: int = 80,
               udp_port: int = 7, icmp_sizes: Sequence[int] = ICMP_SIZES,
               server_addr6: str | None = None) -> list[ProbeResult]:
    """Probe ``server_addr`` (and ``server_addr6``, if given) from namespace ``netns``
    (None: this host); results in PROBE_KINDS order, IPv4 before IPv6, icmp echoes by size."""
    kinds = _check(netns, server_addr, kinds, timeout, burst, icmp_sizes, (tcp_port, udp_port), server_addr6)
    jobs = [(k, "") for k in kinds] + [(k, "6") for k in kinds if server_addr6 is not None and k in IPV6_KINDS]
    syn_sent = {k + six: threading.Event() for k, six in jobs if k in _CONNECTING}

    def one(kind: str, six: str) -> Callable[[], list[ProbeResult]]:
        pid = f"{kind}{six}-1"
        nonce = make_nonce(run_tag, pid)
        server = server_addr6 if six and server_addr6 is not None else server_addr
        if kind == "icmp":
            sizes = ICMP6_SIZES if six else icmp_sizes
            echoes = [(f"icmp{six}-{i}", make_nonce(run_tag, f"icmp{six}-{i}"), size)
                      for i, size in enumerate(sizes, 1)]
            send = probe_icmp6 if six else probe_icmp

            def icmp_after_syns() -> list[ProbeResult]:
                _wait_syns()
                return send(echoes, server, timeout)

            return icmp_after_syns
        if kind == "tcp":
            return lambda: [probe_tcp(pid, nonce, server, tcp_port, timeout, syn_sent["tcp" + six])]
        if kind == "http":
            return lambda: [probe_http(pid, nonce, server, tcp_port, timeout, syn_sent["http" + six])]
        if kind == "large":
            return lambda: [probe_large(pid, nonce, server, tcp_port, timeout, syn_sent["large" + six])]
        if kind == "udp":
            return lambda: [probe_udp(pid, nonce, server, udp_port, timeout)]
        if kind == "large-udp":
            return lambda: [probe_udp(pid, nonce, server, udp_port, timeout, size=LARGE_UDP, kind=kind)]

        def burst_after_syns() -> list[ProbeResult]:
            _wait_syns()
            return [probe_burst(pid, nonce, server_addr, tcp_port, timeout, burst)]

        return burst_after_syns

    def _wait_syns() -> None:
        for ev in syn_sent.values():
            ev.wait(timeout)

    def worker(kind: str, six: str) -> Callable[[], list[ProbeResult]]:
        fn = one(kind, six)

        def body() -> list[ProbeResult]:
            try:
                return in_netns(netns, fn)  # an exception here is a bug, not a failed probe
            finally:
                if kind + six in syn_sent:
                    syn_sent[kind + six].set()  # never leave the burst waiting on a crashed probe

        return body

    out = run_all([worker(k, six) for k, six in jobs], names=[f"probe:{k}{six}" for k, six in jobs])
    return [r for results in out for r in results]
