"""``addresses.AddressBook``: the numbering the packet table's src_i / dst_i use."""

from __future__ import annotations

import numpy as np

from rig.capture.addresses import _MIX, AddressBook, _key


def test_numbers_in_order_of_appearance_like_a_dict_even_with_key_collisions():
    rng = np.random.default_rng(3)
    for _ in range(20):
        book, ref = AddressBook(), {(0, 0): 0}
        w0 = rng.integers(0, 2**63, 60, dtype=np.uint64) * rng.integers(0, 2, 60).astype(np.uint64)  # v4 and v6
        w1 = rng.integers(0, 2**63, 60, dtype=np.uint64)
        with np.errstate(over="ignore"):  # two addresses with one key
            w0[1] = np.uint64(5)
            w1[1] = _key(w0[:1], w1[:1])[0] ^ (np.uint64(5) * _MIX)
        assert _key(w0[:1], w1[:1])[0] == _key(w0[1:2], w1[1:2])[0]
        for _ in range(8):
            j = rng.integers(0, 60, 700)
            got = book.index_words(w0[j], w1[j])
            want = [ref.setdefault(p, len(ref)) for p in zip(w0[j].tolist(), w1[j].tolist())]
            assert got.dtype == np.uint32 and got.tolist() == want
        # the reference decoder's rows (one address at a time) share the numbering
        assert book.index_bytes(np.array([w0[7], w1[7]], "<u8").tobytes()) == ref[(int(w0[7]), int(w1[7]))]
        words = book.addresses().view("<u8").reshape(-1, 2)
        assert [tuple(p) for p in words.tolist()] == list(ref)


def test_zero_address_is_index_zero_and_a_key_zero_address_is_not_it():
    book = AddressBook()
    with np.errstate(over="ignore"):
        w0 = np.array([0, 9], np.uint64)
        w1 = np.array([0, 0], np.uint64) ^ (w0 * _MIX)  # the second one's key is 0 too
    assert book.index_words(w0, w1).tolist() == [0, 1]
    assert book.addresses().shape == (2, 16) and not book.addresses()[0].any()


def test_numbering_stays_exact_while_thousands_of_new_addresses_arrive_chunk_by_chunk():
    # new addresses in every chunk: the slot table is extended in place and rebuilt only
    # when it is outgrown; each lookup must still give the dict's numbering
    rng = np.random.default_rng(11)
    pool_w0 = rng.integers(0, 2**63, 6000, dtype=np.uint64) * rng.integers(0, 2, 6000).astype(np.uint64)
    pool_w1 = rng.integers(0, 2**63, 6000, dtype=np.uint64)
    book, ref = AddressBook(), {(0, 0): 0}
    for c in range(60):
        j = rng.integers(0, 100 * (c + 1), 500)  # an ever wider share of the pool: new ones each time
        got = book.index_words(pool_w0[j], pool_w1[j])
        want = [ref.setdefault(p, len(ref)) for p in zip(pool_w0[j].tolist(), pool_w1[j].tolist())]
        assert got.tolist() == want
    assert len(book) == len(ref) > 4000
    assert book._bits < 16  # the table grew by doubling, to what the count needs
