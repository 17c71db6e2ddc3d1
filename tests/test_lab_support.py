"""Helpers for the lab tests (no tests here): a lab context manager and raw socket-level
checks run from inside a namespace. Negative checks use short time-outs."""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import subprocess

import pytest

from _runhelp import lab_skip_reason
from rig.backends.base import RunSpec
from rig.netns import connect_in, socket_in

SERVER = "198.51.100.10"
SHORT = 0.8  # time-out of negative checks


LAB_SKIP = lab_skip_reason(("ip", "nft", "sshd", "apache2", "ssh-keygen"))  # the backend alone: no tcpdump/ss
needs_lab = [pytest.mark.root, pytest.mark.lab, pytest.mark.skipif(LAB_SKIP is not None, reason=str(LAB_SKIP))]


@contextlib.contextmanager
def lab(scenario: str = "healthy", **spec):
    from rig.backends.lab import LabBackend

    backend = LabBackend()
    rig = backend.provision(RunSpec(scenario=scenario, **spec))
    try:
        yield rig
    finally:
        backend.teardown(rig)


def connect(ns: str, port: int, addr: str = SERVER, timeout: float = 2.0) -> socket.socket:
    return connect_in(ns, (addr, port), timeout=timeout)


def http_get(ns: str, path: str, port: int = 80, addr: str = SERVER, timeout: float = 2.0,
             ) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 GET; returns (status, headers, body). Raises socket.timeout with the
    bytes read so far in ``.partial`` if the body stalls."""
    s = connect(ns, port, addr, timeout)
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n".encode())
    data = b""
    try:
        while chunk := s.recv(65536):
            data += chunk
    except socket.timeout as exc:
        exc.partial = data  # type: ignore[attr-defined]
        raise
    finally:
        s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def udp_echo(ns: str, payload: bytes, port: int = 7, timeout: float = 2.0) -> bytes | None:
    s = socket_in(ns, socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    try:
        s.sendto(payload, (SERVER, port))
        return s.recv(65535)
    except socket.timeout:
        return None
    finally:
        s.close()


def ping(ns: str, timeout: float = 2.0, payload: bytes = b"rig-test-ping") -> bool:
    """One ICMP echo through an ICMP datagram socket; True if the reply came back."""
    s = socket_in(ns, socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)
    s.settimeout(timeout)
    try:
        s.sendto(struct.pack("!BBHHH", 8, 0, 0, 0, 1) + payload, (SERVER, 0))
        while True:
            data = s.recv(2048)
            if data[0] == 0 and data[8:] == payload:
                return True
    except socket.timeout:
        return False
    finally:
        s.close()


def ss(ns: str, *filter_: str) -> list[str]:
    out = subprocess.run(["ss", "-N", ns, "-Htn", *filter_], capture_output=True, text=True, check=True)
    return [ln for ln in out.stdout.splitlines() if ln.strip()]


def access_log(rig) -> str:
    with open(rig.facts["access_log"]) as fh:
        return fh.read()


def namespaces_of(prefix: str) -> list[str]:
    try:
        return [n for n in os.listdir("/run/netns") if n.startswith(prefix + "-")]
    except FileNotFoundError:
        return []


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is as good as gone
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
