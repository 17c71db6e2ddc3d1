"""A client behind FreeBSD pf, for ``rig.capture.synth.Path``: what pf rewrites per connection.

``PfPath`` is a ``Path`` whose NAT behaves like pf with ``nat ... -> (if)`` plus
``modulate state`` and ``scrub random-id`` (and, with ``modulate_ts``, ``scrub reassemble
tcp``):

- each TCP connection's initiator sequence numbers are shifted by a random per-connection
  offset on the way out, and the acks of the other direction shifted back (pf's
  ``modulate state``; the responder's own sequence numbers are left alone);
- every outgoing IPv4 packet gets a random IP ID (``scrub random-id``);
- source ports are picked at random from 50001-65535 (pf's default NAT proxy range);
- with ``modulate_ts``, the initiator's TCP timestamp values are shifted by a random
  per-connection offset and the echoed ones shifted back.

The offsets pf chose are kept (``isn_offset``, ``ts_offset``) so that a test states
what rig must find. Everything random comes from ``seed``: a test is reproducible.

``rewrite_server_capture`` does the same to a real server capture (a lab capture of a
Linux NAT), so that real probes' timing and retransmissions meet pf's rewrites.
"""

from __future__ import annotations

import ipaddress
import random
import struct
from dataclasses import dataclass, field, replace
from pathlib import Path as FsPath

from rig.capture.synth import Path, Pkt
from rig.checksum import internet_checksum as checksum

PF_PORT_LOW, PF_PORT_HIGH = 50001, 65535  # PF_NAT_PROXY_PORT_LOW / _HIGH


@dataclass
class PfPath(Path):
    seed: int = 1
    random_id: bool = True
    modulate_ts: bool = False
    _rng: random.Random = field(default_factory=random.Random, repr=False)
    _isn_off: dict[tuple[int, int], int] = field(default_factory=dict, repr=False)
    _ts_off: dict[tuple[int, int], int] = field(default_factory=dict, repr=False)
    _used_ports: set[int] = field(default_factory=set, repr=False)

    def __post_init__(self) -> None:
        self._rng.seed(self.seed)
        self.port_map = self._pick_port

    def _pick_port(self, _private: int) -> int:
        while True:
            p = self._rng.randint(PF_PORT_LOW, PF_PORT_HIGH)
            if p not in self._used_ports:
                self._used_ports.add(p)
                return p

    def _conn(self, sport: int, dport: int) -> tuple[int, int]:
        key = (sport, dport)
        if key not in self._isn_off:
            self._isn_off[key] = self._rng.randrange(1, 1 << 32)
            self._ts_off[key] = self._rng.randrange(1, 1 << 32) if self.modulate_ts else 0
        return self._isn_off[key], self._ts_off[key]

    def isn_offset(self, sport: int, dport: int = 80) -> int:
        """What pf adds to the sequence numbers of the client's connection from ``sport``."""
        return self._conn(sport, dport)[0]

    def ts_offset(self, sport: int, dport: int = 80) -> int:
        return self._conn(sport, dport)[1]

    def nat_out(self, p: Pkt) -> Pkt:
        q = super().nat_out(p)
        if p.proto == 6:
            d_isn, d_ts = self._conn(p.sport, p.dport)
            q = replace(q, seq=(q.seq + d_isn) & 0xFFFFFFFF)
            if q.ts is not None and d_ts:
                q = replace(q, ts=((q.ts[0] + d_ts) & 0xFFFFFFFF, q.ts[1]))
        if self.random_id and not q.v6:
            q = replace(q, ip_id=self._rng.randrange(0, 1 << 16))
        return q

    def nat_back(self, p: Pkt) -> Pkt:
        q = super().nat_back(p)
        if q.proto == 6:
            d_isn, d_ts = self._conn(q.dport, q.sport)
            q = replace(q, ack=(q.ack - d_isn) & 0xFFFFFFFF)
            if q.ts is not None and d_ts:
                q = replace(q, ts=(q.ts[0], (q.ts[1] - d_ts) & 0xFFFFFFFF))
        if q.quoted is not None and q.quoted.proto == 6:
            qq = q.quoted
            d_isn, d_ts = self._conn(qq.sport, qq.dport)
            q = replace(q, quoted=replace(qq, seq=(qq.seq - d_isn) & 0xFFFFFFFF))
        return q


