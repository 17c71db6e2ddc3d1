"""Build packets and write pcap / pcapng files: the fixture factory of tests and benches.

``Pkt`` describes one IP packet (IPv4 or IPv6 by its addresses; TCP with options, UDP,
ICMP/ICMPv6 echo or an error quoting another ``Pkt``); ``encode`` turns it into bytes
with correct checksums (IP total length 0 for TSO frames, fragments on request).
``frame`` wraps it in a link layer (Ethernet, Linux SLL, raw). ``write_pcap`` and
``write_pcapng`` write records. ``Path`` simulates a client behind NATs talking to a
server: each packet sent is recorded at the sending point and, if it arrives, at the
other point after the NATs rewrote it, so a test states what the path did and gets the
two captures rig must diagnose.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field, replace
from pathlib import Path as FsPath
from typing import Any, Callable, Iterable

from rig.capture.table import ACK, FIN, PSH, RST, SYN  # noqa: F401  (re-exported for tests)
from rig.checksum import internet_checksum as checksum

LINKTYPE_NULL, LINKTYPE_ETHERNET, LINKTYPE_RAW, LINKTYPE_SLL = 0, 1, 101, 113

ICMP_ECHO_REQUEST, ICMP_ECHO_REPLY, ICMP_UNREACH, ICMP_TIME_EXCEEDED = 8, 0, 3, 11
ICMP6_UNREACH, ICMP6_TOO_BIG, ICMP6_ECHO_REQUEST, ICMP6_ECHO_REPLY = 1, 2, 128, 129


def _is_v6(addr: str) -> bool:
    return ipaddress.ip_address(addr).version == 6


def _pseudo(src: str, dst: str, proto: int, length: int) -> bytes:
    s, d = ipaddress.ip_address(src).packed, ipaddress.ip_address(dst).packed
    if len(s) == 16:
        return s + d + struct.pack("!IxxxB", length, proto)
    return s + d + struct.pack("!xBH", proto, length)


@dataclass(frozen=True)
class Pkt:
    """One IP packet, described by fields (what a NAT rewrites is a ``replace``)."""

    src: str
    dst: str
    proto: int = 6  # 6 tcp, 17 udp, 1 icmp, 58 icmpv6
    ttl: int = 64
    ip_id: int = 0
    tos: int = 0
    df: bool = True
    # TCP / UDP
    sport: int = 0
    dport: int = 0
    seq: int = 0
    ack: int = 0
    flags: int = 0
    win: int = 64240
    mss: int | None = None
    wscale: int | None = None
    sackok: bool = False
    ts: tuple[int, int] | None = None  # (tsval, tsecr)
    payload: bytes = b""
    # ICMP
    icmp_type: int = -1
    icmp_code: int = 0
    icmp_id: int = 0
    icmp_seq: int = 0
    mtu: int = 0  # next-hop MTU of frag-needed / packet too big
    quoted: "Pkt | None" = None  # the packet an ICMP error quotes
    # frame shape
    zero_total_length: bool = False  # TSO: IPv4 total length 0 in the capture

    @property
    def v6(self) -> bool:
        return _is_v6(self.src)


def tcp_options(p: Pkt) -> bytes:
    if p.mss is not None and p.sackok and p.ts is not None and p.wscale is not None:  # Linux SYN layout
        return (struct.pack("!BBH", 2, 4, p.mss) + b"\x04\x02"
                + struct.pack("!BBII", 8, 10, p.ts[0] & 0xFFFFFFFF, p.ts[1] & 0xFFFFFFFF)
                + b"\x01" + struct.pack("!BBB", 3, 3, p.wscale))
    o = b""
    if p.mss is not None:
        o += struct.pack("!BBH", 2, 4, p.mss)
    if p.sackok:
        o += b"\x04\x02"
    if p.ts is not None:
        o += b"\x01\x01" + struct.pack("!BBII", 8, 10, p.ts[0] & 0xFFFFFFFF, p.ts[1] & 0xFFFFFFFF)
    if p.wscale is not None:
        o += b"\x01" + struct.pack("!BBB", 3, 3, p.wscale)
    while len(o) % 4:
        o += b"\x00"  # end of option list padding
    return o


def l4_bytes(p: Pkt) -> bytes:
    """The transport header + payload of ``p``, with its checksum."""
    if p.proto == 6:
        opts = tcp_options(p)
        off = (20 + len(opts)) // 4
        hdr = struct.pack("!HHIIBBHHH", p.sport, p.dport, p.seq & 0xFFFFFFFF, p.ack & 0xFFFFFFFF,
                          off << 4 | (p.flags >> 8 & 1), p.flags & 0xFF, p.win, 0, 0) + opts
        seg = hdr + p.payload
        c = checksum(_pseudo(p.src, p.dst, 6, len(seg)) + seg)
        return seg[:16] + struct.pack("!H", c) + seg[18:]
    if p.proto == 17:
        seg = struct.pack("!HHHH", p.sport, p.dport, 8 + len(p.payload), 0) + p.payload
        c = checksum(_pseudo(p.src, p.dst, 17, len(seg)) + seg) or 0xFFFF
        return seg[:6] + struct.pack("!H", c) + seg[8:]
    if p.proto in (1, 58):
        if p.quoted is not None:
            body = encode(p.quoted)[: (1232 if p.v6 else 548)]
            if p.v6:
                rest = struct.pack("!I", p.mtu) if p.icmp_type == ICMP6_TOO_BIG else b"\x00" * 4
            else:
                rest = struct.pack("!HH", 0, p.mtu) if (p.icmp_type, p.icmp_code) == (3, 4) else b"\x00" * 4
        else:
            body = p.payload
            rest = struct.pack("!HH", p.icmp_id, p.icmp_seq)
        msg = struct.pack("!BBH", p.icmp_type, p.icmp_code, 0) + rest + body
        pseudo = _pseudo(p.src, p.dst, 58, len(msg)) if p.proto == 58 else b""
        c = checksum(pseudo + msg)
        return msg[:2] + struct.pack("!H", c) + msg[4:]
    return p.payload


def encode(p: Pkt, l4: bytes | None = None, frag_offset: int = 0, more_frags: bool = False) -> bytes:
    """The IP packet of ``p`` (``l4`` overrides the transport bytes, for fragments)."""
    body = l4_bytes(p) if l4 is None else l4
    if p.v6:
        hdr = struct.pack("!IHBB", 6 << 28 | p.tos << 20, len(body), p.proto, p.ttl)
        return hdr + ipaddress.ip_address(p.src).packed + ipaddress.ip_address(p.dst).packed + body
    total = 0 if p.zero_total_length else 20 + len(body)
    fl = (0x4000 if p.df else 0) | (0x2000 if more_frags else 0) | (frag_offset // 8)
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, p.tos, total, p.ip_id, fl, p.ttl, p.proto, 0,
                      ipaddress.ip_address(p.src).packed, ipaddress.ip_address(p.dst).packed)
    c = checksum(hdr)
    return hdr[:10] + struct.pack("!H", c) + hdr[12:] + body


def ip4in6(inner: bytes, src6: str, dst6: str, hlim: int = 64) -> bytes:
    """An IPv4 packet carried in IPv6 (MAP-E / DS-Lite, next header 4)."""
    return (struct.pack("!IHBB", 6 << 28, len(inner), 4, hlim) + ipaddress.ip_address(src6).packed
            + ipaddress.ip_address(dst6).packed + inner)


def fragments(p: Pkt, mtu: int) -> list[bytes]:
    """IPv4 fragments of ``p`` for a link of ``mtu`` bytes."""
    body = l4_bytes(p)
    step = (mtu - 20) // 8 * 8
    out = []
    for off in range(0, len(body), step):
        out.append(encode(replace(p, df=False), body[off : off + step], off, off + step < len(body)))
    return out


def frame(ip_packet: bytes, linktype: int = LINKTYPE_ETHERNET, vlan: int | None = None) -> bytes:
    """Wrap an IP packet in a link-layer header."""
    v6 = ip_packet[0] >> 4 == 6
    etype = 0x86DD if v6 else 0x0800
    if linktype == LINKTYPE_ETHERNET:
        tag = struct.pack("!HH", 0x8100, vlan) if vlan is not None else b""
        return b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01" + tag + struct.pack("!H", etype) + ip_packet
    if linktype == LINKTYPE_SLL:
        return struct.pack("!HHH8sH", 0, 1, 6, b"\x02\x00\x00\x00\x00\x01\x00\x00", etype) + ip_packet
    if linktype == LINKTYPE_RAW:
        return ip_packet
    if linktype == LINKTYPE_NULL:
        return struct.pack("<I", 24 if v6 else 2) + ip_packet
    raise ValueError(f"synth does not write link type {linktype}")


Record = tuple[int, bytes]  # (timestamp ns since the epoch, frame bytes)
Sent = tuple[int, "Pkt | bytes"]  # (timestamp ns since the epoch, packet or encoded IP packet)


def write_pcap(path: str | FsPath, records: Iterable[Record], linktype: int = LINKTYPE_ETHERNET,
               nanosecond: bool = False, snaplen: int = 262144) -> None:
    magic = 0xA1B23C4D if nanosecond else 0xA1B2C3D4
    div = 1 if nanosecond else 1000
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype))
        for ts, data in records:
            cap = data[:snaplen]
            sec, frac = divmod(ts, 1_000_000_000)
            f.write(struct.pack("<IIII", sec, frac // div, len(cap), len(data)) + cap)


def _block(btype: int, body: bytes) -> bytes:
    body += b"\x00" * (-len(body) % 4)
    n = len(body) + 12
    return struct.pack("<II", btype, n) + body + struct.pack("<I", n)


def _opt(code: int, value: bytes) -> bytes:
    return struct.pack("<HH", code, len(value)) + value + b"\x00" * (-len(value) % 4)


def write_pcapng(path: str | FsPath, interfaces: list[tuple[int, str]],
                 records: Iterable[tuple[int, int, bytes]], drops: dict[int, int] | None = None,
                 tsresol_ns: bool = False) -> None:
    """``interfaces``: [(linktype, name)]; ``records``: (iface, ts_ns, frame); ``drops``: iface -> count."""
    with open(path, "wb") as f:
        f.write(_block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1) + _opt(0, b"")))
        for lt, name in interfaces:
            opts = _opt(2, name.encode()) + _opt(9, bytes([9 if tsresol_ns else 6])) + _opt(0, b"")
            f.write(_block(1, struct.pack("<HHI", lt, 0, 262144) + opts))
        last = 0
        for iface, ts, data in records:
            t = ts if tsresol_ns else ts // 1000
            last = max(last, t)
            f.write(_block(6, struct.pack("<IIIII", iface, t >> 32, t & 0xFFFFFFFF, len(data), len(data)) + data))
        for iface, n in (drops or {}).items():
            opts = _opt(5, struct.pack("<Q", n)) + _opt(0, b"")
            f.write(_block(5, struct.pack("<III", iface, last >> 32, last & 0xFFFFFFFF) + opts))


# --- a path through NATs -------------------------------------------------------------


@dataclass
class Path:
    """A client behind NATs and a server; records what each capture point sees.

    ``out(p)``: the client sends ``p`` (client view); if it arrives, the server sees it
    NATed (source -> ``public``, port via ``port_map``, TTL - ``hops``, MSS clamp, options
    stripped, echo id via ``echo_id_map``). ``back(p)``: the server sends ``p`` (server
    view, addressed to the public mapping); if it arrives, the client sees it translated
    back. Times advance by ``step_ns`` per packet; the server clock is off by
    ``server_clock_offset_ns``.
    """

    client: str = "192.168.1.10"
    server: str = "198.51.100.10"
    public: str = "203.0.113.2"
    server_seen_as: str | None = None  # the server's own address if the client addresses a DNAT
    hops: int = 3
    port_map: Callable[[int], int] = lambda p: p
    echo_id_map: Callable[[int], int] = lambda i: i
    mss_clamp: int | None = None
    strip_sack: bool = False
    strip_ts: bool = False
    isn_delta_out: int = 0  # pf modulate state style ISN rewrite on the client's sequence
    t0_ns: int = 1_700_000_000_000_000_000
    step_ns: int = 1_000_000
    latency_ns: int = 20_000_000
    server_clock_offset_ns: int = 3_000_000_000
    client_frames: list[Sent] = field(default_factory=list)
    server_frames: list[Sent] = field(default_factory=list)
    _now: int = 0
    _ports: dict[int, int] = field(default_factory=dict)
    _ids: dict[int, int] = field(default_factory=dict)
    _back_ports: dict[int, int] = field(default_factory=dict)
    cuts: dict[str, tuple[int | None, int | None]] = field(default_factory=dict)  # point -> (start, stop): ``trimmed``

    def _tick(self) -> int:
        self._now += self.step_ns
        return self.t0_ns + self._now

    # translations -------------------------------------------------------------
    def _pub_port(self, port: int) -> int:
        if port not in self._ports:
            self._ports[port] = self.port_map(port)
            self._back_ports[self._ports[port]] = port
        return self._ports[port]

    def _priv_port(self, port: int) -> int:
        return self._back_ports.get(port, port)

    def nat_out(self, p: Pkt) -> Pkt:
        q = replace(p, src=self.public, ttl=max(p.ttl - self.hops, 1))
        if self.server_seen_as:
            q = replace(q, dst=self.server_seen_as)
        if p.proto in (6, 17):
            q = replace(q, sport=self._pub_port(p.sport))
        if p.proto == 6:
            seq = (p.seq + self.isn_delta_out) & 0xFFFFFFFF
            q = replace(q, seq=seq)
            if p.mss is not None and self.mss_clamp is not None:
                q = replace(q, mss=min(p.mss, self.mss_clamp))
            if self.strip_sack:
                q = replace(q, sackok=False)
            if self.strip_ts:
                q = replace(q, ts=None)
        if p.proto in (1, 58) and p.quoted is None:
            new = self.echo_id_map(p.icmp_id)
            self._ids[new] = p.icmp_id
            q = replace(q, icmp_id=new)
        return q

    def nat_back(self, p: Pkt) -> Pkt:
        q = replace(p, dst=self.client, ttl=max(p.ttl - self.hops, 1))
        if self.server_seen_as:
            q = replace(q, src=self.server)
        if p.proto in (6, 17):
            q = replace(q, dport=self._priv_port(p.dport))
        if p.proto == 6:
            q = replace(q, ack=(p.ack - self.isn_delta_out) & 0xFFFFFFFF)
            if p.mss is not None and self.mss_clamp is not None:
                q = replace(q, mss=min(p.mss, self.mss_clamp))
        if p.proto in (1, 58) and p.quoted is None:
            q = replace(q, icmp_id=self._ids.get(p.icmp_id, p.icmp_id))
        if p.quoted is not None:  # NATs translate the packet an ICMP error quotes
            qp = p.quoted
            qq = replace(qp, src=self.client, sport=self._priv_port(qp.sport) if qp.proto in (6, 17) else qp.sport)
            if qp.proto == 6:
                qq = replace(qq, seq=(qp.seq - self.isn_delta_out) & 0xFFFFFFFF)
            if qp.proto in (1, 58):
                qq = replace(qq, icmp_id=self._ids.get(qp.icmp_id, qp.icmp_id))
            if self.server_seen_as:
                qq = replace(qq, dst=self.server)
            q = replace(q, quoted=qq)
        return q

    # events -----------------------------------------------------------------------
    def out(self, p: Pkt, arrive: bool = True, server_sees: list[Pkt] | None = None) -> Pkt:
        """The client sends ``p``; returns what the server sees (translated)."""
        t = self._tick()
        self.client_frames.append((t, p))
        q = self.nat_out(p)
        if arrive:
            ts = t + self.latency_ns + self.server_clock_offset_ns
            for i, s in enumerate(server_sees or [q]):
                self.server_frames.append((ts + i * 1000, s))
        self._now += self.latency_ns  # the next event happens after this one arrived
        return q

    def back(self, p: Pkt, arrive: bool = True, client_sees: list[Pkt] | None = None) -> Pkt:
        """The server sends ``p`` (server view); returns what the client sees."""
        t = self._tick()
        self.server_frames.append((t + self.server_clock_offset_ns, p))
        q = self.nat_back(p)
        if arrive:
            for i, c in enumerate(client_sees or [q]):
                self.client_frames.append((t + self.latency_ns + i * 1000, c))
        self._now += self.latency_ns
        return q

    def at_client(self, p: Pkt) -> None:
        """A packet only the client point sees (a middlebox answer, unrelated traffic)."""
        self.client_frames.append((self._tick(), p))

    def at_server(self, p: Pkt) -> None:
        """A packet only the server point sees (scanners, the server's own chatter)."""
        self.server_frames.append((self._tick() + self.server_clock_offset_ns, p))

    def write(self, directory: str | FsPath, linktype: int = LINKTYPE_ETHERNET,
              server_linktype: int | None = None) -> tuple[FsPath, FsPath]:
        d = FsPath(directory)
        d.mkdir(parents=True, exist_ok=True)
        c, s = d / "client.pcap", d / "server.pcap"
        slt = server_linktype if server_linktype is not None else linktype
        for fs_path, sent, lt in ((c, self.client_frames, linktype), (s, self.server_frames, slt)):
            write_pcap(fs_path, ((t, frame(b, lt)) for t, b in encoded(sent)), lt)
        return c, s

    # conversations ---------------------------------------------------------------
    def public_sport(self, sport: int) -> int:
        return self._pub_port(sport)

    def syn(self, sport: int, isn: int, dport: int = 80, **kw) -> Pkt:
        base: dict[str, Any] = dict(mss=1460, wscale=7, sackok=True, ts=(1000 + isn % 1000, 0), ip_id=isn & 0xFFFF)
        base.update(kw)
        return Pkt(self.client, self.server, 6, sport=sport, dport=dport, seq=isn, flags=SYN, **base)

    def synack(self, syn_at_server: Pkt, isn: int, **kw) -> Pkt:
        s = syn_at_server
        base: dict[str, Any] = dict(mss=1460, wscale=7, sackok=True, ts=(5000, s.ts[0] if s.ts else 0), ip_id=0)
        base.update(kw)
        return Pkt(s.dst, s.src, 6, sport=s.dport, dport=s.sport, seq=isn, ack=s.seq + 1, flags=SYN | ACK, **base)


def encoded(sent: Iterable[Sent]) -> list[Record]:
    """Time-ordered records of IP packets (a ``Pkt``, or bytes already encoded: fragments)."""
    out: list[Record] = []
    for t, p in sorted(sent, key=lambda r: r[0]):
        out.append((t, bytes(p) if isinstance(p, (bytes, bytearray)) else encode(p)))
    return out


def tcp_seg(src: str, dst: str, sport: int, dport: int, seq: int, ack: int, payload: bytes = b"",
            flags: int = ACK, **kw) -> Pkt:
    return Pkt(src, dst, 6, sport=sport, dport=dport, seq=seq, ack=ack, flags=flags, payload=payload, **kw)
