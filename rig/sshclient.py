"""SSH to the responder with paramiko: pinned host key, argv quoted once, SFTP fetch.

``SSHClient`` opens one authenticated connection (RejectPolicy + the host key from the
Rig's SSHEndpoint, never trust-on-first-use, no agent, no ~/.ssh keys). In the lab the
TCP connection is opened from inside the endpoint's namespace. Remote commands are
argv lists: they are quoted once, here, with ``shlex.join``; nothing above this module
builds a remote shell string.
"""

from __future__ import annotations

import base64
import posixpath
import shlex
import socket
import threading
from dataclasses import dataclass

import paramiko

from rig.backends.base import SSHEndpoint, known_hosts_name
from rig.concurrency import start
from rig.errors import InfraError
from rig.netns import connect_in


@dataclass(frozen=True)
class Completed:
    """The result of one remote command."""

    argv: tuple[str, ...]
    rc: int
    stdout: str
    stderr: str


def parse_host_key(line: str) -> paramiko.PKey:
    """``"ssh-ed25519 AAAA... [comment]"`` -> a paramiko key (InfraError if unusable)."""
    parts = line.split()
    if len(parts) < 2:
        raise InfraError(f"pinned host key is not 'TYPE BASE64': {line[:40]!r}")
    try:
        return paramiko.PKey.from_type_string(parts[0], base64.b64decode(parts[1]))
    except Exception as exc:  # paramiko raises several unrelated types here
        raise InfraError(f"pinned host key cannot be read ({parts[0]}): {exc}") from exc


def _load_key(path: str) -> paramiko.PKey:
    try:
        return paramiko.PKey.from_path(path)
    except FileNotFoundError:
        raise InfraError(f"SSH private key {path} does not exist") from None
    except Exception as exc:
        raise InfraError(f"SSH private key {path} cannot be read: {exc}") from exc


def _read_all(recv, quiet_timeout: bool = False) -> bytes:
    """Read a channel stream to EOF; socket.timeout propagates unless ``quiet_timeout``."""
    buf = bytearray()
    while True:
        try:
            data = recv(65536)
        except socket.timeout:
            if quiet_timeout:
                break
            raise
        if not data:
            break
        buf += data
    return bytes(buf)


