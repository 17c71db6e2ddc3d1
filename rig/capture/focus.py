"""Read a large capture keeping only what a small capture of the same traffic makes relevant.

A client capture of a few probes against a busy server's capture (a public VM: millions
of packets of other people's traffic and of scanners) is the normal case of ``rig
diff``. The verdict depends on the client's own flows only, so the server capture is
read a segment at a time (``container.pcap_segments``), each segment decoded as
``read_capture`` would, and only its relevant rows kept: memory follows what is kept,
not the file, and the analysis never meets the rest.

What is relevant is decided by what the small capture holds (``Focus``), on the values
a NAT leaves alone (DESIGN.md §4): the ISN and timestamp of each SYN, the server's ISN
of each SYN-ACK, each echo's sequence number and payload, each UDP datagram's payload.
A row of the large capture carrying one of them is an *anchor*; the address it came
from (or went to) is a *peer*: the client as the large capture sees it, after any NAT.
Every row to or from a peer is kept (the client's traffic, and whatever else shares its
public address: scanners reusing its address and ports are exactly what the analysis
must see), and every ICMP error quoting a packet to or from one. So are the first and
the last decodable row of the file (the capture's time window, ``analysis.windows``).
Rows of a peer met before its first anchor are found again by walking the earlier
segments that held its address once more. When nothing anchors (the client's packets
never reached the large capture's point, or every key was rewritten), nothing is
filtered: ``read_focused`` returns None and the caller reads the file whole, since the
analysis then matches on weaker clues (``analysis.match_syn``) that the filter does not
know.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rig.capture import container, decode
from rig.capture import fast as fastpath
from rig.capture.addresses import AddressBook, _key
from rig.capture.table import ACK, PACKET_DTYPE, QUOTED_DTYPE, SYN, Capture, Undecoded, table_dtype
from rig.unique import isin, member, unique

__all__ = ["Focus", "focus_of", "read_focused"]

_TAG = 56  # keys: a kind in the top byte, the value below
_LOW = np.uint64((1 << _TAG) - 1)
_MIX = np.uint64(0x9E3779B97F4A7C15)
K_SYN_ISN, K_SYN_TS, K_SYNACK_ISN, K_ECHO_REQ, K_ECHO_REP, K_UDP = 1, 2, 3, 4, 5, 6


@dataclass(frozen=True)
class Focus:
    """The NAT-invariant keys of a small capture: ``out`` those of packets its initiators
    sent (a large-capture row with one: its source is a peer), ``back`` those of packets
    sent to them (its destination is). Sorted, unique, u64."""

    out: np.ndarray
    back: np.ndarray

    @property
    def empty(self) -> bool:
        return not (len(self.out) or len(self.back))


def _tagged(kind: int, v: np.ndarray) -> np.ndarray:
    return (np.uint64(kind) << np.uint64(_TAG)) | (v.astype(np.uint64) & _LOW)


def _keys(t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(rows, key) of the packets that travel from the initiator, and of those that travel
    back; UDP rows are returned apart (their direction needs the flows: ``focus_of``)."""
    ok = (t["status"] <= Undecoded.TRUNCATED_PAYLOAD) & (t["ipver"] > 0)
    proto, flags = t["proto"], t["flags"].astype(np.int64)
    tcp = ok & (proto == 6)
    syn = tcp & ((flags & (SYN | ACK)) == SYN)
    synack = tcp & ((flags & (SYN | ACK)) == (SYN | ACK))
    its = t["icmp_type"].astype(np.int64)
    echo_req = ok & ((its == 8) | (its == 128)) & (t["phash"] != 0)
    echo_rep = ok & ((its == 0) | (its == 129)) & (t["phash"] != 0)
    with np.errstate(over="ignore"):
        echo = t["phash"] * _MIX ^ t["icmp_seq"].astype(np.uint64)
    ts = syn & (t["has_ts"] != 0) & (t["tsval"] != 0)
    out_rows = [np.flatnonzero(syn), np.flatnonzero(ts), np.flatnonzero(echo_req)]
    out = [_tagged(K_SYN_ISN, t["seq"][out_rows[0]]), _tagged(K_SYN_TS, t["tsval"][out_rows[1]]),
           _tagged(K_ECHO_REQ, echo[out_rows[2]])]
    back_rows = [np.flatnonzero(synack), np.flatnonzero(echo_rep)]
    back = [_tagged(K_SYNACK_ISN, t["seq"][back_rows[0]]), _tagged(K_ECHO_REP, echo[back_rows[1]])]
    udp = ok & (proto == 17) & (t["phash"] != 0)
    return (np.concatenate(out_rows), np.concatenate(out)), (np.concatenate(back_rows), np.concatenate(back)), \
        np.flatnonzero(udp), _tagged(K_UDP, t["phash"][udp])  # type: ignore[return-value]


