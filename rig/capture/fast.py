"""The vectorised fast path: the common fixed header layouts, a column at a time.

It claims a row only when the row has one of these layouts, fully captured:
link Ethernet (at most one 802.1Q tag), Linux SLL / SLL2, raw IP (101, 12, 14, 228,
229); IPv4 without options (a first fragment as any packet, a later one with its IP
header alone), or IPv6 without extension headers; TCP with no options, NOP,NOP,TS,
NOP,NOP,SACK(1), NOP,NOP,TS,NOP,NOP,SACK(1), MSS, the Linux SYN (MSS,SACKOK,TS,NOP,WS)
or the Windows SYN (MSS,NOP,WS,NOP,NOP,SACKOK); UDP; ICMP / ICMPv6 of any type, the
errors with what they quote (``_quotes``: an IPv4 header with or without options, or
an IPv6 header not followed by an extension header, cut anywhere). Everything else
goes to the reference decoder (``decode``), and a test proves that on the rows
claimed here both give identical fields and identical ``Capture.quoted`` records.

Why ICMP errors are read here (measured with the whole ``rig diff``, a 5,000-packet
client capture against its server's with 1M unrelated packets merged in, ~10K of them
port unreachables: ``bench/diff.py --busy 1000000``): left to the reference decoder
they cost 0.39 s of 1.5 s CPU (10K ``decode_packet`` calls), and because nearly every
8K-row chunk then held one, nearly every chunk took the slower path below for rows
that are not one slice (rows gathered, filled, written back: ``_chunk`` 0.53 s of own
time in a profile, 0.22 s once no row is left over). Read here, ``_quotes`` takes
0.03-0.06 s for the 10K, and the whole command 0.9-1.0 s CPU instead of 1.55-1.6 s
(best of 3-5, alternated with the tree before); the symmetric 1M-packet pair, with no
errors, is unchanged (3.88 vs 3.90 s).

How the bytes are fetched (measured here, 1M rows x 100 bytes from a 200 MB buffer):
indexing a byte-strided array of 100-byte void items (``container.windows``) copies
rows in 0.04 s; a sliding-window 2D view 0.09-0.13 s; fancy indexing with an offset
matrix 0.38-0.47 s; ``np.take`` along the window axis 20 s. Rows are processed in
chunks of 8K so the temporaries and the table rows being written stay in cache
(measured CPU per 100K rows: 0.12 s at 8K, 0.16 s at 64K-256K); the file's pages
behind the current chunk are released as it goes. Multi-byte fields are read through
big-endian u16/u32 views of the header windows (each field used is aligned there).

Where it was built (``pip install -e .``; optional), ``_fast.rows`` (_fast.c) does what
``_chunk`` does, a row at a time: the same claims and values bit for bit (the tests
compare both on the corpus and generated captures); the addresses are still numbered
here, in the same order. Measured on the 1M-record busy server capture of
``bench/diff.py --busy 1000000``: decoding every row 0.19 s vs 0.28 s (less the address
numbering, the same in both), the C loop 0.09 s (0.15 s without fetching the next rows'
bytes ahead); the whole ``rig diff`` 0.66 s vs 0.92 s with the compiled walk too,
alternated in one run (``--repeat 3 --base pure``). ``RIG_PURE_READER=1`` keeps the
numpy code.
"""

from __future__ import annotations

import numpy as np

from rig.capture.container import pure_reader
from rig.capture.container import windows as _windows
from rig.capture.decode import ICMP4_ERRORS, ICMP6_ERRORS, V6_EXT, optsig_add
from rig.capture.table import FRAG_LATER, FRAG_MF, PACKET_DTYPE, PAYLOAD_HASH_BYTES, QUOTED_DTYPE, Undecoded

CHUNK = 1 << 13  # rows per pass (see the docstring)

try:
    from rig.capture import _fast  # the compiled decode: optional (see _fast.c)
except ImportError:
    _fast = None  # type: ignore[assignment]


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
SIG_BY_LAYOUT = np.zeros(64, np.uint64)  # optsig by the one bit set for a fast TCP layout
SIG_BY_LAYOUT[[1, 2, 4, 8, 16, 32]] = [SIG_NNT, SIG_NNS, SIG_NNTNNS, SIG_MSS, SIG_LINUX_SYN, SIG_WIN_SYN]


