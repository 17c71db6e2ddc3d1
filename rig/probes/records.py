"""What a probe leaves behind: ``ProbeResult`` records, TCP socket state, nonces, probes.jsonl.

A probe's result is what the *client* saw (connected? HTTP status? bytes received?),
written beside the captures so the analysis can compare it with what the server saw.
A failed probe is a result with ``ok=False`` and a short ``error`` phrase from
``ERRORS`` — never an exception.

``TcpState`` is read from the socket itself (``getsockopt(TCP_INFO)``) right after the
probe and before the socket is closed, so a handshake that never completed shows
``SYN_SENT`` with its SYN retransmissions, and one that did shows ``ESTABLISHED``.
``parse_tcp_info`` is a pure function of the kernel's bytes.
"""

from __future__ import annotations

import errno
import json
import re
import secrets
import socket
import struct
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Mapping

from rig.errors import InputError

FORMAT = "rig.probe/1"

# The short phrases a probe puts in ``error`` (what the client saw go wrong).
TIMED_OUT = "timed out"  # no answer to the SYN / echo / datagram within the time-out
REFUSED = "connection refused"  # RST to the SYN, or ICMP port unreachable (UDP)
RESET = "connection reset"  # RST after the connection was up
HOST_UNREACHABLE = "host unreachable"
NET_UNREACHABLE = "network unreachable"
MSG_TOO_LONG = "message too long"  # DF packet larger than the local path MTU (EMSGSIZE)
FRAG_NEEDED = "fragmentation needed"  # an ICMP frag-needed came back for a DF echo
NO_RESPONSE = "no response"  # connected and sent the request; no byte came back
STALLED = "stalled"  # a response started, then no progress for the time-out
CLOSED_EARLY = "closed early"  # the peer closed before the response was complete
TOO_SLOW = "too slow"  # bytes kept trickling in, but the response took over its budget
BAD_RESPONSE = "bad response"  # bytes came back but they are not HTTP
HTTP_STATUS = "http status"  # an HTTP answer other than 200
ECHO_MISMATCH = "echo mismatch"  # a UDP answer that is not the bytes sent
NO_PORT = "no local port"  # EADDRNOTAVAIL: the client ran out of ephemeral ports
ERRORS = (TIMED_OUT, REFUSED, RESET, HOST_UNREACHABLE, NET_UNREACHABLE, MSG_TOO_LONG, FRAG_NEEDED,
          NO_RESPONSE, STALLED, CLOSED_EARLY, TOO_SLOW, BAD_RESPONSE, HTTP_STATUS, ECHO_MISMATCH, NO_PORT)

_ERRNO_PHRASE = {
    errno.ETIMEDOUT: TIMED_OUT,
    errno.ECONNREFUSED: REFUSED,
    errno.ECONNRESET: RESET,
    errno.EPIPE: RESET,
    errno.EHOSTUNREACH: HOST_UNREACHABLE,
    errno.ENETUNREACH: NET_UNREACHABLE,
    errno.EMSGSIZE: MSG_TOO_LONG,
    errno.EADDRNOTAVAIL: NO_PORT,
}


def error_phrase(err: int | OSError) -> str:
    """The ``error`` phrase for an errno (or an OSError); unknown ones keep their strerror."""
    if isinstance(err, socket.timeout):
        return TIMED_OUT
    code = err.errno if isinstance(err, OSError) else err
    if code in _ERRNO_PHRASE:
        return _ERRNO_PHRASE[code]
    if isinstance(err, OSError) and err.strerror:
        return err.strerror.lower()
    return errno.errorcode.get(code or 0, f"errno {code}").lower()


# include/net/tcp_states.h
TCP_STATES = {
    1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2",
    6: "TIME_WAIT", 7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN", 11: "CLOSING",
    12: "NEW_SYN_RECV",
}
# tcpi_options bits (include/uapi/linux/tcp.h)
_TCPI_OPTS = ((1, "timestamps"), (2, "sack"), (4, "wscale"), (8, "ecn"), (16, "ecn_seen"), (32, "syn_data"))

