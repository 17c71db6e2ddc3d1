"""Packets for the traces, built and read with the standard library alone.

This file is also the script the responder runs on a server rig does not otherwise
touch (``python3 - respond ...`` over the existing SSH connection, as root): so it
imports nothing from rig and nothing outside the standard library. That, not speed, is
why the few packets a trace needs (an IPv4 header, a TCP SYN or SYN-ACK with an MSS
option, a UDP datagram, an ICMP echo) are built here by hand rather than with scapy: a
bare VM has python3 and no scapy, and the builders are ~60 lines.

Builders return whole IPv4 packets for a raw ``IPPROTO_RAW`` socket (``IP_HDRINCL``);
``parse`` reads an IPv4 packet (or the truncated copy an ICMP error quotes) into a
flat dict of header fields; ``icmp_error`` reads an ICMP time-exceeded or unreachable.
``respond`` is the responder's half of the return-path trace (rig.trace.reverse).
"""

from __future__ import annotations

import json
import socket
import struct
import sys
import time

TCP, UDP, ICMP = 6, 17, 1
SYN, RST, ACK = 0x02, 0x04, 0x10
ECHO_REPLY, UNREACHABLE, ECHO_REQUEST, TIME_EXCEEDED = 0, 3, 8, 11
ETH_P_IP = 0x0800
PACKET_OUTGOING = 4


def csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ipv4(src: str, dst: str, proto: int, payload: bytes, ttl: int, ident: int, tos: int = 0,
         df: bool = True) -> bytes:
    head = struct.pack("!BBHHHBBH4s4s", 0x45, tos, 20 + len(payload), ident & 0xFFFF, 0x4000 if df else 0,
                       ttl, proto, 0, socket.inet_aton(src), socket.inet_aton(dst))
    return head[:10] + struct.pack("!H", csum(head)) + head[12:] + payload


def _pseudo(src: str, dst: str, proto: int, length: int) -> bytes:
    return socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, proto, length)


def mss_option(mss: int) -> bytes:
    return struct.pack("!BBH", 2, 4, mss)


def tcp(src: str, dst: str, sport: int, dport: int, seq: int, ack: int, flags: int, options: bytes = b"",
        window: int = 64240, payload: bytes = b"") -> bytes:
    options += b"\0" * (-len(options) % 4)
    off = (20 + len(options)) // 4
    seg = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, off << 4, flags, window, 0,
                      0) + options + payload
    c = csum(_pseudo(src, dst, TCP, len(seg)) + seg)
    return seg[:16] + struct.pack("!H", c) + seg[18:]


def udp(src: str, dst: str, sport: int, dport: int, payload: bytes) -> bytes:
    dgram = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    c = csum(_pseudo(src, dst, UDP, len(dgram)) + dgram) or 0xFFFF
    return dgram[:6] + struct.pack("!H", c) + dgram[8:]


def icmp_echo(kind: int, ident: int, seq: int, payload: bytes) -> bytes:
    msg = struct.pack("!BBHHH", kind, 0, 0, ident, seq) + payload
    return msg[:2] + struct.pack("!H", csum(msg)) + msg[4:]


def tcp_options(raw: bytes) -> dict:
    """The options of a TCP header: {"mss": int, "kinds": [option kinds in order]}."""
    out: dict = {"kinds": []}
    i = 0
    while i < len(raw):
        kind = raw[i]
        if kind == 0:
            break
        if kind == 1:
            i += 1
            continue
        if i + 1 >= len(raw) or raw[i + 1] < 2:
            break
        length = raw[i + 1]
        out["kinds"].append(kind)
        if kind == 2 and length == 4 and i + 4 <= len(raw):
            out["mss"] = struct.unpack("!H", raw[i + 2:i + 4])[0]
        i += length
    return out


