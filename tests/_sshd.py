"""Test helper: a real sshd in a fresh network namespace, with a pinned host key.

Used by the sshclient/tcpdump/configure tests so they do not depend on the lab backend.
Everything lives under a per-test namespace and tmp dir; stop() kills by PID and
deletes the namespace.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from rig.backends.base import SSHEndpoint

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


def missing_tools(*tools: str) -> list[str]:
    return [t for t in tools if not (shutil.which(t) or os.path.exists(f"/usr/sbin/{t}"))]


@dataclass
class SshdNs:
    ns: str
    endpoint: SSHEndpoint
    proc: subprocess.Popen
    tmp: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        pids = subprocess.run(["ip", "netns", "pids", self.ns], capture_output=True, text=True).stdout.split()
        for pid in pids:
            try:
                os.kill(int(pid), 9)
            except ProcessLookupError:
                pass
        subprocess.run(["ip", "netns", "del", self.ns], check=False)


def keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "rig-test", "-f", str(path)], check=True)
    return path.with_suffix(".pub").read_text().strip() if path.suffix else Path(f"{path}.pub").read_text().strip()


def start_sshd(tmp: Path, addr: str = "127.0.0.1", ns: str | None = None) -> SshdNs:
    ns = ns or f"rigt{uuid.uuid4().hex[:8]}"
    created = False
    if not os.path.exists(f"/run/netns/{ns}"):
        subprocess.run(["ip", "netns", "add", ns], check=True)
        created = True
    subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
    tmp.mkdir(parents=True, exist_ok=True)
    os.chmod(tmp, 0o755)
    host_pub = keygen(tmp / "host_ed25519")
    user_pub = keygen(tmp / "id_ed25519")
    (tmp / "authorized_keys").write_text(user_pub + "\n")
    cfg = tmp / "sshd_config"
    cfg.write_text(
        f"Port 22\nListenAddress {addr}\nHostKey {tmp}/host_ed25519\n"
        f"AuthorizedKeysFile {tmp}/authorized_keys\nPidFile {tmp}/sshd.pid\n"
        "UsePAM no\nStrictModes no\nPermitRootLogin prohibit-password\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "Subsystem sftp internal-sftp\nMaxSessions 50\nMaxStartups 50\n"
    )
    script = "mount -t tmpfs tmpfs /run && mkdir -m 755 /run/sshd && exec \"$0\" -D -e -f \"$1\""
    proc = subprocess.Popen(
        ["ip", "netns", "exec", ns, "unshare", "-m", "--propagation", "private",
         "sh", "-c", script, SSHD, str(cfg)],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, start_new_session=True,
    )
    lines = []
    for line in proc.stderr:  # wait for readiness, not a sleep
        lines.append(line)
        if "Server listening on" in line:
            break
    else:
        proc.wait()
        if created:
            subprocess.run(["ip", "netns", "del", ns], check=False)
        raise RuntimeError("sshd did not start: " + "".join(lines))
    ep = SSHEndpoint(host=addr, port=22, user="root", key_file=str(tmp / "id_ed25519"),
                     host_key=" ".join(host_pub.split()[:2]), netns=ns)
    return SshdNs(ns=ns, endpoint=ep, proc=proc, tmp=tmp)


needs_sshd = pytest.mark.skipif(os.geteuid() != 0 or bool(missing_tools("sshd", "ssh-keygen", "unshare")),
                                reason="needs root and sshd/ssh-keygen/unshare")


@pytest.fixture
def sshd(tmp_path):
    """A real sshd in its own namespace for one test (import it into the test module)."""
    s = start_sshd(tmp_path / "sshd")
    yield s
    s.stop()
