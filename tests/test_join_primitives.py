"""The join primitives under every analysis step: stable ordering, pairing by order,
and column gathers, checked against plain reference implementations."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from rig.analysis.keys import sort_order, take
from rig.analysis.match import pair_by_order
from rig.capture.table import empty_table

small_keys = st.lists(st.integers(0, 6), max_size=40)


@settings(max_examples=300, deadline=None)
@given(small_keys, st.data())
def test_sort_order_is_a_stable_sort(keys, data):
    k = np.array(keys, np.uint64)
    assert sort_order(k).tolist() == np.argsort(k, kind="stable").tolist()
    then = np.array(data.draw(st.lists(st.integers(0, 4), min_size=len(keys), max_size=len(keys))), np.int64)
    assert sort_order(k, then).tolist() == np.lexsort((then, k)).tolist()


def test_sort_order_large_with_runs():
    rng = np.random.default_rng(3)
    k = rng.integers(0, 50_000, 400_000).astype(np.uint64)  # every key in a run of ~8
    assert (sort_order(k) == np.argsort(k, kind="stable")).all()


def _pairs_reference(ka, oa, kb, ob, va, vb):
    """The k-th element of a key in a (by order, then index) with the k-th in b."""
    def groups(k, o, v):
        g: dict[int, list[int]] = {}
        for i in sorted(range(len(k)), key=lambda i: (o[i], i)):
            if v is None or v[i]:
                g.setdefault(int(k[i]), []).append(i)
        return g
    ga, gb = groups(ka, oa, va), groups(kb, ob, vb)
    out = [-1] * len(ka)
    for key, idx in ga.items():
        for rank, i in enumerate(idx):
            if rank < len(gb.get(key, [])):
                out[i] = gb[key][rank]
    return out


@settings(max_examples=400, deadline=None)
@given(small_keys, small_keys, st.data())
def test_pair_by_order_matches_reference(a, b, data):
    ka, kb = np.array(a, np.uint64), np.array(b, np.uint64)
    draw = lambda n, s: np.array(data.draw(st.lists(s, min_size=n, max_size=n)))  # noqa: E731
    oa = draw(len(a), st.integers(0, 3)).astype(np.int64) if data.draw(st.booleans()) else np.arange(len(a))
    ob = draw(len(b), st.integers(0, 3)).astype(np.int64) if data.draw(st.booleans()) else np.arange(len(b))
    va = draw(len(a), st.booleans()).astype(bool) if data.draw(st.booleans()) else None
    vb = draw(len(b), st.booleans()).astype(bool) if data.draw(st.booleans()) else None
    got = pair_by_order(ka, oa, kb, ob, va, vb).tolist()
    assert got == _pairs_reference(ka, oa, kb, ob, va, vb)


def test_take_equals_indexing_on_table_columns():
    t = empty_table(1000)
    rng = np.random.default_rng(5)
    t["seq"] = rng.integers(0, 2**32, 1000)
    t["src"] = rng.integers(0, 256, (1000, 16))
    for rows in (rng.integers(0, 1000, 900), rng.integers(0, 1000, 3), np.zeros(0, np.int64)):
        for col in (t["seq"], t["src"], t["seq"].copy()):
            got = take(col, rows)
            assert got.shape == col[rows].shape and (got == col[rows]).all()


def test_side_frames_are_rows_plus_one_or_read_from_the_table():
    from rig.analysis.sides import Side
    from rig.capture.table import Capture

    t = empty_table(5)
    t["frame"] = np.arange(1, 6)
    side = Side("client", Capture("x.pcap", "pcap", (), t))
    assert side.frames(np.array([0, 3, 4])).tolist() == [1, 4, 5]
    t2 = empty_table(5)
    t2["frame"] = [10, 20, 30, 40, 50]  # not the reader's numbering: taken from the table
    side2 = Side("client", Capture("y.pcap", "pcap", (), t2))
    assert side2.frames(np.array([0, 3, 4])).tolist() == [10, 40, 50]


def test_run_starts_marks_where_each_run_of_equal_values_begins():
    from rig.analysis.keys import run_starts

    assert run_starts(np.array([3, 3, 5, 5, 5, 9, 3], np.uint64)).tolist() == [True, False, True, False, False, True, True]
    assert run_starts(np.array([7])).tolist() == [True]
    assert run_starts(np.zeros(0, np.int64)).tolist() == []
