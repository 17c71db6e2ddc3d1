"""ICMP echo probes: one small echo and DF-sized ones, all in flight at once.

One raw socket (we are root; otherwise an unprivileged ping socket, which needs the
caller's group in ``net.ipv4.ping_group_range`` — off, "1 0", in a fresh namespace;
its ICMP errors come from the socket's error queue) sends every echo back to back with
Don't Fragment set, then waits one time-out for all the answers, so the whole kind
costs one time-out however many sizes it tries. Each echo is its own ProbeResult
("icmp-1" the small one, then one per DF size) with its own nonce at the start of the
payload; the analysis matches echoes on (seq, payload).

Sizes are total IP packet sizes (IP 20 + ICMP 8 + payload). DF is set with
IP_PMTUDISC_PROBE, as tracepath does, not IP_PMTUDISC_DO: DO also refuses a packet
larger than the path MTU the kernel has cached for the server, and the cache is filled
by the frag-needed of a sibling echo a few microseconds earlier (the lab's hgw answers
within the next ``sendto``) or of any earlier run (it lasts 10 minutes), so whether
the 1500-byte echo left depended on timing. With PROBE every echo tests the path. One
larger than the outgoing interface's MTU never leaves: sendto fails with EMSGSIZE,
recorded as ``not_sent`` ("message too long") with that interface MTU. One that dies
further on may bring back an ICMP frag-needed, recorded as "fragmentation needed" with
the next-hop MTU it announced. ``parse_icmp`` is a pure function of the bytes a raw
socket receives.
"""

from __future__ import annotations

import fcntl
import secrets
import select
import socket
import struct
import sys
import time
from dataclasses import dataclass
from typing import Sequence

from rig.checksum import internet_checksum as checksum
from rig.probes.records import FRAG_NEEDED, MSG_TOO_LONG, TIMED_OUT, NotSent, ProbeResult, error_phrase

SMALL_SIZE = 84  # 56 bytes of payload, as ping sends by default
DF_SIZES = (1280, 1400, 1454, 1460, 1500)
ICMP_SIZES = (SMALL_SIZE, *DF_SIZES)
HEADERS = 28  # IPv4 20 + ICMP 8

IP_MTU_DISCOVER = 10  # linux/in.h
IP_PMTUDISC_DO = 2
IP_PMTUDISC_PROBE = 3  # DF set, the cached path MTU ignored: only the interface MTU limits a send
IP_MTU = 14
SIOCGIFADDR, SIOCGIFMTU = 0x8915, 0x8921  # linux/sockios.h

ECHO_REPLY, DEST_UNREACH, ECHO_REQUEST, TIME_EXCEEDED = 0, 3, 8, 11
_UNREACH = {0: "network unreachable", 1: "host unreachable", 2: "protocol unreachable",
            3: "port unreachable", 4: FRAG_NEEDED, 9: "network prohibited", 10: "host prohibited",
            13: "administratively prohibited"}


def echo_payload(nonce: str, length: int) -> bytes:
    """``length`` bytes starting with the nonce, padded with a fixed pattern."""
    tag = nonce.encode() + b"|"
    if len(tag) > length:
        raise ValueError(f"nonce {nonce!r} does not fit in {length} bytes of payload")
    pad = bytes((i & 0xFF) for i in range(length - len(tag)))
    return tag + pad


def build_echo(ident: int, seq: int, payload: bytes) -> bytes:
    """An ICMP echo request (header + payload) with its checksum."""
    head = struct.pack("!BBHHH", ECHO_REQUEST, 0, 0, ident, seq)
    csum = checksum(head + payload)
    return struct.pack("!BBHHH", ECHO_REQUEST, 0, csum, ident, seq) + payload


@dataclass(frozen=True)
class IcmpSeen:
    """One ICMP packet a raw socket received, as far as the echo probe cares."""

    src: str
    ttl: int
    type: int
    code: int
    ident: int  # of the echo it answers (the inner echo for errors)
    seq: int
    payload: bytes  # echo reply payload; b"" for errors
    mtu: int = 0  # next-hop MTU of a frag-needed


def parse_icmp(data: bytes) -> IcmpSeen | None:
    """Decode an IPv4 packet carrying ICMP: an echo reply, or an error quoting an echo
    request. None for anything else (other ICMP, truncated, not ICMP)."""
    if len(data) < 20 or data[0] >> 4 != 4 or data[9] != socket.IPPROTO_ICMP:
        return None
    ihl = (data[0] & 0x0F) * 4
    icmp = data[ihl:]
    if len(icmp) < 8:
        return None
    src = socket.inet_ntoa(data[12:16])
    ttl = data[8]
    typ, code = icmp[0], icmp[1]
    if typ == ECHO_REPLY:
        ident, seq = struct.unpack_from("!HH", icmp, 4)
        return IcmpSeen(src, ttl, typ, code, ident, seq, icmp[8:])
    if typ in (DEST_UNREACH, TIME_EXCEEDED):
        inner = icmp[8:]
        if len(inner) < 20 or inner[9] != socket.IPPROTO_ICMP:
            return None
        iihl = (inner[0] & 0x0F) * 4
        iicmp = inner[iihl:]
        if len(iicmp) < 8 or iicmp[0] != ECHO_REQUEST:
            return None
        ident, seq = struct.unpack_from("!HH", iicmp, 4)
        mtu = struct.unpack_from("!H", icmp, 6)[0] if (typ, code) == (DEST_UNREACH, 4) else 0
        return IcmpSeen(src, ttl, typ, code, ident, seq, b"", mtu)
    return None


