"""The UDP probe: one datagram carrying the nonce to the echo service, the same bytes back.

The socket is connected, so an ICMP port unreachable comes back as ECONNREFUSED
("connection refused"). The first answer decides: the same bytes (ok), other bytes
("echo mismatch"), or nothing within the time-out ("timed out").
"""

from __future__ import annotations

import socket
import time

from rig.probes.records import (ECHO_MISMATCH, TIMED_OUT, NotSent, ProbeResult, error_phrase, family_of, hostport,
                                local_of)


def probe_udp(pid: str, nonce: str, server: str, port: int, timeout: float) -> ProbeResult:
    payload = f"{nonce}\n".encode()
    s = socket.socket(family_of(server), socket.SOCK_DGRAM)
    err: str | None = None
    seen: dict = {"bytes_sent": len(payload)}
    local = None
    left = False  # the datagram left the client (a connect or send error: it never did)
    started = time.time()
    try:
        s.settimeout(timeout)
        try:
            s.connect((server, port))
            local = local_of(s)
            started = time.time()
            s.send(payload)
            left = True
            reply = s.recv(65535)
        except socket.timeout:
            err = TIMED_OUT
        except OSError as exc:
            err = error_phrase(exc)
        else:
            seen["bytes_received"] = len(reply)
            seen["echoed"] = reply == payload
            if reply != payload:
                err = ECHO_MISMATCH
                seen["reply_head"] = reply[:64].decode("latin-1")
    finally:
        s.close()
    return ProbeResult(kind="udp", id=pid, target=hostport(server, port), nonce=nonce, started=started,
                       ended=time.time(), ok=err is None, error=err, local=local, seen=seen,
                       not_sent=None if left or err is None else NotSent(err))
