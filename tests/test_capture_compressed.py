"""Compressed captures (.pcap.gz, .pcapng.gz, .zst) are read directly, told by their magic
(issue 16, 5); a stream cut short keeps what it held."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path as FsPath

import numpy as np
import pytest

from rig.capture import read_capture
from rig.capture.compressed import capture_point
from rig.capture.pair import read_pair
from rig.capture.synth import Path, frame, write_pcapng
from rig.errors import InputError

from tests._analysis_scenarios import ping, tcp_delivered, udp

RIG = FsPath(sys.executable).with_name("rig")


def _pair(tmp: FsPath) -> tuple[FsPath, FsPath]:
    w = Path()
    for i in range(20):
        tcp_delivered(w, 40000 + i, 1000 * i, 5000 * i, nonce=i)
        ping(w, i, reply_arrives=i % 5 != 0)
        udp(w, 6000 + i, i)
    return w.write(tmp)


def _gz(path: FsPath, name: str) -> FsPath:
    out = path.with_name(name)
    out.write_bytes(gzip.compress(path.read_bytes()))
    return out


def _zst(path: FsPath, name: str) -> FsPath:
    zstd = pytest.importorskip("zstandard")
    out = path.with_name(name)
    out.write_bytes(zstd.ZstdCompressor().compress(path.read_bytes()))
    return out


def _same(a, b) -> None:
    assert a.format == b.format
    assert np.array_equal(a.packets, b.packets)
    assert a.truncated_tail == b.truncated_tail is False


@pytest.mark.parametrize("pack", [_gz, _zst])
def test_a_compressed_pcap_reads_as_the_plain_one(tmp_path, pack):
    c, _ = _pair(tmp_path)
    plain = read_capture(str(c))
    for name in ("client.pcap.gz", "no-suffix-at-all"):  # told by the magic, not the name
        z = pack(c, name)
        cap = read_capture(str(z))
        _same(cap, plain)
        rows = np.flatnonzero(plain.packets["pcaplen"] > 0)
        assert rows.size and all(cap.payload(int(r)) == plain.payload(int(r)) for r in rows)


def test_a_compressed_pcapng_reads_as_the_plain_one(tmp_path):
    f = tmp_path / "x.pcapng"
    recs = [(0, 1_700_000_000_000_000_000 + i * 1000, frame(bytes(60))) for i in range(50)]
    write_pcapng(f, [(1, "eth0")], recs)
    _same(read_capture(str(_gz(f, "x.pcapng.gz"))), read_capture(str(f)))


def test_a_gzip_stream_cut_short_keeps_what_it_held(tmp_path):
    c, _ = _pair(tmp_path)
    plain = read_capture(str(c))
    data = gzip.compress(c.read_bytes())
    cut = tmp_path / "cut.pcap.gz"
    cut.write_bytes(data[: len(data) // 2])
    cap = read_capture(str(cut))
    assert cap.truncated_tail and "gzip stream is cut short" in cap.tail_note
    assert 0 < len(cap.packets) < len(plain.packets)
    assert np.array_equal(cap.packets, plain.packets[: len(cap.packets)])


def test_a_compressed_file_that_is_not_a_stream_is_one_clear_error(tmp_path):
    junk = tmp_path / "junk.pcap.gz"
    junk.write_bytes(b"\x1f\x8b" + bytes(40))
    with pytest.raises(InputError, match="junk.pcap.gz: the gzip stream is corrupt"):
        read_capture(str(junk))


def test_rig_diff_reads_compressed_captures_with_the_same_verdict(tmp_path):
    c, s = _pair(tmp_path)
    plain = subprocess.run([str(RIG), "diff", str(c), str(s), "--json"], capture_output=True, text=True, timeout=120)
    packed = subprocess.run([str(RIG), "diff", str(_gz(c, "c.pcap.gz")), str(_gz(s, "s.pcap.gz")), "--json"],
                            capture_output=True, text=True, timeout=120)
    assert packed.returncode == plain.returncode == 1, packed.stderr
    a, b = json.loads(plain.stdout), json.loads(packed.stdout)
    for p in a["capture_points"] + b["capture_points"]:
        p.pop("file")
    assert a == b


def test_the_forked_reader_maps_the_childs_decompressed_file(tmp_path):
    c, s = _pair(tmp_path)
    a, b = read_pair(str(_gz(c, "c.pcap.gz")), str(_gz(s, "s.pcap.gz")))
    for got, plain in ((a, read_capture(str(c))), (b, read_capture(str(s)))):
        _same(got, plain)
        rows = np.flatnonzero(plain.packets["pcaplen"] > 0)
        assert all(got.payload(int(r)) == plain.payload(int(r)) for r in rows)


def test_bundle_capture_names():
    assert [capture_point(n) for n in ("client.pcap", "server.pcapng", "client.pcap.gz", "router.pcapng.zst",
                                       "notes.txt", ".pcap", "x.gz")] == \
        ["client", "server", "client", "router", None, None, None]


def test_a_bundle_may_keep_its_captures_compressed(tmp_path):
    c, s = _pair(tmp_path / "run" / "captures")
    plain = subprocess.run([str(RIG), "show", str(tmp_path / "run"), "--json"], capture_output=True, text=True,
                           timeout=120)
    for f in (c, s):
        _gz(f, f.name + ".gz")
        f.unlink()
    packed = subprocess.run([str(RIG), "show", str(tmp_path / "run"), "--json"], capture_output=True, text=True,
                            timeout=120)
    assert packed.returncode == plain.returncode == 1, packed.stderr
    a, b = json.loads(plain.stdout), json.loads(packed.stdout)
    assert [e["outcome"] for e in a["exchanges"]] == [e["outcome"] for e in b["exchanges"]]
