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
    # exact given w0 (w1 == key ^ w0 * MIX), so one compare of w0 tells two addresses
    # with one key apart (``index_words``)
    with np.errstate(over="ignore"):
        return w1 ^ (w0 * _MIX)


class AddressBook:
    """Numbers addresses given as two little-endian u64 words (the 16 bytes of the
    table's address form: IPv6 as it is, IPv4 as ``::ffff:a.b.c.d``)."""

    def __init__(self) -> None:
        self._index: dict[tuple[int, int], int] = {(0, 0): 0}
        self._list: list[tuple[int, int]] = [(0, 0)]
        self._bits = 0  # the slot table's size (log2); 0: not built yet
        self._done = 0  # addresses of _list already placed in the slot table
        # the slot table (``_build``): per slot the key and the index it holds, whether taken;
        # per index its first word (``index_words`` compares it)
        self._shift = np.uint64(64)
        self._slot_key = np.zeros(0, np.uint64)
        self._slot_at = np.zeros(0, np.uint32)
        self._taken = np.zeros(0, bool)
        self._w0 = np.zeros(0, np.uint64)

    def __len__(self) -> int:
        return len(self._list)

    def index_words(self, w0: np.ndarray, w1: np.ndarray) -> np.ndarray:
        """The index of each address (u4), numbering the new ones.

        A known address is found in one probe of a small open-addressing table of the
        keys (a binary search among even six keys cost 78 us per 8K rows, this ~25 us);
        the key is exact given ``w0`` (``w1 = key ^ w0 * MIX``), so one compare of ``w0``
        rules out a collision. Rows not found so (new addresses, a collision, a slot
        taken by another key) go the exact, slower way. Measured per 8K-row chunk of the
        bench capture: 189 -> ~80 us."""
        k = _key(w0, w1)
        if self._done < len(self._list):
            self._update()
        slot = k * _MIX
        slot >>= self._shift
        out = np.take(self._slot_at, slot)
        ok = np.take(self._slot_key, slot) == k
        ok &= np.take(self._w0, out) == w0
        if ok.all():
            return out
        miss = np.flatnonzero(~ok)
        out[miss] = self._exact(w0[miss], w1[miss])
        return out

    def _exact(self, w0: np.ndarray, w1: np.ndarray) -> np.ndarray:
        pairs, first, inv = np.unique(np.stack([w0, w1], axis=1), axis=0, return_index=True, return_inverse=True)
        at = np.empty(len(pairs), np.uint32)
        for j in np.argsort(first, kind="stable").tolist():  # new ones numbered in order of appearance
            at[j] = self._add(int(pairs[j, 0]), int(pairs[j, 1]))
        return at[inv.ravel()]

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
        return i

    def _update(self) -> None:
        """Place the addresses numbered since the last call in the slot table. The table
        is rebuilt only when the count outgrows it (4-8 slots per address), so its size
        doubles: a capture that meets new addresses in every chunk (thousands of hosts)
        pays for each address about twice, not for every address in every chunk
        (measured on bench/mix.py's 1M-packet pair, 5,000+ addresses: rebuilding the
        whole table per chunk cost 1.9 s)."""
        n = len(self._list)
        bits = max(10, 2 + int(n).bit_length())
        if bits != self._bits:
            self._build(bits, max(n, 1024))
            return
        lo = self._done
        if n > len(self._w0):  # grow the w0 column by doubling (index_words reads it by index)
            w0 = np.zeros(2 * n, np.uint64)
            w0[:lo] = self._w0[:lo]
            self._w0 = w0
        words = np.array(self._list[lo:], np.uint64).reshape(-1, 2)
        self._w0[lo:n] = words[:, 0]
        keys = _key(words[:, 0], words[:, 1])
        with np.errstate(over="ignore"):
            slots = (keys * _MIX) >> self._shift
        free = ~self._taken[slots]
        if free.any():  # a slot keeps the first address that fell in it; the others are found exactly
            used, first = np.unique(slots[free], return_index=True)
            at = np.flatnonzero(free)[first]
            self._slot_key[used] = keys[at]
            self._slot_at[used] = (lo + at).astype(np.uint32)
            self._taken[used] = True
        self._done = n

    def _build(self, bits: int, room: int) -> None:
        n = len(self._list)
        words = np.array(self._list, np.uint64).reshape(-1, 2)
        self._w0 = np.zeros(room, np.uint64)
        self._w0[:n] = words[:, 0]
        keys = _key(words[:, 0], words[:, 1])
        self._bits = bits
        self._shift = np.uint64(64 - bits)
        with np.errstate(over="ignore"):
            slots = (keys * _MIX) >> self._shift
        # a slot holds the first address that falls in it; the others are found exactly
        self._slot_key = np.zeros(1 << bits, np.uint64)
        self._slot_at = np.zeros(1 << bits, np.uint32)
        self._taken = np.zeros(1 << bits, bool)
        used, first = np.unique(slots, return_index=True)
        self._slot_key[used] = keys[first]
        self._slot_at[used] = first.astype(np.uint32)
        self._taken[used] = True
        # an empty slot reads key 0, index 0: address 0 (all zero) has key 0 and w0 0, so
        # only it is found there; another address with key 0 fails the w0 compare
        self._done = n
