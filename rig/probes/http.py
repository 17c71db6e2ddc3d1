"""The HTTP probes: a cache-busting GET of a nonce page, and a GET of a large object.

Both build the request by hand (httpwire.build_request) on a socket of their own: no
proxy from the environment, no client cache. ``http`` fetches /rig/n/<nonce> and checks
that the page is the responder's own (it carries BODY_MARKER, or echoes the nonce);
``large`` fetches /rig/large.bin?rig=<nonce> and records how many bytes came versus
Content-Length, and whether the transfer stalled (connected and asked, then no byte for
``timeout`` s, whether or not some came before) — the sign of an MTU black hole once
the handshake and the small page went through. A response that keeps trickling in
is cut after BUDGET_TIMEOUTS time-outs ("too slow"), so no probe runs unbounded.

``ok`` is what a person testing by hand would call success: for ``http`` a complete
200 response (even when a proxy sent it: ``seen`` says whether the body check passed
and which proxy headers came, and the analysis decides who answered); for ``large`` a
complete 200 body.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

from rig.probes import httpwire
from rig.probes.records import (BAD_RESPONSE, CLOSED_EARLY, HTTP_STATUS, NO_RESPONSE, STALLED, TOO_SLOW,
                                NotSent, ProbeResult, TcpState, error_phrase, hostport, tcp_state)
from rig.probes.tcp import connect

PAGE_PREFIX = "/rig/n/"
LARGE_PATH = "/rig/large.bin"
# What the responder's pages carry (templates/site/rig/nonce.html, index.html); see body_check().
BODY_MARKER = b"rig responder"
# The header rig's Apache sets to say who answered ("server"; "hgw-proxy" in the lab's
# transparent-proxy scenario): recorded as seen["responder"].
RESPONDER_HEADER = "x-rig-responder"
MAX_BODY = 64 * 1024 * 1024  # stop reading a runaway response here
BUDGET_TIMEOUTS = 10  # a response still trickling in after this many time-outs is "too slow"


def body_check(body: bytes, nonce: str) -> bool:
    """Is this the responder's page for this nonce? It echoes the nonce or carries the marker."""
    return nonce.encode() in body or BODY_MARKER in body


@dataclass(frozen=True)
class Fetched:
    """One GET as the socket saw it, before any HTTP parsing."""

    started: float
    ended: float
    error: str | None  # a records phrase, None if the read ended normally
    local: str | None
    tcp: TcpState | None
    connected: bool
    sent: bool  # the request went out
    data: bytes  # everything received
    eof: bool  # the server closed
    stalled: bool  # no progress for the time-out after the request went out
    malformed: str | None  # the bytes stopped looking like HTTP
    last_progress: float | None
    syn_left: bool = True  # False: the kernel refused the connect at once (nothing on the wire)


def fetch(server: str, port: int, path: str, timeout: float,
          syn_sent: threading.Event | None = None) -> Fetched:
    """Connect, send a GET, read until the response is complete, EOF, or no progress for
    ``timeout`` s."""
    started = time.time()
    s, err, local, syn_left = connect((server, port), timeout, syn_sent)
    connected = err is None
    got = bytearray()
    head: httpwire.HttpHead | None = None
    body_off = 0
    eof = False
    stalled = False
    malformed = None
    last_progress = None
    sent = False
    state = None
    try:
        if err is None:
            s.settimeout(timeout)
            try:
                host = f"[{server}]" if ":" in server else server
                s.sendall(httpwire.build_request(host if port == 80 else f"{host}:{port}", path))
                sent = True
                budget = time.monotonic() + BUDGET_TIMEOUTS * timeout
                while len(got) < MAX_BODY:
                    if time.monotonic() > budget:
                        err = TOO_SLOW
                        break
                    try:
                        chunk = s.recv(65536)
                    except socket.timeout:  # no progress for the time-out
                        stalled = True
                        err = STALLED if got else NO_RESPONSE
                        break
                    if not chunk:
                        eof = True
                        break
                    got += chunk
                    last_progress = time.time()
                    if head is None:
                        try:
                            split = httpwire.split_head(bytes(got))
                        except httpwire.MalformedResponse as exc:
                            malformed = str(exc)
                            break
                        if split is not None:
                            head, body_off = split
                    if head is not None and _done(head, got, body_off):
                        break
            except OSError as exc:
                err = error_phrase(exc)
        state = tcp_state(s)
    finally:
        s.close()
    return Fetched(started=started, ended=time.time(), error=err, local=local, tcp=state, connected=connected,
                   sent=sent, data=bytes(got), eof=eof, stalled=stalled, malformed=malformed,
                   last_progress=last_progress, syn_left=syn_left)


