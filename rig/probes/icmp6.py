"""ICMPv6 echo probes: the IPv6 twin of rig.probes.icmp, one small echo and DF-sized ones.

IPv6 routers never fragment, so every echo tests the path as a DF echo does in IPv4:
one larger than a link on the way is dropped, and the router in front of that link
answers Packet Too Big (type 2) with the link's MTU. The socket is a raw ICMPv6 socket
(root; the kernel fills in the checksum over the pseudo-header) with
``IPV6_MTU_DISCOVER = IPV6_PMTUDISC_PROBE``: the source never fragments and ignores the
path MTU it has cached, so only the outgoing interface's MTU refuses a send (EMSGSIZE,
recorded as ``not_sent``). Sizes are total IPv6 packet sizes (IPv6 40 + ICMPv6 8 +
payload). ``parse_icmp6`` is a pure function of the bytes the raw socket receives (the
ICMPv6 message, without the IPv6 header).
"""

from __future__ import annotations

import secrets
import select
import socket
import struct
import sys
import time
from typing import Sequence

from rig.probes.icmp import DF_SIZES, IcmpSeen, echo_payload, in_order, timed_out
from rig.probes.records import FRAG_NEEDED, MSG_TOO_LONG, NotSent, ProbeResult, error_phrase

HEADERS6 = 48  # IPv6 40 + ICMPv6 8
SMALL_SIZE6 = 104  # 56 bytes of payload, as ping -6 sends by default
ICMP6_SIZES = (SMALL_SIZE6, *DF_SIZES)

ECHO_REQUEST6, ECHO_REPLY6 = 128, 129
DEST_UNREACH6, PACKET_TOO_BIG, TIME_EXCEEDED6 = 1, 2, 3
IPV6_MTU_DISCOVER = 23  # linux/in6.h
IPV6_PMTUDISC_PROBE = 3
IPV6_MTU = 24
_UNREACH6 = {0: "network unreachable", 1: "administratively prohibited", 3: "host unreachable",
             4: "port unreachable"}


def build_echo6(ident: int, seq: int, payload: bytes) -> bytes:
    """An ICMPv6 echo request; checksum 0 (the kernel computes it for raw ICMPv6 sockets)."""
    return struct.pack("!BBHHH", ECHO_REQUEST6, 0, 0, ident, seq) + payload


def parse_icmp6(data: bytes, src: str = "", hops: int = 0) -> IcmpSeen | None:
    """Decode an ICMPv6 message: an echo reply, or an error quoting an echo request (the
    quoted IPv6 header is 40 bytes; extension headers in the quote are not followed).
    None for anything else (neighbour discovery, other types, truncated)."""
    if len(data) < 8:
        return None
    typ, code = data[0], data[1]
    if typ == ECHO_REPLY6:
        ident, seq = struct.unpack_from("!HH", data, 4)
        return IcmpSeen(src, hops, typ, code, ident, seq, data[8:])
    if typ in (DEST_UNREACH6, PACKET_TOO_BIG, TIME_EXCEEDED6):
        inner = data[8:]
        if len(inner) < 48 or inner[0] >> 4 != 6 or inner[6] != socket.IPPROTO_ICMPV6 or inner[40] != ECHO_REQUEST6:
            return None
        ident, seq = struct.unpack_from("!HH", inner, 44)
        mtu = struct.unpack_from("!I", data, 4)[0] if typ == PACKET_TOO_BIG else 0
        return IcmpSeen(src, hops, typ, code, ident, seq, b"", mtu)
    return None


def route_facts6(server: str) -> tuple[str | None, int | None]:
    """(source address toward ``server``, the route's MTU); no packet sent."""
    u = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    try:
        u.connect((server, 9))
        return u.getsockname()[0], u.getsockopt(socket.IPPROTO_IPV6, IPV6_MTU)
    except OSError:
        return None, None
    finally:
        u.close()


def interface_mtu6(src: str | None) -> int | None:
    """The MTU of the interface holding the IPv6 address ``src`` (from /proc/net/if_inet6
    and /sys of this thread's namespace: both follow the namespace of the reading task)."""
    if not src:
        return None
    want = socket.inet_pton(socket.AF_INET6, src).hex()
    try:
        with open("/proc/thread-self/net/if_inet6") as fh:
            for line in fh:
                parts = line.split()
                if len(parts) >= 6 and parts[0] == want:
                    return _iface_mtu(parts[5])
    except OSError:
        return None
    return None


