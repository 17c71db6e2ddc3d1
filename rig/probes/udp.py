"""The UDP probe: one datagram carrying the nonce to the echo service, the same bytes back.

The socket is connected, so an ICMP port unreachable comes back as ECONNREFUSED
("connection refused"). The first answer decides: the same bytes (ok), other bytes
("echo mismatch"), or nothing within the time-out ("timed out").

The large-udp probe (``size``): the nonce padded to ``size`` bytes, sent with path MTU
discovery off, so the client's kernel fragments it (as it would a large DNS or QUIC
answer, or a VPN's datagram) and no DF bit asks the path for a frag-needed: the probe
tests whether non-first fragments get through (a MAP-E border relay drops them).
"""

from __future__ import annotations

import socket
import time

from rig.probes.icmp import IP_MTU_DISCOVER
from rig.probes.icmp6 import IPV6_MTU_DISCOVER
from rig.probes.records import (ECHO_MISMATCH, TIMED_OUT, NotSent, ProbeResult, error_phrase, family_of, hostport,
                                local_of)

PMTUDISC_DONT = 0  # linux/in.h IP_PMTUDISC_DONT, linux/in6.h IPV6_PMTUDISC_DONT
LARGE_UDP = 2000  # bytes of payload: two fragments on a 1500-byte link


def probe_udp(pid: str, nonce: str, server: str, port: int, timeout: float, size: int = 0,
              kind: str = "udp") -> ProbeResult:
    payload = f"{nonce}\n".encode()
    payload += b"." * max(size - len(payload), 0)
    s = socket.socket(family_of(server), socket.SOCK_DGRAM)
    if size:  # the kernel fragments it (path MTU discovery off: no DF bit)
        if s.family == socket.AF_INET:
            s.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, PMTUDISC_DONT)
        else:
            s.setsockopt(socket.IPPROTO_IPV6, IPV6_MTU_DISCOVER, PMTUDISC_DONT)
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
    return ProbeResult(kind=kind, id=pid, target=hostport(server, port), nonce=nonce, started=started,
                       ended=time.time(), ok=err is None, error=err, local=local, seen=seen,
                       not_sent=None if left or err is None else NotSent(err))
