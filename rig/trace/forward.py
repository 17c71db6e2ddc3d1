"""The forward trace, tracebox-style: TTL-limited copies of the client's own request.

From the client's side (a namespace in the lab), copies of the very packet a probe sent
(same 5-tuple, so every NAT maps them as it mapped the probe: a SYN to the port, the UDP
datagram, the echo request) leave at once with TTL 1..N. Each copy carries its TTL in
its IP ID and, for TCP and ICMP, in its sequence number, so the ICMP time-exceeded a hop
sends back names the TTL even when a hop rewrote the IP ID. The quoted packet is
compared with what was sent (``records.quote_changes``). The far end's own answer
(SYN-ACK or RST, the UDP reply, the echo reply) says the copy got through.

Everything waits at most ``wait`` seconds after the copies left (all at once): a trace
costs about ``wait``, whatever N is.
"""

from __future__ import annotations

import random
import select
import socket
import time

from rig.netns import in_netns
from rig.trace import wire
from rig.trace.records import Hop, Trace, quote_changes

PROTO = {"tcp": wire.TCP, "udp": wire.UDP, "icmp": wire.ICMP}
MAX_TTL = 16
WAIT = 1.0
SETTLE = 0.2  # seconds to wait for the hops' errors once the far end has answered
PAYLOAD = b"rig-trace"
# the options of a Linux SYN: MSS, SACK permitted, timestamps, window scale
_SYN_OPTIONS = (wire.mss_option(1460) + bytes([4, 2, 8, 10]) + b"\0" * 8 + bytes([1, 3, 3, 7]))


def local_address(dst: str, port: int) -> str:
    """The address this namespace sends from toward ``dst`` (a UDP connect: no packet)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((dst, port or 9))
        return s.getsockname()[0]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def _copies(proto: str, src: str, dst: str, sport: int, dport: int, echo_id: int, payload: bytes, max_ttl: int,
            base: int, id_base: int) -> list[tuple[int, bytes, dict]]:
    out = []
    for ttl in range(1, max_ttl + 1):
        if proto == "tcp":
            l4 = wire.tcp(src, dst, sport, dport, base + ttl, 0, wire.SYN, _SYN_OPTIONS)
        elif proto == "udp":
            # the TTL is also in the datagram's length (UDP header, so in every quote):
            # a NAT rewrites the IP ID a copy is numbered by (pf's scrub random-id), never the length
            l4 = wire.udp(src, dst, sport, dport, payload + bytes(ttl))
        else:
            l4 = wire.icmp_echo(wire.ECHO_REQUEST, echo_id, (base + ttl) & 0xFFFF, payload)
        pkt = wire.ipv4(src, dst, PROTO[proto], l4, ttl, id_base + ttl)
        fields = wire.parse(pkt)
        assert fields is not None  # built here as IPv4
        out.append((ttl, pkt, fields))
    return out


def _udp_ttl(d: dict, payload_len: int) -> int | None:
    """A UDP copy's TTL from its length (``_copies`` pads copy n with n bytes)."""
    return d["ulen"] - 8 - payload_len if "ulen" in d else None


def _ttl_of(proto: str, d: dict, base: int, id_base: int, max_ttl: int, payload_len: int = 0) -> int | None:
    """The TTL a quoted copy was sent with: from its sequence number or UDP length, else
    its IP ID (which a NAT may rewrite)."""
    for value in ((d.get("seq", -1) - base) if proto == "tcp" else None,
                  ((d.get("icmp_seq", -1) - base) & 0xFFFF) if proto == "icmp" and "icmp_seq" in d else None,
                  _udp_ttl(d, payload_len) if proto == "udp" else None,
                  d.get("id", -1) - id_base):
        if value is not None and 1 <= value <= max_ttl:
            return value
    return None