def focus_of(cap: Capture) -> Focus:
    """The keys of ``cap``'s packets (the small capture of a diff: the client's)."""
    t = cap.packets
    (_, out), (_, back), urows, ukeys = _keys(t)
    # a UDP flow's initiator: the source of its first datagram in this capture
    if len(urows):
        a, b = t["src_i"][urows].astype(np.uint64), t["dst_i"][urows].astype(np.uint64)
        pa, pb = t["sport"][urows].astype(np.uint64), t["dport"][urows].astype(np.uint64)
        fwd = (a << np.uint64(16) | pa) <= (b << np.uint64(16) | pb)
        lo = np.where(fwd, a << np.uint64(16) | pa, b << np.uint64(16) | pb)
        hi = np.where(fwd, b << np.uint64(16) | pb, a << np.uint64(16) | pa)
        flow = np.stack([lo, hi], axis=1)
        _, first, inv = np.unique(flow, axis=0, return_index=True, return_inverse=True)
        initiated = fwd == fwd[first][inv.ravel()]
        out = np.concatenate([out, ukeys[initiated]])
        back = np.concatenate([back, ukeys[~initiated]])
    out, back = unique(out), unique(back)
    both = np.intersect1d(out, back, assume_unique=True)  # a key seen both ways (an echoing service) says nothing of the direction
    if len(both):
        out, back = out[~isin(out, both)], back[~isin(back, both)]
    return Focus(out, back)


def _words_key(a16: np.ndarray) -> np.ndarray:
    """``addresses._key`` of (n, 16) u1 addresses."""
    w = np.ascontiguousarray(a16).view("<u8").reshape(-1, 2)
    return _key(w[:, 0], w[:, 1])


class _Occurrences:
    """What ``fast`` and ``decode`` number addresses with (``AddressBook``'s interface),
    for a segment read focused: each address met gets a number of its own, without
    looking for it among the others. A segment of a busy server's capture meets as many
    distinct addresses as scanners (every SYN from another one): numbering them in an
    ``AddressBook`` cost 3.9 s of 10.4 s on 1M such packets, and only the few rows kept
    are numbered for real (``_renumber``)."""

    def __init__(self) -> None:
        self._parts: list[np.ndarray] = [np.zeros((1, 2), np.uint64)]  # 0: no address
        self._n = 1

    def index_words(self, w0: np.ndarray, w1: np.ndarray) -> np.ndarray:
        self._parts.append(np.stack([w0, w1], axis=1).astype(np.uint64, copy=False))
        self._n += len(w0)
        return np.arange(self._n - len(w0), self._n, dtype=np.uint32)

    def index_bytes(self, b: bytes) -> int:
        self._parts.append(np.frombuffer(b, "<u8").reshape(1, 2))
        self._n += 1
        return self._n - 1

    def words(self) -> np.ndarray:
        return np.concatenate(self._parts)


@dataclass(frozen=True)
class Picked:
    """A segment's records picked as they were walked (``fast.walkscan``): their numbers in
    the segment, and of the records left out the ``_seen`` bits of their addresses and
    their statuses (by ``Undecoded``)."""

    rows: np.ndarray
    seen: np.ndarray
    skipped: np.ndarray