# struct tcp_info: 8 x u8 (state .. wscale nibbles, flags), then u32 fields in this order
_TCP_INFO_HEAD = struct.Struct("=8B")
_TCP_INFO_U32 = ("rto", "ato", "snd_mss", "rcv_mss", "unacked", "sacked", "lost", "retrans",
                 "fackets", "last_data_sent", "last_ack_sent", "last_data_recv", "last_ack_recv",
                 "pmtu", "rcv_ssthresh", "rtt", "rttvar", "snd_ssthresh", "snd_cwnd", "advmss",
                 "reordering", "rcv_rtt", "rcv_space", "total_retrans")
_TCP_INFO_BODY = struct.Struct("=" + "I" * len(_TCP_INFO_U32))
TCP_INFO_LEN = _TCP_INFO_HEAD.size + _TCP_INFO_BODY.size  # 104: the fields rig reads


@dataclass(frozen=True)
class TcpState:
    """A TCP socket's state as the kernel reports it (TCP_INFO), read before close."""

    state: str  # "ESTABLISHED", "SYN_SENT", "CLOSE", ...
    retransmits: int  # current run of unanswered retransmissions (SYNs while SYN_SENT)
    total_retrans: int  # every retransmission of this connection
    rtt_us: int  # smoothed RTT (0 before any ACK)
    snd_mss: int  # MSS the client sends with (clamped values show here)
    rcv_mss: int
    pmtu: int  # the path MTU the kernel believes in
    options: tuple[str, ...] = ()  # negotiated: timestamps, sack, wscale, ecn...
    snd_wscale: int = 0
    rcv_wscale: int = 0


def parse_tcp_info(raw: bytes) -> TcpState:
    """Decode the first ``TCP_INFO_LEN`` bytes of ``getsockopt(TCP_INFO)``."""
    if len(raw) < TCP_INFO_LEN:
        raise ValueError(f"tcp_info is {len(raw)} bytes, need {TCP_INFO_LEN}")
    state, _ca, retransmits, _probes, _backoff, opts, wscale, _flags = _TCP_INFO_HEAD.unpack_from(raw)
    v = dict(zip(_TCP_INFO_U32, _TCP_INFO_BODY.unpack_from(raw, _TCP_INFO_HEAD.size)))
    return TcpState(
        state=TCP_STATES.get(state, f"STATE_{state}"),
        retransmits=retransmits,
        total_retrans=v["total_retrans"],
        rtt_us=v["rtt"],
        snd_mss=v["snd_mss"],
        rcv_mss=v["rcv_mss"],
        pmtu=v["pmtu"],
        options=tuple(name for bit, name in _TCPI_OPTS if opts & bit),
        snd_wscale=wscale & 0x0F,
        rcv_wscale=wscale >> 4,
    )


def tcp_state(sock: socket.socket) -> TcpState | None:
    """The socket's TcpState now, or None if the kernel will not say (socket closed)."""
    try:
        raw = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    except OSError:
        return None
    return parse_tcp_info(raw)


def local_of(sock: socket.socket) -> str | None:
    """The socket's local "addr:port" ("[addr]:port" for IPv6), or None if it has none yet."""
    try:
        addr, port = sock.getsockname()[:2]
    except OSError:
        return None
    if port == 0 and addr in ("0.0.0.0", "::"):
        return None
    return hostport(addr, port)


def family_of(addr: str) -> socket.AddressFamily:
    """AF_INET6 for an IPv6 address, else AF_INET (the probes open their sockets with it)."""
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def hostport(addr: str, port: int) -> str:
    """"198.51.100.10:80", or "[2001:db8:5::10]:80" for IPv6 (as a URL writes it)."""
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


_TAG_RE = re.compile(r"[^A-Za-z0-9_.]")


def make_nonce(run_tag: str, probe_id: str) -> str:
    """A unique, URL- and payload-safe tag: ``rig-<tag>-<probe id>-<8 hex>`` (<= 40 chars).

    It goes into the ICMP/UDP payload and the HTTP path, so the analysis can find the
    probe in any capture; the random part makes every run's nonces different (no cache
    can have seen them before).
    """
    tag = _TAG_RE.sub("", run_tag)[:12]
    parts = ["rig", tag, probe_id, secrets.token_hex(4)] if tag else ["rig", probe_id, secrets.token_hex(4)]
    return "-".join(parts)


