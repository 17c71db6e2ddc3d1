"""Write packets given as numpy columns into a pcap, vectorised: millions per second.

``synth`` builds one packet object at a time (correct checksums, every layout), which is
what a test of a few hundred packets wants; benches and the busy-server tests need
millions, so here every field is a column and each header byte is written for all
packets at once. Checksums are left 0 (rig does not check them).

A packet is a row of ``Packets`` (``packets(n)`` makes the zeroed columns):

- ``t`` capture time (ns), ``v6``, ``proto`` (6, 17, 1, 58), ``src`` / ``dst`` as two
  u64 columns each (``src_hi``, ``src_lo``: an IPv4 address is ``src_lo`` alone),
  ``ttl``, ``ipid``, ``df``, ``vlan`` (an 802.1Q tag when > 0);
- TCP: ``sport``, ``dport``, ``seq``, ``ack``, ``flags``, ``win``, ``opt`` (a layout of
  ``OPT_LEN``: none, NOP NOP TS, the Linux SYN, the Windows SYN, MSS alone), ``mss``,
  ``tsval``, ``tsecr``; UDP: the ports;
- ICMP: ``itype``, ``icode``, ``ident``, ``iseq``; an IPv4 ICMP error (type 3, 4, 5, 11,
  12) quotes an IPv4 header and the first 8 bytes after it: ``q_src``, ``q_dst``,
  ``q_proto``, ``q_sport``, ``q_dport`` (as ``ident`` / ``iseq`` for a quoted echo);
- ``frag``: an IPv4 fragment's offset in 8-byte units (> 0: no L4 header in it), ``mf``;
- ``plen`` payload bytes, the first 8 of them ``nonce`` (big-endian), the rest 0.
"""

from __future__ import annotations

import numpy as np

from rig.unique import isin

OPT_NONE, OPT_NNT, OPT_LINUX_SYN, OPT_WIN_SYN, OPT_MSS = 0, 1, 2, 3, 4
OPT_LEN = np.array([0, 12, 20, 12, 4])

COLUMNS = ("t", "v6", "proto", "src_hi", "src_lo", "dst_hi", "dst_lo", "ttl", "ipid", "df", "vlan", "sport", "dport",
           "seq", "ack", "flags", "win", "opt", "mss", "tsval", "tsecr", "itype", "icode", "ident", "iseq", "q_src",
           "q_dst", "q_proto", "q_sport", "q_dport", "frag", "mf", "plen", "nonce")
_BOOL = {"v6", "df", "mf"}
ICMP4_ERRORS = (3, 4, 5, 11, 12)

Packets = dict  # column name -> numpy array, one row per packet


def packets(n: int) -> Packets:
    """Zeroed columns for ``n`` packets (``t`` int64, flags bool, the rest uint64)."""
    out = {c: np.zeros(n, bool if c in _BOOL else np.uint64) for c in COLUMNS}
    out["t"] = np.zeros(n, np.int64)
    return out


def concat(parts: list[Packets]) -> Packets:
    return {c: np.concatenate([p[c] for p in parts]) for c in COLUMNS}


def take(p: Packets, idx) -> Packets:
    return {c: p[c][idx] for c in COLUMNS}


def sort_by_time(p: Packets) -> Packets:
    return take(p, np.argsort(p["t"], kind="stable"))


def file_header(ns: bool = False, linktype: int = 1, snaplen: int = 262144) -> bytes:
    magic = 0xA1B23C4D if ns else 0xA1B2C3D4
    return np.array([magic, 0x00040002, 0, 0, snaplen, linktype], "<u4").tobytes()


