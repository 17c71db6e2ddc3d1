"""``analysis.keys.take`` through the compiled gather (rig/capture/_fast.c) gives numpy's
own ``col[rows]``: every field of both packet tables (scalars, 16-byte addresses), rows
sorted, shuffled, repeated, at the bounds, of every integer type; rows numpy wraps or
refuses (negative, past the end) are left to numpy, which then does what it does. And
``rig diff --json`` writes the same bytes with and without it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rig.analysis import keys
from rig.capture.table import LEAN_DTYPE, PACKET_DTYPE

pytestmark = pytest.mark.skipif(keys._gather is None, reason="the compiled fast path (rig/capture/_fast.c) did not "
                                "build (pip install -e . builds it where a C compiler and the Python headers are)")

DATA = Path(__file__).parent / "data" / "analysis"


@pytest.fixture
def counted(monkeypatch):
    calls = []
    real = keys._gather

    def gather(col, rows, out):
        ok = real(col, rows, out)
        calls.append(ok)
        return ok

    monkeypatch.setattr(keys, "_gather", gather)
    return calls


@pytest.mark.parametrize("dtype", [PACKET_DTYPE, LEAN_DTYPE])
def test_every_field_at_every_kind_of_rows(counted, dtype):
    rng = np.random.default_rng(4)
    n = 5000
    t = np.zeros(n, dtype)
    raw = t.view(np.uint8).reshape(n, dtype.itemsize)
    raw[:] = rng.integers(0, 256, raw.shape, dtype=np.uint8)
    rows_kinds = {
        "sorted": np.sort(rng.choice(n, 3000, replace=False)),
        "shuffled": rng.permutation(n)[:2000],
        "repeated": rng.integers(0, n, 4000),
        "bounds": np.array([0, n - 1] * 200),
        "u4": rng.integers(0, n, 1000).astype(np.uint32),
        "i4": rng.integers(0, n, 1000).astype(np.int32),
    }
    for name in dtype.names:
        col = t[name]
        for kind, rows in rows_kinds.items():
            got = keys.take(col, rows)
            assert got.dtype == col.dtype and got.shape == (len(rows),) + col.shape[1:]
            assert got.tobytes() == col[rows].tobytes(), (name, kind)
    assert len(counted) == len(dtype.names) * len(rows_kinds) and all(counted)


def test_rows_numpy_wraps_or_refuses_are_numpys(counted):
    t = np.zeros(1000, LEAN_DTYPE)
    t["seq"] = np.arange(1000)
    col = t["seq"]
    neg = np.r_[np.arange(500), [-1, -2]]
    assert keys.take(col, neg).tolist() == col[neg].tolist()  # numpy wraps
    with pytest.raises(IndexError):
        keys.take(col, np.r_[np.arange(500), [1000]])
    assert counted == [False, False]
    assert keys.take(col, np.arange(10)).tolist() == list(range(10))  # (few rows: numpy's)
    assert len(counted) == 2


@pytest.mark.parametrize("name", ["seed", "port-set", "mtu-blackhole"])
def test_rig_diff_json_is_the_same_without_the_gather(counted, monkeypatch, capsys, name):
    from rig.cli import main

    out = []
    for use in (True, False):
        if not use:
            monkeypatch.setattr(keys, "_gather", None)
        rc = main(["diff", str(DATA / name / "client.pcap"), str(DATA / name / "server.pcap"), "--json"])
        out.append((rc, capsys.readouterr().out))
    assert out[0] == out[1] and out[0][1]


def test_a_large_pair_the_same_without_the_gather(counted, monkeypatch, tmp_path):
    """A generated pair of bench shape (20k packets: rows enough for the gather)."""
    from rig.analysis.api import analyse
    from rig.capture import read_capture
    from rig.capture.synth_busy import unrelated
    from rig.capture.synth_columns import file_header, records

    p = unrelated(np.random.default_rng(2), 20_000, 1_700_000_000 * 10**9, 1_700_000_030 * 10**9, (0, 0xC6336410))
    rb, _ = records(p)
    a = tmp_path / "a.pcap"
    a.write_bytes(file_header() + rb.tobytes())
    b = tmp_path / "b.pcap"
    rb2, _ = records({k: v[::2].copy() for k, v in p.items()})
    b.write_bytes(file_header() + rb2.tobytes())
    texts = []
    for use in (True, False):
        if not use:
            monkeypatch.setattr(keys, "_gather", None)
        v = analyse(read_capture(str(a), lean=True), read_capture(str(b), lean=True))
        texts.append(v.to_json())
    assert texts[0] == texts[1]
    assert sum(counted) > 20

