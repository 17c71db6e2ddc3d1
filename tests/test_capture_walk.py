"""The pcap record walk in lockstep (container._lockstep) finds exactly the records a
plain sequential walk finds: on records of every size, payloads built to look like pcap
record headers, both byte orders, µs and ns files, a file cut inside its last record,
and when every guess of where a piece starts is wrong. (The numpy walk: the compiled one
is compared with it in test_capture_cwalk.py.)"""

import struct

import numpy as np
import pytest

from rig.capture import container


def _pcap(seed: int, n: int, *, bo: str = "<", ns: bool = False, cut: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    magic = 0xA1B23C4D if ns else 0xA1B2C3D4
    out = [struct.pack(bo + "IHHiIII", magic, 2, 4, 0, 0, 262144, 1)]
    sub = 1_000_000_000 if ns else 1_000_000
    ts = 1_700_000_000
    for _ in range(n):
        kind = rng.integers(0, 10)
        if kind == 0:
            cl = 0
        elif kind == 1:
            cl = int(rng.integers(3000, 9000))  # longer than a guess window
        else:
            cl = int(rng.integers(1, 1600))
        if kind in (2, 3):  # a payload of fake record headers, each pointing at the next
            fake = struct.pack(bo + "IIII", ts, 5, 4, 4) + b"\0" * 4
            body = (fake * (cl // len(fake) + 1))[:cl]
        elif kind == 4:
            body = bytes(cl)
        else:
            body = rng.integers(0, 256, cl, dtype=np.uint8).tobytes()
        ts += int(rng.integers(0, 2))
        out.append(struct.pack(bo + "IIII", ts, int(rng.integers(0, sub)), cl, cl + int(rng.integers(0, 3))) + body)
    data = b"".join(out)
    return data[: len(data) - cut] if cut else data


def _reference(data: bytes, bo: str):
    offs, off = [], 24
    while off + 16 <= len(data):
        cl = struct.unpack_from(bo + "I", data, off + 8)[0]
        if off + 16 + cl > len(data):
            break
        offs.append(off)
        off += 16 + cl
    return np.asarray(offs, np.int64) + 16, off != len(data)


@pytest.fixture(autouse=True)
def numpy_walk(monkeypatch):
    monkeypatch.setenv("RIG_PURE_READER", "1")


@pytest.fixture
def small_pieces(monkeypatch):
    """Segments and pieces small enough that a file of a few MB has many of both."""
    monkeypatch.setattr(container, "SEGMENT", 1 << 20)
    monkeypatch.setattr(container, "SUBSEGMENT", 1 << 13)
    monkeypatch.setattr(container, "GUESS_WINDOW", 1024)
    monkeypatch.setattr(container, "LOCKSTEP_MARGIN", (1 << 13) + 1024 + 64)


def _check(data: bytes, bo: str):
    recs = container.walk(np.frombuffer(data, np.uint8).copy(), "t")
    want, cut = _reference(data, bo)
    assert np.array_equal(recs.data_off, want)
    assert recs.truncated_tail == cut
    lens = np.array([struct.unpack_from(bo + "I", data, int(o) - 8)[0] for o in want])
    assert np.array_equal(recs.caplen, lens)


@pytest.mark.parametrize("seed,bo,ns,cut", [(1, "<", False, 0), (2, ">", False, 0), (3, "<", True, 7),
                                            (4, ">", True, 0), (5, "<", False, 3000)])
def test_lockstep_walk_equals_sequential(small_pieces, seed, bo, ns, cut):
    _check(_pcap(seed, 6000, bo=bo, ns=ns, cut=cut), bo)


def test_lockstep_walk_with_default_pieces():
    _check(_pcap(6, 3000), "<")  # ~2 MB: one segment, pieces of the default size


@pytest.mark.parametrize("shift", [0, 1, 300])
def test_wrong_guesses_cost_time_only(small_pieces, monkeypatch, shift):
    """Every piece's guessed first record is its start or a few bytes on (inside some
    record): the stitching must still find exactly the records."""
    real = container._guess_starts
    calls = []

    def wrong(arr, u4, S, *args):
        calls.append(len(S))
        good = real(arr, u4, S, *args)
        return np.where(good == S + shift, S, S + shift)

    monkeypatch.setattr(container, "_guess_starts", wrong)
    _check(_pcap(7, 6000), "<")
    assert calls  # the lockstep ran
