"""Walk the records of a pcap or pcapng file: where each packet's bytes are, and when.

This layer knows file formats only, not protocols. It returns ``Records``: per packet
record the file offset of its bytes, caplen, wirelen, capture time in ns, interface
and link type, plus the interfaces of the file. Problems with the file as a whole
(missing, not a capture, header cut short, unsupported version) raise ``InputError``;
problems with one record are data: the record gets a status; a damaged record header
(a length no sane file has, a pcapng block whose length and trailing copy disagree) is
skipped to the next plausible record (``resync``) and recorded as a ``Gap``; if the file
ends mid-record, or nothing plausible follows the damage, walking stops and
``truncated_tail`` is set. A compressed file is decompressed first (``compressed``).

Why the walk looks the way it does (measured here, 1M-record pcap, 235 MB): the next
record's offset depends on the previous record's caplen, so the walk is sequential.
A tight loop that only appends offsets takes 0.20 s reading caplen through u32
memoryview casts of the file (one per alignment), 0.23-0.33 s with ``struct.unpack_from``,
0.28 s assembling four bytes, 0.38 s with slicing + ``int.from_bytes``; appending to an ``array('q')`` instead of
a list is slower (0.15 vs 0.10 s per 1M appends). So a pcap is walked in many pieces at
once, in numpy steps (``_lockstep``: see there), and the loop
only walks what the lockstep cannot (small files, the file's last bytes, a piece whose
start was guessed wrong); pcapng keeps the loop. Everything else about a record (ts,
lengths) is then gathered vectorised from the offsets, so the walk does the minimum.

Where it was built (``pip install -e .``; optional), the compiled walk ``_walk.pcap``
(_walk.c) does a segment's walk and header gathering instead, and stops after a header
with an absurd caplen (the numpy walk takes the segment on from there; the resync stays
here). Measured on the 1M-record, 338 MB busy server capture of ``bench/diff.py --busy
1000000``: ``walk`` 0.09-0.12 s vs 0.13-0.19 s, ``pcap_segments`` 0.08-0.11 s vs
0.12-0.19 s (the C loop alone 0.06 s: a cache miss per record, 0.08 s without its
prefetch); the whole ``rig diff`` 0.85-0.90 s vs 0.93-0.95 s, alternated in one run
(``bench/diff.py --busy 1000000 --repeat 3 --base pure``). ``RIG_PURE_READER=1`` keeps
the numpy walk (the tests compare both).
"""

from __future__ import annotations

import mmap
import os
import stat
import struct
import sys
from dataclasses import dataclass

import numpy as np

from rig.capture import compressed, resync
from rig.capture.table import Gap, InterfaceInfo, Undecoded
from rig.errors import InputError

try:
    from rig.capture import _walk  # the compiled record walk: optional (see _walk.c)
except ImportError:
    _walk = None  # type: ignore[assignment]

PCAP_MAGIC = {
    b"\xd4\xc3\xb2\xa1": ("<", 1000, "pcap"),
    b"\xa1\xb2\xc3\xd4": (">", 1000, "pcap"),
    b"\x4d\x3c\xb2\xa1": ("<", 1, "pcap-ns"),
    b"\xa1\xb2\x3c\x4d": (">", 1, "pcap-ns"),
}
PCAPNG_SHB = b"\x0a\x0d\x0d\x0a"
BT_SHB, BT_IDB, BT_OPB, BT_SPB, BT_ISB, BT_EPB = 0x0A0D0D0A, 1, 2, 3, 5, 6
KIND_EPB, KIND_SPB, KIND_OPB = 0, 1, 2


@dataclass(frozen=True)
class Records:
    """Where the packet records of one file are; one entry per record, in file order."""

    format: str
    interfaces: tuple[InterfaceInfo, ...]
    data_off: np.ndarray  # int64: file offset of the packet bytes
    caplen: np.ndarray  # bytes present in the file (integer dtype, compact where possible)
    wirelen: np.ndarray
    ts_ns: np.ndarray  # int64
    iface: np.ndarray  # global interface index (pcapng: over all sections)
    linktype: np.ndarray  # link type of the record's interface (-1 if unknown iface)
    status: np.ndarray  # u1: 0, or an Undecoded reason found at the container level
    truncated_tail: bool
    tail_note: str
    bad_ts: int = 0  # pcap records whose sub-second field is >= 1 s (added as it is)
    gaps: tuple[Gap, ...] = ()  # damaged regions skipped (resync.py)


def open_capture(path: str, spool: int | None = None) -> mmap.mmap | bytes:
    """The file's bytes, memory-mapped (payloads stay in the file); a compressed capture's
    decompressed bytes (``compressed``: into ``spool``, a file descriptor, if given)."""
    return open_noted(path, spool)[0]


