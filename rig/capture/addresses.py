"""The distinct IP addresses of one capture, numbered: what ``src_i`` / ``dst_i`` index.

A capture between a few hosts holds a few distinct addresses in a million rows, so the
packet table stores a 4-byte index per address (``Capture.addrs[i]`` is the 16-byte
address) instead of the 16 bytes themselves: 24 bytes a row less in the lean table
(46 MB for two 1M-packet captures), and the analysis groups on small exact integers
instead of hashing 16-byte rows. Index 0 is the all-zero address: rows without IP.

Numbering is in order of first appearance as the decoders meet them (the fast path a
chunk of rows at a time, then the reference decoder on the rows it left), so the same
file always gives the same numbers; nothing may assume more than that.
"""

from __future__ import annotations

import struct

import numpy as np

_MIX = np.uint64(0x9E3779B97F4A7C15)


def _key(w0: np.ndarray, w1: np.ndarray) -> np.ndarray:
    # exact for IPv4-mapped addresses (w0 == 0); an IPv6 pair may collide, which
    # ``index_words`` checks against the stored words
    with np.errstate(over="ignore"):
        return w1 ^ (w0 * _MIX)


class AddressBook:
    """Numbers addresses given as two little-endian u64 words (the 16 bytes of the
    table's address form: IPv6 as it is, IPv4 as ``::ffff:a.b.c.d``)."""

    def __init__(self) -> None:
        self._index: dict[tuple[int, int], int] = {(0, 0): 0}
        self._list: list[tuple[int, int]] = [(0, 0)]
        self._stale = True  # the arrays below lag behind _list

    def __len__(self) -> int:
        return len(self._list)

    def index_words(self, w0: np.ndarray, w1: np.ndarray) -> np.ndarray:
        """The index of each address (u4), numbering the new ones.

        Per 8K-row chunk of the bench capture: a binary search among the few known
        keys and a check of the words, ~0.1 ms; the Python dict is met only by new
        addresses (or a key collision)."""
        k = _key(w0, w1)
        out, miss = self._lookup(k)
        if miss.any():
            pairs, first = np.unique(np.stack([w0[miss], w1[miss]], axis=1), axis=0, return_index=True)
            for j in np.argsort(first, kind="stable").tolist():  # numbered in order of appearance
                self._add(int(pairs[j, 0]), int(pairs[j, 1]))
            out, _ = self._lookup(k)
        if not self._v6 and not w0.any():  # IPv4 only: the key is the address (w0 == 0)
            return out
        bad = (np.take(self._w0, out) != w0) | (np.take(self._w1, out) != w1)
        if bad.any():  # two addresses with one key: the exact words decide
            for i in np.flatnonzero(bad).tolist():
                out[i] = self._add(int(w0[i]), int(w1[i]))
        return out

    def index_bytes(self, b: bytes) -> int:
        """The index of one 16-byte address (the reference decoder's rows)."""
        w0, w1 = struct.unpack("<QQ", b)
        return self._add(w0, w1)

    def addresses(self) -> np.ndarray:
        """All addresses as a (count, 16) u1 array, row i = address i."""
        return np.array(self._list, np.uint64).reshape(-1, 2).view(np.uint8).reshape(-1, 16)

    def _add(self, w0: int, w1: int) -> int:
        i = self._index.get((w0, w1))
        if i is None:
            i = self._index[(w0, w1)] = len(self._list)
            self._list.append((w0, w1))
            self._stale = True
        return i

    def _lookup(self, k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self._stale:
            words = np.array(self._list, np.uint64).reshape(-1, 2)
            self._w0, self._w1 = words[:, 0].copy(), words[:, 1].copy()
            self._v6 = bool(self._w0.any())
            keys = _key(self._w0, self._w1)
            order = np.argsort(keys, kind="stable")  # of colliding keys, the first address
            keep = np.ones(len(order), bool)
            keep[1:] = keys[order][1:] != keys[order][:-1]
            self._at, self._keys = order[keep].astype(np.uint32), keys[order][keep]
            self._stale = False
        pos = np.searchsorted(self._keys, k)
        np.minimum(pos, len(self._keys) - 1, out=pos)
        return self._at[pos], self._keys[pos] != k
