"""Vectorised 64-bit hashing of packet-table columns (join keys that survive NATs)."""

from __future__ import annotations

import numpy as np

try:
    from rig.capture._fast import gather as _gather  # the compiled decode's (optional: rig/capture/_fast.c)
except ImportError:  # pragma: no cover - where it did not build
    _gather = None  # type: ignore[assignment]

U64 = np.uint64
_C1, _C2 = U64(0xFF51AFD7ED558CCD), U64(0xC4CEB9FE1A85EC53)
_S33 = U64(33)


def _fmix(h: np.ndarray) -> np.ndarray:
    """The murmur3 finaliser, in place on ``h`` (which it returns): one temporary per
    shift instead of a new array per step (measured: 1M keys of 3 columns 39 -> 23 ms)."""
    h ^= h >> _S33
    h *= _C1
    h ^= h >> _S33
    h *= _C2
    h ^= h >> _S33
    return h


def combine(*cols: np.ndarray | int, n: int | None = None) -> np.ndarray:
    """A 64-bit hash of several integer columns (scalars broadcast)."""
    if n is None:
        n = next(len(c) for c in cols if isinstance(c, np.ndarray))
    h = np.full(n, 0x9E3779B97F4A7C15, dtype=U64)
    with np.errstate(over="ignore"):
        for c in cols:
            if isinstance(c, np.ndarray):
                if c.dtype == U64 or c.dtype.kind not in "iu" or c.dtype.itemsize == 8:
                    h ^= c.astype(U64, copy=False)
                else:  # a narrow column widens as it is xor-ed in: no 8-byte copy first
                    np.bitwise_xor(h, c, out=h, dtype=U64, casting="unsafe")
            else:
                h ^= U64(int(c) & 0xFFFFFFFFFFFFFFFF)
            _fmix(h)
            h += U64(0x632BE59BD9B4E019)
    return h


GATHER_MIN = 256  # rows: below this, numpy's own indexing costs less than the call


def take(col: np.ndarray, rows) -> np.ndarray:
    """``col[rows]`` for integer row numbers. A column of the packet table is a strided
    view (rows 77-150 bytes apart): fancy indexing on it costs ~7-60 ns a row, and np.take
    first copies the whole column contiguous (4-7 ms per 1M rows) and then gathers from
    that. Where the compiled decode was built, ``_fast.gather`` copies each row's item
    straight from the table, fetching rows ahead (measured here, 1M-row table, 200k
    sorted rows: seq 2.0 ms against fancy 5.6 / np.take 6.5 ms; src 2.3 against 11.6 /
    10.4 ms); out-of-range or negative rows, and other views, are left to numpy (which
    raises or wraps as it does). Else np.take when the rows are a fair share of the
    column, fancy indexing otherwise."""
    if isinstance(rows, np.ndarray) and not col.flags.c_contiguous:
        if _gather is not None and len(rows) >= GATHER_MIN and rows.dtype.kind in "iu" and rows.ndim == 1:
            out = np.empty((len(rows),) + col.shape[1:], col.dtype)
            if _gather(col, rows.astype(np.int64, copy=False), out):
                return out
        if 4 * len(rows) >= len(col):
            return np.take(col, rows, axis=0)
    return col[rows]


def row_chunks(t: np.ndarray, rows, chunk: int = 8192):
    """``(start, t[rows[start:start + chunk]])`` for a structured table: whole rows by
    np.take, a chunk at a time. Whole rows are the fast gather (``take_fields``); the
    chunk bounds the copy and keeps it in cache (measured, 6 fields of 700k rows: 28 ms
    in chunks of 65536 rows, 18 ms in chunks of 8192)."""
    for a in range(0, len(rows), chunk):
        yield a, np.take(t, rows[a : a + chunk])


def take_fields(t, fields, rows) -> dict[str, np.ndarray]:
    """``{f: t[f][rows]}`` for several fields of a structured table at once: np.take of
    whole rows (``row_chunks``), then each field copied out. Measured here, 11 fields of
    100k rows: 26 ms field by field, 9 ms this way (and ``t[rows]``, fancy indexing of
    whole rows, 56 ms). ``t`` may be a dict of columns."""
    if not (isinstance(t, np.ndarray) and t.dtype.names):
        return {f: take(t[f], rows) for f in fields}
    dt = t.dtype
    out = {f: np.empty((len(rows),) + dt[f].shape, dt[f].base) for f in fields}
    for a, sub in row_chunks(t, rows):
        for f in fields:
            out[f][a : a + len(sub)] = sub[f]
    return out


def run_starts(k: np.ndarray) -> np.ndarray:
    """Where each run of equal values starts in ``k`` (bool; ``k`` sorted, or grouped)."""
    start = np.empty(len(k), bool)
    if len(k):
        start[0] = True
        np.not_equal(k[1:], k[:-1], out=start[1:])
    return start