# MASK[v]: the bytes of a hash window that hold a v-byte payload
MASK = np.where(np.arange(PAYLOAD_HASH_BYTES) < np.arange(PAYLOAD_HASH_BYTES)[:, None], 0xFF, 0).astype(np.uint8)


def payload_hashes(arr: np.ndarray, poff: np.ndarray, n: np.ndarray) -> np.ndarray:
    """``table.payload_hash`` of ``n`` bytes at each ``poff``, vectorised (0 where n == 0).

    Measured per 1M rows (half with a payload, 40% of those shorter than the window):
    the bytes past a short payload are cleared by one AND with a row of ``MASK`` on the
    short rows only, and the mixing runs in place: 0.068 s vs 0.118 s with a mask built
    from the lengths in each of the 8 rounds (same run, 1M-packet bench capture)."""
    has = np.flatnonzero(n > 0)
    h = np.zeros(len(poff), np.uint64)
    if not len(has):
        return h
    w = _windows(arr, poff[has], PAYLOAD_HASH_BYTES)
    nb = n[has]
    short = np.flatnonzero(nb < PAYLOAD_HASH_BYTES)
    if len(short):  # zero the bytes past the payload (the window reads on into the file)
        w[short] &= MASK[nb[short]]
    words = w.view("<u8")
    x = nb.astype(np.uint64)
    x ^= np.uint64(0x9E3779B97F4A7C15)
    k = np.uint64(0xBF58476D1CE4E5B9)
    s31 = np.uint64(31)
    tmp = np.empty_like(x)
    with np.errstate(over="ignore"):
        for j in range(words.shape[1]):
            x ^= words[:, j]
            x *= k
            np.right_shift(x, s31, out=tmp)
            x ^= tmp
    x[x == 0] = 1
    h[has] = x
    return h


# lookups by ICMP type, per family: an echo, an error (as ``decode._icmp`` tells them)
ECHO4, ECHO6, ERR4, ERR6 = (np.zeros(256, bool) for _ in range(4))
ECHO4[[0, 8]] = True
ECHO6[[128, 129]] = True
ERR4[sorted(ICMP4_ERRORS)] = True
ERR6[sorted(ICMP6_ERRORS)] = True
V6_NEXT = np.zeros(256, bool)  # a quoted IPv6 header followed by an extension or fragment header
V6_NEXT[sorted(V6_EXT | {44})] = True
NO_QUOTES = np.zeros(0, QUOTED_DTYPE)

FAST_LINKTYPE = np.zeros(1 << 16, bool)  # lookup: link types the fast path reads
FAST_LINKTYPE[[1, 12, 14, 101, 113, 228, 229, 276]] = True


def decode_rows(t: np.ndarray, arr: np.ndarray, recs, a: int, b: int, book) -> tuple[np.ndarray, np.ndarray]:
    """Decode records ``a:b`` into ``t`` (the table rows ``a:b``) where they have a fast
    layout and a 0 status; return which rows (of ``t``) were claimed, and the
    ``QUOTED_DTYPE`` records of the ICMP errors among them (``row``: ``a`` + their row
    in ``t``, ascending), as ``decode.fill_rows`` returns its own. The rows of ``t``
    arrive as ``_read`` leaves them: zero, but for icmp_type and wscale -1 and the record's
    own fields (frame, ts, lengths, ...); fields that do not apply to a row are left so.
    ``book`` (``addresses.AddressBook``) numbers the addresses for ``src_i`` / ``dst_i``."""
    claimed = np.zeros(b - a, bool)
    if not len(arr):
        return claimed, NO_QUOTES
    lt = recs.linktype[a:b]
    cand = (t["status"] == 0) & FAST_LINKTYPE[lt]  # (lt -1, unknown interface: the last entry, False)
    pick: slice | np.ndarray
    if cand.all():  # (the common case: slices instead of gathers)
        idx, pick = np.arange(b - a), slice(a, b)
    else:
        idx = np.flatnonzero(cand)
        if not len(idx):
            return claimed, NO_QUOTES
        pick = idx + a
    chunk = _chunk_c if _fast is not None and not pure_reader() and t.flags.c_contiguous else _chunk
    got, quoted = chunk(t, arr, idx, recs.data_off[pick].astype(np.int64, copy=False),
                        recs.caplen[pick].astype(np.int64), recs.wirelen[pick].astype(np.int64), recs.linktype[pick],
                        book)
    claimed[idx[got]] = True
    quoted["row"] += a
    return claimed, quoted