@dataclass
class _Segment:
    start: int
    end: int
    rows: np.ndarray  # the kept rows (src_i / dst_i still the segment's own numbers)
    quoted: np.ndarray  # their ICMP errors' records, ``row`` = position in ``rows``
    words: np.ndarray  # (n, 2) u64: the segment's addresses by its own numbers
    seen: np.ndarray  # ``_SEEN_BITS`` bits, packed: set where an address of the segment hashes (``_seen``)
    peers: int  # how many peers were known when it was kept (``_Reader.order``)
    first: bool  # it holds the file's first decodable row (always kept)
    last: np.ndarray | None  # its last decodable row, with ``last_q`` its quoted record (if any)
    last_q: np.ndarray | None


class _Reader:
    def __init__(self, buf, path: str, focus: Focus, dtype: np.dtype):
        self.buf, self.path, self.focus, self.dtype = buf, path, focus, dtype
        self.arr = np.frombuffer(buf, np.uint8)
        self.peers: set[int] = set()
        self.order: list[int] = []  # the peers in the order they were found
        self.peer_keys = np.zeros(0, np.uint64)
        self.counts = np.zeros(len(Undecoded), np.int64)
        self.fmt: str = "pcap"
        self.ifaces: tuple = ()

    def _add_peers(self, keys: np.ndarray) -> None:
        new = [k for k in unique(keys).tolist() if k not in self.peers]
        if new:
            self.peers.update(new)
            self.order.extend(new)
            self.peer_keys = np.array(sorted(self.peers), np.uint64)

    def segments(self, start: int = 24, until: int | None = None):
        """``(start, end, records walked, picked, Records)`` of each segment: ``picked``
        None (all of them) where the records cannot be picked as they are walked."""
        if not fastpath.can_scan():
            for a, b, recs in container.pcap_segments(self.buf, self.path, start, until):
                yield a, b, len(recs.data_off), None, recs
            return
        left: dict[str, np.ndarray] = {}  # what the scan found of the records it left out

        def scan(buf, off, stop, swap, maxcap, linktype, idx, offs, hdrs):
            left["seen"], left["skipped"] = np.zeros(1 << 20, bool), np.zeros(len(Undecoded), np.int64)
            return fastpath.walkscan(buf, off, stop, swap, maxcap, linktype, self.focus.out, self.focus.back,
                                     self.peer_keys, idx, offs, hdrs, left["seen"], left["skipped"])

        for a, b, walked, rows, recs in container.pcap_segments_scanned(self.buf, self.path, scan, start, until):
            yield a, b, walked, Picked(rows, left["seen"], left["skipped"]), recs

    def segment(self, start: int, end: int, recs: container.Records, frame0: int, count: bool,
                first: bool, picked: Picked | None = None) -> _Segment:
        """Decode one segment's records and keep its relevant rows. ``count``: add its
        statuses to the file's counts (not when walked again); ``first``: keep its first
        decodable row (the file's first). ``picked``: ``recs`` are only these records of
        the segment (``fast.walkscan`` left the others out, knowing they would not be kept)."""
        if picked is None:
            frames, pre_seen = np.arange(frame0 + 1, frame0 + len(recs.data_off) + 1, dtype=np.uint32), None
        else:  # ``recs`` are the records the walk picked: the others were not decoded
            frames, pre_seen = (picked.rows + (frame0 + 1)).astype(np.uint32), picked.seen
        n = len(recs.data_off)
        t = np.zeros(n, self.dtype)
        t["frame"] = frames
        t["ts_ns"] = recs.ts_ns
        if self.dtype == PACKET_DTYPE:
            t["iface"], t["caplen"], t["wirelen"] = recs.iface, recs.caplen, recs.wirelen
            t["linktype"] = np.where(recs.linktype < 0, 0, recs.linktype)
        t["icmp_type"] = -1
        t["wscale"] = -1
        book = _Occurrences()
        todo = np.ones(n, bool)
        quotes = []
        for a in range(0, n, fastpath.CHUNK):
            b = min(n, a + fastpath.CHUNK)
            claimed, q = fastpath.decode_rows(t[a:b], self.arr, recs, a, b, book)
            todo[a:b] = ~claimed
            quotes.append(q)
        quotes.append(decode.fill_rows(t, np.flatnonzero(todo), self.buf, recs.data_off, recs.caplen, recs.wirelen,
                                       recs.linktype, book))
        quoted = fastpath.merge_quoted(quotes)
        if count:
            self.counts += np.bincount(t["status"], minlength=len(Undecoded))
            if picked is not None:
                self.counts += picked.skipped
        words = book.words()
        akey = _key(words[:, 0], words[:, 1])
        qs, qd = _words_key(quoted["q_src"]), _words_key(quoted["q_dst"])
        # anchors: rows carrying a key of the small capture
        (orow, okey), (brow, bkey), urows, ukeys = _keys(t)
        hit_o = orow[member(self.focus.out, okey)]
        hit_b = brow[member(self.focus.back, bkey)]
        hit_uo = urows[member(self.focus.out, ukeys)]
        hit_ub = urows[member(self.focus.back, ukeys)]
        self._add_peers(np.concatenate([akey[t["src_i"][np.concatenate([hit_o, hit_uo])]],
                                        akey[t["dst_i"][np.concatenate([hit_b, hit_ub])]]]))
        peer = member(self.peer_keys, akey)
        keep = peer[t["src_i"]] | peer[t["dst_i"]]
        if len(quoted):
            qhit = member(self.peer_keys, qs) | member(self.peer_keys, qd)
            keep[quoted["row"][qhit]] = True
        valid = np.flatnonzero((t["status"] <= Undecoded.TRUNCATED_PAYLOAD) & (t["ipver"] > 0))
        has_first = first and bool(len(valid))
        if has_first:
            keep[valid[0]] = True
        last = last_q = None
        if len(valid):
            j = int(valid[-1])
            last = t[j : j + 1].copy()
            at = np.flatnonzero(quoted["row"] == j)
            last_q = quoted[at].copy() if len(at) else None
        kept = np.flatnonzero(keep)
        rows = t[kept]
        q = quoted[isin(quoted["row"], kept)]
        q["row"] = np.searchsorted(kept, q["row"])
        seen = _seen(akey, qs, qd, bits=pre_seen)
        # only the kept rows' (and the last row's) addresses are carried to the end, numbered
        # as they first appear row by row (source, then destination): not by where the
        # decoders met them, which depends on which other records were decoded with them
        both = [x for x in (rows, last) if x is not None]
        seq = np.stack([np.concatenate([x["src_i"] for x in both]), np.concatenate([x["dst_i"] for x in both])],
                       axis=1).ravel()
        used, at = np.unique(seq, return_index=True)
        order = np.argsort(at, kind="stable")
        rank = np.empty(len(order), np.uint32)
        rank[order] = np.arange(len(order), dtype=np.uint32)
        for x in both:
            x["src_i"] = rank[np.searchsorted(used, x["src_i"])]
            x["dst_i"] = rank[np.searchsorted(used, x["dst_i"])]
        return _Segment(start, end, rows, q, words[used[order]], seen, len(self.order), has_first, last, last_q)