def parse(pkt: bytes) -> dict | None:
    """An IPv4 packet's fields (as far as the bytes go: a quoted copy may be cut after 8
    bytes of its transport header). None if it is not IPv4."""
    if len(pkt) < 20 or pkt[0] >> 4 != 4:
        return None
    ihl = (pkt[0] & 0x0F) * 4
    tos, ident, frag, ttl, proto = pkt[1], *struct.unpack("!HH", pkt[4:8]), pkt[8], pkt[9]
    d: dict = {"src": socket.inet_ntoa(pkt[12:16]), "dst": socket.inet_ntoa(pkt[16:20]), "ttl": ttl, "id": ident,
               "dscp": tos >> 2, "ecn": tos & 3, "df": bool(frag & 0x4000), "proto": proto}
    l4 = pkt[ihl:]
    if proto in (TCP, UDP) and len(l4) >= 4:
        d["sport"], d["dport"] = struct.unpack("!HH", l4[:4])
    if proto == TCP and len(l4) >= 8:
        d["seq"] = struct.unpack("!I", l4[4:8])[0]
    if proto == TCP and len(l4) >= 14:
        d["ack"] = struct.unpack("!I", l4[8:12])[0]
        d["flags"] = l4[13]
        off = (l4[12] >> 4) * 4
        if len(l4) >= off > 20:
            d.update(tcp_options(l4[20:off]))
    if proto == UDP and len(l4) >= 8:
        d["ulen"] = struct.unpack("!H", l4[4:6])[0]
        d["payload"] = l4[8:].hex()
    if proto == ICMP and len(l4) >= 8:
        d["icmp_type"], d["icmp_code"] = l4[0], l4[1]
        d["icmp_id"], d["icmp_seq"] = struct.unpack("!HH", l4[4:8])
    return d


def icmp_error(pkt: bytes) -> dict | None:
    """An ICMP time-exceeded or unreachable: who sent it, type, code, and the packet it
    quotes (parsed). None for anything else."""
    outer = parse(pkt)
    if outer is None or outer["proto"] != ICMP or outer.get("icmp_type") not in (TIME_EXCEEDED, UNREACHABLE):
        return None
    ihl = (pkt[0] & 0x0F) * 4
    quoted = parse(pkt[ihl + 8:])
    if quoted is None:
        return None
    return {"from": outer["src"], "type": outer["icmp_type"], "code": outer["icmp_code"], "ttl": outer["ttl"],
            "quoted": quoted}


def raw_sender() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
    return s


def receive(sock: socket.socket, until: float, keep, limit: int | None = None) -> list:
    """What ``keep(bytes, address)`` returns (when not None) for the packets read from
    ``sock`` until the monotonic time ``until``, or until ``limit`` were kept."""
    out: list = []
    while limit is None or len(out) < limit:
        left = until - time.monotonic()
        if left <= 0:
            break
        sock.settimeout(left)
        try:
            data, addr = sock.recvfrom(65535)
        except (socket.timeout, BlockingIOError):
            break
        item = keep(data, addr)
        if item is not None:
            out.append(item)
    return out


# ------------------------------------------------------------------ the responder's half


def _reply_copies(req: dict, kernel_reply: dict | None, raw_req: bytes, max_ttl: int, ident_base: int) -> list:
    """TTL 1..max_ttl copies of the reply to the request ``req`` (as the server saw it),
    each with IP ID ident_base + ttl, so the copy that arrives names its TTL."""
    src, dst = req["dst"], req["src"]
    out = []
    for ttl in range(1, max_ttl + 1):
        if req["proto"] == TCP:
            seq = kernel_reply["seq"] if kernel_reply else 0x52494700
            opts = mss_option(kernel_reply.get("mss", 1460) if kernel_reply else 1460)
            l4 = tcp(src, dst, req["dport"], req["sport"], seq, req["seq"] + 1, SYN | ACK, opts)
        elif req["proto"] == UDP:
            l4 = udp(src, dst, req["dport"], req["sport"], bytes.fromhex(req.get("payload", "")))
        else:
            ihl = (raw_req[0] & 0x0F) * 4
            l4 = icmp_echo(ECHO_REPLY, req["icmp_id"], req["icmp_seq"], raw_req[ihl + 8:])
        out.append((ttl, ipv4(src, dst, req["proto"], l4, ttl, ident_base + ttl)))
    return out


def _is_request(d: dict | None, proto: int, port: int, peer: str | None) -> bool:
    if d is None or d["proto"] != proto or (peer and d["src"] != peer):
        return False
    if proto == TCP:
        return d.get("dport") == port and d.get("flags", 0) & (SYN | ACK) == SYN
    if proto == UDP:
        return d.get("dport") == port
    return d.get("icmp_type") == ECHO_REQUEST


SYN_RECV = "03"  # the state column of /proc/net/tcp (include/net/tcp_states.h)


def _proc_hex(addr: str, port: int) -> str:
    """An address:port as /proc/net/tcp prints it (the address's 32 bits in host order)."""
    return "%08X:%04X" % (struct.unpack("=I", socket.inet_aton(addr))[0], port)


def half_open(table: str, local: str, lport: int, peer: str, pport: int) -> bool:
    """Whether the TCP table ``table`` (the text of /proc/net/tcp) holds the connection
    from ``peer``:``pport`` to ``local``:``lport`` half-open (SYN_RECV): the server
    answered its SYN and never got the handshake's last ACK."""
    want = (_proc_hex(local, lport), _proc_hex(peer, pport), SYN_RECV)
    for line in table.splitlines()[1:]:
        cols = line.split()
        if len(cols) > 3 and (cols[1].upper(), cols[2].upper(), cols[3]) == want:
            return True
    return False