def merge_quoted(parts: list[np.ndarray]) -> np.ndarray:
    """One ``Capture.quoted`` table from the records both decoders found (each row's
    record comes from the one decoder that claimed it), sorted by row."""
    parts = [q for q in parts if len(q)]
    if not parts:
        return NO_QUOTES.copy()
    q = np.concatenate(parts)
    return q[np.argsort(q["row"], kind="stable")]


def _chunk(table, arr, idx, off, caplen, wirelen, lt, book) -> tuple[np.ndarray, np.ndarray]:
    n = len(idx)
    # ---- link layer: where IP starts, and which ethertype the link announces
    g1 = _windows(arr, off, 20)
    w1 = g1.view(">u2")
    l3: int | np.ndarray
    if lt[0] == 1 and (lt == 1).all() and not (w1[:, 6] == 0x8100).any():
        # untagged Ethernet only (the common case): one link header length for all rows
        et, l3, vlan = w1[:, 6], 14, None
    else:
        eth = lt == 1
        vl = eth & (w1[:, 6] == 0x8100)
        sll, sll2 = lt == 113, lt == 276
        ver0 = g1[:, 0] >> 4
        raw_et = np.where(ver0 == 4, 0x0800, np.where(ver0 == 6, 0x86DD, 0))
        raw_et = np.where((lt == 228) & (ver0 != 4), 0, np.where((lt == 229) & (ver0 != 6), 0, raw_et))
        et = np.select([vl, eth, sll, sll2], [w1[:, 8], w1[:, 6], w1[:, 7], w1[:, 0]], raw_et)
        l3 = np.select([vl, eth, sll, sll2], [18, 14, 16, 20], 0)
        vlan = np.where(vl, w1[:, 7] & 0x0FFF, 0)
    ok = (et == 0x0800) | (et == 0x86DD)  # header lengths are checked below

    # ---- IP header
    g2 = _windows(arr, off + l3, 40)
    w2 = g2.view(">u2")
    is4 = (et == 0x0800) & (g2[:, 0] == 0x45)  # no options
    later = is4 & ((w2[:, 3] & 0x1FFF) != 0)  # a later fragment: no L4 header
    first = is4 & ((w2[:, 3] & 0x2000) != 0) & ~later  # a first fragment: L4 as usual, payload cut short
    is6 = (et == 0x86DD) & ((g2[:, 0] >> 4) == 6)
    wire_ip = np.maximum(wirelen - l3, 0)
    tl4 = w2[:, 1].astype(np.int64)
    tl4 = np.where(tl4 == 0, wire_ip, tl4)  # TSO: length 0, take it from the wire
    pl6 = w2[:, 2].astype(np.int64)
    pl6 = np.where(pl6 == 0, np.maximum(wire_ip - 40, 0), pl6)
    tl = np.where(is4, tl4, 40 + pl6)
    iphl = np.where(is4, 20, 40)
    proto = np.where(is4, g2[:, 9], g2[:, 6])
    l4 = l3 + iphl
    ipend = l3 + tl
    room = tl - iphl  # L4 bytes by the IP header
    is_tcp = (proto == 6) & ~later
    is_udp = (proto == 17) & ~later
    is_icmp = ((is4 & (proto == 1)) | (is6 & (proto == 58))) & ~later
    # a later fragment is claimed with its IP header alone, as ``decode._ipv4`` leaves it
    ok_later = ok & later & (tl >= 20) & (tl <= wire_ip) & (caplen >= l3 + 20)
    ok &= (is4 | is6) & (is_tcp | is_udp | is_icmp) & (tl <= wire_ip)

    # ---- L4 header
    g3 = _windows(arr, off + l4, 44)
    doff = (g3[:, 12] >> 4).astype(np.int64) * 4
    hdr = np.where(is_tcp, doff, 8)
    ok &= (caplen >= l4 + hdr) & (room >= hdr)
    # TCP option layouts, compared as big-endian words of the option bytes (at byte 20)
    o16, o32 = g3.view(">u2"), g3.view(">u4")
    nnt = (doff == 32) & (o32[:, 5] == 0x0101080A)
    nns = (doff == 32) & (o32[:, 5] == 0x0101050A)
    nntnns = (doff == 44) & (o32[:, 5] == 0x0101080A) & (o32[:, 8] == 0x0101050A)
    mss_only = (doff == 24) & (o16[:, 10] == 0x0204)
    lsyn = ((doff == 40) & (o16[:, 10] == 0x0204) & (o32[:, 6] == 0x0402080A)
            & ((o32[:, 9] & 0xFFFFFF00) == 0x01030300))
    wsyn = ((doff == 32) & (o16[:, 10] == 0x0204) & ((o32[:, 6] & 0xFFFFFF00) == 0x01030300)
            & (o32[:, 7] == 0x01010402))
    tcp_ok = (doff == 20) | nnt | nns | nntnns | mss_only | lsyn | wsyn
    ok &= np.where(is_tcp, tcp_ok, is_udp | is_icmp)
    # ICMP: echo, errors or any other type, told apart on the ICMP rows only (fewer
    # passes over the chunk). An error's quoted packet is read here too (``_quotes``),
    # but for an IPv6 quote with extension headers, left to the reference decoder.
    ic = np.flatnonzero(ok & is_icmp)
    is_icmp_echo = np.zeros(n, bool)
    err = ic
    if len(ic):
        t0, i4 = g3[ic, 0], is4[ic]
        is_icmp_echo[ic] = np.where(i4, ECHO4[t0], ECHO6[t0])
        err = ic[np.where(i4, ERR4[t0], ERR6[t0])]
    if len(err):
        e_hdr = g3[err, :8]
        e_qoff = off[err] + l4[err] + 8
        e_claim, e_has, e_rec = _quotes(arr, e_hdr, is4[err], e_qoff, np.minimum(ipend[err], caplen[err]) - l4[err] - 8)
        ok[err[~e_claim]] = False
        keep = e_claim & e_has
        quoted = e_rec[keep]
        quoted["row"] = idx[err[keep]]
    else:
        quoted = NO_QUOTES
    ok |= ok_later

    sel: slice | np.ndarray
    if ok.all():  # the common case: no copies, the table's rows written in place
        sel = slice(None)
        rows = slice(int(idx[0]), int(idx[-1]) + 1) if idx[-1] - idx[0] + 1 == n else idx
    else:
        kept = np.flatnonzero(ok)
        if not len(kept):
            return ok, quoted
        sel, rows = kept, idx[kept]
    # The rows arrive as ``_read`` leaves them: zero, icmp_type and wscale -1. So a field
    # that applies to some rows only is written there only (np.copyto ``where=``), straight
    # into the table: 18 us per 8K rows vs 24 us for np.where into a temporary and a copy.
    # Rows that are not a slice are copied out, filled, and written back whole.
    view = table[rows]
    g2s, g3s = g2[sel], g3[sel]
    s4, tcp, icmp, lat, echo = is4[sel], is_tcp[sel], is_icmp[sel], later[sel], is_icmp_echo[sel]
    not_icmp = ~icmp & ~lat
    # big-endian views of the header windows: every field used is aligned in them
    ip16 = g2s.view(">u2")
    l16, l32 = g3s.view(">u2"), g3s.view(">u4")

    names = table.dtype.names  # a lean table has no DETAIL_FIELDS: those are not written

    def put(name, values, where=None):
        if name not in names:
            return
        if where is None:
            view[name] = values
        else:
            np.copyto(view[name], values, where=where, casting="unsafe")

    if vlan is not None:
        put("vlan", vlan[sel])
    put("ipver", np.where(s4, np.uint8(4), np.uint8(6)))
    # addresses as two little-endian u64 words each: IPv6 as it is, IPv4 as ::ffff:a.b.c.d,
    # written through a u64 view of the table's 16 bytes (128 us per 8K rows, vs 248 us
    # copying a temporary byte by byte, 480-550 us with u32 words or np.copyto where=)
    ip64, ip32le = g2s.view("<u8"), g2s.view("<u4")
    for name, c6, c4 in (("src", 1, 3), ("dst", 3, 4)):
        w0 = np.where(s4, np.uint64(0), ip64[:, c6])
        w1 = np.where(s4, (ip32le[:, c4].astype(np.uint64) << np.uint64(32)) | np.uint64(0xFFFF0000), ip64[:, c6 + 1])
        view[name + "_i"] = book.index_words(w0, w1)
        if name in names:
            a = view[name].view("<u8")
            a[:, 0] = w0
            a[:, 1] = w1
    put("ttl", np.where(s4, g2s[:, 8], g2s[:, 7]))
    put("tos", np.where(s4, g2s[:, 1], ((g2s[:, 0] & 0x0F) << 4) | (g2s[:, 1] >> 4)))
    put("ip_id", ip16[:, 2], s4)
    put("ip_len", tl[sel])
    put("df", (ip16[:, 3] >> 14) & 1, s4)
    put("proto", proto[sel])
    if later.any() or first.any():
        put("frag", np.where(s4 & ((ip16[:, 3] & 0x2000) != 0), FRAG_MF, 0) | np.where(lat, FRAG_LATER, 0))
    put("sport", l16[:, 0], not_icmp)
    put("dport", l16[:, 1], not_icmp)

    put("seq", l32[:, 1], tcp)
    put("ack", l32[:, 2], tcp)
    put("flags", l16[:, 6] & 0x01FF, tcp)
    put("win", l16[:, 7], tcp)
    k_nnt, k_nns, k_nntnns = nnt[sel] & tcp, nns[sel] & tcp, nntnns[sel] & tcp
    k_mss, k_lsyn, k_wsyn = mss_only[sel] & tcp, lsyn[sel] & tcp, wsyn[sel] & tcp
    syn_opts = k_lsyn | k_wsyn
    put("mss", l16[:, 11], k_mss | syn_opts)
    # window scale at byte 39 (Linux SYN) or 27 (Windows SYN); shift counts > 127 (never
    # valid) are stored as 127
    put("wscale", np.minimum(g3s[:, 39], 127), k_lsyn)
    put("wscale", np.minimum(g3s[:, 27], 127), k_wsyn)
    put("sackok", syn_opts)
    has_ts = k_nnt | k_nntnns
    put("has_ts", has_ts | k_lsyn)
    # timestamps: at byte 24 (NOP,NOP,TS...) or 28 (Linux SYN) -> u32 columns 6/7 or 7/8
    put("tsval", l32[:, 6], has_ts)
    put("tsecr", l32[:, 7], has_ts)
    put("tsval", l32[:, 7], k_lsyn)
    put("tsecr", l32[:, 8], k_lsyn)
    if "optsig" in names:
        # the layouts are exclusive: one bit each, then one lookup (vs six masked writes)
        layout = k_nnt.view(np.uint8) | (k_nns.view(np.uint8) << 1) | (k_nntnns.view(np.uint8) << 2)
        layout |= (k_mss.view(np.uint8) << 3) | (k_lsyn.view(np.uint8) << 4) | (k_wsyn.view(np.uint8) << 5)
        put("optsig", SIG_BY_LAYOUT[layout])

    put("icmp_type", g3s[:, 0], icmp)
    put("icmp_code", g3s[:, 1], icmp)
    put("icmp_id", l16[:, 2], echo)
    put("icmp_seq", l16[:, 3], echo)

    # ---- payload
    pstart = l4[sel] + hdr[sel]
    end = ipend[sel]
    plen = np.where(lat, 0, end - pstart)
    have = np.where(lat, 0, np.maximum(np.minimum(end, caplen[sel]) - pstart, 0))
    poff = np.where(have > 0, off[sel] + pstart, 0)
    put("plen", plen)
    put("pcaplen", have)
    put("poff", poff)
    hashed = have
    f_udp = first[sel] & (proto[sel] == 17) & (have >= PAYLOAD_HASH_BYTES)
    if f_udp.any():  # a first fragment hashes as the datagram it starts (``decode._l4``): its UDP length
        ulen = l16[:, 2].astype(np.int64) - 8
        hashed = np.where(f_udp & (ulen > PAYLOAD_HASH_BYTES), ulen, have)
    put("phash", payload_hashes(arr, poff, hashed))
    put("status", Undecoded.TRUNCATED_PAYLOAD, have < plen)
    put("status", Undecoded.FRAGMENT, lat)
    if not isinstance(rows, slice):
        table[rows] = view
    return ok, quoted


