"""The backend facts the pipeline reads, typed.

A backend's ``Rig.facts`` is the string map written to the bundle manifest and to a kept
rig's state file (its keys are part of the bundle layout). The few facts the pipeline
itself reads -- where the responder listens, where the probes go, where its files are --
are parsed from that map once, here, into ``BackendFacts`` (``Rig.known``); a backend
writes its ports with ``port_facts()`` so those keys are spelled in one place.

``http_port`` is where the responder's Apache listens; ``probe_port`` is where the TCP and
HTTP probes go. They differ only when a run means to probe a port nothing listens on (the
lab's no-listener scenario); without a ``probe_port`` fact the probes go to ``http_port``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from rig.errors import UsageError

DEFAULT_SERVER_DIR = "/var/lib/rig"


def _port(facts: Mapping[str, str], key: str, default: int) -> int:
    raw = facts.get(key)
    if raw is None or raw == "":
        return default
    try:
        port = int(raw)
    except (TypeError, ValueError):
        port = -1
    if not 0 < port < 65536:
        raise UsageError(f"{key} must be a port number (1-65535), not {raw!r}")
    return port


@dataclass(frozen=True)
class BackendFacts:
    """What the pipeline reads from a rig's facts (run, preflight, configure, probes)."""

    http_port: int = 80  # where Apache listens on the server
    probe_port: int = 80  # where the TCP/HTTP probes go (http_port unless set apart)
    udp_port: int = 7  # the UDP echo
    listen_addr: str | None = None  # the server's own address for its services (None: server_addr)
    server_dir: str = DEFAULT_SERVER_DIR
    access_log: str | None = None  # None: <server_dir>/logs/access.log
    remote_tmp: str = "/tmp"  # where the server's capture files go
    python: str | None = None  # the server's python (None: by OS family)
    server_addr6: str | None = None  # the server's IPv6 address, when it has one: probes go there too

    @classmethod
    def from_facts(cls, facts: Mapping[str, str]) -> BackendFacts:
        """Parse a rig's fact map; a bad port is a UsageError (exit 2)."""
        http = _port(facts, "http_port", 80)
        return cls(http_port=http, probe_port=_port(facts, "probe_port", http),
                   udp_port=_port(facts, "udp_port", 7),
                   listen_addr=facts.get("listen_addr") or None,
                   server_dir=facts.get("server_dir") or DEFAULT_SERVER_DIR,
                   access_log=facts.get("access_log") or None,
                   remote_tmp=facts.get("remote_tmp") or "/tmp",
                   python=facts.get("python") or None,
                   server_addr6=_addr6(facts.get("server_addr6")))



def _addr6(raw: str | None) -> str | None:
    """The ``server_addr6`` fact: an IPv6 address, or nothing (a bad one: UsageError)."""
    if not raw:
        return None
    import ipaddress

    try:
        return str(ipaddress.IPv6Address(raw))
    except ValueError:
        raise UsageError(f"server_addr6 must be an IPv6 address, not {raw!r}") from None


def port_facts(http_port: int, udp_port: int, probe_port: int | None = None) -> dict[str, str]:
    """The manifest's keys for the ports a backend sets up (``probe_port`` only when it
    is set apart from ``http_port``)."""
    facts = {"http_port": str(http_port), "udp_port": str(udp_port)}
    if probe_port is not None and probe_port != http_port:
        facts["probe_port"] = str(probe_port)
    BackendFacts.from_facts(facts)  # a bad port is said here, where it was written
    return facts
