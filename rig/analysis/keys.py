"""Vectorised 64-bit hashing of packet-table columns (join keys that survive NATs)."""

from __future__ import annotations

import numpy as np

U64 = np.uint64
_C1, _C2 = U64(0xFF51AFD7ED558CCD), U64(0xC4CEB9FE1A85EC53)
_S33 = U64(33)


def _fmix(h: np.ndarray) -> np.ndarray:
    h = h ^ (h >> _S33)
    h = h * _C1
    h = h ^ (h >> _S33)
    h = h * _C2
    return h ^ (h >> _S33)


def combine(*cols: np.ndarray | int, n: int | None = None) -> np.ndarray:
    """A 64-bit hash of several integer columns (scalars broadcast)."""
    if n is None:
        n = next(len(c) for c in cols if isinstance(c, np.ndarray))
    h = np.full(n, 0x9E3779B97F4A7C15, dtype=U64)
    with np.errstate(over="ignore"):
        for c in cols:
            v = np.asarray(c).astype(U64, copy=False) if isinstance(c, np.ndarray) else U64(int(c) & 0xFFFFFFFFFFFFFFFF)
            h = _fmix(h ^ v) + U64(0x632BE59BD9B4E019)
    return h


def addr_words(col: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A (n, 16) uint8 address column as two big-endian uint64 words."""
    if col.ndim == 2 and col.shape[1] == 16 and col.strides[1] == 1:
        # the table's column as it lies (rows 189 bytes apart): no 16-byte copy first
        # (measured 0.08 -> 0.035 s per 1M rows)
        w = col.view(">u8")
    else:
        w = np.ascontiguousarray(col).view(">u8").reshape(-1, 2)
    return w[:, 0].astype(U64), w[:, 1].astype(U64)


def addr_key(col: np.ndarray) -> np.ndarray:
    hi, lo = addr_words(col)
    return combine(hi, lo)


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
    """Exact groups of equal rows over int64 columns: (a first row of each group, each
    row's group). Like ``np.unique(np.stack(cols, 1), axis=0, return_index=True,
    return_inverse=True)`` but each column becomes a small code and the codes one int64
    (mixed radix), so one 1-D unique does it: measured 0.05 s instead of 0.45 s for
    140k rows of 18 columns. Falls back to the 2-D unique if the codes do not fit."""
    n = len(cols[0]) if cols else 0
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    key = np.zeros(n, np.int64)
    radix = 1
    for col in cols:
        lo, hi = int(col.min()), int(col.max())
        if hi - lo < 1 << 20:
            code, size = col - lo, hi - lo + 1
        else:
            u, code = np.unique(col, return_inverse=True)
            code, size = code.ravel(), len(u)
        radix *= size
        if radix >= 1 << 62:
            _, first, inv = np.unique(np.stack(cols, axis=1), axis=0, return_index=True, return_inverse=True)
            return first, inv.ravel()
        key = key * size + code
    _, first, inv = np.unique(key, return_index=True, return_inverse=True)
    return first, inv.ravel()
