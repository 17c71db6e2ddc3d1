"""A damaged record header mid-file: the walk resumes at the next plausible record
(resync.py), reports the region skipped as a Gap, and keeps every record after it."""

import struct

import numpy as np
import pytest

from rig.capture import container, read_capture_bytes
from rig.capture.synth import write_pcapng

T0 = 1_700_000_000


def _records(seed: int, n: int) -> list[tuple[int, bytes]]:
    rng = np.random.default_rng(seed)
    out, t = [], T0 * 10**9
    for _ in range(n):
        t += int(rng.integers(1_000, 5_000_000))
        out.append((t, rng.integers(0, 256, int(rng.integers(40, 1500)), dtype=np.uint8).tobytes()))
    return out


def _pcap(recs) -> bytes:
    parts = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1)]
    for t, data in recs:
        parts.append(struct.pack("<IIII", t // 10**9, t % 10**9 // 1000, len(data), len(data)) + data)
    return b"".join(parts)


RECS = _records(1, 3000)  # ~2.3 MB: walked in lockstep pieces
PCAP = _pcap(RECS)
ORIG = container.walk(PCAP, "orig")
K = 1700  # the record damaged


def _damage(kind: str) -> bytes:
    d = bytearray(PCAP)
    hdr = int(ORIG.data_off[K]) - 16
    cl = int(ORIG.caplen[K])
    if kind == "garbage":  # 300 bytes of noise over the header and what follows
        d[hdr:hdr + 300] = np.random.default_rng(2).integers(0, 256, 300, dtype=np.uint8).tobytes()
    elif kind == "deleted":  # 3 bytes of the header lost
        del d[hdr + 9:hdr + 12]
    else:
        struct.pack_into("<I", d, hdr + 8, {"huge": 0x7FFFFFFF, "over-snaplen": 300_000, "longer": cl + 100,
                                            "shorter": cl - 30, "zero": 0}[kind])
    return bytes(d)


@pytest.mark.parametrize("kind", ["huge", "over-snaplen", "longer", "shorter", "zero", "garbage", "deleted"])
def test_the_records_after_a_damaged_pcap_header_are_read(kind):
    recs = container.walk(_damage(kind), "damaged")
    assert not recs.truncated_tail
    assert len(recs.gaps) == 1
    g = recs.gaps[0]
    # the records before are intact, every record after the damaged region is found again
    before = recs.data_off[: g.frame_before]
    assert np.array_equal(before, ORIG.data_off[: g.frame_before])
    shift = len(PCAP) - (len(PCAP) - 3 if kind == "deleted" else len(PCAP))
    after = recs.data_off[g.frame_before:] + shift
    assert np.array_equal(after, ORIG.data_off[-len(after):])
    assert len(recs.data_off) >= len(ORIG.data_off) - (3 if kind == "garbage" else 1)
    assert g.frame_before in (K, K + 1)
    assert 0 < g.skipped < 2000 and g.offset >= int(ORIG.data_off[K - 1])
    assert g.ts_before_ns == int(recs.ts_ns[g.frame_before - 1])
    assert g.ts_after_ns == int(recs.ts_ns[g.frame_before])
    if kind in ("huge", "over-snaplen", "longer", "zero"):
        assert g.offset == int(ORIG.data_off[K]) - 16  # exactly the damaged record
        assert g.skipped == 16 + int(ORIG.caplen[K])
        assert len(recs.data_off) == len(ORIG.data_off) - 1


def test_two_damaged_headers_make_two_gaps():
    d = bytearray(PCAP)
    for k in (500, 2500):
        struct.pack_into("<I", d, int(ORIG.data_off[k]) - 8, 0x7FFFFFFF)
    recs = container.walk(bytes(d), "damaged")
    assert [g.frame_before for g in recs.gaps] == [500, 2499]
    assert len(recs.data_off) == len(ORIG.data_off) - 2 and not recs.truncated_tail


def test_a_file_cut_inside_its_last_record_is_still_a_truncated_tail():
    recs = container.walk(PCAP[:-100], "cut")
    assert recs.truncated_tail and recs.gaps == ()
    assert np.array_equal(recs.data_off, ORIG.data_off[:-1])


def test_nothing_plausible_after_the_damage_is_a_truncated_tail():
    d = bytearray(PCAP[: int(ORIG.data_off[K + 3])])  # cut inside record K+3
    struct.pack_into("<I", d, int(ORIG.data_off[K + 2]) - 8, 0x7FFFFFFF)
    recs = container.walk(bytes(d), "damaged")
    assert recs.truncated_tail and recs.gaps == ()


def test_the_capture_carries_the_gaps():
    cap = read_capture_bytes(_damage("huge"), "damaged.pcap", lean=True)
    assert len(cap.packets) == len(ORIG.data_off) - 1
    assert cap.gaps and cap.gaps[0].frame_before == K
    assert cap.packets["frame"][K] == K + 1  # frames number the records read


def _pcapng(tmp_path):
    f = tmp_path / "x.pcapng"
    write_pcapng(f, [(1, "eth0")], [(0, t, data) for t, data in RECS[:600]])
    data = f.read_bytes()
    return data, container.walk(data, "orig")


@pytest.mark.parametrize("kind", ["huge", "longer", "shorter", "not-multiple-of-4", "trailer", "garbage"])
def test_the_blocks_after_a_damaged_pcapng_block_are_read(tmp_path, kind):
    data, orig = _pcapng(tmp_path)
    k = 300
    blk = int(orig.data_off[k]) - 28
    blen = struct.unpack_from("<I", data, blk + 4)[0]
    d = bytearray(data)
    if kind == "trailer":
        struct.pack_into("<I", d, blk + blen - 4, blen + 4)
    elif kind == "garbage":
        d[blk:blk + 64] = bytes(range(64))
    else:
        struct.pack_into("<I", d, blk + 4, {"huge": 0x7FFFFFF0, "longer": blen + 100, "shorter": blen - 8,
                                            "not-multiple-of-4": blen + 2}[kind])
    recs = container.walk(bytes(d), "damaged")
    assert not recs.truncated_tail
    assert len(recs.gaps) == 1
    g = recs.gaps[0]
    assert g.offset == blk and g.skipped == blen and g.frame_before == k
    assert np.array_equal(recs.data_off, np.delete(orig.data_off, k))
    assert np.array_equal(recs.ts_ns, np.delete(orig.ts_ns, k))
    assert (g.ts_before_ns, g.ts_after_ns) == (int(orig.ts_ns[k - 1]), int(orig.ts_ns[k + 1]))


def test_a_pcapng_cut_inside_its_last_block_is_still_a_truncated_tail(tmp_path):
    data, orig = _pcapng(tmp_path)
    recs = container.walk(data[:-50], "cut")
    assert recs.truncated_tail and recs.gaps == ()
    assert len(recs.data_off) == len(orig.data_off) - 1