def records(p: Packets, ns: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The pcap records of ``p`` (Ethernet) as one byte array, and each record's offset in it."""
    v6 = p["v6"]
    proto = p["proto"].astype(np.int64)
    tcp, udp = proto == 6, proto == 17
    icmp = ~(tcp | udp)
    later = (p["frag"] > 0) & ~v6  # a non-first fragment: payload only
    err = icmp & ~v6 & isin(p["itype"], ICMP4_ERRORS)
    link = 14 + np.where(p["vlan"] > 0, 4, 0)
    l3 = np.where(v6, 40, 20)
    l4 = np.where(tcp, 20 + OPT_LEN[p["opt"].astype(np.int64)], np.where(err, 8 + 28, 8))
    l4 = np.where(later, 0, l4)
    plen = p["plen"].astype(np.int64)
    caplen = link + l3 + l4 + plen
    rec = 16 + caplen
    offs = np.cumsum(rec) - rec
    buf = np.zeros(int(rec.sum()), np.uint8)

    def put(pos, val, nbytes, little=False, mask=None):
        if mask is not None:
            pos = pos[mask]
            val = val[mask] if np.ndim(val) else val
            if not len(pos):
                return
        val = np.asarray(val).astype(np.uint64)
        for i in range(nbytes):
            sh = np.uint64(8 * (i if little else nbytes - 1 - i))
            buf[pos + i] = ((val >> sh) & np.uint64(0xFF)).astype(np.uint8)

    t = p["t"]
    put(offs, t // 10**9, 4, True)
    put(offs + 4, (t % 10**9) if ns else (t % 10**9) // 1000, 4, True)
    put(offs + 8, caplen, 4, True)
    put(offs + 12, caplen, 4, True)
    e = offs + 16
    put(e, 0x020000000001, 6)
    put(e + 6, 0x020000000002, 6)
    tagged = p["vlan"] > 0
    put(e + 12, 0x8100, 2, mask=tagged)
    put(e + 14, p["vlan"], 2, mask=tagged)
    ip = e + link
    put(ip - 2, np.where(v6, 0x86DD, 0x0800), 2)
    m4, m6 = ~v6, v6
    total = l3 + l4 + plen
    put(ip, 0x4500, 2, mask=m4)
    put(ip + 2, total, 2, mask=m4)
    put(ip + 4, p["ipid"], 2, mask=m4)
    fo = (p["df"].astype(np.uint64) << np.uint64(14)) | (p["mf"].astype(np.uint64) << np.uint64(13)) | p["frag"]
    put(ip + 6, fo, 2, mask=m4)
    put(ip + 8, p["ttl"], 1, mask=m4)
    put(ip + 9, proto, 1, mask=m4)
    put(ip + 12, p["src_lo"], 4, mask=m4)
    put(ip + 16, p["dst_lo"], 4, mask=m4)
    put(ip, 0x60000000, 4, mask=m6)
    put(ip + 4, l4 + plen, 2, mask=m6)
    put(ip + 6, proto, 1, mask=m6)
    put(ip + 7, p["ttl"], 1, mask=m6)
    put(ip + 8, p["src_hi"], 8, mask=m6)
    put(ip + 16, p["src_lo"], 8, mask=m6)
    put(ip + 24, p["dst_hi"], 8, mask=m6)
    put(ip + 32, p["dst_lo"], 8, mask=m6)
    l4o = ip + l3
    ported = (tcp | udp) & ~later
    put(l4o, p["sport"], 2, mask=ported)
    put(l4o + 2, p["dport"], 2, mask=ported)
    tcp &= ~later
    put(l4o + 4, p["seq"], 4, mask=tcp)
    put(l4o + 8, p["ack"], 4, mask=tcp)
    put(l4o + 12, ((l4 // 4) << 12) | p["flags"].astype(np.int64), 2, mask=tcp)
    put(l4o + 14, np.where(p["win"] > 0, p["win"], 64240), 2, mask=tcp)
    opt = p["opt"].astype(np.int64)
    o = l4o + 20
    nnt, lsyn, wsyn, mss = (tcp & (opt == k) for k in (OPT_NNT, OPT_LINUX_SYN, OPT_WIN_SYN, OPT_MSS))
    put(o, 0x0101080A, 4, mask=nnt)
    put(o + 4, p["tsval"], 4, mask=nnt)
    put(o + 8, p["tsecr"], 4, mask=nnt)
    put(o, 0x0204, 2, mask=lsyn | wsyn | mss)
    put(o + 2, p["mss"], 2, mask=lsyn | wsyn | mss)
    put(o + 4, 0x0402080A, 4, mask=lsyn)
    put(o + 8, p["tsval"], 4, mask=lsyn)
    put(o + 12, p["tsecr"], 4, mask=lsyn)
    put(o + 16, 0x01030307, 4, mask=lsyn)
    put(o + 4, 0x01030308, 4, mask=wsyn)
    put(o + 8, 0x01010402, 4, mask=wsyn)
    udp &= ~later
    put(l4o + 4, l4 + plen, 2, mask=udp)
    icmp &= ~later
    put(l4o, p["itype"], 1, mask=icmp)
    put(l4o + 1, p["icode"], 1, mask=icmp)
    put(l4o + 4, p["ident"], 2, mask=icmp & ~err)
    put(l4o + 6, p["iseq"], 2, mask=icmp & ~err)
    q = l4o + 8  # the quoted IPv4 header and 8 bytes of what followed it
    put(q, 0x4500, 2, mask=err)
    put(q + 2, 20 + 8 + 32, 2, mask=err)
    put(q + 8, 61, 1, mask=err)
    put(q + 9, p["q_proto"], 1, mask=err)
    put(q + 12, p["q_src"], 4, mask=err)
    put(q + 16, p["q_dst"], 4, mask=err)
    qp = err & isin(p["q_proto"], (6, 17))
    put(q + 20, p["q_sport"], 2, mask=qp)
    put(q + 22, p["q_dport"], 2, mask=qp)
    qe = err & (p["q_proto"] == 1)
    put(q + 20, 8, 1, mask=qe)
    put(q + 24, p["ident"], 2, mask=qe)
    put(q + 26, p["iseq"], 2, mask=qe)
    put(l4o + l4, p["nonce"], 8, mask=plen >= 8)
    return buf, offs


def write_pcap(path: str, p: Packets, *, ns: bool = False, chunk: int = 1 << 20) -> int:
    """Write ``p`` (in the order given) as an Ethernet pcap; ``ns``: nanosecond timestamps.
    Written ``chunk`` packets at a time (bounded memory). Returns the bytes written."""
    n = len(p["t"])
    size = 24
    with open(path, "wb") as fh:
        fh.write(file_header(ns))
        for a in range(0, n, chunk):
            buf, _ = records(take(p, slice(a, a + chunk)), ns)
            buf.tofile(fh)
            size += len(buf)
    return size
