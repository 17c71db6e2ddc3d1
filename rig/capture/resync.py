"""Find the next plausible record after a damaged one (what pcapfix does, vectorised).

The record walk (``container``) follows each record's length to the next record, so one
damaged length sends it into packet bytes: it reads garbage as headers, or runs off the
end of the file, and everything after the damage was lost. ``container`` calls this
module only where its walk found an implausible header, so the common case costs nothing.

A candidate offset is accepted when a chain of ``DEPTH`` headers starting there is
plausible (or the chain reaches the end of the file exactly):
- pcap: caplen 1..``maxcap``, wirelen >= caplen, the sub-second field in range, the
  first header's time within [-1 h, +2 days] of the last good record before the damage,
  and every later header's within an hour of the first; the next header is where the
  caplen says.
- pcapng: a block type rig knows, a length >= 12 and a multiple of 4 whose copy at the
  block's end agrees (a 32-bit check per block), an EPB's caplen inside its block; the
  next block is where the length says. (No time check: a block's time needs its
  interface's resolution, and the trailing length is already a strong check.)
The search scans every byte offset (damage may insert or delete bytes, not only flip
them) in chunks that grow from 4 KB, so a nearby record is found without scanning the
rest of the file.
"""

from __future__ import annotations

import numpy as np

from rig.unique import isin

DEPTH = 3  # headers in a chain (one more when there is no good record before to compare times with)
BACK_S = 3600  # the first header after the damage may be this much older than the last before it
AHEAD_S = 2 * 86400  # ... and this much newer
SPREAD_S = 3600  # the chain's later headers: within this of its first
CHUNK0, CHUNK_MAX = 4096, 4 << 20  # candidate offsets per search step: first, at most

# pcapng block types that may follow a damaged block
PCAPNG_TYPES = np.array([0x0A0D0D0A, 1, 2, 3, 4, 5, 6, 0xA, 0xBAD, 0x40000BAD], np.int64)


def max_caplen(snaplen: int) -> int:
    """The largest caplen a sane header may carry: the file's snaplen or libpcap's 256 KB."""
    return max(snaplen if 0 < snaplen <= 1 << 24 else 0, 262144)


def pcap_plausible(h: np.ndarray, ts_prev: np.ndarray, maxcap: int, sub_s: int) -> np.ndarray:
    """Which pcap record headers ``h`` ((n, 4) u32: ts, sub-second, caplen, wirelen) look
    like records, given the times ``ts_prev`` (seconds) of the records before them."""
    ts, sub, cl, wl = (h[:, k].astype(np.int64) for k in range(4))
    return (cl >= 1) & (cl <= maxcap) & (wl >= cl) & (sub < sub_s) & (ts >= ts_prev - BACK_S) & (ts <= ts_prev + AHEAD_S)


def _search(start: int, end: int, first_at, chain_ok) -> int | None:
    """The first offset in [start, end - first_at] whose chain ``chain_ok`` accepts."""
    lo, size = start, CHUNK0
    while lo <= end - first_at:
        hi = min(end - first_at, lo + size - 1)
        p = np.arange(lo, hi + 1, dtype=np.int64)
        ok = chain_ok(p)
        if ok.any():
            return int(p[int(np.argmax(ok))])
        lo, size = hi + 1, min(CHUNK_MAX, size * 4)
    return None


def pcap_next(u4: np.ndarray, end: int, start: int, maxcap: int, sub_s: int, ts_ref: int | None) -> int | None:
    """The offset of the first plausible pcap record header at or after ``start`` (None:
    none before the end). ``u4``: the file as a u32 at every byte offset (the file's
    byte order); ``ts_ref``: the time (s) of the last good record before the damage."""
    depth = DEPTH if ts_ref is not None else DEPTH + 1

    def chain_ok(p: np.ndarray) -> np.ndarray:
        accept = np.zeros(len(p), bool)
        idx = np.arange(len(p))  # the candidates still alive, and where their chain is
        q = p.copy()
        t0 = np.zeros(len(p), np.int64)  # the chain's first time
        for k in range(depth):
            at_end = q == end
            accept[idx[at_end]] = k > 0
            keep = ~at_end & (q + 16 <= end)
            idx, q, t0 = idx[keep], q[keep], t0[keep]
            if not len(q):
                break
            ts, sub, cl, wl = (u4[q + 4 * f].astype(np.int64) for f in range(4))
            good = (cl >= 1) & (cl <= maxcap) & (wl >= cl) & (sub < sub_s)
            if k == 0:
                t0 = ts
                if ts_ref is not None:
                    good &= (ts >= ts_ref - BACK_S) & (ts <= ts_ref + AHEAD_S)
            else:
                good &= np.abs(ts - t0) <= SPREAD_S
            nxt = q + 16 + cl
            good &= nxt <= end
            idx, q, t0 = idx[good], nxt[good], t0[good]
        accept[idx] = True
        return accept

    return _search(start, end, 16, chain_ok)


def pcapng_next(u4: np.ndarray, end: int, start: int) -> int | None:
    """The offset of the first plausible pcapng block at or after ``start`` (None: none).
    ``u4``: the file as a u32 at every byte offset in the section's byte order."""

    def chain_ok(p: np.ndarray) -> np.ndarray:
        accept = np.zeros(len(p), bool)
        idx = np.arange(len(p))
        q = p.copy()
        for k in range(DEPTH):
            at_end = q == end
            accept[idx[at_end]] = k > 0
            keep = ~at_end & (q + 12 <= end)
            idx, q = idx[keep], q[keep]
            if not len(q):
                break
            bt, bl = u4[q].astype(np.int64), u4[q + 4].astype(np.int64)
            good = isin(bt, PCAPNG_TYPES) & (bl >= 12) & (bl % 4 == 0) & (q + bl <= end)
            idx, q, bt, bl = idx[good], q[good], bt[good], bl[good]
            good = u4[q + bl - 4].astype(np.int64) == bl
            epb = bt == 6  # an EPB's caplen fits its block
            good[epb] &= (bl[epb] >= 32) & (u4[np.minimum(q[epb] + 20, end - 4)].astype(np.int64) + 32 <= bl[epb])
            idx, q = idx[good], (q + bl)[good]
        accept[idx] = True
        return accept

    return _search(start, end, 12, chain_ok)
