"""The vectorised fast path: the common fixed header layouts, a column at a time.

It claims a row only when the row has one of these layouts, fully captured:
link Ethernet (at most one 802.1Q tag), Linux SLL / SLL2, raw IP (101, 12, 14, 228,
229); IPv4 without options and not fragmented, or IPv6 without extension headers;
TCP with no options, NOP,NOP,TS, NOP,NOP,SACK(1), NOP,NOP,TS,NOP,NOP,SACK(1), MSS,
the Linux SYN (MSS,SACKOK,TS,NOP,WS) or the Windows SYN (MSS,NOP,WS,NOP,NOP,SACKOK);
UDP; ICMP / ICMPv6 echo. Everything else goes to the reference decoder (``decode``),
and a test proves that on the rows claimed here both give identical fields.

How the bytes are fetched (measured here, 1M rows x 100 bytes from a 200 MB buffer):
indexing a byte-strided array of 100-byte void items (``_windows``) copies rows in
0.04 s; a sliding-window 2D view 0.09-0.13 s; fancy indexing with an offset matrix
0.38-0.47 s; ``np.take`` along the window axis 20 s.
"""

from __future__ import annotations

import numpy as np

from rig.capture.decode import optsig_add
from rig.capture.table import PAYLOAD_HASH_BYTES, Undecoded

CHUNK = 1 << 18  # rows per pass: bounds the temporaries (~60 MB)
M64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _sig(*kinds: int) -> int:
    s = 0
    for k in kinds:
        s = optsig_add(s, k)
    return s


SIG_NNT = _sig(1, 1, 8)
SIG_NNS = _sig(1, 1, 5)
SIG_NNTNNS = _sig(1, 1, 8, 1, 1, 5)
SIG_MSS = _sig(2)
SIG_LINUX_SYN = _sig(2, 4, 8, 1, 3)
SIG_WIN_SYN = _sig(2, 1, 3, 1, 1, 4)


def _windows(arr: np.ndarray, offs: np.ndarray, width: int) -> np.ndarray:
    """``width`` bytes at each offset as a (n, width) u1 array; bytes past the end are 0."""
    n = len(offs)
    out = np.zeros((n, width), np.uint8)
    size = len(arr)
    if size >= width:
        ok = offs <= size - width
        v = np.ndarray(shape=(size - width + 1,), dtype=f"V{width}", buffer=arr, offset=0, strides=(1,))
        out[ok] = v[offs[ok]].view(np.uint8).reshape(-1, width)
    else:
        ok = np.zeros(n, bool)
    if not ok.all():  # near the end of the file: from a zero-padded copy of the tail
        start = max(0, size - width)
        tail = np.zeros(2 * width, np.uint8)
        tail[: size - start] = arr[start:]
        for i in np.flatnonzero(~ok):
            o = int(offs[i]) - start
            if 0 <= o < width:
                out[i] = tail[o : o + width]
    return out


def _be16(w: np.ndarray, i: int) -> np.ndarray:
    return (w[:, i].astype(np.int64) << 8) | w[:, i + 1]


def _be32(w: np.ndarray, i: int) -> np.ndarray:
    return (w[:, i].astype(np.int64) << 24) | (w[:, i + 1].astype(np.int64) << 16) | (w[:, i + 2].astype(np.int64) << 8) | w[:, i + 3]


def _match(w: np.ndarray, start: int, pattern: dict[int, int]) -> np.ndarray:
    """Rows whose bytes at ``start + k`` equal ``pattern[k]`` for every k."""
    m = np.ones(len(w), bool)
    for k, v in pattern.items():
        m &= w[:, start + k] == v
    return m


def payload_hashes(arr: np.ndarray, poff: np.ndarray, n: np.ndarray) -> np.ndarray:
    """``table.payload_hash`` of ``n`` bytes at each ``poff``, vectorised (0 where n == 0)."""
    h = np.zeros(len(poff), np.uint64)
    has = n > 0
    if not has.any():
        return h
    w = _windows(arr, poff[has], PAYLOAD_HASH_BYTES)
    keep = np.arange(PAYLOAD_HASH_BYTES)[None, :] < n[has][:, None]
    w &= keep.astype(np.uint8) * np.uint8(0xFF)
    words = w.view("<u8")
    x = np.uint64(0x9E3779B97F4A7C15) ^ n[has].astype(np.uint64)
    k = np.uint64(0xBF58476D1CE4E5B9)
    s31 = np.uint64(31)
    with np.errstate(over="ignore"):
        for j in range(words.shape[1]):
            x = (x ^ words[:, j]) * k
            x ^= x >> s31
    x[x == 0] = 1
    h[has] = x
    return h


