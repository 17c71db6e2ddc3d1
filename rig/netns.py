"""Run code inside a named network namespace from this process.

A thread may enter a network namespace with setns(2) on its own; sockets it creates
there stay there after it leaves (DESIGN.md §6). So one process can probe "from the
client" and open SSH connections "from the client" without a subprocess.

Python 3.11 has no os.setns, so setns is called through libc. Only the calling thread
moves; ``in_netns`` always runs the function on a fresh thread, so the caller's own
namespace never changes, even if the function raises.
"""

from __future__ import annotations

import ctypes
import os
import socket
from typing import Any, Callable, TypeVar

from rig.concurrency import Background
from rig.errors import InfraError

CLONE_NEWNET = 0x40000000
NETNS_DIR = "/run/netns"

T = TypeVar("T")

# setns from the libc this process already has loaded (find_library would run ldconfig)
_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise InfraError(f"setns failed: {os.strerror(err)}")


def _enter(name: str) -> None:
    path = os.path.join(NETNS_DIR, name)
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise InfraError(f"network namespace {name!r} does not exist") from None
    try:
        _setns(fd)
    finally:
        os.close(fd)


def in_netns(name: str | None, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call ``fn(*args, **kwargs)`` on a new thread inside namespace ``name``.

    With ``name`` None the function runs on a new thread in this namespace, so callers
    need no special case for backends whose client side is this host.
    Exceptions propagate to the caller.
    """

    def body() -> T:
        if name is not None:
            _enter(name)
        return fn(*args, **kwargs)

    return Background(body, name=f"netns:{name}").result()


def socket_in(name: str | None, family: int = socket.AF_INET, type: int = socket.SOCK_STREAM,
              proto: int = 0) -> socket.socket:
    """A socket created inside namespace ``name``; usable from any thread afterwards."""
    return in_netns(name, socket.socket, family, type, proto)


def connect_in(name: str | None, addr: tuple[str, int], timeout: float = 5.0) -> socket.socket:
    """A TCP connection opened from inside namespace ``name`` (e.g. paramiko's ``sock=``)."""

    def connect() -> socket.socket:
        return socket.create_connection(addr, timeout=timeout)

    return in_netns(name, connect)