def _holds_half_open(req: dict) -> bool:
    """Whether this server holds ``req``'s connection half-open (Linux: its TCP table, as
    the calling thread's network namespace has it); False where it cannot tell."""
    for path in ("/proc/thread-self/net/tcp", "/proc/net/tcp"):
        try:
            with open(path) as f:
                return half_open(f.read(), req["dst"], req["dport"], req["src"], req["sport"])
        except OSError:
            continue
    return False


def _kernel_answer(req: dict):
    """A ``receive`` filter: the server's own first answer to the request ``req``, whatever
    it is. A fresh request draws a SYN-ACK; one for a 5-tuple the server still holds
    half-open (the probe's, whose SYN-ACKs were lost) draws a bare ACK instead, and a
    closed port a RST: waiting on for a SYN-ACK then only costs the wait."""
    def keep(data: bytes, addr) -> dict | None:
        d = parse(data)
        if (addr[2] == PACKET_OUTGOING and d and d["proto"] == TCP and d.get("dst") == req["src"]
                and d.get("dport") == req["sport"] and d.get("sport") == req["dport"]):
            return d
        return None

    return keep


def _kernel_synack(seen: list) -> dict | None:
    """The kernel's SYN-ACK among ``seen`` (its first answer), else None."""
    if seen and seen[0].get("flags", 0) & (SYN | ACK) == SYN | ACK:
        return seen[0]
    return None


def respond(proto: int, port: int, peer: str | None, max_ttl: int, wait: float, listen: float,
            ident_base: int = 0x5200, ready=None) -> dict:
    """On the server, as root: wait up to ``listen`` s for the request (a SYN to ``port``,
    a UDP datagram to ``port``, an echo request) from ``peer`` (the client's public
    address; None: anyone), answer it with TTL 1..max_ttl copies of the reply into the
    client's NAT mapping, and collect for ``wait`` s the ICMP errors the hops send back.
    ``ready()`` is called once the sockets listen. Returns a JSON-ready dict."""
    sniff = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_IP))
    icmp = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    sender = raw_sender()
    try:
        if ready is not None:
            ready()
        until = time.monotonic() + listen

        def request(data: bytes, addr) -> tuple | None:
            d = parse(data)
            if addr[2] != PACKET_OUTGOING and _is_request(d, proto, port, peer):
                return d, data
            return None

        found = receive(sniff, until, request, limit=1)
        if not found:
            return {"request": None, "kernel_reply": None, "sent": [], "errors": []}
        req, raw_req = found[0]
        kernel_reply = None
        # the server's own SYN-ACK, for its sequence number and MSS; none comes while the
        # server holds the probe's connection half-open (the lost-return case)
        if proto == TCP and not _holds_half_open(req):
            kernel_reply = _kernel_synack(receive(sniff, time.monotonic() + 0.3, _kernel_answer(req), limit=1))
        copies = _reply_copies(req, kernel_reply, raw_req, max_ttl, ident_base)
        for _, pkt in copies:
            sender.sendto(pkt, (req["src"], 0))

        def error(data: bytes, addr) -> dict | None:
            e = icmp_error(data)
            if e is None:
                return None
            q = e["quoted"]
            if q["dst"] != req["src"] or q["proto"] != proto:
                return None
            if proto in (TCP, UDP) and q.get("dport") != req["sport"]:
                return None
            if proto == ICMP and q.get("icmp_id") != req["icmp_id"]:
                return None
            return e

        errors = receive(icmp, time.monotonic() + wait, error)
        return {"request": req, "kernel_reply": kernel_reply,
                "sent": [{"ttl": t, "id": ident_base + t} for t, _ in copies], "errors": errors}
    finally:
        for s in (sniff, icmp, sender):
            s.close()


def main(argv: list[str]) -> int:
    """``python3 - respond PROTO PORT PEER MAX_TTL WAIT LISTEN``: one JSON line on stdout."""
    if len(argv) != 7 or argv[0] != "respond":
        print("usage: respond PROTO PORT PEER MAX_TTL WAIT LISTEN", file=sys.stderr)
        return 2
    proto = {"tcp": TCP, "udp": UDP, "icmp": ICMP}[argv[1]]
    result = respond(proto, int(argv[2]), argv[3] or None, int(argv[4]), float(argv[5]), float(argv[6]),
                     ready=lambda: print("READY", flush=True))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