def _not_sent(f: Fetched) -> NotSent | None:
    return NotSent(f.error) if not f.syn_left and f.error else None


def _done(head: httpwire.HttpHead, got: bytearray, body_off: int) -> bool:
    cl = head.content_length
    if not head.chunked and cl is not None:
        return len(got) - body_off >= cl
    if head.chunked and got.endswith(b"\r\n"):
        try:
            return httpwire.body_complete(head, bytes(got[body_off:]), False)[1]
        except httpwire.MalformedResponse:
            return True  # stop reading: the parse of what arrived will say what is wrong
    return False


def _response_seen(f: Fetched) -> tuple[httpwire.HttpResponse | None, str | None, dict[str, Any]]:
    """Parse a fetch's bytes; returns (response, error phrase, seen fields)."""
    seen: dict[str, Any] = {"connected": f.connected, "request_sent": f.sent, "bytes_received": len(f.data)}
    err = f.error
    if f.malformed:
        seen["malformed"] = f.malformed
        return None, BAD_RESPONSE, seen
    if not f.data:
        return None, err, seen
    try:
        resp = httpwire.parse_response(f.data, eof=f.eof)
    except httpwire.MalformedResponse as exc:
        seen["malformed"] = str(exc)
        return None, err or BAD_RESPONSE, seen
    seen.update({
        "status": resp.status,
        "reason": resp.head.reason,
        "headers": dict(resp.head.headers),
        "server": resp.head.get("server"),
        "proxy_headers": resp.proxy_headers(),
        "content_length": resp.head.content_length,
        "body_bytes": len(resp.body),
        "complete": resp.complete,
    })
    if err is None and not resp.complete:
        err = CLOSED_EARLY
    if err is None and resp.status != 200:
        err = HTTP_STATUS
    return resp, err, seen


def probe_http(pid: str, nonce: str, server: str, port: int, timeout: float,
               syn_sent: threading.Event | None = None) -> ProbeResult:
    f = fetch(server, port, PAGE_PREFIX + nonce, timeout, syn_sent)
    resp, err, seen = _response_seen(f)
    seen["path"] = PAGE_PREFIX + nonce
    if resp is not None:
        seen["body_ok"] = body_check(resp.body, nonce)
        seen["responder"] = resp.head.get(RESPONDER_HEADER)
    return ProbeResult(kind="http", id=pid, target=hostport(server, port), nonce=nonce,
                       started=f.started, ended=f.ended, ok=err is None, error=err,
                       local=f.local, tcp=f.tcp, seen=seen, not_sent=_not_sent(f))


def probe_large(pid: str, nonce: str, server: str, port: int, timeout: float,
               syn_sent: threading.Event | None = None) -> ProbeResult:
    path = f"{LARGE_PATH}?rig={nonce}"
    f = fetch(server, port, path, timeout, syn_sent)
    resp, err, seen = _response_seen(f)
    if err == NO_RESPONSE:
        err = STALLED  # for the large object, not one byte is a stall too (Apache sends head and body together)
    seen["path"] = path
    seen["stalled"] = f.stalled
    if f.last_progress is not None:
        seen["last_progress"] = round(f.last_progress - f.started, 6)
    return ProbeResult(kind="large", id=pid, target=hostport(server, port), nonce=nonce,
                       started=f.started, ended=f.ended, ok=err is None, error=err,
                       local=f.local, tcp=f.tcp, seen=seen, not_sent=_not_sent(f))
