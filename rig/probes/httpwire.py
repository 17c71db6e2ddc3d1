"""HTTP/1.x on the wire, as pure functions of bytes: the request rig sends, the response it reads.

The probes build their request by hand on a plain socket, so no proxy setting of the
environment (http_proxy, no_proxy, ...) can ever route them elsewhere, and no client
cache can answer for the server. ``parse_response`` turns the bytes a socket received
into an ``HttpResponse``; it raises ``MalformedResponse`` for bytes that are not HTTP
(what a middlebox might send), and reports a body cut short as ``complete=False``
rather than guessing.
"""

from __future__ import annotations

from dataclasses import dataclass

# Response headers that betray a proxy or a cache answering for the server.
PROXY_HEADERS = ("via", "age", "x-cache", "x-cache-lookup", "x-cache-hits", "x-served-by",
                 "x-squid-error", "proxy-connection", "x-proxy-cache", "cf-cache-status",
                 "x-varnish")
MAX_HEAD = 64 * 1024


class MalformedResponse(ValueError):
    """The bytes are not an HTTP/1.x response."""


@dataclass(frozen=True)
class HttpHead:
    version: str  # "HTTP/1.1"
    status: int
    reason: str
    headers: tuple[tuple[str, str], ...]  # in order, names lower-cased

    def get(self, name: str) -> str | None:
        """The last value of header ``name`` (case-insensitive), or None."""
        name = name.lower()
        found = None
        for k, v in self.headers:
            if k == name:
                found = v
        return found

    @property
    def content_length(self) -> int | None:
        v = self.get("content-length")
        if v is None or not v.strip().isdigit():
            return None
        return int(v)

    @property
    def chunked(self) -> bool:
        return "chunked" in (self.get("transfer-encoding") or "").lower()


@dataclass(frozen=True)
class HttpResponse:
    head: HttpHead
    body: bytes  # decoded (de-chunked) body, as much as arrived
    complete: bool  # the whole body arrived (by Content-Length, last chunk, or EOF)
    wire_body_len: int  # bytes after the head, as received

    @property
    def status(self) -> int:
        return self.head.status

    def proxy_headers(self) -> dict[str, str]:
        """The headers in PROXY_HEADERS that the response carries."""
        return {k: v for k, v in self.head.headers if k in PROXY_HEADERS}


def build_request(host: str, path: str, *, user_agent: str = "rig-probe/1") -> bytes:
    """A GET that no cache may answer: no-cache/no-store, Pragma, and Connection: close."""
    if not path.startswith("/") or any(c in path for c in " \r\n"):
        raise ValueError(f"bad request path {path!r}")
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {host}",
        f"User-Agent: {user_agent}",
        "Accept: */*",
        "Cache-Control: no-cache, no-store",
        "Pragma: no-cache",
        "Connection: close",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


def split_head(buf: bytes) -> tuple[HttpHead, int] | None:
    """Parse the status line and headers; returns (head, offset of the body).

    None while the head is not complete yet; MalformedResponse as soon as the bytes
    cannot be HTTP (so a caller can stop reading garbage early).
    """
    if buf and not b"HTTP/".startswith(buf[:5]):
        raise MalformedResponse(f"does not start with HTTP/: {buf[:20]!r}")
    end = buf.find(b"\r\n\r\n")
    sep = 4
    if end < 0:
        end = buf.find(b"\n\n")  # tolerate bare LF, as browsers do
        sep = 2
    if end < 0:
        if len(buf) > MAX_HEAD:
            raise MalformedResponse(f"no end of headers in {len(buf)} bytes")
        return None
    lines = buf[:end].decode("iso-8859-1").replace("\r\n", "\n").split("\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not (parts[1].isdigit() and len(parts[1]) == 3):
        raise MalformedResponse(f"bad status line {lines[0][:60]!r}")
    headers = []
    for line in lines[1:]:
        if not line:
            continue
        name, colon, value = line.partition(":")
        if not colon or not name.strip():
            raise MalformedResponse(f"bad header line {line[:60]!r}")
        headers.append((name.strip().lower(), value.strip()))
    head = HttpHead(version=parts[0], status=int(parts[1]), reason=parts[2] if len(parts) > 2 else "",
                    headers=tuple(headers))
    return head, end + sep


def dechunk(raw: bytes) -> tuple[bytes, bool]:
    """Decode a chunked body; returns (data so far, whether the last chunk arrived)."""
    out = bytearray()
    pos = 0
    while True:
        eol = raw.find(b"\r\n", pos)
        if eol < 0:
            return bytes(out), False
        size_field = raw[pos:eol].split(b";", 1)[0].strip()
        try:
            size = int(size_field, 16)
        except ValueError:
            raise MalformedResponse(f"bad chunk size {size_field[:20]!r}") from None
        if size == 0:
            return bytes(out), True
        start = eol + 2
        chunk = raw[start:start + size]
        out += chunk
        if len(chunk) < size or raw[start + size:start + size + 2] != b"\r\n":
            return bytes(out), False
        pos = start + size + 2


def body_complete(head: HttpHead, wire_body: bytes, eof: bool) -> tuple[bytes, bool]:
    """The decoded body and whether it is all there, given what arrived and whether EOF came."""
    if head.status in (204, 304) or 100 <= head.status < 200:
        return b"", True
    if head.chunked:
        return dechunk(wire_body)
    cl = head.content_length
    if cl is not None:
        return wire_body[:cl], len(wire_body) >= cl
    return wire_body, eof  # no length: the body ends when the server closes


def parse_response(data: bytes, *, eof: bool = True) -> HttpResponse:
    """Parse everything a socket received. MalformedResponse if it is not HTTP or is cut
    inside the head."""
    split = split_head(data)
    if split is None:
        raise MalformedResponse(f"headers incomplete after {len(data)} bytes")
    head, off = split
    body, complete = body_complete(head, data[off:], eof)
    return HttpResponse(head=head, body=body, complete=complete, wire_body_len=len(data) - off)