def open_noted(path: str, spool: int | None = None) -> tuple[mmap.mmap | bytes, str]:
    """``open_capture``, and a note if the file is a compressed stream that ended early or
    is corrupt (what it held up to there is returned)."""
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            regular = stat.S_ISREG(st.st_mode)
            how = compressed.kind(f.peek(4)[:4]) if (not regular or st.st_size >= 4) else None
            if how is not None:
                return _decompressed(f, how, path, spool)
            if not regular:  # a pipe or device: read it (cannot be mapped)
                return f.read(), ""
            if st.st_size == 0:
                return b"", ""
            return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ), ""
    except FileNotFoundError as exc:
        raise InputError(f"{path}: no such capture file") from exc
    except IsADirectoryError as exc:
        raise InputError(f"{path}: is a directory, not a capture file") from exc
    except (PermissionError, OSError, ValueError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else None
        raise InputError(f"{path}: cannot read capture file ({why or exc})") from exc


def _decompressed(f, how: str, path: str, spool: int | None) -> tuple[mmap.mmap | bytes, str]:
    fd, size, note = compressed.decompress(f, how, path, spool)
    try:
        if size == 0:
            if note:
                raise InputError(f"{path}: {note}")
            return b"", ""
        return mmap.mmap(fd, size, access=mmap.ACCESS_READ), note
    finally:
        if spool is None:
            os.close(fd)  # the mapping keeps the file


def walk(buf, name: str) -> Records:
    """Find every packet record of a pcap or pcapng file held in ``buf``."""
    head = bytes(buf[:4])
    if head in PCAP_MAGIC:
        return _walk_pcap(buf, name)
    if head == PCAPNG_SHB:
        return _walk_pcapng(buf, name)
    if len(buf) < 4:
        raise InputError(f"{name}: not a capture file (only {len(buf)} bytes)")
    raise InputError(f"{name}: not a pcap or pcapng file (magic {head.hex()})")


# --------------------------------------------------------------------------- pcap


def _walk_pcap(buf, name: str) -> Records:
    bo, tick_ns, fmt = PCAP_MAGIC[bytes(buf[:4])]
    if len(buf) < 24:
        raise InputError(f"{name}: pcap file header cut short ({len(buf)} of 24 bytes)")
    major, minor, _tz, _sig, snaplen, lt = struct.unpack_from(bo + "HHiIII", buf, 4)
    if major != 2:
        raise InputError(f"{name}: unsupported pcap version {major}.{minor}")
    linktype = lt & 0xFFFF  # the upper bits carry FCS information
    iface = InterfaceInfo(iface=0, linktype=linktype, ts_resolution_ns=tick_ns, snaplen=snaplen)

    # The sequential part: only offsets are collected here (see module docstring). The
    # file is walked in segments; each segment's headers are gathered vectorised while
    # its pages are hot, then the pages are released (RSS stays bounded by a segment).
    caplen_at = struct.Struct(bo + "I").unpack_from
    end = len(buf)
    last = end - 16
    off = 24
    released = 0
    parts: list[np.ndarray] = []
    hdrs: list[np.ndarray] = []
    cut = False
    # In the file's byte order == the machine's, read caplen through four u32 views of
    # the file (one per alignment): 0.20 s per 1M records vs 0.23-0.38 s with unpack_from.
    native = (bo == "<") == (sys.byteorder == "little")
    mv = memoryview(buf)
    u32 = [mv[k : k + (end - k) // 4 * 4].cast("I") for k in range(4)] if native and end >= 8 else None

    def seq(off: int, stop: int) -> tuple[list[int], int]:
        """Offsets of the records from ``off`` while <= ``stop``, and the offset after them."""
        offs: list[int] = []
        append = offs.append
        # (checking the end only after the loop: 0.24 s vs 0.30 s per 1M)
        if u32 is not None:
            while off <= stop:
                append(off)
                p = off + 8
                off += 16 + u32[p & 3][p >> 2]
        else:
            while off <= stop:
                append(off)
                off += 16 + caplen_at(buf, off + 8)[0]
        return offs, off

    arr = np.frombuffer(buf, np.uint8) if end else None
    u4 = np.ndarray((end - 3,), bo + "u4", arr, 0, (1,)) if end >= 8 else None  # u32 at any byte
    maxcap, sub_s = resync.max_caplen(snaplen), 1_000_000_000 // tick_ns
    gaps: list[tuple[int, int, int]] = []  # (offset, bytes skipped, records before)
    seg, since, tries = SEGMENT, 0, RESYNC_TRIES
    walker = compiled_walker()
    while off <= last and not cut:
        stop = min(last, off + seg)
        o, h, off = _segment(buf, arr, u4, bo, off, stop, snaplen, tick_ns, maxcap, seq, walker)
        if off > end:  # only the last record can run past the end
            off = int(o[-1])
            o, h = o[:-1], h[:-1]
            cut = True
        # a damaged header (resync.py): a caplen no sane file has, or a record running past
        # the end. The walk resumes at the next plausible record after the damage.
        hard = np.flatnonzero(h[:, 2] > maxcap)
        if (cut or len(hard)) and len(gaps) < MAX_GAPS and tries > 0:
            j = int(hard[0]) if len(hard) else len(o)
            o_all, h_all = np.concatenate([*parts, o]), np.concatenate([*hdrs, h])
            jj = len(o_all) - len(o) + j
            fix, used = _resync_pcap(u4, end, o_all, h_all, jj, int(o_all[jj]) if jj < len(o_all) else off, since,
                                     maxcap, sub_s)
            tries -= used
            if fix is not None:
                keep, gap_at, off = fix
                parts, hdrs = [o_all[:keep]], [h_all[:keep]]
                gaps.append((gap_at, off - gap_at, keep))
                since, cut, seg = keep, False, AFTER_GAP_SEGMENT  # small steps while damage may be near
                continue
        parts.append(o)
        hdrs.append(h)
        seg = min(SEGMENT, seg * 2)
        released = release(buf, released, off)
    del u4, arr
    if u32 is not None:
        for v in u32:
            v.release()
    mv.release()
    truncated = off != end
    note = f"file ends inside the record at byte {off}" if truncated else ""

    o = np.concatenate(parts) if parts else np.zeros(0, np.int64)
    hdr = np.concatenate(hdrs) if hdrs else np.zeros((0, 4), np.uint32)
    n = len(o)
    # an out-of-range sub-second field (>= 1 s) is added as it is, and counted
    ts = hdr[:, 0].astype(np.int64) * 1_000_000_000 + hdr[:, 1].astype(np.int64) * tick_ns
    bad_ts = int((hdr[:, 1] >= 1_000_000_000 // tick_ns).sum())
    return Records(
        format=fmt,
        interfaces=(iface,),
        data_off=o + 16,
        caplen=hdr[:, 2].copy(),
        wirelen=hdr[:, 3].copy(),
        ts_ns=ts,
        iface=np.zeros(n, np.uint16),
        linktype=np.full(n, linktype, np.int32),
        status=np.zeros(n, np.uint8),
        truncated_tail=truncated,
        tail_note=note,
        bad_ts=bad_ts,
        gaps=_gaps(gaps, ts),
    )


MAX_GAPS = 1000  # damaged regions skipped per file; past that, the walk goes on as it always did
AFTER_GAP_SEGMENT = 1 << 20  # the segment walked after a gap (then doubling back to SEGMENT)


RESYNC_TRIES = 256  # searches for the next plausible record per file (each costs at least a 4 KB step)
SUSPECTS = 32  # odd headers before a damaged one tried as the start of the damage: the first and last this many


def _resync_pcap(u4, end: int, o: np.ndarray, h: np.ndarray, j: int, bad_at: int, since: int, maxcap: int,
                 sub_s: int):
    """Record ``j`` of the walk so far (offsets ``o``, headers ``h``; ``j == len(o)``: the
    record at ``bad_at`` that runs past the end) is damaged. Returns ((records kept,
    offset of the first byte skipped, offset of the next plausible record) or None, the
    searches made). None: nothing plausible follows the damage (the caller goes on as
    before: a truncated tail).

    The damage may have started before ``j``: a damaged caplen that is still sane sends
    the walk into packet bytes, read as headers until one is absurd. Such headers
    rarely fit the record before them (``resync.pcap_plausible``), so the odd headers
    since the last gap (``since``) are tried first, then ``j``: from the data of the
    record before, the next plausible record is searched. It is taken only if the walk
    from it passes the damaged record without meeting the walk as it was, and goes on
    plausibly (``_diverges``): otherwise the odd header was a real record (files have
    zero caplens, wirelen < caplen, clocks that jump) and nothing changes. If the record
    found lies inside the data of the record before, that record's caplen was the
    damaged one: it is dropped too."""
    if u4 is None:
        return None, 0
    lo = max(since - 1, 0)
    hh = h[lo:j]
    ts_prev = np.concatenate([hh[:1, 0], hh[:-1, 0]]).astype(np.int64)
    odd = lo + np.flatnonzero(~resync.pcap_plausible(hh, ts_prev, maxcap, sub_s))
    odd = odd[odd > since] if since else odd
    tried = 0
    for i in dict.fromkeys([*odd[:SUSPECTS].tolist(), *odd[-SUSPECTS:].tolist(), j]):
        start, ts_ref = (int(o[i - 1]) + 16, int(h[i - 1, 0])) if i else (24, None)
        q = resync.pcap_next(u4, end, start, maxcap, sub_s, ts_ref)
        tried += 1
        if q is None or not _diverges(u4, end, o, q, bad_at, maxcap, sub_s):
            continue
        if i and q < int(o[i - 1]) + 16 + int(h[i - 1, 2]):
            i -= 1  # the next record is inside this one's data: its caplen is what was damaged
        gap_at = int(o[i]) if i < len(o) else bad_at
        if q > gap_at:
            return (i, gap_at, q), tried
    return None, tried


def _diverges(u4, end: int, o: np.ndarray, q: int, bad_at: int, maxcap: int, sub_s: int) -> bool:
    """Whether the walk from ``q`` passes ``bad_at`` without meeting a record of ``o`` and
    goes on plausibly (``resync.DEPTH`` records, or to the end of the file exactly)."""
    p, past = q, 0
    while True:
        if p == end:
            return p > bad_at
        k = int(np.searchsorted(o, p))
        if p == bad_at or (k < len(o) and int(o[k]) == p) or p + 16 > end:
            return False
        sub, cl, wl = int(u4[p + 4]), int(u4[p + 8]), int(u4[p + 12])
        if not (1 <= cl <= maxcap and wl >= cl and sub < sub_s and p + 16 + cl <= end):
            return False
        if p > bad_at:
            past += 1
            if past >= resync.DEPTH:
                return True
        p += 16 + cl


def _gaps(gaps: list[tuple[int, int, int]], ts: np.ndarray) -> tuple[Gap, ...]:
    """The typed facts of the regions skipped, with the times of the records around them."""
    n = len(ts)
    return tuple(Gap(offset=at, skipped=size, frame_before=k, ts_before_ns=int(ts[k - 1]) if k else None,
                     ts_after_ns=int(ts[k]) if k < n else None) for at, size, k in gaps)


SEGMENT = 32 << 20  # bytes of file walked (and kept resident) at a time
PAGE = mmap.PAGESIZE

# The pcap walk in lockstep (measured here, 1M records, 246 MB): the sequential loop costs
# 0.20 s however tight, so each segment is cut into SUBSEGMENT-byte pieces walked all at
# once, one numpy step advancing every piece's cursor by one record (~400 steps of 512
# cursors per 32 MB segment; the whole walk of the file 0.13 s instead of 0.22 s, same
# run, best of 9). A piece's first record is guessed: the first offsets in its first
# GUESS_WINDOW bytes where a chain of GUESS_DEPTH headers looks like pcap record headers.
# A guess is only a guess: the walk is exact because piece k is used only from where its
# cursor meets the record the walk of piece k-1 ended on (the path from a record is
# determined by it); a piece whose cursor never meets it is walked again sequentially
# from that record. A wrong guess costs time only. (Pieces of 32K/128K bytes, or a
# 1K window, measured no better; reading the segment in order first, to have it in the
# CPU cache for the cursors' scattered reads, measured slower.)
SUBSEGMENT = 1 << 16
GUESS_WINDOW = 2048
GUESS_FIRST = 8  # candidates per piece checked along the chain
GUESS_DEPTH = 3
LOCKSTEP_MARGIN = SUBSEGMENT + GUESS_WINDOW + 64  # bytes the lockstep may read past ``stop``


def pure_reader() -> bool:
    """Whether the numpy reader is asked for instead of the compiled code (``_walk.c``,
    ``_fast.c``): ``RIG_PURE_READER`` set to anything but 0 (the tests and the bench
    compare both)."""
    return os.environ.get("RIG_PURE_READER", "0") not in ("", "0")


def compiled_walker():
    """The compiled record walk (``_walk.pcap``), or None: not built, or ``pure_reader``."""
    if _walk is None or pure_reader():
        return None
    return _walk.pcap


def _segment(buf, arr, u4, bo: str, off: int, stop: int, snaplen: int, tick_ns: int, maxcap: int, seq, walker):
    """The records of a pcap from ``off`` (a record) while <= ``stop`` (<= the file's end
    - 16): their offsets, their headers ((n, 4) u32: ts, sub-second, caplen, wirelen) and
    the offset after the last (past the end of the file if the last is cut short).

    ``walker`` (``compiled_walker``) walks while the caplens are sane; after one that is
    not, the rest of the segment is walked here, as without it."""
    end = len(arr)
    parts: list[tuple[np.ndarray, np.ndarray]] = []
    if walker is not None:
        swap = (bo == "<") != (sys.byteorder == "little")
        # room for records of 64 bytes on average (then for the rest at 16 bytes each, the
        # least a record takes): the arrays are kept as they are, with the room not used
        cap = min((stop - off) // 16 + 1, (stop - off) // 64 + 4096)
        while True:
            o, h = np.empty(cap, np.int64), np.empty((cap, 4), np.uint32)
            n, off, hard = walker(buf, off, stop, swap, maxcap, o, h)
            parts.append((o[:n], h[:n]))
            if n < cap or hard or off > stop:
                break
            cap = (stop - off) // 16 + 1
        if len(parts) > 1:
            parts = [(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))]
        if not hard or off > stop:
            return parts[0][0], parts[0][1], off
    found: list[np.ndarray] = []
    if min(stop, end - LOCKSTEP_MARGIN) - off >= 4 * SUBSEGMENT:
        o, off = _lockstep(arr, u4, bo == "<", off, min(stop, end - LOCKSTEP_MARGIN), snaplen, tick_ns, seq)
        found.append(o)
    offs, off = seq(off, stop)  # (near the end of the file)
    found.append(np.asarray(offs, dtype=np.int64))
    o = np.concatenate(found) if len(found) > 1 else found[0]
    h = windows(buf, o, 16).view(bo + "u4").reshape(len(o), 4).astype(np.uint32)
    if parts:
        o, h = np.concatenate([parts[0][0], o]), np.concatenate([parts[0][1], h])
    return o, h, off


def _lockstep(arr, u4, little: bool, start: int, stop: int, snaplen: int, tick_ns: int, seq):
    """The record offsets from ``start`` (a record) while <= ``stop``, and the offset after
    them -- exactly what ``seq(start, stop)`` returns, computed in lockstep (see above)."""
    S = np.arange(start, stop + 1, SUBSEGMENT, dtype=np.int64)  # piece k: [S[k], Snext[k])
    Snext = np.append(S[1:], stop + 1)
    k_n = len(S)
    g = _guess_starts(arr, u4, S, little, snaplen, tick_ns, int(u4[start]))
    g[0] = start
    # one row per step: the offsets the cursors reached. A cursor past its piece waits at
    # the piece's end (it stays readable), so the loop needs no bounds check.
    cur = g + 8  # where caplen is
    lim = Snext + 8
    rows = [cur]
    while True:
        for _ in range(16):  # (testing for the end every step costs more than 15 extra steps)
            nxt = cur + u4[cur]
            nxt += 16
            rows.append(nxt)
            cur = np.minimum(nxt, lim)
        if (cur == lim).all():
            break
    P = np.stack(rows, axis=1)  # (pieces, steps + 1), caplen offsets, increasing per row
    P -= 8
    inside = P < Snext[:, None]
    x = inside.sum(1)  # the index of the first offset past the piece
    ex = P[np.arange(k_n), x].tolist()  # where each piece's path leaves it
    sn = Snext.tolist()
    first = g.tolist()
    # stitch: piece k counts from the record where piece k-1 left off (``entry``)
    fixes: list[np.ndarray] = []
    entry = start
    for k in range(k_n):
        if entry >= sn[k]:  # a record spans the whole piece
            inside[k] = False
        elif first[k] == entry:  # the guess was right (the common case)
            entry = ex[k]
        else:
            j = int(np.searchsorted(P[k, : x[k]], entry))
            if j < x[k] and P[k, j] == entry:  # the cursor met the walk later on
                inside[k, :j] = False
                entry = ex[k]
            else:  # walk the piece again from the record it really starts with
                inside[k] = False
                offs, entry = seq(entry, sn[k] - 1)
                fixes.append(np.asarray(offs, np.int64))
    o = P[inside]
    if fixes:
        o = np.sort(np.concatenate([o, *fixes]))
    return o, entry


def _guess_starts(arr, u4, S: np.ndarray, little: bool, snaplen: int, tick_ns: int, ts_ref: int) -> np.ndarray:
    """For each piece start in ``S``, an offset at or after it that looks like the first
    record (``S`` itself where nothing does): see the lockstep comment above.

    The first quarter of each window is searched first, the rest only for the pieces with
    no likely record there (1M-record bench file: 15 ms vs 24 ms searching whole windows)."""
    out = S.copy()
    w1 = GUESS_WINDOW // 4
    step = int(S[1] - S[0]) if len(S) > 1 else 0  # (the pieces are evenly spaced)
    head = np.lib.stride_tricks.as_strided(arr[int(S[0]) :], shape=(len(S), w1 + 16), strides=(step, 1))
    rows, pos = _likely_records(head, S, u4, little, snaplen, tick_ns, ts_ref)
    out[rows] = pos
    rest = np.ones(len(S), bool)
    rest[rows] = False
    rest = np.flatnonzero(rest)
    if len(rest):
        tail = windows(arr, S[rest] + w1, GUESS_WINDOW - w1 + 16)
        rows, pos = _likely_records(tail, S[rest] + w1, u4, little, snaplen, tick_ns, ts_ref)
        out[rest[rows]] = pos
    return out


def _likely_records(b: np.ndarray, at: np.ndarray, u4, little: bool, snaplen: int, tick_ns: int, ts_ref: int):
    """In byte windows ``b`` (one row per window, 16 bytes longer than searched) taken at
    file offsets ``at``: the rows where some offset starts a chain of GUESS_DEPTH plausible
    record headers, and the first such offset of each."""
    w = b.shape[1] - 16
    # A cheap first filter on every byte offset (0.6 ms per 1M offsets, vs 2.5 ms comparing
    # unaligned u32 fields): the top bytes of caplen and wirelen are 0 (< 16 MB), and so is
    # the top byte of the sub-second field in a microsecond file; caplen is not 0.
    hi, lo = (3, (0, 1, 2)) if little else (0, (1, 2, 3))  # the top byte of a u32, the others
    z = b == 0
    ok = z[:, 8 + hi : 8 + hi + w] & z[:, 12 + hi : 12 + hi + w]
    if tick_ns > 1:
        ok &= z[:, 4 + hi : 4 + hi + w]
    ok &= ~(z[:, 8 + lo[0] : 8 + lo[0] + w] & z[:, 8 + lo[1] : 8 + lo[1] + w] & z[:, 8 + lo[2] : 8 + lo[2] + w])
    cap = snaplen if 0 < snaplen <= 1 << 24 else 1 << 18
    sub_s = 1_000_000_000 // tick_ns
    cand = np.flatnonzero(ok)
    k = cand // w
    # only the first GUESS_FIRST of each window go on to the chain check
    rank = np.arange(len(cand)) - np.searchsorted(k, np.arange(len(b)))[k]
    keep = rank < GUESS_FIRST
    k, pos = k[keep], at[k[keep]] + cand[keep] % w
    q = pos
    limit = len(u4) - 16
    for _ in range(GUESS_DEPTH):
        q = np.minimum(q, limit)
        ts, us, cl, wl = u4[q], u4[q + 4], u4[q + 8], u4[q + 12]
        good = ((cl - np.uint32(1)) < np.uint32(cap)) & (wl >= cl) & (us < np.uint32(sub_s))
        good &= np.abs(ts.astype(np.int64) - ts_ref) < 1 << 25  # within a year of ts_ref
        k, pos, q = k[good], pos[good], q[good] + 16 + cl[good]
    rows, firsts = np.unique(k, return_index=True)
    return rows, pos[firsts]


def release(buf, start: int, upto: int) -> int:
    """Drop the resident pages of a mapped file in [start, upto) (page-aligned); returns
    the new start. The pages stay in the page cache; touching them again maps them back."""
    upto &= ~(PAGE - 1)
    if upto > start and isinstance(buf, mmap.mmap):
        buf.madvise(mmap.MADV_DONTNEED, start, upto - start)
        return upto
    return start


def windows(buf, offs: np.ndarray, width: int) -> np.ndarray:
    """``width`` bytes at each offset as a (n, width) u1 array; bytes past the end are 0.

    Indexing a byte-strided array of ``width``-byte void items copies rows directly
    (measured: 0.04 s for 1M x 100 bytes, vs 0.4 s for fancy indexing with an offset
    matrix and 20 s for np.take along the window axis).
    """
    arr = buf if isinstance(buf, np.ndarray) else np.frombuffer(buf, dtype=np.uint8)
    n = len(offs)
    size = len(arr)
    if n and size >= width and offs.min() >= 0 and offs.max() <= size - width:
        v = np.ndarray(shape=(size - width + 1,), dtype=f"V{width}", buffer=arr, offset=0, strides=(1,))
        return v[offs].view(np.uint8).reshape(n, width)
    out = np.zeros((n, width), np.uint8)
    if not n:
        return out
    ok = (offs >= 0) & (offs <= size - width)
    if size >= width and ok.any():
        v = np.ndarray(shape=(size - width + 1,), dtype=f"V{width}", buffer=arr, offset=0, strides=(1,))
        out[ok] = v[offs[ok]].view(np.uint8).reshape(-1, width)
    for i in np.flatnonzero(~ok):  # near the end of the file: what is there, zero-padded
        o = int(offs[i])
        if 0 <= o < size:
            chunk = arr[o : o + width]
            out[i, : len(chunk)] = chunk
    return out


# --------------------------------------------------------------------------- pcapng


def _tsresol_ns(code: int) -> tuple[int, int]:
    """if_tsresol -> (numerator, denominator): ns = ticks * num // den.

    Resolutions finer than 2^-32 s or 10^-18 s do not fit 64-bit arithmetic; their
    timestamps are left 0 (num 0) rather than guessed.
    """
    v = code & 0x7F
    if code & 0x80:
        return (1_000_000_000, 1 << v) if v <= 32 else (0, 1)
    if v <= 9:
        return 10 ** (9 - v), 1
    return (1, 10 ** (v - 9)) if v <= 18 else (0, 1)


class _Iface:
    __slots__ = ("gid", "linktype", "name", "snaplen", "num", "den", "tsoffset", "drops", "resol_ns", "start_ns",
                 "end_ns")

    def __init__(self, gid, linktype, snaplen):
        self.gid, self.linktype, self.snaplen = gid, linktype, snaplen
        self.name, self.num, self.den, self.tsoffset, self.drops = "", 1000, 1, 0, None
        self.resol_ns = 1000
        self.start_ns = self.end_ns = None  # isb_starttime / isb_endtime: when it captured

    def ns(self, ticks):
        """Timestamp ticks (an int or an int64 array) in ns since the epoch."""
        if self.den == 1:
            v = ticks * self.num
        elif self.num == 1:
            v = ticks // self.den
        else:  # binary fractions: split to avoid overflow
            v = (ticks // self.den) * 1_000_000_000 + ((ticks % self.den) * 1_000_000_000) // self.den
        return v + self.tsoffset * 1_000_000_000


def _options(buf, start: int, end: int, bo: str):
    """(code, value-bytes) of a pcapng options list; stops at opt_endofopt or a bad length."""
    off = start
    while off + 4 <= end:
        code, length = struct.unpack_from(bo + "HH", buf, off)
        if code == 0:
            return
        if off + 4 + length > end:
            return
        yield code, bytes(buf[off + 4 : off + 4 + length])
        off += 4 + ((length + 3) & ~3)


def _walk_pcapng(buf, name: str) -> Records:
    end = len(buf)
    if end < 28:
        raise InputError(f"{name}: pcapng section header cut short ({end} of 28 bytes)")
    bom = bytes(buf[8:12])
    if bom == b"\x4d\x3c\x2b\x1a":
        bo = "<"
    elif bom == b"\x1a\x2b\x3c\x4d":
        bo = ">"
    else:
        raise InputError(f"{name}: not a pcapng file (bad byte-order magic {bom.hex()})")
    major, minor = struct.unpack_from(bo + "HH", buf, 12)
    if major != 1:
        raise InputError(f"{name}: unsupported pcapng version {major}.{minor}")

    ifaces: list[_Iface] = []  # all sections
    section: list[_Iface] = []  # the current section's, by local id
    # per packet record: (kind, block offset, section byte order, section index base)
    offs: list[int] = []  # block offset of every packet record
    append = offs.append
    kinds: dict[int, int] = {}  # record index -> kind, for the records that are not EPBs
    sec_starts: list[int] = []  # record index where each section starts
    sec_info: list[tuple[str, list[_Iface]]] = []

    le_hdr = struct.Struct("<II").unpack_from
    be_hdr = struct.Struct(">II").unpack_from
    hdr = le_hdr if bo == "<" else be_hdr
    # the previous block's trailing length, then this block's type and length: one read
    le_hdr3 = struct.Struct("<III").unpack_from
    be_hdr3 = struct.Struct(">III").unpack_from
    hdr3 = le_hdr3 if bo == "<" else be_hdr3
    off = released = 0
    prev, plen = 0, 0  # the previous block: offset, length
    truncated, note = False, ""
    gaps: list[tuple[int, int, int]] = []  # (offset, bytes skipped, records before)
    arr = np.frombuffer(buf, np.uint8)

    def resume(at: int, start: int) -> int | None:
        """The block at ``at`` is damaged: the offset of the next plausible block (a gap
        is recorded), or None."""
        if len(gaps) >= MAX_GAPS or end < 16:
            return None
        u4 = np.ndarray((end - 3,), bo + "u4", arr, 0, (1,))
        q = resync.pcapng_next(u4, end, start)
        if q is None:
            return None
        gaps.append((at, q - at, len(offs)))
        return q

    while off < end:
        if off + 12 > end:
            truncated, note = True, f"file ends inside a block header at byte {off}"
            break
        if off:
            tr, btype, blen = hdr3(buf, off - 4)
        else:
            tr, (btype, blen) = plen, hdr(buf, off)
        if btype == BT_EPB and tr == plen and blen >= 12 and not blen & 3 and off + blen <= end:  # the common case
            append(off)
            prev, plen = off, blen
            off += blen
            if off - released > SEGMENT:
                released = release(buf, released, off - 65536)
            continue
        if tr != plen:  # the previous block's length was damaged (or its copy at the end)
            if offs and offs[-1] == prev:
                offs.pop()
                kinds.pop(len(offs), None)
            q = resume(prev, prev + 4)
            if q is None:
                truncated, note = True, f"bad block length at byte {prev}"
                break
            off, plen = q, hdr(buf, q - 4)[0]
            continue
        if btype == BT_SHB:
            # a new section: its own byte order and interfaces
            bom = bytes(buf[off + 8 : off + 12])
            if bom == b"\x4d\x3c\x2b\x1a":
                bo, hdr = "<", le_hdr
            elif bom == b"\x1a\x2b\x3c\x4d":
                bo, hdr = ">", be_hdr
            else:
                truncated, note = True, f"bad section header at byte {off}"
                break
            hdr3 = le_hdr3 if bo == "<" else be_hdr3
            blen = hdr(buf, off)[1]
            smaj = struct.unpack_from(bo + "H", buf, off + 12)[0]
            if blen < 28 or blen % 4 or off + blen > end or smaj != 1:
                truncated = True
                note = f"section header at byte {off} is cut short or unusable"
                break
            section = []
            sec_info.append((bo, section))
            sec_starts.append(len(offs))
            prev, plen = off, blen
            off += blen
            continue
        if blen < 12 or blen % 4 or off + blen > end:
            q = resume(off, off + 4)
            if q is not None:
                off, plen = q, hdr(buf, q - 4)[0]
                continue
            truncated = True
            note = f"bad block length {blen} at byte {off}" if blen < 12 or blen % 4 else \
                f"file ends inside the block at byte {off}"
            break
        if btype == BT_IDB:
            if blen >= 20:
                lt, _res, snap = struct.unpack_from(bo + "HHI", buf, off + 8)
                itf = _Iface(len(ifaces), lt, snap)
                for code, val in _options(buf, off + 16, off + blen - 4, bo):
                    if code == 2:
                        itf.name = val.decode("utf-8", "replace").rstrip("\x00")
                    elif code == 9 and len(val) >= 1:
                        itf.num, itf.den = _tsresol_ns(val[0])
                        itf.resol_ns = max(1, itf.num // itf.den)
                    elif code == 14 and len(val) >= 8:
                        tso = struct.unpack_from(bo + "q", val)[0]
                        itf.tsoffset = tso if abs(tso) < 1 << 32 else 0
                section.append(itf)
                ifaces.append(itf)
        elif btype in (BT_SPB, BT_OPB):
            kinds[len(offs)] = KIND_SPB if btype == BT_SPB else KIND_OPB
            append(off)
        elif btype == BT_ISB:
            if blen >= 24:
                lid = struct.unpack_from(bo + "I", buf, off + 8)[0]
                if lid < len(section):
                    for code, val in _options(buf, off + 20, off + blen - 4, bo):
                        if code == 5 and len(val) >= 8:  # isb_ifdrop
                            section[lid].drops = struct.unpack_from(bo + "Q", val)[0]
                        elif code in (2, 3) and len(val) >= 8:  # isb_starttime, isb_endtime
                            hi, lo = struct.unpack_from(bo + "II", val)
                            at = section[lid].ns((hi << 32) | lo)
                            if code == 2:
                                section[lid].start_ns = at
                            else:
                                section[lid].end_ns = at
        prev, plen = off, blen
        off += blen
        if off - released > SEGMENT:
            released = release(buf, released, off - 65536)

    n = len(offs)
    data_off = np.zeros(n, np.int64)
    caplen = np.zeros(n, np.int64)
    wirelen = np.zeros(n, np.int64)
    ts_ns = np.zeros(n, np.int64)
    iface = np.zeros(n, np.int64)
    linktype = np.full(n, -1, np.int64)
    status = np.zeros(n, np.uint8)
    if n:
        o = np.asarray(offs, np.int64)
        k = np.zeros(n, np.int8)  # KIND_EPB
        if kinds:
            k[list(kinds)] = list(kinds.values())
        s = np.searchsorted(np.asarray(sec_starts), np.arange(n), side="right") - 1
        released = 0
        pieces = [(si, sbo, sifs, sel[p : p + 65536]) for si, (sbo, sifs) in enumerate(sec_info)
                  for sel in (np.flatnonzero(s == si),) for p in range(0, len(sel), 65536)]
        for _si, sbo, sifs, m in pieces:
            released = release(buf, released, int(o[m[0]]) - 65536)
            om = o[m]
            # EPB: type len iface tshi tslo caplen origlen; OPB: type len if16 drops16 tshi tslo caplen origlen
            raw = windows(buf, om, 28).view(sbo + "u4").reshape(len(om), 7).astype(np.int64)
            km = k[m]
            bl = raw[:, 1]
            lid = np.where(km == KIND_EPB, raw[:, 2], 0)
            if sbo == "<":
                lid = np.where(km == KIND_OPB, raw[:, 2] & 0xFFFF, lid)
            else:
                lid = np.where(km == KIND_OPB, raw[:, 2] >> 16, lid)
            ticks = (raw[:, 3] << 32) | raw[:, 4]
            cl = np.where(km == KIND_SPB, 0, raw[:, 5])
            wl = np.where(km == KIND_SPB, raw[:, 2], raw[:, 6])
            hdrlen = np.where(km == KIND_SPB, 12, 28)
            room = bl - hdrlen - 4
            # SPB: caplen is what the block holds, at most origlen and the snaplen
            snap0 = sifs[0].snaplen if sifs else 0
            spb_cl = np.minimum(room, raw[:, 2])
            if snap0:
                spb_cl = np.minimum(spb_cl, snap0)
            cl = np.where(km == KIND_SPB, spb_cl, cl)
            st = np.zeros(len(om), np.uint8)
            known = lid < len(sifs)
            st[~known] = Undecoded.MALFORMED
            too_big = cl > room
            st[too_big] = Undecoded.MALFORMED
            cl = np.where(too_big, np.maximum(room, 0), cl)
            lt = np.full(len(om), -1, np.int64)
            gid = np.zeros(len(om), np.int64)
            ts = np.zeros(len(om), np.int64)
            for li, itf in enumerate(sifs):
                mi = lid == li
                if not mi.any():
                    continue
                lt[mi] = itf.linktype
                gid[mi] = itf.gid
                ts[mi] = itf.ns(ticks[mi])
            ts[km == KIND_SPB] = 0  # SPBs carry no timestamp
            data_off[m] = om + hdrlen
            caplen[m] = np.maximum(cl, 0)
            wirelen[m] = wl
            ts_ns[m] = ts
            iface[m] = gid
            linktype[m] = lt
            status[m] = st
        nosec = s < 0
        status[nosec] = Undecoded.MALFORMED
    infos = tuple(
        InterfaceInfo(
            iface=i.gid,
            linktype=i.linktype,
            name=i.name,
            ts_resolution_ns=i.resol_ns,
            snaplen=i.snaplen,
            kernel_drops=i.drops,
            listened_ns=(i.start_ns, i.end_ns),
        )
        for i in ifaces
    )
    return Records(
        format="pcapng",
        interfaces=infos,
        data_off=data_off,
        caplen=caplen,
        wirelen=wirelen,
        ts_ns=ts_ns,
        iface=iface,
        linktype=linktype,
        status=status,
        truncated_tail=truncated,
        tail_note=note,
        gaps=_gaps(gaps, ts_ns),
    )


# --------------------------------------------------------------------------- pcap, a segment at a time


class NotStreamable(Exception):
    """The file cannot be walked a segment at a time (pcapng, compressed, damaged, cut
    short): read it whole with ``walk`` instead."""


def _pcap_head(buf, name: str) -> tuple[str, int, str, int, int, InterfaceInfo]:
    """A plain pcap's byte order, tick, format, snaplen, link type and interface, as the
    segment walks read them; ``NotStreamable`` where they cannot walk it."""
    head = bytes(buf[:4])
    if head not in PCAP_MAGIC or len(buf) < 24:
        raise NotStreamable(name)
    bo, tick_ns, fmt = PCAP_MAGIC[head]
    major, _minor, _tz, _sig, snaplen, lt = struct.unpack_from(bo + "HHiIII", buf, 4)
    if major != 2:
        raise NotStreamable(name)
    linktype = lt & 0xFFFF
    return bo, tick_ns, fmt, snaplen, linktype, InterfaceInfo(iface=0, linktype=linktype, ts_resolution_ns=tick_ns,
                                                              snaplen=snaplen)


def _records(fmt: str, iface: InterfaceInfo, o: np.ndarray, h: np.ndarray, tick_ns: int) -> Records:
    n = len(o)
    ts = h[:, 0].astype(np.int64) * 1_000_000_000 + h[:, 1].astype(np.int64) * tick_ns
    return Records(format=fmt, interfaces=(iface,), data_off=o + 16, caplen=h[:, 2].copy(), wirelen=h[:, 3].copy(),
                   ts_ns=ts, iface=np.zeros(n, np.uint16), linktype=np.full(n, iface.linktype, np.int32),
                   status=np.zeros(n, np.uint8), truncated_tail=False, tail_note="")


def pcap_segments(buf, name: str, start: int = 24, until: int | None = None):
    """The records of a plain pcap in ``buf``, a segment (about ``SEGMENT`` bytes) at a
    time: yields ``(start, end, Records)`` with ``end`` the offset after the segment's
    last record (walking again from ``start`` to ``end`` gives the same records). Memory
    follows a segment, not the file (``walk`` keeps ~31 bytes per record of the whole
    file). Raises ``NotStreamable`` where ``walk`` would have to resync or stop early
    (a damaged header, a record past the end): the caller reads the file whole."""
    bo, tick_ns, fmt, snaplen, _lt, iface = _pcap_head(buf, name)
    end = len(buf)
    last = end - 16 if until is None else until - 1
    caplen_at = struct.Struct(bo + "I").unpack_from
    arr = np.frombuffer(buf, np.uint8)
    u4 = np.ndarray((end - 3,), bo + "u4", arr, 0, (1,))
    maxcap = resync.max_caplen(snaplen)

    def seq(off: int, stop: int) -> tuple[list[int], int]:
        offs: list[int] = []
        while off <= stop:
            offs.append(off)
            off += 16 + caplen_at(buf, off + 8)[0]
        return offs, off

    off = start
    walker = compiled_walker()
    while off <= last:
        first = off
        stop = min(last, off + SEGMENT)
        o, h, off = _segment(buf, arr, u4, bo, off, stop, snaplen, tick_ns, maxcap, seq, walker)
        if off > end or (h[:, 2] > maxcap).any():
            raise NotStreamable(name)
        if (h[:, 1] >= 1_000_000_000 // tick_ns).any():
            raise NotStreamable(name)  # counted as bad_ts by walk
        yield first, off, _records(fmt, iface, o, h, tick_ns)
    if until is None and off != end:
        raise NotStreamable(name)


def pcap_segments_scanned(buf, name: str, scanner, start: int = 24, until: int | None = None):
    """``pcap_segments`` where each segment's records are picked as they are walked:
    ``scanner(buf, off, stop, swap, maxcap, linktype, idx, offs, hdrs)`` walks from
    ``off`` while <= ``stop`` as ``_walk.pcap`` does and writes the picked records'
    numbers, offsets and headers (``_fast.walkscan``); it returns (records walked, the
    offset after them, hard, the largest sub-second field, records picked). Yields
    ``(start, end, walked, picked, Records)``: ``Records`` of the picked records only,
    ``picked`` their numbers in the segment. The same segments and the same refusals
    (``NotStreamable``) as ``pcap_segments``."""
    bo, tick_ns, fmt, snaplen, linktype, iface = _pcap_head(buf, name)
    end = len(buf)
    last = end - 16 if until is None else until - 1
    maxcap = resync.max_caplen(snaplen)
    swap = (bo == "<") != (sys.byteorder == "little")
    off = start
    while off <= last:
        first = off
        stop = min(last, off + SEGMENT)
        room = (stop - off) // 16 + 1
        idx, o, h = np.empty(room, np.int64), np.empty(room, np.int64), np.empty((room, 4), np.uint32)
        n, off, hard, max_sub, k = scanner(buf, off, stop, swap, maxcap, linktype, idx, o, h)
        if off > end or hard or max_sub >= 1_000_000_000 // tick_ns:
            raise NotStreamable(name)
        yield first, off, n, idx[:k].copy(), _records(fmt, iface, o[:k].copy(), h[:k].copy(), tick_ns)
    if until is None and off != end:
        raise NotStreamable(name)
