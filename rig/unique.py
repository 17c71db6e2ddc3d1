"""``np.unique(a)`` and ``np.isin(a, b)`` of integer arrays, by sorts.

numpy 2.3 and later find a plain ``np.unique(a)`` (no index, inverse or counts asked)
with a hash set, then sort what it found: on this machine (numpy 2.4.6) 110 ms for
220k distinct int64 values against 11 ms for a sort and a compare of neighbours; the
hash set wins only where the values are few (3 ms against 5 ms for 220k values of 50
kinds). rig asks for distinct positions, keys and addresses, mostly many.
"""

from __future__ import annotations

import numpy as np


def unique(a) -> np.ndarray:
    """``np.unique(a)`` of an integer or boolean array (any shape: flattened)."""
    s = np.sort(np.asarray(a).ravel())
    if len(s) < 2:
        return s
    keep = np.empty(len(s), bool)
    keep[0] = True
    np.not_equal(s[1:], s[:-1], out=keep[1:])
    return s[keep]


def member(sorted_unique: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Which of ``x`` are in ``sorted_unique`` (sorted, distinct values): the one search
    the membership tests share (``isin``, ``focus``, ``reqrep_lost``)."""
    if not len(sorted_unique) or not len(x):
        return np.zeros(np.shape(x), bool)
    pos = np.minimum(np.searchsorted(sorted_unique, x), len(sorted_unique) - 1)
    return sorted_unique[pos] == x


_DIRECT = 1 << 16  # distinct values few enough to look each one up where it is (in cache)


def isin(a, b) -> np.ndarray:
    """``np.isin(a, b)`` of integer arrays. numpy 2.3+ makes ``b``'s distinct values by the
    hash set above first: 1.0 s for 1M distinct 64-bit keys whatever ``a``'s length,
    against 0.07 s for 1,000 of them looked up here (0.24 s for 1M). Where ``b``'s
    values span a range not much wider than the arrays (row numbers), numpy's lookup
    table is the fastest and is used."""
    a, b = np.asarray(a), np.asarray(b)
    if a.size == 0 or b.size == 0:
        return np.zeros(a.shape, bool)
    if a.dtype != b.dtype:
        common = np.result_type(a, b)
        if common.kind not in "iub":  # (int64 against uint64: numpy's own rule)
            return np.isin(a, b)
        a, b = a.astype(common, copy=False), b.astype(common, copy=False)
    if a.dtype.kind in "iu":
        lo, hi = int(b.min()), int(b.max())
        if hi - lo <= 6 * (a.size + b.size):
            return np.isin(a, b, kind="table")
    u = unique(b)
    x = a.ravel()
    if len(u) <= _DIRECT:
        return member(u, x).reshape(a.shape)
    o = np.argsort(x)  # a sorted walk through the distinct values: each one's cache lines read once
    out = np.empty(x.size, bool)
    out[o] = member(u, x[o])
    return out.reshape(a.shape)
