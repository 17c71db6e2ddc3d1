"""The backend interface: provision a responder, describe it as a Rig, tear it down.

A backend only provisions and removes. Configure (ansible), preflight, captures, probes
and analysis are the same for every backend and live in the pipeline (rig.run), which
reads everything it needs from the Rig record.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Mapping, Protocol

from rig.backends.facts import BackendFacts


def new_run_id(now: datetime | None = None) -> str:
    """rig-YYYYmmdd-HHMMSS-xxxx (UTC): a run's id on a host or cloud the user owns;
    `rig ls` reads the age back from it."""
    now = now or datetime.now(timezone.utc)
    return f"rig-{now:%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


@dataclass(frozen=True)
class SSHEndpoint:
    """How to reach the server's sshd, with its host key pinned (never trust-on-first-use)."""

    host: str  # address to connect to
    port: int
    user: str
    key_file: str  # path of the per-run private key (never copied into a bundle)
    host_key: str  # pinned public host key, "ssh-ed25519 AAAA..."
    netns: str | None = None  # lab: open the TCP connection from inside this namespace


def known_hosts_name(host: str, port: int) -> str:
    """The name OpenSSH and paramiko file a host key under (here, beside SSHEndpoint,
    so that what writes a known_hosts line need not import paramiko: rig.configure,
    whose playbook starts while paramiko is still being imported)."""
    return host if port == 22 else f"[{host}]:{port}"


@dataclass(frozen=True)
class CapturePoint:
    """A place where tcpdump runs."""

    name: str  # "client" | "router" | "server"
    iface: str  # interface tcpdump listens on ("any" allowed)
    netns: str | None = None  # local capture inside this namespace (None: this host)
    remote: bool = False  # True: run over SSH on the server


@dataclass(frozen=True)
class Rig:
    """A provisioned responder and everything the pipeline needs to use it."""

    run_id: str
    backend: str
    server_addr: str  # the address the client probes (public IP on Azure)
    ssh: SSHEndpoint
    capture_points: tuple[CapturePoint, ...]
    client_netns: str | None = None  # where probes run (None: this host)
    os_family: str = "debian"  # "debian" | "freebsd": picks apt or pkg in the playbook
    install_packages: bool = True  # False in the lab: the packages are already there
    workdir: str = ""  # per-run scratch directory (keys, known_hosts, ansible artifacts)
    facts: Mapping[str, str] = field(default_factory=dict)  # backend facts for the manifest

    @property
    def known(self) -> BackendFacts:
        """The facts the pipeline reads, typed (a bad port: UsageError)."""
        return BackendFacts.from_facts(self.facts)


@dataclass(frozen=True)
class RunSpec:
    """What the user asked for: rig.toml merged with the flags."""

    backend: str = "lab"
    scenario: str = "healthy"
    probes: tuple[str, ...] = ()  # empty: the default probe set
    out: str | None = None
    keep: bool = False
    json: bool = False
    capture_at: tuple[str, ...] = ("client", "server")
    probe_timeout: float = 3.0
    burst: int = 32
    configure: bool = True  # run the ansible playbook
    options: Mapping[str, str] = field(default_factory=dict)  # backend-specific flags


class Backend(Protocol):
    """provision() and teardown() are required. A backend may also define
    ``preflight(rig) -> list[str]``: problems with the responder itself (e.g. Azure NSG
    rules not in effect), reported as configuration problems, never as path verdicts."""

    name: str

    def provision(self, spec: RunSpec) -> Rig: ...

    def teardown(self, rig: Rig) -> None: ...