def route_facts(server: str) -> tuple[str | None, int | None]:
    """(source address the kernel would use toward ``server``, the route's MTU); no packet sent."""
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        u.connect((server, 9))
        src = u.getsockname()[0]
        mtu = u.getsockopt(socket.IPPROTO_IP, IP_MTU)
        return src, mtu
    except OSError:
        return None, None
    finally:
        u.close()


def interface_mtu(src: str | None) -> int | None:
    """The MTU of the interface that holds the IPv4 address ``src`` (the source the kernel
    picks toward the server), in this thread's network namespace; None if none does."""
    if not src:
        return None
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _index, name in socket.if_nameindex():
            req = struct.pack("256s", name.encode()[:15])
            try:
                addr = socket.inet_ntoa(fcntl.ioctl(s, SIOCGIFADDR, req)[20:24])
                if addr == src:
                    return struct.unpack_from("=i", fcntl.ioctl(s, SIOCGIFMTU, req), 16)[0]
            except OSError:  # no IPv4 address on it
                continue
    return None


IP_RECVERR = 11
IP_TTL = 2
IP_RECVTTL = 12
SO_EE_ORIGIN_ICMP = 2
_EE = struct.Struct("=IBBBBII")  # struct sock_extended_err


def parse_extended_err(cmsg_data: bytes) -> tuple[int, int, int, int, str | None] | None:
    """(errno, ICMP type, ICMP code, info — the MTU for frag-needed —, offender address)
    from an IP_RECVERR control message; None unless it came from an ICMP message."""
    if len(cmsg_data) < _EE.size:
        return None
    err, origin, typ, code, _pad, info, _data = _EE.unpack_from(cmsg_data)
    if origin != SO_EE_ORIGIN_ICMP:
        return None
    offender = None
    if len(cmsg_data) >= _EE.size + 8 and struct.unpack_from("=H", cmsg_data, _EE.size)[0] == socket.AF_INET:
        offender = socket.inet_ntoa(cmsg_data[_EE.size + 4:_EE.size + 8])
    return err, typ, code, info, offender


def open_icmp_socket(mode: str = "auto") -> tuple[socket.socket, str]:
    """A raw ICMP socket (root), else an unprivileged ping socket (needs the caller's group
    in net.ipv4.ping_group_range). Returns (socket, "raw" | "ping"); raises OSError if
    neither may be opened."""
    if mode in ("auto", "raw"):
        try:
            return socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP), "raw"
        except PermissionError:
            if mode == "raw":
                raise
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)
    try:
        s.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)  # ICMP errors, with the quoted echo, on the error queue
        s.setsockopt(socket.IPPROTO_IP, IP_RECVTTL, 1)
    except OSError:
        s.close()
        raise
    return s, "ping"


def _receive(s: socket.socket, sock_mode: str) -> list[IcmpSeen]:
    """Everything queued on the socket now, decoded; [] when nothing is."""
    out: list[IcmpSeen] = []
    while True:
        if sock_mode == "raw":
            try:
                data, _addr = s.recvfrom(65535)
            except BlockingIOError:
                return out
            except OSError:  # an asynchronous error queued on the socket: not an answer
                continue
            got = parse_icmp(data)
        else:
            try:  # errors first: a frag-needed quoting our echo (header + payload as sent)
                data, anc, _flags, _addr = s.recvmsg(65535, 512, socket.MSG_ERRQUEUE)
            except BlockingIOError:
                data, anc = None, []
            got = None
            if data is not None:
                ee = next((parse_extended_err(d) for lvl, typ, d in anc
                           if lvl == socket.IPPROTO_IP and typ == IP_RECVERR), None)
                if ee is not None and len(data) >= 8:
                    _err, typ, code, info, offender = ee
                    ident, seq = struct.unpack_from("!HH", data, 4)
                    mtu = info if (typ, code) == (DEST_UNREACH, 4) else 0
                    got = IcmpSeen(offender or "", 0, typ, code, ident, seq, b"", mtu)
            else:
                try:
                    data, anc, _flags, addr = s.recvmsg(65535, 64)
                except BlockingIOError:
                    return out
                except OSError:
                    continue
                ttl = next((int.from_bytes(d[:4], sys.byteorder) for lvl, typ, d in anc
                            if lvl == socket.IPPROTO_IP and typ == IP_TTL), 0)
                if len(data) >= 8 and data[0] == ECHO_REPLY:
                    ident, seq = struct.unpack_from("!HH", data, 4)
                    got = IcmpSeen(addr[0], ttl, ECHO_REPLY, data[1], ident, seq, data[8:])
        if got is not None:
            out.append(got)


