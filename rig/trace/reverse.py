"""The return-path trace: from the responder back into the client's NAT mapping.

The client opens the mapping and keeps it open the way a probe did: a TCP connect whose
SYN retransmits, a UDP datagram repeated, an echo request repeated, from the probe's
own source port where it is free. On the server, as root, ``wire.respond`` waits for
that request as its NATs delivered it (the mapped address and port, the client's
sequence number as the server sees it), then sends TTL 1..N copies of the reply (a
SYN-ACK with the server's own sequence number and ack = the client's + 1, the UDP reply,
the echo reply), each carrying its TTL in its IP ID, and collects the ICMP errors the
hops send back. The client notes which copies arrived: the smallest such TTL is the
length of the way back.

Where the server side runs is a ``ServerSide``: the lab's server namespace
(``NetnsServer``), or a host reached over SSH (``SSHServer``, the wire module shipped
as a script and run with sudo).
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
import struct
import threading
import time
from pathlib import Path
from typing import Any, Callable, Protocol

from rig.concurrency import Background
from rig.errors import InfraError
from rig.netns import in_netns
from rig.trace import wire
from rig.trace.forward import MAX_TTL, PAYLOAD, PROTO, WAIT, local_address
from rig.trace.records import Hop, Trace, quote_changes

LISTEN = 2.0  # seconds the server waits for the client's request
ID_BASE = 0x5200  # reply copy with TTL t carries IP ID ID_BASE + t


class ServerSide(Protocol):
    def respond(self, proto: str, port: int, peer: str | None, max_ttl: int, wait: float,
                ready: Callable[[], None]) -> dict[str, Any]:
        """Run ``wire.respond`` on the server; call ``ready()`` once it listens."""


class NetnsServer:
    """The lab's server namespace, entered by a thread of this process."""

    def __init__(self, netns: str | None):
        self.netns = netns

    def respond(self, proto, port, peer, max_ttl, wait, ready):
        return in_netns(self.netns, wire.respond, PROTO[proto], port, peer, max_ttl, wait, LISTEN, ID_BASE, ready)


class SSHServer:
    """A host reached over rig's SSH connection: the wire module runs there as root
    (``sudo -n python3 - respond ...``, the script on stdin), and prints READY, then one
    JSON line."""

    def __init__(self, ssh: Any, python: str = "python3"):
        self.ssh = ssh
        self.python = python

    def respond(self, proto, port, peer, max_ttl, wait, ready):
        argv = self.ssh.privileged([self.python, "-", "respond", proto, str(port), peer or "", str(max_ttl),
                                    str(wait), str(LISTEN)])
        chan = self.ssh.open_channel(argv)
        try:
            chan.sendall(Path(wire.__file__).read_bytes())
            chan.shutdown_write()
            out = b""
            deadline = time.monotonic() + LISTEN + wait + 10
            told = False
            while time.monotonic() < deadline:
                chan.settimeout(max(0.1, deadline - time.monotonic()))
                try:
                    chunk = chan.recv(65536)
                except socket.timeout:
                    break
                if not chunk:
                    break
                out += chunk
                if not told and b"READY\n" in out:
                    told = True
                    ready()
            lines = [ln for ln in out.decode(errors="replace").splitlines() if ln.startswith("{")]
            if not lines:
                err = chan.recv_stderr(4096).decode(errors="replace").strip() if chan.recv_stderr_ready() else ""
                raise InfraError(f"the return-path trace did not run on the server: {err or 'no answer'}")
            return json.loads(lines[-1])
        finally:
            chan.close()


def _open_mapping(proto: str, dst: str, dport: int, sport: int | None, echo_id: int) -> tuple[socket.socket, Callable]:
    """Start the client's request (from ``sport`` where it is free) and return its socket
    and a function that repeats it (UDP, ICMP; TCP retransmits on its own)."""
    if proto == "tcp":
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        with contextlib.suppress(OSError):
            s.bind(("", sport or 0))
        s.setblocking(False)
        s.connect_ex((dst, dport))
        return s, lambda: None
    if proto == "udp":
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with contextlib.suppress(OSError):
            s.bind(("", sport or 0))
        return s, lambda: s.sendto(PAYLOAD, (dst, dport))
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    return s, lambda: s.sendto(wire.icmp_echo(wire.ECHO_REQUEST, echo_id, 1, PAYLOAD), (dst, 0))