def read_focused(path: str, focus: Focus, *, lean: bool = True) -> Capture | None:
    """The capture at ``path`` with only the rows ``focus`` makes relevant (see the module
    docstring); ``Capture.skipped`` counts the others. None where this cannot be done
    (nothing anchors, or the file is not a plain pcap walkable a segment at a time):
    read it with ``read_capture`` then."""
    if focus.empty:
        return None
    buf, note = container.open_noted(str(path))
    if note:
        return None
    r = _Reader(buf, str(path), focus, table_dtype(lean))
    segs: list[_Segment] = []
    frames: list[int] = []
    frame0 = 0
    released = 0
    try:
        for start, end, walked, picked, recs in r.segments():
            r.fmt, r.ifaces = recs.format, recs.interfaces
            segs.append(r.segment(start, end, recs, frame0, True, not any(s.first for s in segs), picked))
            frames.append(frame0)
            frame0 += walked
            released = container.release(buf, released, end)  # (walking it again maps them back)
        if not r.peers:
            return None
        # a peer first anchored in a later segment: the earlier segments holding its
        # address are kept again, now knowing it
        for i, s in enumerate(segs):
            late = np.array(sorted(r.order[s.peers:]), np.uint64)
            if len(late) and _seen_any(s.seen, late):
                for start, end, _walked, picked, recs in r.segments(s.start, s.end):
                    segs[i] = r.segment(start, end, recs, frames[i], False, s.first, picked)
    except container.NotStreamable:
        return None
    book = AddressBook()
    tables, quoted = [], []
    at = 0
    for s in segs:
        rows, q = s.rows, s.quoted.copy()
        _renumber(rows, s.words, book)
        q["row"] += at
        tables.append(rows)
        quoted.append(q)
        at += len(rows)
    table = np.concatenate(tables) if tables else np.zeros(0, r.dtype)
    quotes = np.concatenate(quoted) if quoted else np.zeros(0, QUOTED_DTYPE)
    # the file's last decodable row (its capture window ends there), where it is not kept
    tail = next((s for s in reversed(segs) if s.last is not None), None)
    if tail is not None and tail.last is not None:
        last = tail.last
        pos = int(np.searchsorted(table["frame"], last["frame"][0]))
        if pos == len(table) or table["frame"][pos] != last["frame"][0]:
            _renumber(last, tail.words, book)
            table = np.insert(table, pos, last)
            quotes["row"] += quotes["row"] >= pos
            if tail.last_q is not None:
                q = tail.last_q.copy()
                q["row"] = pos
                quotes = np.sort(np.concatenate([quotes, q]), order="row")
    undecoded = {Undecoded(i).name: int(c) for i, c in enumerate(r.counts) if i and c}
    return Capture(path=str(path), format=r.fmt, interfaces=r.ifaces,
                   packets=table, quoted=quotes,
                   addrs=book.addresses(), undecoded=undecoded, _data=buf, skipped=frame0 - len(table))