def _trace_here(proto: str, dst: str, dport: int, sport: int | None, echo_id: int | None, payload: bytes,
                max_ttl: int, wait: float) -> Trace:
    src = local_address(dst, dport)
    sport = sport or free_port()
    echo_id = echo_id if echo_id is not None else random.randrange(1, 0xFFFF)
    base = random.randrange(1 << 16, 1 << 31) if proto == "tcp" else random.randrange(0, 0xFF00)
    id_base = random.randrange(0, 0xFF00)
    copies = _copies(proto, src, dst, sport, dport, echo_id, payload, max_ttl, base, id_base)
    sent = {ttl: fields for ttl, _, fields in copies}
    icmp = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    l4 = socket.socket(socket.AF_INET, socket.SOCK_RAW, PROTO[proto]) if proto != "icmp" else None
    sender = wire.raw_sender()
    hops: dict[int, Hop] = {}
    unnumbered: set[str] = set()  # hops whose quote names no copy (rewritten on the way)
    replies: list[int | None] = []
    try:
        for _, pkt, _ in copies:
            sender.sendto(pkt, (dst, 0))
        until = time.monotonic() + wait
        socks = [s for s in (icmp, l4) if s is not None]
        while True:
            left = until - time.monotonic()
            if left <= 0 or _complete(hops, replies, proto, max_ttl):
                break
            ready, _, _ = select.select(socks, [], [], left)
            for s in ready:
                data = s.recv(65535)
                d = wire.parse(data)
                if d is None:
                    continue
                err = wire.icmp_error(data) if d["proto"] == wire.ICMP else None
                if err is not None:
                    q = err["quoted"]
                    if q["dst"] != dst or q["proto"] != PROTO[proto]:
                        continue
                    if proto != "icmp" and q.get("dport") != dport:
                        continue
                    ttl = _ttl_of(proto, q, base, id_base, max_ttl, len(payload))
                    if ttl is None:
                        unnumbered.add(err["from"])
                    elif ttl not in hops:
                        kind = "time-exceeded" if err["type"] == wire.TIME_EXCEEDED else "unreachable"
                        hops[ttl] = Hop(ttl, err["from"], kind, quote_changes(sent[ttl], q))
                elif d["src"] == dst and _is_answer(proto, d, sport, echo_id):
                    replies.append(_reply_ttl(proto, d, base, max_ttl, len(payload)))
                    until = min(until, time.monotonic() + min(SETTLE, wait))  # nearer hops answer first
    finally:
        for sock in (icmp, l4, sender):
            if sock is not None:
                sock.close()
    arrived = _arrived(proto, replies, hops, max_ttl)
    if arrived is not None and arrived not in hops:
        hops[arrived] = Hop(arrived, dst, "reply")
    target = f"{dst}:{dport}" if proto != "icmp" else dst
    source = f"{src}:{sport}" if proto != "icmp" else f"{src} id {echo_id}"
    named_hops = {h.address for h in hops.values()}
    return Trace("out", proto, source, target, max_ttl, tuple(hops[t] for t in sorted(hops)), arrived,
                 unnumbered=tuple(sorted(unnumbered - named_hops)))


def _is_answer(proto: str, d: dict, sport: int, echo_id: int) -> bool:
    if proto == "icmp":
        return d.get("icmp_type") == wire.ECHO_REPLY and d.get("icmp_id") == echo_id
    return d.get("dport") == sport


def _reply_ttl(proto: str, d: dict, base: int, max_ttl: int, payload_len: int = 0) -> int | None:
    if proto == "udp":  # an echo sends the copy's bytes back, its length naming the copy;
        v = _udp_ttl(d, payload_len)  # any other answer (not an echo) names none
        body = bytes.fromhex(d.get("payload", ""))
        if v is None or v < 1 or len(body) != payload_len + v or any(body[payload_len:]):
            return None
    elif proto == "tcp":  # a SYN-ACK or RST acks the copy it answers; a bare (challenge) ACK may ack another
        flags = d.get("flags", 0)
        v = d.get("ack", 0) - 1 - base if flags & wire.ACK and flags & (wire.SYN | wire.RST) else None
    elif proto == "icmp":
        v = (d.get("icmp_seq", -1) - base) & 0xFFFF
    else:
        return None
    return v if v is not None and 1 <= v <= max_ttl else None


def _arrived(proto: str, replies: list[int | None], hops: dict[int, Hop], max_ttl: int) -> int | None:
    """The smallest TTL that reached the far end. UDP replies carry no TTL: each copy
    that arrived drew one echo, so N replies mean TTLs max_ttl-N+1..max_ttl arrived."""
    if not replies:
        return None
    known = [t for t in replies if t is not None]
    if proto == "udp" and not known:
        return max(1, max_ttl - len(replies) + 1)
    # The far end answered. A server that already holds the 5-tuple (the probe's
    # half-open connection) may answer a later copy than the first that reached it (a
    # RST to the third SYN, a challenge ACK naming none): the copies past the last hop
    # that sent an error drew nothing from any hop, so they reached the far end too.
    past_hops = min(max((t for t, h in hops.items() if h.kind != "reply"), default=0) + 1, max_ttl)
    return min([*known, past_hops])


def _complete(hops: dict[int, Hop], replies: list, proto: str, max_ttl: int) -> bool:
    """Every TTL below the one that arrived has answered: nothing more to wait for
    (only when an answer named its copy's TTL)."""
    known = [t for t in replies if t is not None]
    return bool(known) and proto != "udp" and all(t in hops for t in range(1, min(known)))


def forward(netns: str | None, proto: str, dst: str, dport: int = 0, sport: int | None = None,
            echo_id: int | None = None, payload: bytes = PAYLOAD, max_ttl: int = MAX_TTL,
            wait: float = WAIT) -> Trace:
    """Trace the way out from the client (``netns``; None: this namespace), as root."""
    try:
        return in_netns(netns, _trace_here, proto, dst, dport, sport, echo_id, payload, max_ttl, wait)
    except OSError as exc:
        target = f"{dst}:{dport}" if proto != "icmp" else dst
        return Trace("out", proto, "", target, max_ttl, (), None, error=f"cannot send raw packets: {exc.strerror}")
