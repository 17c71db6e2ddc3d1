"""The NAT responder on the server: started over the run's SSH connection, stopped with it.

The same path for every backend: in the lab the SSH session lands in the server's
namespace, on Azure and SSH hosts on the host itself. The script
(templates/nat_responder.py) travels as ``python3 -c SOURCE``, so nothing is installed;
it exits when its channel closes (its stdin ends), after ``max_seconds`` at the latest,
and is killed by PID if it lingers.

Where it listens comes from the rig's facts (``nat_facts``): ``nat_addrs`` lists the
responder's addresses as the client reaches them, ``public=local`` where the server
knows itself by another address (Azure's private IP behind each public one);
``nat_ports`` its ports. A backend without these facts gets one address (the server's,
bound as 0.0.0.0) and the two default ports.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Mapping

from rig.errors import InfraError
from rig.resources import templates_dir

NAT_PORTS = (3478, 3479)  # STUN's port and the next: what firewalls expect for NAT tests
READY_TIMEOUT = 10.0


@dataclass(frozen=True)
class ResponderPlan:
    public: tuple[str, ...]  # addresses as the client addresses them, responder order
    local: tuple[str, ...]  # the same addresses as the server binds them
    ports: tuple[int, ...]


def nat_facts(public: tuple[str, ...], ports: tuple[int, ...] = NAT_PORTS,
              local: tuple[str, ...] | None = None) -> dict[str, str]:
    """The facts a backend writes for the responder (see the module docstring)."""
    pairs = [p if local is None or local[i] == p else f"{p}={local[i]}" for i, p in enumerate(public)]
    return {"nat_addrs": ",".join(pairs), "nat_ports": ",".join(str(p) for p in ports)}


def plan_from(facts: Mapping[str, str], server_addr: str) -> ResponderPlan:
    raw = facts.get("nat_addrs", "")
    public, local = [], []
    for item in (x.strip() for x in raw.split(",") if x.strip()):
        pub, _, loc = item.partition("=")
        public.append(pub)
        local.append(loc or pub)
    if not public:
        public, local = [server_addr], ["0.0.0.0"]
    ports = tuple(int(p) for p in facts.get("nat_ports", "").split(",") if p.strip()) or NAT_PORTS
    return ResponderPlan(tuple(public), tuple(local), ports)


class Responder:
    """One running responder: ``start`` returns once every socket is bound."""

    def __init__(self, ssh, plan: ResponderPlan, python: str = "python3", max_seconds: float = 900.0):
        self.ssh, self.plan, self.python, self.max_seconds = ssh, plan, python, max_seconds
        self.secret = secrets.token_hex(8)
        self.pid: int | None = None
        self._chan = None

    def start(self) -> None:
        source = (templates_dir() / "nat_responder.py").read_text()
        argv = [self.python, "-c", source, "--secret", self.secret, "--bind", ",".join(self.plan.local),
                "--ports", ",".join(str(p) for p in self.plan.ports), "--max-seconds", f"{self.max_seconds:g}"]
        chan, first = self.ssh.open_announced(argv, READY_TIMEOUT)
        self._chan = chan
        m = re.match(rb"READY (\d+) (\d+)", first)
        if m is None:
            err = b""
            try:
                while chan.recv_stderr_ready() or not chan.exit_status_ready():
                    chunk = chan.recv_stderr(4096)
                    if not chunk:
                        break
                    err += chunk
            except OSError:
                pass
            self.stop()
            last = (err.decode(errors="replace").strip().splitlines() or ["no output"])[-1]
            raise InfraError(f"NAT responder did not start: {last[:200]}")
        self.pid = int(m.group(1))

    def stop(self) -> None:
        """Close its channel (its stdin ends: it exits); kill it by PID if it is still there."""
        chan, self._chan = self._chan, None
        if chan is None:
            return
        try:
            chan.shutdown_write()
            exited = chan.status_event.wait(2.0)
        except (OSError, EOFError):
            exited = False
        finally:
            chan.close()
        if not exited and self.pid is not None:
            try:
                self.ssh.run(["kill", str(self.pid)], check=False, timeout=10)
            except InfraError:
                pass  # the connection is gone: the responder's own deadline ends it

    def __enter__(self) -> "Responder":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
