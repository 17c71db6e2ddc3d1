"""A busy server's unrelated traffic, merged into a capture: what a public VM records besides the probes.

``unrelated`` makes the columns (``synth_columns``) of ``n`` packets to and from a
server that have nothing to do with a given client: other users' TCP and QUIC-like UDP
(thousands of IPv4 and IPv6 addresses), DNS-like queries, scanners (SYNs to random
ports from random addresses, answered by RSTs; UDP probes answered by ICMP port
unreachable quoting them), pings, IPv4 fragments, and scanners that reuse the client's
public address and source ports after NAT (to other ports of the server). Each kind's
share is in ``SHARES``. ``merge_pcap`` writes an Ethernet pcap of a (small) capture's
records and such packets, in time order, a chunk at a time (bounded memory for tens of
millions of packets). The bench (``bench/diff.py --busy``) and the tests of the early
filter (``focus``) both use it.
"""

from __future__ import annotations

import numpy as np

from rig.capture import container
from rig.capture.synth_columns import OPT_LINUX_SYN, OPT_NNT, Packets, file_header, packets, records, sort_by_time

SHARES = {"tcp": 0.46, "quic": 0.20, "dns": 0.08, "scan": 0.15, "udpscan": 0.02, "echo": 0.05, "frag": 0.01,
          "reuse": 0.03}
POOL4, POOL6 = 20_000, 4_000  # other users' addresses


def unrelated(rng: np.random.Generator, n: int, t0: int, t1: int, server: tuple[int, int], *, reuse_addr: int = 0,
              reuse_ports: np.ndarray | None = None, avoid_ports: tuple[int, ...] = ()) -> Packets:
    """``n`` packets between ``t0`` and ``t1`` (ns) to and from ``server`` (an IPv4 address
    as ``(0, a)``; IPv6 as ``(hi, lo)`` words: the other users' IPv6 share goes to
    ``(server[0] or 0x20010DB8FFFF0000, server[1] + 1)``). ``reuse_addr`` / ``reuse_ports``:
    the client's public IPv4 address and source ports, reused by scanners toward ports not
    in ``avoid_ports``."""
    counts = {k: int(n * s) for k, s in SHARES.items()}
    counts["tcp"] += n - sum(counts.values())
    if not reuse_addr:
        counts["tcp"] += counts.pop("reuse")
    p = packets(n)
    at = 0
    for kind, m in counts.items():
        sl = slice(at, at + m)
        at += m
        if m:
            _fill(rng, kind, {c: v[sl] for c, v in p.items()}, m, server, reuse_addr, reuse_ports, avoid_ports)
    p["t"] = rng.integers(t0, t1, n)
    return sort_by_time(p)