@dataclass(frozen=True)
class NotSent:
    """The client's kernel refused to send a probe's packet: nothing reached the wire, so
    no capture can show it. ``error`` is the probe's phrase from ERRORS ("message too
    long", "network unreachable", "no local port", ...)."""

    error: str
    size: int | None = None  # total IP size of the packet refused (DF echoes), if the probe has one
    local_mtu: int | None = None  # MTU of the interface it would have left by, when it was too large

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "NotSent":
        size, mtu = d.get("size"), d.get("local_mtu")
        return cls(str(d["error"]), None if size is None else int(size), None if mtu is None else int(mtu))


@dataclass(frozen=True)
class ProbeResult:
    """One probe as the client saw it.

    ``seen`` holds the kind-specific observations (JSON-able): for icmp the size, DF,
    echo id/seq, reply TTL and RTT; for http the status, headers, body check; for burst
    the per-connection outcomes and ports. ``local`` is the socket's local address
    ("192.168.1.10:40312"; for ICMP the source address) so the analysis can tie the
    exchanges it finds in the client capture to this probe. ``not_sent`` is set when the
    request never left the client (a local send error): the captures cannot show it.
    """

    kind: str  # one of PROBE_KINDS
    id: str  # "icmp-1", "tcp-1", "http-1", ...
    target: str  # "198.51.100.10:80", or the bare address for icmp
    nonce: str
    started: float  # time.time() when the first packet was sent
    ended: float  # time.time() when the probe finished (answer or time-out)
    ok: bool  # the client side saw success
    error: str | None = None  # a phrase from ERRORS (or strerror) when not ok
    local: str | None = None  # "addr:port" the socket used
    tcp: TcpState | None = None  # TCP_INFO right after the probe, before close
    seen: Mapping[str, Any] = field(default_factory=dict)
    not_sent: NotSent | None = None

    @property
    def family(self) -> int:
        """4 or 6: the IP version of the target (an added key of rig.probe/1; readers ignore it)."""
        return 6 if self.target.startswith("[") or self.target.count(":") > 1 else 4

    @property
    def host(self) -> str:
        """The target's address, without its port ("[2001:db8::1]:80" -> "2001:db8::1")."""
        if self.target.startswith("["):
            return self.target[1:].split("]", 1)[0]
        return self.target.rsplit(":", 1)[0] if self.target.count(":") == 1 else self.target

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["seen"] = dict(self.seen)
        if self.tcp is not None:
            d["tcp"]["options"] = list(self.tcp.options)
        return {"format": FORMAT, **d, "family": self.family}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ProbeResult":
        fmt = d.get("format")
        if fmt != FORMAT:
            raise InputError(f"probe record has format {fmt!r}; this rig reads {FORMAT!r}")
        try:
            tcp = d.get("tcp")
            return cls(
                kind=d["kind"], id=d["id"], target=d["target"], nonce=d["nonce"],
                started=float(d["started"]), ended=float(d["ended"]), ok=bool(d["ok"]),
                error=d.get("error"), local=d.get("local"),
                tcp=None if tcp is None else TcpState(**{**tcp, "options": tuple(tcp.get("options", ()))}),
                seen=dict(d.get("seen", {})),
                not_sent=not_sent_of_record(d),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"probe record {d.get('id', '?')!r} is incomplete: {exc}") from exc


def not_sent_of_record(d: Mapping[str, Any]) -> NotSent | None:
    """The ``not_sent`` of a probe record as JSON data (what ``rig show`` needs of a
    bundle's probes.jsonl, without reading the rest); a record written before it existed
    says so in ``seen`` ("sent": false), without the interface MTU."""
    ns = d.get("not_sent")
    if ns is not None:
        return NotSent.from_dict(ns)
    seen = d.get("seen") or {}
    if seen.get("sent") is False:
        size = seen.get("size")
        return NotSent(str(d.get("error") or "not sent"), None if size is None else int(size))
    return None


def write_jsonl(results: Iterable[ProbeResult], path: str) -> None:
    """Write probes.jsonl: one ``to_dict()`` per line."""
    with open(path, "w", encoding="utf-8") as f:
        for r in results:
            f.write(json.dumps(r.to_dict(), sort_keys=True) + "\n")


def read_jsonl(path: str) -> list[ProbeResult]:
    """Read probes.jsonl back; a line that is not a probe record is an InputError."""
    out = []
    try:
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    d = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise InputError(f"{path}:{n}: not JSON ({exc.msg})") from exc
                out.append(ProbeResult.from_dict(d))
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from exc
    return out
