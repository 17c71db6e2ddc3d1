"""Address texts for many rows (``summary.addr_texts``): the text ``addr_text`` gives
each row, whether the capture's every address is formatted once and kept (a long column
against few addresses) or only the distinct ones asked (a short one)."""

from __future__ import annotations

import numpy as np

from rig.analysis import summary
from rig.analysis.summary import addr_text, addr_texts


def _addrs(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, (n, 16), dtype=np.uint8)
    a[: n // 2, :10] = 0  # half IPv4-mapped
    a[: n // 2, 10:12] = 0xFF
    return a


def test_every_row_its_address_text_both_ways(monkeypatch):
    monkeypatch.setattr(summary, "KEEP_ALL", 100)
    addrs = _addrs(300, 1)
    rng = np.random.default_rng(2)
    for n in (1, 10, 74, 75, 76, 1000, 5000):  # 4 x 75 = 300: either side of the switch
        idx = rng.integers(0, len(addrs), n).astype(np.uint32)
        assert addr_texts(idx, addrs) == [addr_text(addrs[i]) for i in idx.tolist()]
    assert addr_texts(np.zeros(0, np.uint32), addrs) == []


def test_kept_texts_belong_to_their_table(monkeypatch):
    """Another table of addresses (the other capture's, or a later run's) never reads the
    texts kept for the first, even one equal in length."""
    monkeypatch.setattr(summary, "KEEP_ALL", 100)
    monkeypatch.setattr(summary, "_ALL_TEXTS", {})  # (what earlier tests kept)
    a, b = _addrs(50, 3), _addrs(50, 4)
    idx = np.arange(50, dtype=np.uint32).repeat(4)
    assert addr_texts(idx, a) == [addr_text(x) for x in a for _ in range(4)]
    assert addr_texts(idx, b) == [addr_text(x) for x in b for _ in range(4)]
    assert [id(t) for t, _ in summary._ALL_TEXTS.values()] == [id(a), id(b)]  # each kept with its own
