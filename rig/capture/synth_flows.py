"""Traffic shapes on a ``synth.Path``: QUIC-like UDP flows and a public server's scanners.

``quic_flow`` plays one UDP conversation that is not one request and one reply: a few
client datagrams, each answered by a burst of server datagrams (as HTTP/3 does), with
chosen datagrams lost on the way out or back. ``scanners`` adds what a public VM's
capture holds besides the run: SYNs from many addresses that never came from the client.
"""

from __future__ import annotations

import random

from rig.capture.synth import SYN, Path, Pkt


def quic_flow(w: Path, sport: int, *, dport: int = 443, client_datagrams: int = 4, per_reply: int = 10,
              lost_out: set[int] | frozenset[int] = frozenset(), lost_back: set[int] | frozenset[int] = frozenset(),
              loss: float = 0.0, rng: random.Random | None = None, size: int = 120) -> tuple[int, int]:
    """The client sends ``client_datagrams`` datagrams to ``dport``; the server answers
    each one that arrives with ``per_reply`` datagrams. Datagram ``i`` of the client
    (``j`` of the server, counted over the flow) is lost if in ``lost_out`` (``lost_back``),
    or with probability ``loss`` drawn from ``rng``. Returns (client datagrams lost,
    server datagrams lost)."""
    rng = rng or random.Random(sport)
    lost_c = lost_s = 0
    j = 0
    for i in range(client_datagrams):
        body = (b"quic-c-%d-%d-" % (sport, i)).ljust(size, b"c")
        arrive = i not in lost_out and not (loss and rng.random() < loss)
        q = w.out(Pkt(w.client, w.server, 17, sport=sport, dport=dport, payload=body, ip_id=(sport + i) & 0xFFFF),
                  arrive=arrive)
        if not arrive:
            lost_c += 1
            continue
        for _ in range(per_reply):
            body = (b"quic-s-%d-%d-" % (sport, j)).ljust(size * 10, b"s")
            back = j not in lost_back and not (loss and rng.random() < loss)
            w.back(Pkt(q.dst, q.src, 17, sport=q.dport, dport=q.sport, payload=body, ip_id=(j + 7) & 0xFFFF),
                   arrive=back)
            lost_s += not back
            j += 1
    return lost_c, lost_s


def scanners(w: Path, n: int, *, seed: int = 1, port: int = 22) -> None:
    """``n`` SYNs from different Internet addresses to the server, seen only at the
    server (arriving with TTLs a few hops below their senders' initial value)."""
    rng = random.Random(seed)
    for k in range(n):
        src = f"45.{rng.randrange(1, 250)}.{rng.randrange(0, 250)}.{rng.randrange(1, 250)}"
        ttl = rng.choice((64, 128, 255)) - rng.randrange(5, 20)
        w.at_server(Pkt(src, w.server_seen_as or w.server, 6, sport=rng.randrange(1024, 65535), dport=port,
                        seq=rng.randrange(2**32), flags=SYN, ttl=ttl, ip_id=k & 0xFFFF, mss=1460))
