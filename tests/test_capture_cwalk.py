"""The compiled pcap record walk (rig/capture/_walk.c) and the numpy walk give identical
``Records`` (every array with its dtype, every field, the gaps and the notes) and identical
segments (``pcap_segments``): on every file of the shared corpus, on generated captures
of both byte orders, µs and ns, cut short and damaged, and ``rig diff --json`` writes the
same bytes either way on the golden pairs. ``RIG_PURE_READER=1`` selects the numpy walk."""

from __future__ import annotations

import dataclasses
import os
import struct
import types
from pathlib import Path

import numpy as np
import pytest

from rig.capture import container
from rig.capture.synth_busy import unrelated
from rig.capture.synth_columns import file_header, records
from rig.errors import InputError
from tests import test_capture_resync as resync_tests
from tests._corpus import CORPUS
from tests.test_capture_walk import _pcap

pytestmark = pytest.mark.skipif(container._walk is None, reason="the compiled walk (rig/capture/_walk.c) did not build "
                                "(pip install -e . builds it where a C compiler and the Python headers are)")


@pytest.fixture
def counted(monkeypatch):
    """The compiled walk, counting its calls: a test that compares it with the numpy walk
    must also show it ran."""
    calls = []
    real = container._walk.pcap

    def pcap(*args):
        got = real(*args)
        calls.append(got[0])
        return got

    monkeypatch.setattr(container, "_walk", types.SimpleNamespace(pcap=pcap))
    monkeypatch.delenv("RIG_PURE_READER", raising=False)
    return calls


def _pure(on: bool) -> None:
    if on:
        os.environ["RIG_PURE_READER"] = "1"
    else:
        os.environ.pop("RIG_PURE_READER", None)


def _walked(buf, pure: bool):
    """walk's Records, and what pcap_segments yields, or the error each raised."""
    _pure(pure)
    try:
        try:
            recs = container.walk(buf, "f")
        except InputError as exc:
            recs = f"InputError: {exc}"  # type: ignore[assignment]
        try:
            segs = list(container.pcap_segments(buf, "f"))
        except container.NotStreamable:
            segs = "NotStreamable"  # type: ignore[assignment]
        return recs, segs
    finally:
        _pure(False)


def _same_records(a, b, what: str) -> None:
    assert type(a) is type(b), what
    if isinstance(a, str):
        assert a == b, what
        return
    for f in dataclasses.fields(container.Records):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, np.ndarray):
            assert (x.dtype, x.shape) == (y.dtype, y.shape), f"{what}: {f.name}"
            assert np.array_equal(x, y), f"{what}: {f.name}"
        else:
            assert x == y, f"{what}: {f.name}"


def _same(buf, what: str) -> int:
    """Both walks agree on ``buf``; returns the records walked."""
    c_recs, c_segs = _walked(buf, False)
    p_recs, p_segs = _walked(buf, True)
    _same_records(c_recs, p_recs, what)
    assert type(c_segs) is type(p_segs), what
    if isinstance(c_segs, str):
        assert c_segs == p_segs
    else:
        assert len(c_segs) == len(p_segs), what
        for (s1, e1, r1), (s2, e2, r2) in zip(c_segs, p_segs):
            assert (s1, e1) == (s2, e2), what
            _same_records(r1, r2, f"{what}: segment at {s1}")
    return 0 if isinstance(c_recs, str) else len(c_recs.data_off)


def _swapped(data: bytes) -> bytes:
    """A little-endian pcap as the same file written big-endian (file and record headers)."""
    d = bytearray(data)
    d[0:24] = struct.pack(">IHHiIII", *struct.unpack_from("<IHHiIII", data, 0))
    off = 24
    while off + 16 <= len(d):
        h = struct.unpack_from("<IIII", data, off)
        d[off:off + 16] = struct.pack(">IIII", *h)
        off += 16 + h[2]
    return bytes(d)