class SSHClient:
    """One SSH connection to the responder. Use as a context manager."""

    def __init__(self, endpoint: SSHEndpoint, timeout: float = 10.0):
        self.endpoint = endpoint
        self.timeout = timeout
        self._client: paramiko.SSHClient | None = None

    # -- connection -------------------------------------------------------------------
    def connect(self) -> "SSHClient":
        ep = self.endpoint
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        key = parse_host_key(ep.host_key)
        client.get_host_keys().add(known_hosts_name(ep.host, ep.port), key.get_name(), key)
        sock = None
        try:
            if ep.netns:
                sock = connect_in(ep.netns, (ep.host, ep.port), timeout=self.timeout)
            client.connect(
                ep.host, port=ep.port, username=ep.user, pkey=_load_key(ep.key_file),
                sock=sock, timeout=self.timeout, banner_timeout=self.timeout,
                auth_timeout=self.timeout, look_for_keys=False, allow_agent=False,
            )
        except paramiko.BadHostKeyException as exc:
            client.close()
            raise InfraError(f"SSH host key of {ep.host}:{ep.port} does not match the pinned key") from exc
        except paramiko.SSHException as exc:
            client.close()
            if "not found in known_hosts" in str(exc):
                raise InfraError(f"SSH host key of {ep.host}:{ep.port} is not the pinned key") from exc
            raise InfraError(f"SSH to {ep.user}@{ep.host}:{ep.port} failed: {exc}") from exc
        except OSError as exc:
            client.close()
            raise InfraError(f"SSH to {ep.host}:{ep.port} failed: {exc}") from exc
        self._client = client
        return self

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> "SSHClient":
        return self.connect() if self._client is None else self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def transport(self) -> paramiko.Transport:
        if self._client is None:
            raise InfraError("SSH client used before connect()")
        t = self._client.get_transport()
        if t is None or not t.is_active():
            raise InfraError(f"SSH connection to {self.endpoint.host} is closed")
        return t

    # -- commands ---------------------------------------------------------------------
    def privileged(self, argv: list[str]) -> list[str]:
        """argv as root: prefixed with ``sudo -n`` unless we log in as root."""
        return list(argv) if self.endpoint.user == "root" else ["sudo", "-n", *argv]

    def open_channel(self, argv: list[str]) -> paramiko.Channel:
        """Start ``argv`` on a new session channel (no pty); the caller reads it."""
        chan = self.transport.open_session(timeout=self.timeout)
        chan.exec_command(shlex.join(argv))
        return chan

    def open_announced(self, argv: list[str], timeout: float) -> tuple[paramiko.Channel, bytes]:
        """Start ``argv`` as ``open_channel`` does and read the first line it writes (a
        READY or PID announcement), waiting up to ``timeout``; b"" or a partial line if it
        said nothing in time. The channel keeps ``timeout`` for the caller's reads."""
        chan = self.open_channel(argv)
        chan.settimeout(timeout)
        first = b""
        try:
            while not first.endswith(b"\n"):
                data = chan.recv(1)
                if not data:
                    break
                first += data
        except OSError:
            pass
        return chan, first

    def run(self, argv: list[str], timeout: float | None = 30.0, check: bool = True,
            stdin: bytes | None = None) -> Completed:
        """Run argv to completion; InfraError if it fails and ``check``."""
        if stdin is None:
            # The command reads /dev/null and we send no EOF: an EOF of ours racing the
            # server's close of a quick command's channel reaches OpenSSH after paramiko's
            # own CLOSE, and sshd then drops the whole connection ('ieof packet referred
            # to nonexistent channel'; paramiko issues #1115 and #1705; seen here in about
            # 1 of 36 lab runs as 'SFTP fetch ... failed: SSH session not active').
            chan = self.open_channel(["sh", "-c", 'exec "$@" </dev/null', "sh", *argv])
        else:  # the command waits for this EOF before it can end: no race
            chan = self.open_channel(argv)
            chan.sendall(stdin)
            chan.shutdown_write()
        chan.settimeout(timeout)
        err: list[bytes] = []
        reader = threading.Thread(target=lambda: err.append(_read_all(chan.recv_stderr, quiet_timeout=True)), daemon=True)
        start(reader)
        try:
            out = _read_all(chan.recv)
            reader.join(timeout)
        except socket.timeout:
            chan.close()
            raise InfraError(f"remote command timed out after {timeout:g}s: {shlex.join(argv)[:80]}") from None
        rc = chan.recv_exit_status()
        chan.close()
        res = Completed(tuple(argv), rc, out.decode(errors="replace"), b"".join(err).decode(errors="replace"))
        if check and rc != 0:
            last = (res.stderr.strip().splitlines() or res.stdout.strip().splitlines() or [""])[-1]
            raise InfraError(f"remote command failed (rc {rc}): {shlex.join(argv)[:80]}: {last[:200]}")
        return res

    # -- files ------------------------------------------------------------------------
    def fetch(self, remote: str, local: str, remove: bool = False) -> None:
        """Copy one remote file here with SFTP; ``remove``: then delete it and its
        (then empty) directory on the server, in the same SFTP session."""
        try:
            with self._client.open_sftp() as sftp:  # type: ignore[union-attr]
                sftp.get(remote, local)
                if remove:
                    sftp.remove(remote)
                    sftp.rmdir(posixpath.dirname(remote))
        except (OSError, paramiko.SSHException) as exc:
            raise InfraError(f"SFTP fetch of {remote} failed: {exc}") from exc

    def read_file(self, remote: str) -> bytes:
        try:
            with self._client.open_sftp() as sftp:  # type: ignore[union-attr]
                with sftp.open(remote, "rb") as fh:
                    return fh.read()
        except (OSError, paramiko.SSHException) as exc:
            raise InfraError(f"SFTP read of {remote} failed: {exc}") from exc