# the fields _fast.c writes, in its order (F_*), and QUOTED_DTYPE's (Q_*)
C_FIELDS = ("vlan", "ipver", "src", "dst", "src_i", "dst_i", "ttl", "tos", "ip_id", "ip_len", "df", "proto", "frag",
            "sport", "dport", "seq", "ack", "flags", "win", "mss", "wscale", "sackok", "has_ts", "tsval", "tsecr",
            "optsig", "icmp_type", "icmp_code", "icmp_id", "icmp_seq", "plen", "pcaplen", "poff", "phash", "status")
C_QUOTED_FIELDS = ("row", "icmp_mtu", "q_proto", "q_src", "q_dst", "q_sport", "q_dport", "q_seq", "q_ip_id")
LUTS = np.concatenate([ECHO4, ECHO6, ERR4, ERR6, V6_NEXT]).astype(np.uint8)
_c_offsets: dict[np.dtype, np.ndarray] = {}


def _offsets(dtype: np.dtype, names: tuple[str, ...]) -> np.ndarray:
    """The byte offsets of ``names`` in a row of ``dtype`` (-1: not in it)."""
    fields = dict(dtype.fields or {})
    return np.array([fields[n][1] if n in fields else -1 for n in names], np.int64)


_C_QUOTED_OFFSETS = _offsets(QUOTED_DTYPE, C_QUOTED_FIELDS)