def _iface_mtu(name: str) -> int | None:
    import fcntl

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            return struct.unpack_from("=i", fcntl.ioctl(s, 0x8921, struct.pack("256s", name.encode()[:15])), 16)[0]
        except OSError:
            return None


def _receive6(s: socket.socket) -> list[IcmpSeen]:
    out: list[IcmpSeen] = []
    while True:
        try:
            data, anc, _flags, addr = s.recvmsg(65535, 64)
        except BlockingIOError:
            return out
        except OSError:
            continue
        hops = next((int.from_bytes(d[:4], sys.byteorder) for lvl, typ, d in anc
                     if lvl == socket.IPPROTO_IPV6 and typ == socket.IPV6_HOPLIMIT), 0)
        got = parse_icmp6(data, addr[0], hops)
        if got is not None:
            out.append(got)


def probe_icmp6(echoes: Sequence[tuple[str, str, int]], server: str, timeout: float) -> list[ProbeResult]:
    """Send one ICMPv6 echo per (probe id, nonce, total IPv6 size), all at once; wait up
    to ``timeout`` for the answers."""
    src, _ = route_facts6(server)
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    except OSError as exc:
        now = time.time()
        return [ProbeResult(kind="icmp", id=pid, target=server, nonce=nonce, started=now, ended=now, ok=False,
                            error=error_phrase(exc), local=src, seen={"size": size, "df": True, "sent": False},
                            not_sent=NotSent(error_phrase(exc), size))
                for pid, nonce, size in echoes]
    ident = secrets.randbelow(0xFFFE) + 1
    results: dict[int, ProbeResult] = {}
    pending: dict[int, tuple[str, str, int, float, bytes]] = {}
    try:
        s.setsockopt(socket.IPPROTO_IPV6, IPV6_MTU_DISCOVER, IPV6_PMTUDISC_PROBE)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVHOPLIMIT, 1)
        s.setblocking(False)
        for seq, (pid, nonce, size) in enumerate(echoes, 1):
            payload = echo_payload(nonce, size - HEADERS6)
            t = time.time()
            try:
                s.sendto(build_echo6(ident, seq, payload), (server, 0))
            except OSError as exc:
                why = error_phrase(exc)
                local_mtu = interface_mtu6(src) if why == MSG_TOO_LONG else None
                results[seq] = ProbeResult(kind="icmp", id=pid, target=server, nonce=nonce, started=t,
                                           ended=time.time(), ok=False, error=why, local=src,
                                           seen={"size": size, "df": True, "ident": ident, "seq": seq, "sent": False},
                                           not_sent=NotSent(why, size, local_mtu))
            else:
                pending[seq] = (pid, nonce, size, t, payload)
        deadline = time.monotonic() + timeout
        poller = select.poll()
        poller.register(s, select.POLLIN)
        while pending:
            left = deadline - time.monotonic()
            if left <= 0 or not poller.poll(left * 1000):
                break
            for got in _receive6(s):
                if got.ident != ident or got.seq not in pending:
                    continue
                pid, nonce, size, t, payload = pending[got.seq]
                if got.type == ECHO_REPLY6 and got.payload != payload:
                    continue
                now = time.time()
                del pending[got.seq]
                seen = {"size": size, "df": True, "ident": ident, "seq": got.seq, "sent": True,
                        "reply_from": got.src, "reply_ttl": got.ttl, "icmp_type": got.type,
                        "icmp_code": got.code, "rtt_ms": round((now - t) * 1000, 3)}
                if got.type == ECHO_REPLY6:
                    err = None
                elif got.type == PACKET_TOO_BIG:
                    err, seen["mtu"] = FRAG_NEEDED, got.mtu
                elif got.type == DEST_UNREACH6:
                    err = _UNREACH6.get(got.code, f"unreachable (code {got.code})")
                else:
                    err = "ttl exceeded"
                results[got.seq] = ProbeResult(kind="icmp", id=pid, target=server, nonce=nonce, started=t,
                                               ended=now, ok=err is None, error=err, local=src, seen=seen)
    finally:
        s.close()
    return in_order(results, timed_out(pending, server, ident, src))