def probe_icmp(echoes: Sequence[tuple[str, str, int]], server: str, timeout: float,
               mode: str = "auto") -> list[ProbeResult]:
    """Send one echo per (probe id, nonce, total IP size), all at once, DF set; wait up to
    ``timeout`` for the answers. ``mode``: "auto" (raw, else ping socket), "raw", "ping"."""
    src, _ = route_facts(server)
    try:
        s, sock_mode = open_icmp_socket(mode)
    except OSError as exc:  # neither root nor in ping_group_range: no echo can leave
        now = time.time()
        return [ProbeResult(kind="icmp", id=pid, target=server, nonce=nonce, started=now, ended=now, ok=False,
                            error=error_phrase(exc), local=src, seen={"size": size, "df": True, "sent": False},
                            not_sent=NotSent(error_phrase(exc), size))
                for pid, nonce, size in echoes]
    ident = secrets.randbelow(0xFFFE) + 1  # a ping socket replaces it with its own "port"
    results: dict[int, ProbeResult] = {}
    pending: dict[int, tuple[str, str, int, float, bytes]] = {}
    try:
        s.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_PROBE)
        s.setblocking(False)
        packets = [(pid, nonce, size, echo_payload(nonce, size - HEADERS)) for pid, nonce, size in echoes]
        for seq, (pid, nonce, size, payload) in enumerate(packets, 1):
            t = time.time()
            try:
                s.sendto(build_echo(ident, seq, payload), (server, 0))
            except OSError as exc:
                _, mtu = route_facts(server)
                why = error_phrase(exc)
                local_mtu = interface_mtu(src) if why == MSG_TOO_LONG else None
                results[seq] = ProbeResult(kind="icmp", id=pid, target=server, nonce=nonce, started=t,
                                           ended=time.time(), ok=False, error=why, local=src,
                                           seen={"size": size, "df": True, "ident": ident, "seq": seq,
                                                 "sent": False, "route_mtu": mtu},
                                           not_sent=NotSent(why, size, local_mtu))
            else:
                pending[seq] = (pid, nonce, size, t, payload)
        if sock_mode == "ping":
            ident = s.getsockname()[1]
        deadline = time.monotonic() + timeout
        poller = select.poll()
        poller.register(s, select.POLLIN | select.POLLERR)
        while pending:
            left = deadline - time.monotonic()
            if left <= 0 or not poller.poll(left * 1000):
                break
            for got in _receive(s, sock_mode):
                if got.ident != ident or got.seq not in pending:
                    continue
                pid, nonce, size, t, payload = pending[got.seq]
                if got.type == ECHO_REPLY and got.payload != payload:
                    continue  # not ours (or mangled); the analysis compares payloads itself
                now = time.time()
                del pending[got.seq]
                seen = {"size": size, "df": True, "ident": ident, "seq": got.seq, "sent": True,
                        "reply_from": got.src, "reply_ttl": got.ttl, "icmp_type": got.type,
                        "icmp_code": got.code, "rtt_ms": round((now - t) * 1000, 3)}
                if got.type == ECHO_REPLY:
                    err = None
                elif got.type == DEST_UNREACH:
                    err = _UNREACH.get(got.code, f"unreachable (code {got.code})")
                    if got.mtu:
                        seen["mtu"] = got.mtu
                else:
                    err = "ttl exceeded"
                results[got.seq] = ProbeResult(kind="icmp", id=pid, target=server, nonce=nonce, started=t,
                                               ended=now, ok=err is None, error=err, local=src, seen=seen)
    finally:
        s.close()
    return in_order(results, timed_out(pending, server, ident, src))


def timed_out(pending: dict, server: str, ident: int, src: str | None) -> dict[int, ProbeResult]:
    """The echoes still waiting for a reply when the time-out ran out (IPv4 and IPv6 alike),
    by sequence number."""
    end = time.time()
    return {seq: ProbeResult(kind="icmp", id=pid, target=server, nonce=nonce, started=t, ended=end, ok=False,
                             error=TIMED_OUT, local=src,
                             seen={"size": size, "df": True, "ident": ident, "seq": seq, "sent": True})
            for seq, (pid, nonce, size, t, _payload) in pending.items()}


def in_order(results: dict[int, ProbeResult], more: dict[int, ProbeResult]) -> list[ProbeResult]:
    results.update(more)
    return [results[k] for k in sorted(results)]
