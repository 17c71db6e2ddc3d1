"""Address texts for many rows (``summary.AddrTexts``, one per capture): the text
``addr_text`` gives each row, whether the capture's every address is formatted once and
kept (a long column against few addresses) or only the distinct ones asked (a short one)."""

from __future__ import annotations

import numpy as np

from rig.analysis.summary import AddrTexts, addr_text


def _addrs(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, (n, 16), dtype=np.uint8)
    a[: n // 2, :10] = 0  # half IPv4-mapped
    a[: n // 2, 10:12] = 0xFF
    return a


def test_every_row_its_address_text_both_ways(monkeypatch):
    monkeypatch.setattr(AddrTexts, "KEEP_ALL", 100)
    addrs = _addrs(300, 1)
    rng = np.random.default_rng(2)
    for n in (1, 10, 74, 75, 76, 1000, 5000):  # 4 x 75 = 300: either side of the switch
        texts = AddrTexts(addrs)
        idx = rng.integers(0, len(addrs), n).astype(np.uint32)
        assert texts(idx) == [addr_text(addrs[i]) for i in idx.tolist()]
        assert (texts._all is not None) == (n >= 75)
        short = idx[:3]  # once all are kept, a short ask reads them too
        assert texts(short) == [addr_text(addrs[i]) for i in short.tolist()]
    assert AddrTexts(addrs)(np.zeros(0, np.uint32)) == []


def test_kept_texts_belong_to_their_table(monkeypatch):
    """Another table of addresses (the other capture's, or a later run's) never reads the
    texts kept for the first, even one equal in length."""
    monkeypatch.setattr(AddrTexts, "KEEP_ALL", 100)
    a, b = _addrs(50, 3), _addrs(50, 4)
    idx = np.arange(50, dtype=np.uint32).repeat(4)
    ta, tb = AddrTexts(a), AddrTexts(b)
    assert ta(idx) == [addr_text(x) for x in a for _ in range(4)]
    assert tb(idx) == [addr_text(x) for x in b for _ in range(4)]
    assert ta(idx[:8]) == [addr_text(x) for x in a[:2] for _ in range(4)]