def _fill(rng, kind: str, p: Packets, m: int, server, reuse_addr, reuse_ports, avoid) -> None:
    back = rng.random(m) < 0.5  # from the server
    v6 = (rng.random(m) < 0.15) & (kind in ("tcp", "quic", "dns", "echo"))
    if kind in ("tcp", "quic", "dns", "echo", "frag"):
        peer4 = 0x0A000000 + 0x40000 + rng.integers(0, POOL4, m) * 13
        peer6 = 0x1000 + rng.integers(0, POOL6, m)
    elif kind == "reuse":
        peer4, peer6 = np.full(m, reuse_addr), np.zeros(m, np.int64)
        back[:] = False
    else:  # scanners: anywhere
        peer4, peer6 = rng.integers(0x01000000, 0xDF000000, m), np.zeros(m, np.int64)
    s_hi = np.where(v6, server[0] or 0x20010DB8FFFF0000, 0)
    s_lo = np.where(v6, server[1] + 1 if not server[0] else server[1], server[1])
    p_hi = np.where(v6, 0x20010DB8EEEE0000, 0)
    p_lo = np.where(v6, peer6, peer4)
    p["v6"][:] = v6
    p["src_hi"][:] = np.where(back, s_hi, p_hi)
    p["src_lo"][:] = np.where(back, s_lo, p_lo)
    p["dst_hi"][:] = np.where(back, p_hi, s_hi)
    p["dst_lo"][:] = np.where(back, p_lo, s_lo)
    p["ttl"][:] = np.where(back, 64, rng.integers(40, 120, m))
    p["ipid"][:] = rng.integers(0, 65536, m)
    p["df"][:] = True
    p["nonce"][:] = rng.integers(1, 2**63, m)
    cport = rng.integers(1024, 65536, m)
    if kind in ("tcp", "scan", "reuse"):
        if kind == "tcp":
            sport = rng.choice([443, 80, 22], m)
        else:
            sport = rng.integers(1, 65536, m)
            for a in avoid:
                sport = np.where(sport == a, a + 1, sport)
        if kind == "reuse" and reuse_ports is not None and len(reuse_ports):
            cport = rng.choice(reuse_ports, m)
        p["proto"][:] = 6
        p["sport"][:] = np.where(back, sport, cport)
        p["dport"][:] = np.where(back, cport, sport)
        p["seq"][:] = rng.integers(0, 2**32, m)
        p["ack"][:] = rng.integers(0, 2**32, m)
        if kind == "tcp":
            flags = rng.choice([0x02, 0x12, 0x10, 0x18, 0x11, 0x04], m, p=[0.04, 0.04, 0.5, 0.34, 0.06, 0.02])
            p["plen"][:] = np.where(flags == 0x18, rng.integers(1, 1449, m), 0)
            p["opt"][:] = np.where((flags & 0x02) != 0, OPT_LINUX_SYN, OPT_NNT)
            p["mss"][:] = 1460
            p["tsval"][:] = rng.integers(1, 2**32, m)
            p["tsecr"][:] = rng.integers(1, 2**32, m)
        else:  # a SYN, or the RST that answers it
            flags = np.where(back, 0x14, 0x02)
            p["ack"][:] = np.where(back, p["ack"], 0)
        p["flags"][:] = flags
    elif kind in ("quic", "dns", "udpscan"):
        port = {"quic": 443, "dns": 53}.get(kind)
        sport = np.full(m, port) if port else rng.integers(1, 65536, m)
        p["proto"][:] = 17
        p["sport"][:] = np.where(back, sport, cport)
        p["dport"][:] = np.where(back, cport, sport)
        p["plen"][:] = {"quic": np.where(back, 1200, rng.integers(40, 120, m)),
                        "dns": np.where(back, rng.integers(60, 400, m), rng.integers(28, 60, m)),
                        "udpscan": rng.integers(0, 40, m)}[kind]
        if kind == "udpscan":  # the probe, or the server's port unreachable quoting it
            p["proto"][:] = np.where(back, 1, 17)
            p["itype"][:] = np.where(back, 3, 0)
            p["icode"][:] = np.where(back, 3, 0)
            p["q_proto"][:] = 17
            p["q_src"][:] = peer4
            p["q_dst"][:] = server[1]
            p["q_sport"][:] = cport
            p["q_dport"][:] = sport
            p["plen"][:] = np.where(back, 0, p["plen"])
    elif kind == "echo":
        p["proto"][:] = np.where(v6, 58, 1)
        p["itype"][:] = np.where(v6, np.where(back, 129, 128), np.where(back, 0, 8))
        p["ident"][:] = cport
        p["iseq"][:] = rng.integers(0, 65536, m)
        p["plen"][:] = 56
    elif kind == "frag":  # a later fragment of a large UDP datagram
        p["proto"][:] = 17
        p["frag"][:] = rng.integers(1, 400, m) * 185
        p["mf"][:] = rng.random(m) < 0.5
        p["plen"][:] = rng.integers(8, 1480, m)


def merge_pcap(src: str, dst: str, chunks) -> np.ndarray:
    """Write ``dst``: the records of the Ethernet µs pcap ``src`` and the packets of each
    ``Packets`` in ``chunks`` (an iterable, each sorted by time, each later than the one
    before), in time order (``src``'s records before others of the same time). Returns
    (records written, bytes written)."""
    buf = open(src, "rb").read()
    recs = container.walk(buf, src)
    sts = recs.ts_ns
    starts = np.asarray(recs.data_off, np.int64) - 16
    ends = starts + 16 + np.asarray(recs.caplen, np.int64)
    done = 0
    noise = 0  # packets of the chunks written so far
    frames = np.zeros(len(sts), np.int64)
    with open(dst, "wb") as fh:
        fh.write(file_header())
        for p in chunks:
            t_last = int(p["t"][-1]) if len(p["t"]) else None
            upto = len(sts) if t_last is None else int(np.searchsorted(sts, t_last, side="right"))
            mine = np.arange(done, upto)
            rb, roffs = records(p)
            # each src record goes before the chunk's packets of its time or later
            before = np.searchsorted(p["t"], sts[mine], side="left")
            frames[mine] = mine + noise + before + 1
            cut = np.r_[roffs, len(rb)][before].tolist()
            parts, prev = [], 0
            for r, c in zip(mine.tolist(), cut):
                parts += [rb[prev:c].tobytes(), buf[starts[r]:ends[r]]]
                prev = c
            parts.append(rb[prev:].tobytes())
            data = b"".join(parts)
            fh.write(data)
            noise += len(p["t"])
            done = upto
        if done < len(sts):
            fh.write(buf[starts[done]:ends[-1]])
            frames[done:] = np.arange(done, len(sts)) + noise + 1
    return frames


def noise_chunks(rng: np.random.Generator, n: int, t0: int, t1: int, server: tuple[int, int], *,
                 chunk: int = 1 << 20, **kw):
    """``unrelated`` packets in time-ordered chunks of about ``chunk`` (for ``merge_pcap``)."""
    k = max(1, -(-n // chunk))
    edges = np.linspace(t0, t1, k + 1).astype(np.int64)
    for i in range(k):
        m = n // k + (1 if i < n % k else 0)
        yield unrelated(rng, m, int(edges[i]), max(int(edges[i]) + 1, int(edges[i + 1])), server, **kw)