def _columns_pcap(seed: int, n: int, ns: bool = False) -> bytes:
    """A busy server's traffic (rig.capture.synth_busy), as synth_columns writes it."""
    p = unrelated(np.random.default_rng(seed), n, 1_700_000_000 * 10**9, 1_700_000_060 * 10**9, (0, 0xC6336410))
    rb, _ = records(p, ns=ns)
    return file_header(ns=ns) + rb.tobytes()


def _corpus_files() -> list[Path]:
    return sorted(p for p in CORPUS.iterdir() if p.is_file() and p.name != "LICENSE") if CORPUS.is_dir() else []


@pytest.mark.skipif(not CORPUS.is_dir(), reason=f"corpus {CORPUS} is not here")
def test_both_walks_agree_on_the_corpus(counted):
    files = _corpus_files()
    assert len(files) > 500
    walked = 0
    for p in files:
        try:
            buf, _ = container.open_noted(str(p))
        except InputError:
            continue
        walked += _same(buf, p.name)
    assert walked > 10_000 and len(counted) > 500


@pytest.mark.parametrize("seed,bo,ns,cut", [(1, "<", False, 0), (2, ">", False, 0), (3, "<", True, 7),
                                            (4, ">", True, 0), (5, "<", False, 3000), (6, ">", True, 5)])
@pytest.mark.parametrize("small", [False, True])
def test_both_walks_agree_on_generated_files(counted, monkeypatch, seed, bo, ns, cut, small):
    if small:  # many segments, each walked in lockstep pieces by the numpy walk
        monkeypatch.setattr(container, "SEGMENT", 1 << 20)
        monkeypatch.setattr(container, "SUBSEGMENT", 1 << 13)
        monkeypatch.setattr(container, "GUESS_WINDOW", 1024)
        monkeypatch.setattr(container, "LOCKSTEP_MARGIN", (1 << 13) + 1024 + 64)
    data = _pcap(seed, 6000, bo=bo, ns=ns, cut=cut)
    assert _same(data, "generated") > 5000
    assert _same(np.frombuffer(data, np.uint8).copy(), "generated, as an array") > 5000
    assert counted