def sort_order(keys: np.ndarray, then: np.ndarray | None = None, runs: bool = False):
    """Indices that sort ``keys`` stably: equal keys by ``then``, and then in index order
    (``np.lexsort((then, keys))``; without ``then``, ``np.argsort(keys, kind="stable")``).
    ``runs`` (without ``then``): also where each run of equal keys starts in that order
    (bool), which the sort finds anyway.

    Why not those: on this machine numpy's stable argsort of 1M uint64 takes 122 ms, its
    unstable (SIMD) argsort 29 ms and a plain sort of int64 8 ms. So: the unstable
    argsort, then equal keys' runs put in index order by one plain sort of
    (run << 32 | index). Measured 1M keys: 45 ms, with every key in runs of ten too.
    """
    n = len(keys)
    if n < 2:
        o = np.arange(n, dtype=np.int64)
        return (o, np.ones(n, bool)) if runs else o
    if then is not None:
        assert not runs
        p = sort_order(then)
        return p[sort_order(keys[p])]
    o = np.argsort(keys)
    k = keys[o]
    start = run_starts(k)
    del k  # the peak is o, start and packed, not the sorted keys as well
    if start.all():
        return (o, start) if runs else o
    packed = np.cumsum(start, dtype=np.int64)
    packed <<= 32
    packed |= o
    del o
    packed.sort()
    packed &= 0xFFFFFFFF
    return (packed, start) if runs else packed


def addr_key(col: np.ndarray) -> np.ndarray:
    """A 64-bit key of each 16-byte address of a (n, 16) uint8 column. The column is
    copied out whole first (a strided 16-byte copy) and read as two native words: no
    byte swap, one mixing round (the keys only ever meet keys made here). Measured 1M
    rows: 41 -> 10 ms."""
    if col.ndim == 2 and col.shape[1] == 16 and col.strides[1] == 1:
        # as 16-byte items: numpy copies those whole (5 ms per 1M, against 15 ms for the
        # same bytes copied as a (n, 16) uint8 array)
        col = col.view("V16")[:, 0]
    w = np.ascontiguousarray(col).view(U64).reshape(-1, 2)
    with np.errstate(over="ignore"):
        h = w[:, 1] * _C1
        h ^= w[:, 0]
        return _fmix(h)


def rel32(a: np.ndarray, base: np.ndarray) -> np.ndarray:
    """(a - base) mod 2^32 as a signed int64 in [-2^31, 2^31): sequence arithmetic."""
    d = (a.astype(np.int64) - base.astype(np.int64)) & 0xFFFFFFFF
    return np.where(d >= 1 << 31, d - (1 << 32), d)


_M = 0xFFFFFFFFFFFFFFFF


def _fmix1(h: int) -> int:
    h ^= h >> 33
    h = (h * 0xFF51AFD7ED558CCD) & _M
    h ^= h >> 33
    h = (h * 0xC4CEB9FE1A85EC53) & _M
    return h ^ (h >> 33)


def combine1(*vals: int) -> int:
    """``combine`` of scalars in plain Python: the same number, without numpy's per-call cost."""
    h = 0x9E3779B97F4A7C15
    for v in vals:
        h = (_fmix1(h ^ (int(v) & _M)) + 0x632BE59BD9B4E019) & _M
    return h


def signature_groups(cols: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Exact groups of equal rows over integer columns: (a first row of each group, each
    row's group). Like ``np.unique(np.stack(cols, 1), axis=0, return_index=True,
    return_inverse=True)`` but each column becomes a small code and the codes one int64
    (mixed radix), so one 1-D unique does it: measured 0.05 s instead of 0.45 s for
    140k rows of 18 columns. Falls back to the 2-D unique if the codes do not fit.
    The columns may be narrow: each is widened to int64 only while its code is made."""
    n = len(cols[0]) if cols else 0
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    key = np.zeros(n, np.int64)
    radix = 1
    for col in cols:
        col = col.astype(np.int64, copy=False)  # a narrow column's codes must not wrap
        lo, hi = int(col.min()), int(col.max())
        if hi - lo < 1 << 20:
            code, size = col - lo, hi - lo + 1
        else:
            u, code = np.unique(col, return_inverse=True)
            code, size = code.ravel(), len(u)
        radix *= size
        if radix >= 1 << 62:
            _, first, inv = np.unique(np.stack([c.astype(np.int64, copy=False) for c in cols], axis=1), axis=0,
                                      return_index=True, return_inverse=True)
            return first, inv.ravel()
        key = key * size + code
    _, first, inv = np.unique(key, return_index=True, return_inverse=True)
    return first, inv.ravel()
