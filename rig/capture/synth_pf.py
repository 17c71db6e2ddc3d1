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
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace

from rig.capture.synth import Path, Pkt

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
