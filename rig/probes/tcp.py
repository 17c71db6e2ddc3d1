"""The TCP handshake probe, and the non-blocking connect the HTTP probes share.

``connect`` starts a non-blocking connect and waits for it at most ``timeout``: the
socket comes back open either way, so the caller can read its TCP_INFO (SYN_SENT and
the SYN retransmissions when the SYN-ACK never came back) before closing it.
"""

from __future__ import annotations

import errno
import select
import socket
import threading
import time

from rig.probes.records import TIMED_OUT, NotSent, ProbeResult, error_phrase, family_of, hostport, local_of, tcp_state


def connect(addr: tuple[str, int], timeout: float,
            syn_sent: threading.Event | None = None) -> tuple[socket.socket, str | None, str | None, bool]:
    """Start a TCP connect to ``addr`` and wait up to ``timeout`` s.

    Returns (socket, error phrase or None when connected, local "addr:port", whether the
    SYN left: False when the kernel refused the connect at once — no route, no local
    port, a local firewall — so no capture can show it). The local address is read as
    soon as the SYN is sent: a failed connect unbinds the port. ``syn_sent`` is set once
    the SYN is on its way (the burst waits for it).
    """
    s = socket.socket(family_of(addr[0]), socket.SOCK_STREAM)
    s.setblocking(False)
    try:
        rc = s.connect_ex(addr)
    finally:
        if syn_sent is not None:
            syn_sent.set()
    local = local_of(s)
    if rc not in (0, errno.EINPROGRESS):
        return s, error_phrase(rc), local, False
    if rc == errno.EINPROGRESS:
        poller = select.poll()
        poller.register(s, select.POLLOUT)
        if not poller.poll(max(0.0, timeout) * 1000):
            return s, TIMED_OUT, local, True
    err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    return s, (error_phrase(err) if err else None), local, True


def probe_tcp(pid: str, nonce: str, server: str, port: int, timeout: float,
              syn_sent: threading.Event | None = None) -> ProbeResult:
    """One handshake to server:port, then a normal close. ok: the handshake completed."""
    started = time.time()
    s, err, local, left = connect((server, port), timeout, syn_sent)
    try:
        state = tcp_state(s)
    finally:
        s.close()
    ended = time.time()
    return ProbeResult(
        kind="tcp", id=pid, target=hostport(server, port), nonce=nonce, started=started, ended=ended,
        ok=err is None, error=err, local=local, tcp=state,
        seen={"connected": err is None, "elapsed": round(ended - started, 6)},
        not_sent=None if left or err is None else NotSent(err),
    )
