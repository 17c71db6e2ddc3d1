"""The burst probe: N TCP connections started at once, for port-set and table exhaustion.

Every socket starts a non-blocking connect before any is waited on; one selector then
collects the outcomes until a shared deadline. A NAT that maps the client into a small
port set (MAP-E) or a listener with a full backlog leaves the excess connections in
SYN_SENT: they come back "timed out". One ProbeResult ("burst-1") holds the counts and,
per connection, its local "addr:port", outcome and TCP state, so the analysis can tie
each connection in the captures to this probe by its local port.
"""

from __future__ import annotations

import errno
import selectors
import socket
import time
from collections import Counter
from typing import Any

from rig.probes.records import TIMED_OUT, ProbeResult, error_phrase, local_of, tcp_state

CONNECTED = "connected"


def probe_burst(pid: str, nonce: str, server: str, port: int, timeout: float, n: int) -> ProbeResult:
    sel = selectors.DefaultSelector()
    socks: list[socket.socket | None] = []
    conns: list[dict[str, Any]] = []
    started = time.time()
    try:
        for i in range(n):
            try:
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            except OSError as exc:  # EMFILE/ENFILE: this host's limit, recorded as such
                socks.append(None)
                conns.append({"i": i, "local": None, "result": error_phrase(exc), "at": time.time()})
                continue
            s.setblocking(False)
            socks.append(s)
            rc = s.connect_ex((server, port))
            c: dict[str, Any] = {"i": i, "local": local_of(s), "result": None, "at": None}
            conns.append(c)
            if rc == 0:
                c["result"], c["at"] = CONNECTED, time.time()
            elif rc == errno.EINPROGRESS:
                sel.register(s, selectors.EVENT_WRITE, c)
            else:
                c["result"], c["at"] = error_phrase(rc), time.time()
        deadline = time.monotonic() + timeout
        while sel.get_map():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            for key, _ in sel.select(left):
                ready, c = key.fileobj, key.data
                assert isinstance(ready, socket.socket), "only sockets are registered"
                sel.unregister(ready)
                err = ready.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                c["result"], c["at"] = (error_phrase(err) if err else CONNECTED), time.time()
        for c, sock in zip(conns, socks):
            if c["result"] is None:
                c["result"] = TIMED_OUT
            st = tcp_state(sock) if sock is not None else None
            c["state"] = st.state if st else None
            c["retrans"] = st.total_retrans if st else None
            if c["at"] is not None:
                c["elapsed"] = round(c.pop("at") - started, 6)
            else:
                c.pop("at")
    finally:
        sel.close()
        for sock in socks:
            if sock is not None:
                sock.close()
    ended = time.time()
    counts = Counter(c["result"] for c in conns)
    failures = Counter({k: v for k, v in counts.items() if k != CONNECTED})
    seen = {
        "n": n,
        "connected": counts.get(CONNECTED, 0),
        "refused": counts.get("connection refused", 0),
        "timed_out": counts.get(TIMED_OUT, 0),
        "failed": sum(failures.values()),
        "outcomes": dict(counts),
        "local_ports": [int(c["local"].rsplit(":", 1)[1]) for c in conns if c["local"]],
        "connections": conns,
    }
    first: str | None = failures.most_common(1)[0][0] if failures else None
    return ProbeResult(kind="burst", id=pid, target=f"{server}:{port}", nonce=nonce, started=started,
                       ended=ended, ok=not failures, error=first, local=None, seen=seen)
