"""Test helper: run `rig run` as a user would (a subprocess) and read what it left."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from _sshd import missing_tools

LAB_TOOLS = ("ip", "nft", "tcpdump", "sshd", "apache2", "ssh-keygen", "ss")


def lab_skip_reason(tools: tuple[str, ...] = LAB_TOOLS) -> str | None:
    """Why a lab test cannot run here (not root, or one of ``tools`` missing), else None."""
    if os.geteuid() != 0:
        return "the lab needs root (network namespaces, tcpdump, sshd, Apache)"
    missing = missing_tools(*tools)
    return f"missing tools: {', '.join(missing)}" if missing else None


LAB_SKIP = lab_skip_reason()  # computed once per session, for skipif marks


def rig_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "rig", *args]


@dataclass
class Ran:
    rc: int
    stdout: str
    stderr: str
    out: Path

    @property
    def verdict(self) -> dict:
        return json.loads((self.out / "verdict.json").read_text())

    @property
    def manifest(self) -> dict:
        return json.loads((self.out / "manifest.json").read_text())

    def outcomes(self, protocol: str, family: int | None = 4) -> Counter:
        """Outcome counts of ``protocol``'s exchanges of one IP version (None: both)."""
        return Counter(e["outcome"] for e in self.exchanges(protocol, family))

    def exchanges(self, protocol: str, family: int | None = 4, held_ports: bool = False) -> list[dict]:
        """The exchanges of ``protocol`` to the server's IPv4 (family 4), IPv6 (6) or any (None)
        address: the lab's server is dual-stack, and the scenarios of the plain access
        inject their faults into IPv4, the seed's family. Without ``held_ports``, leaves out
        what the access's own truth allows beside the scenario's: a connection whose public
        port the server still held (``AccessProfile.reuses_held_ports``, the MAP-E CE), when
        the verdict names it so."""
        allowed = not held_ports and self._reuses_held_ports
        return [e for e in self.verdict["exchanges"]
                if e["protocol"] == protocol and (family is None or e["family"] == family)
                and not (allowed and e.get("port_reused") and e["outcome"] == "lost-return")]

    @functools.cached_property
    def _reuses_held_ports(self) -> bool:
        """The run's access line may reuse a port the server holds (read once a run)."""
        from rig.lab.access import ACCESS

        if not (self.out / "manifest.json").exists():
            return False
        access = (self.manifest.get("backend") or {}).get("access")
        return access in ACCESS and ACCESS[access].reuses_held_ports

    @property
    def prefix(self) -> str:
        return self.manifest["backend"]["prefix"]


def rig_run(out: Path, *args: str, timeout: float = 240) -> Ran:
    res = subprocess.run(rig_cmd("run", "--out", str(out), *args), capture_output=True, text=True,
                         timeout=timeout)
    return Ran(res.returncode, res.stdout, res.stderr, out)


def lab_leftovers(prefix: str) -> list[str]:
    """Namespaces, and processes anywhere, that still belong to the lab run ``prefix``."""
    left = [n.split()[0] for n in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.splitlines()
            if n.startswith(prefix)]
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if prefix in cmd and "pytest" not in cmd:
            left.append(f"pid {pid}: {cmd[:80]}")
    return left
