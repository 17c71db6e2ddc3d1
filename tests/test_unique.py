"""``rig.unique.unique`` is ``np.unique``, and ``rig.unique.isin`` ``np.isin``, of integer
and boolean arrays: every path (numpy's table for narrow ranges, a lookup per value for
few distinct values, a sorted walk for many), shapes, mixed types, empties."""

from __future__ import annotations

import numpy as np
import pytest

from rig import unique as unique_mod
from rig.unique import isin, unique


@pytest.mark.parametrize("dtype", [np.int64, np.uint64, np.int32, np.uint32, np.uint16, np.int8, bool])
def test_the_values_np_unique_gives(dtype):
    rng = np.random.default_rng(5)
    info = np.iinfo(dtype) if dtype is not bool else None
    for n in (0, 1, 2, 3, 50, 5000):
        for kinds in (1, 7, 10**9):
            if dtype is bool:
                a = rng.integers(0, 2, n).astype(bool)
            else:
                lo, hi = max(int(info.min), -kinds), min(int(info.max), kinds)
                a = rng.integers(lo, hi, n, endpoint=True, dtype=dtype)
                if n >= 2:
                    a[0], a[-1] = info.min, info.max  # the extremes sort where they belong
            got = unique(a)
            want = np.unique(a)
            assert got.dtype == want.dtype and got.tolist() == want.tolist()


def test_any_shape_flattened_and_lists():
    a = np.array([[3, 1], [1, 2]])
    assert unique(a).tolist() == np.unique(a).tolist() == [1, 2, 3]
    assert unique([5, 5, 4]).tolist() == [4, 5]


@pytest.mark.parametrize("direct", [1 << 16, 4])  # few distinct: looked up directly; many: a sorted walk
def test_isin_is_np_isin(monkeypatch, direct):
    monkeypatch.setattr(unique_mod, "_DIRECT", direct)
    rng = np.random.default_rng(8)
    cases = [
        (rng.integers(0, 1000, 5000), rng.integers(0, 1000, 300)),  # narrow range: numpy's table
        (rng.integers(0, 2**63, 3000, dtype=np.uint64), None),  # wide 64-bit keys
        (rng.integers(-2**62, 2**62, 3000), None),  # signed, negative
        (rng.integers(0, 2**31, (40, 50)).astype(np.int32), None),  # 2-D ``a``, 32-bit
        (np.array([0, 2**64 - 1, 5], np.uint64), np.array([2**64 - 1, 7], np.uint64)),  # the extremes
        (np.zeros(0, np.int64), np.arange(5)),
        (np.arange(5), np.zeros(0, np.int64)),
        (rng.integers(0, 2**40, 2000), rng.integers(0, 2**40, 10).astype(np.uint32)),  # mixed widths
        (rng.integers(0, 2**60, 100).astype(np.uint64), rng.integers(0, 2**60, 100)),  # uint64 against int64
        (rng.integers(0, 2, 50).astype(bool), np.array([True])),
    ]
    for a, b in cases:
        if b is None:  # half of b drawn from a: members and strangers both
            flat = a.ravel()
            b = np.concatenate([rng.choice(flat, len(flat) // 2), rng.integers(0, 2**30, len(flat) // 2).astype(a.dtype)])
        got, want = isin(a, b), np.isin(a, b)
        assert got.shape == want.shape and got.dtype == bool
        assert (got == want).all(), (a.dtype, b.dtype)