def _field_offsets(dtype: np.dtype) -> np.ndarray:
    """The byte offsets of C_FIELDS in a row of ``dtype`` (a packet table's, lean or not)."""
    got = _c_offsets.get(dtype)
    if got is None:
        for name in C_FIELDS:
            if name in (dtype.names or ()) and dtype[name] != PACKET_DTYPE[name]:
                raise TypeError(f"{name}: {dtype[name]}, not {PACKET_DTYPE[name]}")
        got = _c_offsets[dtype] = _offsets(dtype, C_FIELDS)
    return got


def _chunk_c(table, arr, idx, off, caplen, wirelen, lt, book) -> tuple[np.ndarray, np.ndarray]:
    """``_chunk``, compiled (_fast.c): the same claims, fields and quoted records."""
    n = len(idx)
    claimed = np.zeros(n, np.uint8)
    words = np.empty((4, n), np.uint64)  # of each row: source w0, w1, destination w0, w1
    quoted = np.empty(n, QUOTED_DTYPE)
    nq = _fast.rows(arr, off, caplen, wirelen, lt.astype(np.int64), idx.astype(np.int64, copy=False), table,
                    _field_offsets(table.dtype), LUTS, SIG_BY_LAYOUT, _C_QUOTED_OFFSETS, claimed, words, quoted)
    ok = claimed.view(bool)
    kept = np.flatnonzero(ok)
    if len(kept):  # the addresses numbered as _chunk numbers them: the rows' sources, then their destinations
        rows: slice | np.ndarray = idx[kept]
        if len(kept) == n and idx[-1] - idx[0] + 1 == n:  # (the common case: every row, one slice)
            rows = slice(int(idx[0]), int(idx[-1]) + 1)
        else:
            words = words[:, kept]
        table["src_i"][rows] = book.index_words(words[0], words[1])
        table["dst_i"][rows] = book.index_words(words[2], words[3])
    return ok, quoted[:nq].copy()