class _Stop:
    """Tells the client side to end, waking its ``select`` at once (no polling)."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._rx, self._tx = socket.socketpair()

    def set(self) -> None:
        if not self._event.is_set():
            self._event.set()
            self._tx.send(b"x")

    def is_set(self) -> bool:
        return self._event.is_set()

    def fileno(self) -> int:
        return self._rx.fileno()

    def close(self) -> None:
        self._rx.close()
        self._tx.close()


def _client_side(proto: str, dst: str, dport: int, sport: int | None, echo_id: int, max_ttl: int,
                 started: threading.Event, stop: _Stop, out: dict) -> None:
    """In the client namespace: open the mapping once the server listens, keep it open
    (the request again every 0.5 s), and note the TTLs of the reply copies that arrive,
    until ``stop``."""
    arrivals = socket.socket(socket.AF_INET, socket.SOCK_RAW, PROTO[proto])
    started.wait(LISTEN)
    sock, again = _open_mapping(proto, dst, dport, sport, echo_id)
    out["local"] = local_address(dst, dport)
    again()
    next_again = time.monotonic() + 0.5

    def note(data: bytes) -> None:
        d = wire.parse(data)
        if d is not None and d["src"] == dst and 1 <= d["id"] - ID_BASE <= max_ttl:
            out.setdefault("arrived", set()).add(d["id"] - ID_BASE)

    try:
        while not stop.is_set():
            if time.monotonic() >= next_again:
                again()
                next_again += 0.5
            ready, _, _ = select.select([arrivals.fileno(), stop.fileno()], [], [],
                                        max(0.0, next_again - time.monotonic()))
            if arrivals.fileno() in ready:
                note(arrivals.recv(65535))
        arrivals.setblocking(False)  # what came before the stop still counts
        with contextlib.suppress(BlockingIOError):
            while True:
                note(arrivals.recv(65535))
    finally:
        if proto == "tcp":  # whatever state it reached, leave with a RST, not a FIN
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
        arrivals.close()


def reverse(client_netns: str | None, server: ServerSide, proto: str, dst: str, dport: int = 0,
            sport: int | None = None, peer: str | None = None, echo_id: int = 0x7269,
            max_ttl: int = MAX_TTL, wait: float = WAIT) -> Trace:
    """Trace the way back from the server into the client's NAT mapping. ``peer``: the
    client's public address as the server saw it (None: the first request that comes)."""
    started, stop = threading.Event(), _Stop()
    seen: dict[str, Any] = {}
    client = Background(lambda: in_netns(client_netns, _client_side, proto, dst, dport, sport, echo_id, max_ttl,
                                         started, stop, seen), name="trace-client")
    try:
        result = server.respond(proto, dport, peer, max_ttl, wait, started.set)
    except (OSError, InfraError) as exc:
        result = {"error": str(exc)}
    finally:
        started.set()
        stop.set()
    try:
        client.result()
    except OSError as exc:
        result.setdefault("error", f"client side: {exc}")
    finally:
        stop.close()
    return _as_trace(proto, dst, dport, result, seen, max_ttl)


def _as_trace(proto: str, dst: str, dport: int, result: dict, seen: dict, max_ttl: int) -> Trace:
    req = result.get("request")
    source = f"{dst}:{dport}" if proto != "icmp" else dst
    if result.get("error") or req is None:
        why = result.get("error") or f"the request never reached the server within {LISTEN:g} s"
        return Trace("return", proto, source, "", max_ttl, (), None, error=why)
    target = f"{req['src']}:{req['sport']}" if proto != "icmp" else req["src"]
    hops: dict[int, Hop] = {}
    for e in result.get("errors", ()):
        ttl = e["quoted"].get("id", -1) - ID_BASE
        if 1 <= ttl <= max_ttl and ttl not in hops:
            sent = {"id": ID_BASE + ttl, "dst": req["src"]}
            if proto != "icmp":
                sent["dport"] = req["sport"]
            kind = "time-exceeded" if e["type"] == wire.TIME_EXCEEDED else "unreachable"
            hops[ttl] = Hop(ttl, e["from"], kind, quote_changes(sent, e["quoted"]))
    arrived = min(seen.get("arrived", ()), default=None)
    if arrived is not None and arrived not in hops:
        hops[arrived] = Hop(arrived, seen.get("local", ""), "reply")
    return Trace("return", proto, source, target, max_ttl, tuple(hops[t] for t in sorted(hops)), arrived)
