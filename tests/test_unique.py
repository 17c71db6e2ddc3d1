"""``rig.unique.unique`` is ``np.unique`` of integer and boolean arrays."""

from __future__ import annotations

import numpy as np
import pytest

from rig.unique import unique


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