_SEEN_SHIFT = np.uint64(64 - 20)  # 2^20 bits a segment (128 KB): a few false hits, each a segment walked again


def _seen(*keys: np.ndarray, bits: np.ndarray | None = None) -> np.ndarray:
    """The addresses a segment met, as bits (np.unique of their keys cost 0.6 s per 1M
    rows of a busy capture: every scanner another address), added to ``bits`` (2^20
    bools: those of the records not decoded, ``fast.scan``). A bit set by another address
    only costs walking the segment again, never a row."""
    if bits is None:
        bits = np.zeros(1 << 20, bool)
    for k in keys:
        with np.errstate(over="ignore"):
            bits[(k * _MIX) >> _SEEN_SHIFT] = True
    return np.packbits(bits)


def _seen_any(packed: np.ndarray, keys: np.ndarray) -> bool:
    with np.errstate(over="ignore"):
        at = ((keys * _MIX) >> _SEEN_SHIFT).astype(np.int64)
    return bool(np.unpackbits(packed)[at].any())


def _renumber(rows: np.ndarray, words: np.ndarray, book: AddressBook) -> None:
    """``src_i`` / ``dst_i`` of ``rows`` from a segment's numbers to ``book``'s."""
    if not len(rows):
        return
    used = unique(np.concatenate([rows["src_i"], rows["dst_i"]]))
    to = np.zeros(len(words), np.uint32)
    to[used] = book.index_words(words[used, 0].copy(), words[used, 1].copy())
    rows["src_i"] = to[rows["src_i"]]
    rows["dst_i"] = to[rows["dst_i"]]