def test_both_walks_agree_on_records_smaller_than_the_walk_expects(counted):
    """Records of 16-24 bytes (the compiled walk is given room for 64-byte records first,
    then for the rest)."""
    rng = np.random.default_rng(9)
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1)]
    for i, cl in enumerate(rng.integers(0, 9, 200_000).tolist()):
        out.append(struct.pack("<IIII", 1_700_000_000 + i // 1000, i % 1000, cl, cl) + bytes(cl))
    data = b"".join(out)
    assert _same(data, "small records") == 200_000
    assert len(counted) > 2


@pytest.mark.parametrize("ns", [False, True])
@pytest.mark.parametrize("bo", ["<", ">"])
def test_both_walks_agree_on_a_busy_capture(counted, monkeypatch, ns, bo):
    monkeypatch.setattr(container, "SEGMENT", 1 << 21)
    data = _columns_pcap(7, 40_000, ns=ns)
    if bo == ">":
        data = _swapped(data)
    n = _same(data, "busy")
    assert n == 40_000
    for cut in (1, 15, 16, 17, 200):  # inside the last record, its header, or just after it
        _same(data[:-cut], f"busy, {cut} bytes cut")
    assert len(counted) > 20


def _damaged(kind: str, bo: str) -> bytes:
    """test_capture_resync's damage, to a file of either byte order."""
    if bo == "<":
        return resync_tests._damage(kind)
    d = bytearray(_swapped(resync_tests.PCAP))
    hdr = int(resync_tests.ORIG.data_off[resync_tests.K]) - 16
    cl = int(resync_tests.ORIG.caplen[resync_tests.K])
    if kind == "garbage":
        d[hdr:hdr + 300] = np.random.default_rng(2).integers(0, 256, 300, dtype=np.uint8).tobytes()
    elif kind == "deleted":
        del d[hdr + 9:hdr + 12]
    else:
        struct.pack_into(">I", d, hdr + 8, {"huge": 0x7FFFFFFF, "over-snaplen": 300_000, "longer": cl + 100,
                                            "shorter": cl - 30, "zero": 0}[kind])
    return bytes(d)


@pytest.mark.parametrize("bo", ["<", ">"])
@pytest.mark.parametrize("kind", ["garbage", "deleted", "huge", "over-snaplen", "longer", "shorter", "zero"])
def test_both_walks_agree_on_a_damaged_header(counted, kind, bo):
    data = _damaged(kind, bo)
    recs = container.walk(data, kind)
    assert len(recs.gaps) == 1
    assert _same(data, kind) > 2900
    for cut in (100, 3000):  # and the tail cut short as well
        _same(data[:-cut], f"{kind}, cut")
    assert counted


@pytest.mark.parametrize("max_gaps", [0, 1000])
@pytest.mark.parametrize("seed", range(12))
def test_both_walks_agree_on_random_damage(counted, monkeypatch, seed, max_gaps):
    """Headers overwritten at random, in both byte orders; with no resync allowed
    (MAX_GAPS 0) both walks keep the absurd headers and walk on from them."""
    monkeypatch.setattr(container, "MAX_GAPS", max_gaps)
    monkeypatch.setattr(container, "SEGMENT", 1 << 19)
    rng = np.random.default_rng(seed)
    base = _columns_pcap(seed, 6000, ns=bool(seed & 1))
    if seed & 2:
        base = _swapped(base)
    bo = ">" if seed & 2 else "<"
    recs = container.walk(base, "base")
    d = bytearray(base)
    for k in rng.choice(len(recs.data_off), 4, replace=False):
        hdr = int(recs.data_off[k]) - 16
        what = rng.integers(0, 3)
        if what == 0:
            struct.pack_into(bo + "I", d, hdr + 8, int(rng.choice([0, 300_000, 0x7FFFFFFF, 0xFFFFFFFF])))
        elif what == 1:
            struct.pack_into(bo + "I", d, hdr + 8, int(rng.integers(0, 2000)))
        else:
            d[hdr:hdr + 40] = rng.integers(0, 256, 40, dtype=np.uint8).tobytes()
    _same(bytes(d), f"seed {seed}")
    assert counted


def test_the_compiled_walk_stops_after_an_absurd_caplen(counted):
    """It says where it stopped: the numpy walk takes the segment on from there."""
    data = resync_tests._damage("huge")
    end = len(data) - 16
    o, h = np.empty(5000, np.int64), np.empty((5000, 4), np.uint32)
    n, off, hard = container._walk.pcap(data, 24, end, False, 262144, o, h)
    assert hard and n == resync_tests.K + 1 and h[n - 1, 2] == 0x7FFFFFFF
    assert off == o[n - 1] + 16 + 0x7FFFFFFF
    assert np.array_equal(o[:n - 1] + 16, resync_tests.ORIG.data_off[:n - 1])
    n, off, hard = container._walk.pcap(resync_tests.PCAP, 24, len(resync_tests.PCAP) - 16, False, 262144, o, h)
    assert not hard and off == len(resync_tests.PCAP) and np.array_equal(o[:n] + 16, resync_tests.ORIG.data_off)
    with pytest.raises(ValueError):
        container._walk.pcap(data, 24, len(data) - 15, False, 262144, o, h)


def test_the_switch_selects_the_numpy_walk(counted, monkeypatch):
    container.walk(resync_tests.PCAP, "t")
    assert counted
    counted.clear()
    monkeypatch.setenv("RIG_PURE_READER", "1")
    container.walk(resync_tests.PCAP, "t")
    assert not counted


GOLDEN = Path(__file__).parent / "data" / "analysis"


@pytest.mark.parametrize("name", sorted(p.name for p in GOLDEN.iterdir()))
def test_rig_diff_json_is_the_same_with_either_walk(counted, capsys, monkeypatch, name):
    from rig.cli import main

    outs = []
    for pure in (False, True):
        if pure:
            monkeypatch.setenv("RIG_PURE_READER", "1")
        rc = main(["diff", str(GOLDEN / name / "client.pcap"), str(GOLDEN / name / "server.pcap"), "--json"])
        outs.append((rc, capsys.readouterr().out))
    assert outs[0] == outs[1] and outs[0][1]