def _quotes(arr, hdr, is4, qoff, qlen) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What ICMP error rows are about, as ``decode._icmp`` / ``_quoted`` read it: ``hdr``
    their 8-byte ICMP headers, ``is4`` the outer family, ``qoff`` the file offset of the
    quoted packet, ``qlen`` how many of its bytes the capture holds within the IP length.
    Returns (claim, has, records): ``claim`` the rows read here (not an IPv6 quote with
    extension headers); ``has`` those that get a ``QUOTED_DTYPE`` record (a next-hop MTU,
    or a quoted IP header complete enough to read); ``records`` aligned with the rows."""
    n = len(qoff)
    q = _windows(arr, qoff, 40)  # the quoted IP header (bytes past qlen are another packet's)
    q16 = q.view(">u2")
    ver = q[:, 0] >> 4
    ihl = (q[:, 0] & 0x0F).astype(np.int64) * 4
    v4 = (qlen >= 20) & (ver == 4) & (ihl >= 20)
    v6 = (qlen >= 40) & (ver == 6)
    ext = v6 & V6_NEXT[q[:, 6]]
    h16, h32 = hdr.view(">u2"), hdr.view(">u4")
    mtu4 = is4 & (hdr[:, 0] == 3) & (hdr[:, 1] == 4)  # frag-needed: the next-hop MTU at byte 6
    mtu6 = ~is4 & (hdr[:, 0] == 2)  # packet too big: a 32-bit MTU at byte 4, kept to 16 bits
    rec = np.zeros(n, QUOTED_DTYPE)
    rec["icmp_mtu"] = np.where(mtu4, h16[:, 3], np.where(mtu6, np.minimum(h32[:, 1], 0xFFFF), 0))
    proto = np.where(v4, q[:, 9], np.where(v6, q[:, 6], 0))
    rec["q_proto"] = proto
    rec["q_ip_id"] = np.where(v4, q16[:, 2], 0)
    for name, a4, a6 in (("q_src", 12, 8), ("q_dst", 16, 24)):
        col = rec[name]
        col[v6] = q[v6, a6 : a6 + 16]
        col[v4, 10:12] = 0xFF
        col[v4, 12:] = q[v4, a4 : a4 + 4]
    later = v4 & ((q16[:, 3] & 0x1FFF) != 0)  # a later fragment quoted: no L4 header
    hl = np.where(v4, ihl, 40)
    avail = qlen - hl  # the quoted L4 bytes present
    w = _windows(arr, qoff + hl, 8)
    w16, w32 = w.view(">u2"), w.view(">u4")
    l4 = (v4 & ~later) | (v6 & ~ext)
    ports = l4 & ((proto == 6) | (proto == 17)) & (avail >= 4)
    rec["q_sport"] = np.where(ports, w16[:, 0], 0)
    rec["q_dport"] = np.where(ports, w16[:, 1], 0)
    echo = np.where(v4, (proto == 1) & ((w[:, 0] == 8) | (w[:, 0] == 0)),
                    (proto == 58) & ((w[:, 0] == 128) | (w[:, 0] == 129)))
    rec["q_seq"] = np.where(l4 & ((proto == 6) | echo) & (avail >= 8), w32[:, 1], 0)  # TCP seq, or echo id << 16 | seq
    return ~ext, mtu4 | mtu6 | v4 | v6, rec



def can_scan() -> bool:
    """Whether ``walkscan`` is there (the compiled decode, not ``RIG_PURE_READER``)."""
    return _fast is not None and not pure_reader()


def walkscan(buf, off: int, stop: int, swap: bool, maxcap: int, linktype: int, out: np.ndarray, back: np.ndarray,
             peers: np.ndarray, idx: np.ndarray, offs: np.ndarray, hdrs: np.ndarray, seen: np.ndarray,
             counts: np.ndarray) -> tuple[int, int, bool, int, int]:
    """One segment of a busy pcap walked, and its records that ``focus`` may keep picked
    as they are read, without decoding the others (_fast.c's ``walkscan``: its docstring
    has the rules, which are ``focus._Reader.segment``'s on what ``rows`` claims, and what
    is written where). The scanner of ``container.pcap_segments_scanned``."""
    assert _fast is not None
    return _fast.walkscan(buf, off, stop, swap, maxcap, linktype, LUTS, _C_QUOTED_OFFSETS, out, back, peers,
                          idx, offs, hdrs, seen, counts, np.array([FAST_LINKTYPE[linktype]], np.uint8))
