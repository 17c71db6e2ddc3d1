"""A second bench pair, unlike bench/diff.py's: many hosts, VLANs, IPv6, TCP, DNS- and QUIC-like UDP.

bench/diff.py's pair is one client and one server (a few addresses). This one is a site
edge and a hosting edge: 2,500 IPv4 and 600 IPv6 clients, 2,500 IPv4 and 500 IPv6
servers (more than 5,000 distinct addresses at each point). The client capture is taken
inside the site (µs pcap, most hosts on one of 12 802.1Q VLANs); the server capture at
the hosting edge (nanosecond pcap, untagged, its clock 1.3 s ahead, 15 ms away), where
IPv4 clients appear behind a NAT pool of 14 addresses with their ports rewritten (a hash
of the flow: not port-preserving). TTLs drop by 7 on the way.

Flows, by share of packets: TCP (55%: handshake, a request, 1-12 server segments,
teardown; Linux clients with timestamps and the Linux SYN, Windows clients with the
Windows SYN and no timestamps, and 1 in 200 connections whose SYN-ACKs are lost three
times), QUIC-like UDP to 443 (25%: 12-60 datagrams, mostly from the server), DNS-like UDP
to 53 (12%: query and answer, 1% of either lost), ICMP / ICMPv6 echo (the rest, 1% lost).
Packets are columns (``rig.capture.synth_columns``); nothing is made per packet in Python.

    pair(n_packets, seed) -> (client columns, server columns, truth)

``truth`` is the generator's own record of what it did: exchanges per protocol and
outcome (``{"tcp": {"delivered": n, "lost-return": k}, ...}``) and the datagrams of the
QUIC-like flows each way, sent and lost. A verdict is checked against it, never against
another verdict.
"""

from __future__ import annotations

import numpy as np

from rig.capture.synth_columns import OPT_LINUX_SYN, OPT_MSS, OPT_NNT, OPT_NONE, OPT_WIN_SYN, Packets, concat, \
    packets, sort_by_time

N_C4, N_C6, N_S4, N_S6 = 2500, 600, 2500, 500
PATH_NS, SERVER_CLOCK_NS, SPAN_NS = 15_000_000, 1_300_000_000, 120 * 10**9
V6_HI_C, V6_HI_S = 0x20010DB8000A0000, 0x20010DB800B00000
NAT_POOL = 0xCB007110  # 203.0.113.16 .. +13
SYN, FIN, RST, PSH, ACK = 0x02, 0x01, 0x04, 0x08, 0x10


def _client_addr(h):
    return np.where(h < N_C4, 0x0A000000 + 0x10000 + h * 3 + 1, h + 1).astype(np.uint64)


def _server_addr(s):
    return np.where(s < N_S4, 0xC6120000 + s * 7 + 5, s + 0x100).astype(np.uint64)


class _Flows:
    """Per-flow facts, expanded to packets by ``rep``."""

    def __init__(self, rng, n: int):
        self.n = n
        six = rng.random(n) < 0.2
        self.host = np.where(six, N_C4 + rng.integers(0, N_C6, n), rng.integers(0, N_C4, n))
        self.srv = np.where(six, N_S4 + rng.integers(0, N_S6, n), rng.integers(0, N_S4, n))
        self.v6 = six
        self.start = rng.integers(0, SPAN_NS, n)
        self.cport = rng.integers(1024, 65536, n)
        self.natport = (self.cport * 2654435761 + np.arange(n) * 40503) % 64000 + 1024


