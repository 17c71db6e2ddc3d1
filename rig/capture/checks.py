"""What is checked about two captures before they are diffed, and said about one.

``ensure_distinct``: the two captures of a diff come from two capture points; the same
file given twice (or two copies, or one capture cut out of the other) would make every
exchange look delivered or, given the other way, never answered. Two captures of one
exchange at two points never share records with identical times and bytes (the TTL
alone differs after a router), except when both were taken on one host on one
interface. So: the same file (device and inode), or a large share of sampled records
of the smaller capture found, time and bytes identical, in the other, is refused.

``gap_note``: the one line that says what a damaged capture lost (``Capture.gaps``).
"""

from __future__ import annotations

import os

import numpy as np

from rig.capture.table import Capture
from rig.errors import InputError
from rig.unique import unique

SAMPLE = 4096  # records of the smaller capture looked up in the other
NEAR = 4  # records compared from where a sampled time would be in the other
SHARE = 10  # refused when at least 1 in SHARE sampled records is found (and at least 2)

# every field of a record that both table layouts hold and that a path changes or that
# tells packets apart; mixed into one 64-bit key per record
_KEY_FIELDS = ("ts_ns", "phash", "seq", "ack", "ip_id", "sport", "dport", "ttl", "flags", "plen", "proto", "icmp_seq",
               "icmp_type", "ipver")
_MULT = np.uint64(0x9E3779B97F4A7C15)


def _keys(t: np.ndarray) -> np.ndarray:
    h = np.full(len(t), 0xCBF29CE484222325, np.uint64)
    for name in _KEY_FIELDS:
        h ^= t[name].astype(np.uint64)
        h *= _MULT
        h ^= h >> np.uint64(29)
    return h


def shared_records(a: Capture, b: Capture) -> tuple[int, int]:
    """(found, sampled): how many of up to ``SAMPLE`` records of the smaller capture are
    in the other with identical time and bytes."""
    small, big = (a, b) if len(a.packets) <= len(b.packets) else (b, a)
    n = len(small.packets)
    if n == 0:
        return 0, 0
    pick = unique(np.linspace(0, n - 1, min(n, SAMPLE)).astype(np.int64))
    rows = small.packets[pick]
    want, t = _keys(rows), rows["ts_ns"]
    # where each sampled time is in the other (a capture is in time order, but for a few
    # records): a binary search per sample, then the next few records compared -- no pass
    # over the other's 1M records (a hash table of them took 0.1-0.2 s)
    ts = big.packets["ts_ns"]
    m = len(ts)
    lo, hi = np.zeros(len(t), np.int64), np.full(len(t), m, np.int64)
    while m and (lo < hi).any():
        mid = (lo + hi) // 2
        less = ts[np.minimum(mid, m - 1)] < t
        open_ = lo < hi
        lo = np.where(open_ & less, mid + 1, lo)
        hi = np.where(open_ & ~less, mid, hi)
    hit = np.zeros(len(t), bool)
    for d in range(NEAR):
        at = lo + d
        ok = at < m
        hit[ok] |= _keys(big.packets[at[ok]]) == want[ok]
    return int(hit.sum()), len(t)


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def ensure_distinct_files(a: str, b: str) -> None:
    """Raise ``InputError`` (one line, naming both) if paths ``a`` and ``b`` are one file."""
    if _same_file(a, b):
        raise InputError(f"{a} and {b} are the same file: give the captures of two different points")


def ensure_distinct(a: Capture, b: Capture) -> None:
    """Raise ``InputError`` (one line, naming both files) if ``a`` and ``b`` are one capture:
    the same file, or records shared with identical times and bytes (see above)."""
    ensure_distinct_files(a.path, b.path)
    found, sampled = shared_records(a, b)
    if sampled and found >= min(sampled, max(2, -(-sampled // SHARE))):
        raise InputError(
            f"{a.path} and {b.path} hold the same packets ({found} of {sampled} sampled records have identical times "
            "and bytes): captures of two points never do, unless both were taken on one host on one interface")


def gap_note(cap: Capture) -> str | None:
    """One line on the damaged regions skipped in ``cap`` (None: there were none)."""
    gaps = cap.gaps
    if not gaps:
        return None
    g = gaps[0]
    more = f" and {len(gaps) - 1} more regions, {sum(x.skipped for x in gaps)} bytes in all" if len(gaps) > 1 else ""
    return (f"{cap.path}: damaged records skipped: {g.skipped} bytes at byte {g.offset} (after frame "
            f"{g.frame_before}){more}; the records after it were read, and exchanges whose packets would be there "
            "are incomplete")