def decode_into(table: np.ndarray, buf, recs, todo: np.ndarray) -> np.ndarray:
    """Decode the rows of ``todo`` that have a fast layout into ``table``; return them."""
    claimed = np.zeros(len(table), bool)
    if not len(buf):
        return claimed
    arr = np.frombuffer(buf, dtype=np.uint8)
    lt_all = recs.linktype
    cand = np.flatnonzero(todo & np.isin(lt_all, (1, 12, 14, 101, 113, 228, 229, 276)))
    for s in range(0, len(cand), CHUNK):
        idx = cand[s : s + CHUNK]
        got = _chunk(table, arr, idx, recs.data_off[idx], recs.caplen[idx], recs.wirelen[idx], lt_all[idx])
        claimed[idx[got]] = True
    return claimed


def _chunk(table, arr, idx, off, caplen, wirelen, lt) -> np.ndarray:
    n = len(idx)
    # ---- link layer: where IP starts, and which version the link announces
    g1 = _windows(arr, off, 20)
    et_eth = _be16(g1, 12)
    vl = (lt == 1) & (et_eth == 0x8100)
    et = np.where(vl, _be16(g1, 16), et_eth)
    l3 = np.where(vl, 18, 14)
    vlan = np.where(vl, _be16(g1, 14) & 0x0FFF, 0)
    sll = lt == 113
    et = np.where(sll, _be16(g1, 14), et)
    l3 = np.where(sll, 16, l3)
    sll2 = lt == 276
    et = np.where(sll2, _be16(g1, 0), et)
    l3 = np.where(sll2, 20, l3)
    raw = (lt == 12) | (lt == 14) | (lt == 101)
    ver0 = g1[:, 0] >> 4
    et = np.where(raw & (ver0 == 4), 0x0800, np.where(raw & (ver0 == 6), 0x86DD, et))
    et = np.where(lt == 228, np.where(ver0 == 4, 0x0800, 0), et)
    et = np.where(lt == 229, np.where(ver0 == 6, 0x86DD, 0), et)
    l3 = np.where(raw | (lt == 228) | (lt == 229), 0, l3)
    ok = (et == 0x0800) | (et == 0x86DD)  # header lengths are checked below

    # ---- IP header
    g2 = _windows(arr, off + l3, 40)
    is4 = (et == 0x0800) & (g2[:, 0] == 0x45)
    is6 = (et == 0x86DD) & ((g2[:, 0] >> 4) == 6)
    fl = _be16(g2, 6)
    is4 &= (fl & 0x3FFF) == 0  # not a fragment (DF allowed)
    tl4 = _be16(g2, 2)
    wire_ip = np.maximum(wirelen - l3, 0)
    tl4 = np.where(tl4 == 0, wire_ip, tl4)
    pl6 = _be16(g2, 4)
    pl6 = np.where(pl6 == 0, np.maximum(wire_ip - 40, 0), pl6)
    tl = np.where(is4, tl4, 40 + pl6)
    iphl = np.where(is4, 20, 40)
    proto = np.where(is4, g2[:, 9], g2[:, 6]).astype(np.int64)
    l4 = l3 + iphl
    ipend = l3 + tl
    room = tl - iphl  # L4 bytes by the IP header
    is_tcp = proto == 6
    is_udp = proto == 17
    is_icmp = (is4 & (proto == 1)) | (is6 & (proto == 58))
    ok &= (is4 | is6) & (is_tcp | is_udp | is_icmp)

    # ---- L4 header
    g3 = _windows(arr, off + l4, 44)
    doff = (g3[:, 12] >> 4).astype(np.int64) * 4
    hdr = np.where(is_tcp, doff, 8)
    ok &= (caplen >= l4 + hdr) & (room >= hdr)
    # TCP option layouts
    o = 20
    none_ = doff == 20
    nnt = (doff == 32) & _match(g3, o, {0: 1, 1: 1, 2: 8, 3: 10})
    nns = (doff == 32) & _match(g3, o, {0: 1, 1: 1, 2: 5, 3: 10})
    nntnns = (doff == 44) & _match(g3, o, {0: 1, 1: 1, 2: 8, 3: 10, 12: 1, 13: 1, 14: 5, 15: 10})
    mss_only = (doff == 24) & _match(g3, o, {0: 2, 1: 4})
    lsyn = (doff == 40) & _match(g3, o, {0: 2, 1: 4, 4: 4, 5: 2, 6: 8, 7: 10, 16: 1, 17: 3, 18: 3})
    wsyn = (doff == 32) & _match(g3, o, {0: 2, 1: 4, 4: 1, 5: 3, 6: 3, 8: 1, 9: 1, 10: 4, 11: 2})
    tcp_ok = none_ | nnt | nns | nntnns | mss_only | lsyn | wsyn
    is_icmp_echo = np.where(is4, np.isin(g3[:, 0], (0, 8)), np.isin(g3[:, 0], (128, 129)))
    ok &= np.where(is_tcp, tcp_ok, np.where(is_icmp, is_icmp_echo, is_udp))

    sel = np.flatnonzero(ok)
    if not len(sel):
        return ok
    rows = idx[sel]
    g2s, g3s = g2[sel], g3[sel]
    s4, tcp, udp, icmp = is4[sel], is_tcp[sel], is_udp[sel], is_icmp[sel]

    t = table
    t["vlan"][rows] = vlan[sel]
    t["ipver"][rows] = np.where(s4, 4, 6)
    src = np.zeros((len(sel), 16), np.uint8)
    dst = np.zeros((len(sel), 16), np.uint8)
    src[s4, 10:12] = 0xFF
    dst[s4, 10:12] = 0xFF
    src[s4, 12:16] = g2s[s4, 12:16]
    dst[s4, 12:16] = g2s[s4, 16:20]
    src[~s4] = g2s[~s4, 8:24]
    dst[~s4] = g2s[~s4, 24:40]
    t["src"][rows] = src
    t["dst"][rows] = dst
    t["ttl"][rows] = np.where(s4, g2s[:, 8], g2s[:, 7])
    t["tos"][rows] = np.where(s4, g2s[:, 1], ((g2s[:, 0] & 0x0F) << 4) | (g2s[:, 1] >> 4))
    t["ip_id"][rows] = np.where(s4, _be16(g2s, 4), 0)
    t["ip_len"][rows] = tl[sel]
    t["df"][rows] = np.where(s4, (fl[sel] >> 14) & 1, 0)
    t["proto"][rows] = proto[sel]
    t["sport"][rows] = np.where(icmp, 0, _be16(g3s, 0))
    t["dport"][rows] = np.where(icmp, 0, _be16(g3s, 2))

    tr = rows[tcp]
    g = g3s[tcp]
    t["seq"][tr] = _be32(g, 4)
    t["ack"][tr] = _be32(g, 8)
    t["flags"][tr] = ((g[:, 12].astype(np.int64) & 1) << 8) | g[:, 13]
    t["win"][tr] = _be16(g, 14)
    kinds = {
        "nnt": nnt[sel][tcp], "nns": nns[sel][tcp], "nntnns": nntnns[sel][tcp],
        "mss": mss_only[sel][tcp], "lsyn": lsyn[sel][tcp], "wsyn": wsyn[sel][tcp],
    }
    has_mss = kinds["mss"] | kinds["lsyn"] | kinds["wsyn"]
    t["mss"][tr] = np.where(has_mss, _be16(g, 22), 0)
    ws = np.where(kinds["lsyn"], g[:, 39].astype(np.int64), np.where(kinds["wsyn"], g[:, 27].astype(np.int64), -1))
    t["wscale"][tr] = np.where(ws > 127, 127, ws)
    t["sackok"][tr] = kinds["lsyn"] | kinds["wsyn"]
    ts_at = np.where(kinds["lsyn"], 28, 24)
    has_ts = kinds["nnt"] | kinds["nntnns"] | kinds["lsyn"]
    t["has_ts"][tr] = has_ts
    rr = np.arange(len(g))
    tsval = (g[rr, ts_at].astype(np.int64) << 24) | (g[rr, ts_at + 1].astype(np.int64) << 16) | (g[rr, ts_at + 2].astype(np.int64) << 8) | g[rr, ts_at + 3]
    tsecr = (g[rr, ts_at + 4].astype(np.int64) << 24) | (g[rr, ts_at + 5].astype(np.int64) << 16) | (g[rr, ts_at + 6].astype(np.int64) << 8) | g[rr, ts_at + 7]
    t["tsval"][tr] = np.where(has_ts, tsval, 0)
    t["tsecr"][tr] = np.where(has_ts, tsecr, 0)
    sig = np.zeros(len(g), np.uint64)
    for name, value in (("nnt", SIG_NNT), ("nns", SIG_NNS), ("nntnns", SIG_NNTNNS), ("mss", SIG_MSS),
                        ("lsyn", SIG_LINUX_SYN), ("wsyn", SIG_WIN_SYN)):
        sig[kinds[name]] = np.uint64(value)
    t["optsig"][tr] = sig

    ir = rows[icmp]
    gi = g3s[icmp]
    t["icmp_type"][ir] = gi[:, 0]
    t["icmp_code"][ir] = gi[:, 1]
    t["icmp_id"][ir] = _be16(gi, 4)
    t["icmp_seq"][ir] = _be16(gi, 6)

    # ---- payload
    pstart = l4[sel] + hdr[sel]
    plen = ipend[sel] - pstart
    have = np.maximum(np.minimum(ipend[sel], caplen[sel]) - pstart, 0)
    poff = np.where(have > 0, off[sel] + pstart, 0)
    t["plen"][rows] = plen
    t["pcaplen"][rows] = have
    t["poff"][rows] = poff
    t["phash"][rows] = payload_hashes(arr, poff, have)
    t["status"][rows] = np.where(have < plen, Undecoded.TRUNCATED_PAYLOAD, Undecoded.OK)
    return ok