def rewrite_server_capture(src: str | FsPath, dst: str | FsPath, public: str, seed: int = 1,
                           modulate_ts: bool = False) -> dict[tuple[int, int], int]:
    """A real server capture (Ethernet, IPv4) as it would read had the client's NAT been
    pf: what pf changes on the way to the server (``PfPath``) applied to the packets from
    and to ``public``, checksums recomputed. Returns pf's ISN offset per connection
    (keyed by the original (public port, server port))."""
    rng = random.Random(seed)
    data = bytearray(FsPath(src).read_bytes())
    if struct.unpack_from("<I", data, 0)[0] != 0xA1B2C3D4 or struct.unpack_from("<I", data, 20)[0] != 1:
        raise ValueError("rewrite_server_capture reads Ethernet pcap (microseconds) only")
    pub = ipaddress.ip_address(public).packed
    isn_off: dict[tuple[int, int], int] = {}
    ts_off: dict[tuple[int, int], int] = {}
    ports: dict[tuple[int, int], int] = {}
    used: set[int] = set()

    def conn(proto: int, cport: int, sport: int) -> tuple[int, int, int]:
        key = (cport, sport)
        if (proto, cport) not in ports:
            while (p := rng.randint(PF_PORT_LOW, PF_PORT_HIGH)) in used:
                pass
            used.add(p)
            ports[(proto, cport)] = p
        if proto == 6 and key not in isn_off:
            isn_off[key] = rng.randrange(1, 1 << 32)
            ts_off[key] = rng.randrange(1, 1 << 32) if modulate_ts else 0
        return ports[(proto, cport)], isn_off.get(key, 0), ts_off.get(key, 0)

    off = 24
    while off + 16 <= len(data):
        incl = struct.unpack_from("<I", data, off + 8)[0]
        ip = off + 16 + 14
        off += 16 + incl
        if incl < 34 or data[ip - 2:ip] != b"\x08\x00" or data[ip] >> 4 != 4:
            continue
        ihl = (data[ip] & 15) * 4
        proto = data[ip + 9]
        out = bytes(data[ip + 12:ip + 16]) == pub
        back = bytes(data[ip + 16:ip + 20]) == pub
        if not (out or back) or data[ip + 6] & 0x1F or data[ip + 7]:
            continue  # not the client's, or a fragment
        l4 = ip + ihl
        if proto in (6, 17):
            cport, sport = struct.unpack_from("!HH", data, l4) if out else struct.unpack_from("!HH", data, l4)[::-1]
            port, d_isn, d_ts = conn(proto, cport, sport)
            struct.pack_into("!H", data, l4 + (0 if out else 2), port)
            if proto == 6:
                field = 4 if out else 8  # the client's seq on the way out, the server's ack of it back
                v = struct.unpack_from("!I", data, l4 + field)[0]
                if out or data[l4 + 13] & 0x10:
                    struct.pack_into("!I", data, l4 + field, (v + d_isn) & 0xFFFFFFFF)
                _shift_ts(data, l4, d_ts, 0 if out else 4)
        if out:
            struct.pack_into("!H", data, ip + 4, rng.randrange(0, 1 << 16))
        _fix_checksums(data, ip, ihl, proto)
    FsPath(dst).write_bytes(bytes(data))
    return isn_off


def _shift_ts(data: bytearray, l4: int, d: int, which: int) -> None:
    """Add ``d`` to the TCP timestamp option's value (``which`` 0) or echo reply (4)."""
    if not d:
        return
    end, i = l4 + (data[l4 + 12] >> 4) * 4, l4 + 20
    while i < end:
        kind = data[i]
        if kind == 0:
            return
        if kind == 1:
            i += 1
            continue
        if kind == 8:
            v = struct.unpack_from("!I", data, i + 2 + which)[0]
            struct.pack_into("!I", data, i + 2 + which, (v + d) & 0xFFFFFFFF)
            return
        i += max(data[i + 1], 2)


def _fix_checksums(data: bytearray, ip: int, ihl: int, proto: int) -> None:
    total = struct.unpack_from("!H", data, ip + 2)[0]
    struct.pack_into("!H", data, ip + 10, 0)
    struct.pack_into("!H", data, ip + 10, checksum(bytes(data[ip:ip + ihl])))
    if proto not in (6, 17) or ip + total > len(data):
        return
    l4, n = ip + ihl, total - ihl
    at = l4 + (16 if proto == 6 else 6)
    struct.pack_into("!H", data, at, 0)
    pseudo = bytes(data[ip + 12:ip + 20]) + struct.pack("!xBH", proto, n)
    c = checksum(pseudo + bytes(data[l4:l4 + n]))
    struct.pack_into("!H", data, at, c or (0xFFFF if proto == 17 else 0))