def _expand(fl: _Flows, count: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    f = np.repeat(np.arange(fl.n), count)
    k = np.arange(len(f)) - np.repeat(np.cumsum(count) - count, count)
    return f, k


def _base(fl: _Flows, f: np.ndarray, k: np.ndarray, d: np.ndarray, proto, rng) -> Packets:
    p = packets(len(f))
    p["v6"] = fl.v6[f]
    p["proto"][:] = proto
    p["dir"] = d
    p["flow_host"] = fl.host[f]
    p["flow_srv"] = fl.srv[f]
    p["cport"] = fl.cport[f]
    p["natport"] = fl.natport[f]
    p["ipid"] = rng.integers(0, 65536, len(f)).astype(np.uint64)
    p["df"][:] = True
    p["nonce"] = rng.integers(1, 2**63, len(f)).astype(np.uint64)
    # sender's time: each change of direction so far adds the path delay
    turn = np.r_[False, (d[1:] != d[:-1]) & (f[1:] == f[:-1])]
    c = np.cumsum(turn)
    first = np.r_[0, np.flatnonzero(f[1:] != f[:-1]) + 1]
    c -= np.repeat(c[first], np.diff(np.r_[first, len(f)]))
    p["t"] = fl.start[f] + k * 40_000 + c * PATH_NS
    p["lost"] = np.zeros(len(f), bool)
    return p


def _tcp(rng, n_packets: int) -> Packets:
    n = max(1, n_packets // 14)
    fl = _Flows(rng, n)
    broken = rng.random(n) < 0.005
    m = rng.integers(1, 13, n)
    count = np.where(broken, 6, 8 + m)
    f, k = _expand(fl, count)
    mf, bk = m[f], broken[f]
    q = rng.integers(40, 900, n)[f]
    last = rng.integers(1, 1449, n)[f]
    data = (k >= 4) & (k < 4 + mf) & ~bk
    dlen = np.where(k == 3 + mf, last, 1448)
    total = (mf - 1) * 1448 + last
    server = np.isin(k - mf, (6,)) | data | (k == 1)
    d = np.where(bk, k % 2, server.astype(np.int64))
    p = _base(fl, f, k, d, 6, rng)
    isnc = rng.integers(0, 2**32, n).astype(np.int64)[f]
    isns = rng.integers(0, 2**32, n).astype(np.int64)[f]
    km = k - mf
    cseq = np.select([k == 0, k <= 3, km <= 5], [isnc, isnc + 1, isnc + 1 + q], isnc + 2 + q)
    cack = np.select([k == 0, k <= 3, km <= 5], [0, isns + 1, isns + 1 + total], isns + 2 + total)
    sseq = np.select([k == 1, data], [isns, isns + 1 + (k - 4) * 1448], isns + 1 + total)
    sack = np.select([k == 1, data], [isnc + 1, isnc + 1 + q], isnc + 2 + q)
    flags = np.select([k == 0, k == 1, k == 3, data & (k == 3 + mf), data, km == 5, km == 6],
                      [SYN, SYN | ACK, PSH | ACK, PSH | ACK, ACK, FIN | ACK, FIN | ACK], ACK)
    plen = np.select([k == 3, data], [q, dlen], 0)
    # a broken connection: SYN, lost SYN-ACK, three times (1 s, then 2 s later)
    flags = np.where(bk, np.where(k % 2 == 0, SYN, SYN | ACK), flags)
    seq = np.where(d == 0, cseq, sseq)
    ack = np.where(d == 0, cack, sack)
    seq = np.where(bk, np.where(k % 2 == 0, isnc, isns), seq)
    ack = np.where(bk, np.where(k % 2 == 0, 0, isnc + 1), ack)
    plen = np.where(bk, 0, plen)
    p["t"] = np.where(bk, fl.start[f] + np.array([0, 1, 10, 11, 30, 31])[np.minimum(k, 5)] * 100_000_000, p["t"])
    p["lost"] = bk & (k % 2 == 1)
    windows = (fl.host[f] % 4 == 0)
    syn = (k <= 1) | bk
    p["opt"] = np.select([syn & (d == 0) & windows, syn & (d == 1) & windows, syn, windows], [OPT_WIN_SYN, OPT_MSS,
                         OPT_LINUX_SYN, OPT_NONE], OPT_NNT).astype(np.uint64)
    p["mss"] = np.where(p["v6"], 1440, 1460).astype(np.uint64)
    p["tsval"] = ((p["t"] // 1_000_000) + np.where(d == 0, 77, 91_000)).astype(np.uint64) & np.uint64(0xFFFFFFFF)
    p["tsecr"] = np.where(k == 0, 0, p["tsval"] - np.uint64(15)).astype(np.uint64) & np.uint64(0xFFFFFFFF)
    p["seq"] = (seq & 0xFFFFFFFF).astype(np.uint64)
    p["ack"] = (ack & 0xFFFFFFFF).astype(np.uint64)
    p["flags"] = flags.astype(np.uint64)
    p["plen"] = plen.astype(np.uint64)
    p["sport_s"] = np.full(len(f), 443, np.uint64)
    p["sport_s"][fl.srv[f] % 3 == 0] = 80
    p["ttl0"] = np.where((d == 0) & windows, 128, 64)
    nb = int(broken.sum())
    return p, {"tcp": {"delivered": n - nb, "lost-return": nb}}


def _quic(rng, n_packets: int) -> Packets:
    per = rng.integers(12, 61, max(1, n_packets // 36))
    fl = _Flows(rng, len(per))
    f, k = _expand(fl, per)
    d = np.where((k == 0) | (k % 5 == 0), 0, 1)
    p = _base(fl, f, k, d, 17, rng)
    p["plen"] = np.where(k == 0, 1250, np.where(d == 0, rng.integers(40, 120, len(f)), 1200)).astype(np.uint64)
    p["lost"] = rng.random(len(f)) < 0.003
    p["sport_s"] = np.full(len(f), 443, np.uint64)
    p["ttl0"] = np.full(len(f), 64)
    out, lost = d == 0, p["lost"]
    dg = {"out": {"sent": int(out.sum()), "lost": int((out & lost).sum())},
          "back": {"sent": int((~out).sum()), "lost": int((~out & lost).sum())}}
    return p, {"udp": {"delivered": len(per)}, "datagrams": dg}


def _dns(rng, n_packets: int) -> Packets:
    n = max(1, n_packets // 2)
    fl = _Flows(rng, n)
    f, k = _expand(fl, np.full(n, 2))
    p = _base(fl, f, k, k.copy(), 17, rng)
    p["plen"] = np.where(k == 0, rng.integers(28, 60, len(f)), rng.integers(60, 400, len(f))).astype(np.uint64)
    lost_q = np.repeat(rng.random(n) < 0.01, 2)
    p["lost"] = (lost_q & (k == 0)) | ((rng.random(len(f)) < 0.01) & (k == 1))
    keep = ~(lost_q & (k == 1))
    p["sport_s"] = np.full(len(f), 53, np.uint64)
    p["ttl0"] = np.full(len(f), 64)
    n_out = int(lost_q[::2].sum())
    n_back = int((p["lost"] & (k == 1) & ~lost_q).sum())
    return {c: v[keep] for c, v in p.items()}, {"udp": {"delivered": n - n_out - n_back, "lost-outbound": n_out,
                                                         "lost-return": n_back}}


def _echo(rng, n_packets: int) -> Packets:
    n = max(1, n_packets // 2)
    fl = _Flows(rng, n)
    f, k = _expand(fl, np.full(n, 2))
    p = _base(fl, f, k, k.copy(), 1, rng)
    v6 = p["v6"]
    p["proto"] = np.where(v6, 58, 1).astype(np.uint64)
    p["itype"] = np.where(v6, np.where(k == 0, 128, 129), np.where(k == 0, 8, 0)).astype(np.uint64)
    p["ident"] = (fl.cport[f] & 0xFFFF).astype(np.uint64)
    p["iseq"] = (f % 65536).astype(np.uint64)
    p["plen"][:] = 56
    p["nonce"] = np.repeat(p["nonce"][::2], 2)
    lost_q = np.repeat(rng.random(n) < 0.01, 2)
    p["lost"] = lost_q & (k == 0)
    keep = ~(lost_q & (k == 1))
    p["sport_s"] = np.zeros(len(f), np.uint64)
    p["ttl0"] = np.full(len(f), 64)
    n_out = int(lost_q[::2].sum())
    return {c: v[keep] for c, v in p.items()}, {"icmp": {"delivered": n - n_out, "lost-outbound": n_out}}


def _point(p: dict, side: str) -> Packets:
    """What one capture point records of the flows' packets ``p``."""
    d = p["dir"]
    keep = ~p["lost"] | (d == (0 if side == "client" else 1))
    p = {c: v[keep] for c, v in p.items()}
    d = p["dir"]
    out = packets(len(d))
    for c in out:
        if c in p:
            out[c] = p[c].astype(out[c].dtype) if c != "t" else p[c]
    from_c = d == 0
    far = from_c if side == "server" else ~from_c
    v6 = p["v6"]
    host, srv = p["flow_host"], p["flow_srv"]
    nat = (side == "server") & ~v6
    caddr = np.where(nat, NAT_POOL + host % 14, _client_addr(host)).astype(np.uint64)
    cport = np.where(nat, p["natport"], p["cport"]).astype(np.uint64)
    saddr = _server_addr(srv)
    chi = np.where(v6, V6_HI_C, 0).astype(np.uint64)
    shi = np.where(v6, V6_HI_S, 0).astype(np.uint64)
    out["src_hi"], out["src_lo"] = np.where(from_c, chi, shi), np.where(from_c, caddr, saddr)
    out["dst_hi"], out["dst_lo"] = np.where(from_c, shi, chi), np.where(from_c, saddr, caddr)
    ported = np.isin(p["proto"], (6, 17))
    sp = p["sport_s"].astype(np.uint64)
    out["sport"] = np.where(ported, np.where(from_c, cport, sp), 0).astype(np.uint64)
    out["dport"] = np.where(ported, np.where(from_c, sp, cport), 0).astype(np.uint64)
    out["ttl"] = (p["ttl0"] - np.where(far, 7, 0)).astype(np.uint64)
    out["vlan"] = np.where((side == "client") & (host % 3 != 0), 100 + host % 12, 0).astype(np.uint64)
    out["t"] = p["t"] + np.where(far, PATH_NS, 0) + (SERVER_CLOCK_NS if side == "server" else 0)
    return sort_by_time(out)


def pair(n_packets: int, seed: int = 11) -> tuple[Packets, Packets, dict]:
    """The client and the server capture of about ``n_packets`` packets sent, and the
    generator's record of what should be found (see the module docstring)."""
    rng = np.random.default_rng(seed)
    made = [_tcp(rng, int(n_packets * 0.55)), _quic(rng, int(n_packets * 0.25)), _dns(rng, int(n_packets * 0.12)),
            _echo(rng, int(n_packets * 0.08))]
    parts = [m[0] for m in made]
    truth: dict = {}
    for _, tr in made:
        for proto, counts in tr.items():
            if proto == "datagrams":
                truth[proto] = counts
                continue
            for k, v in counts.items():
                truth.setdefault(proto, {})
                truth[proto][k] = truth[proto].get(k, 0) + v
    keys = set.intersection(*(set(x) for x in parts))
    flows = {c: np.concatenate([x[c] for x in parts]) for c in keys}
    return _point(flows, "client"), _point(flows, "server"), truth


def concat_points(parts: list[Packets]) -> Packets:
    return sort_by_time(concat(parts))
