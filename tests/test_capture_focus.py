"""The early filter of a busy server's capture (rig.capture.focus) changes no verdict.

Each golden lab pair's server capture gets unrelated traffic merged in (other users,
scanners, pings, fragments, ICMP errors, and scanners reusing the client's public
address and source ports after NAT: rig.capture.synth_busy). The verdict of the client
capture against it, read focused, is the verdict of the clean pair (the server's frame
numbers mapped to the merged file), and what `rig diff` prints for the merged pair is
exactly what the analysis of the whole file gives.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

from rig.analysis.api import analyse
from rig.capture import read_capture
from rig.capture.focus import focus_of, read_focused
from rig.capture.synth_busy import merge_pcap, noise_chunks
from rig.capture.table import SYN

DATA = Path(__file__).parent / "data" / "analysis"
PAIRS = sorted(p.name for p in DATA.iterdir() if (p / "server.pcap").exists())


def _json(v) -> dict:
    out = io.StringIO()
    v.write_json(out)
    return json.loads(out.getvalue())


def _ipv4(a: np.ndarray) -> int:
    assert bytes(a[:12]) == b"\0" * 10 + b"\xff\xff"
    return int.from_bytes(bytes(a[12:]), "big")


def _busy(name: str, out: Path, n: int, seed: int = 1, before_s: float = 0) -> np.ndarray:
    """Merge ``n`` unrelated packets into the pair's server capture, written to ``out``
    (from ``before_s`` before its first packet to its last); returns the merged frame
    number of each original server frame."""
    s = read_capture(str(DATA / name / "server.pcap"), lean=True)
    t = s.packets
    syn = (t["proto"] == 6) & ((t["flags"] & 0x12) == SYN)
    asks = syn | (t["icmp_type"] == 8)
    server = int(np.bincount(t["dst_i"][asks]).argmax())  # where the SYNs and pings go
    public = int(np.bincount(t["src_i"][asks]).argmax())  # the client, as the server sees it
    ports = np.unique(t["sport"][syn & (t["src_i"] == public)])
    used = tuple(np.unique(t["dport"][syn]).tolist())
    ts = t["ts_ns"]
    rng = np.random.default_rng(seed)
    return merge_pcap(str(DATA / name / "server.pcap"), str(out),
                      noise_chunks(rng, n, int(ts.min() - before_s * 1e9) + 1, int(ts.max()), (0, _ipv4(s.addrs[server])),
                                   reuse_addr=_ipv4(s.addrs[public]), reuse_ports=ports, avoid_ports=used))


def _map_server_frames(o, frames: np.ndarray):
    """The verdict JSON ``o`` with every server frame number replaced by ``frames[n - 1]``."""
    if isinstance(o, list):
        return [_map_server_frames(x, frames) for x in o]
    if not isinstance(o, dict):
        return o
    out = {k: _map_server_frames(v, frames) for k, v in o.items()}
    if o.get("point") == "server" and isinstance(o.get("frame"), int):
        out["frame"] = int(frames[o["frame"] - 1])
    if isinstance(o.get("frames"), dict) and "server" in o["frames"]:
        out["frames"] = dict(out["frames"], server=[int(frames[f - 1]) for f in o["frames"]["server"]])
    return out


@pytest.fixture(scope="module")
def seed_busy(tmp_path_factory) -> tuple[Path, np.ndarray]:
    """The seed pair's server capture and a million unrelated packets."""
    busy = tmp_path_factory.mktemp("busy") / "server.pcap"
    return busy, _busy("seed", busy, 1_000_000)


@pytest.mark.parametrize("name", PAIRS)
def test_unrelated_traffic_changes_no_verdict(name, tmp_path, request):
    if name == "seed":
        n = 1_000_000
        busy, frames = request.getfixturevalue("seed_busy")
    else:
        n = 100_000
        busy = tmp_path / "server.pcap"
        frames = _busy(name, busy, n)
    c = read_capture(str(DATA / name / "client.pcap"), lean=True)
    clean = _json(analyse(c, read_capture(str(DATA / name / "server.pcap"), lean=True), orient=True))
    s = read_focused(str(busy), focus_of(c))
    assert s is not None
    # what is kept: the pair's own server packets, and the few unrelated ones that share
    # the client's public address (synth_busy.SHARES["reuse"]: 3%)
    assert len(s.packets) < len(frames) + 0.04 * n
    assert len(s.packets) + s.skipped == len(frames) + n
    got = _json(analyse(c, s, orient=True))
    want = _map_server_frames(clean, frames)
    for o in (got, want):
        for p in o["capture_points"]:
            if p["name"] == "server":
                p.pop("packets")
                p.pop("undecoded")
    assert got == want


def test_rig_diff_on_a_busy_server_prints_what_the_whole_file_says(seed_busy, capsys):
    from rig.capture.pair import FOCUS_MIN_BYTES, read_for_diff
    from rig.cli import main

    busy = seed_busy[0]
    assert busy.stat().st_size > FOCUS_MIN_BYTES
    client = str(DATA / "seed" / "client.pcap")
    c, s = read_for_diff(client, str(busy))
    assert s.skipped > 900_000  # it was read focused
    whole = _json(analyse(read_capture(client, lean=True), read_capture(str(busy), lean=True), orient=True))
    assert main(["diff", client, str(busy), "--json"]) == 1
    assert json.loads(capsys.readouterr().out) == whole


def test_nothing_to_anchor_reads_nothing_focused(tmp_path):
    """A client capture whose packets share no key with the other (here: an empty focus)
    is not used to filter: the caller reads the file whole."""
    busy = tmp_path / "server.pcap"
    _busy("seed", busy, 1000)
    c = read_capture(str(DATA / "outbound-drop" / "client.pcap"), lean=True)
    f = focus_of(c)
    empty = type(f)(f.out[:0], f.back[:0])
    assert read_focused(str(busy), empty) is None


def test_a_peer_anchored_late_keeps_its_earlier_rows(tmp_path, monkeypatch):
    """Rows from the client's public address in segments before its first anchor are
    found again (small segments force several)."""
    from rig.capture import container

    monkeypatch.setattr(container, "SEGMENT", 1 << 16)
    busy = tmp_path / "server.pcap"
    frames = _busy("seed", busy, 20_000, before_s=30)
    c = read_capture(str(DATA / "seed" / "client.pcap"), lean=True)
    whole = read_capture(str(busy), lean=True)
    s = read_focused(str(busy), focus_of(c))
    assert s is not None
    pub = whole.addrs[whole.packets["src_i"][frames[0] - 1]]  # the first SYN's source
    mine = (whole.addrs[whole.packets["src_i"]] == pub).all(1) | (whole.addrs[whole.packets["dst_i"]] == pub).all(1)
    kept = set(s.packets["frame"].tolist())
    assert set(whole.packets["frame"][mine].tolist()) <= kept
    assert min(whole.packets["frame"][mine]) < frames[0]  # a reuse row came before the anchor


def test_the_capture_window_is_the_whole_files(tmp_path):
    """The file's first and last decodable rows are kept even when unrelated (they bound
    the capture's window, analysis.windows), and in frame order: here the last record of
    all is a later fragment from the client's public address (kept, not decodable) after
    an unrelated packet (the last decodable one)."""
    from rig.capture.synth_columns import packets

    s = read_capture(str(DATA / "seed" / "server.pcap"), lean=True)
    t = s.packets
    syn = (t["proto"] == 6) & ((t["flags"] & 0x12) == SYN)
    server, public = (_ipv4(s.addrs[np.bincount(t[f][syn]).argmax()]) for f in ("dst_i", "src_i"))
    p = packets(3)
    end = int(t["ts_ns"].max())
    p["t"] = np.array([int(t["ts_ns"].min()) - 10**9, end + 10**9, end + 10**9 + 1])
    p["proto"][:] = 6
    p["src_lo"][:] = [0x0A000001, 0x0A000002, public]
    p["dst_lo"][:] = server
    p["flags"][:] = 0x10
    p["ttl"][:] = 50
    p["proto"][2] = 17
    p["frag"][2] = 100
    p["plen"][:] = [0, 0, 64]
    busy = tmp_path / "server.pcap"
    frames = merge_pcap(str(DATA / "seed" / "server.pcap"), str(busy), [{c: v[:1] for c, v in p.items()},
                                                                       {c: v[1:] for c, v in p.items()}])
    assert frames[0] == 2
    c = read_capture(str(DATA / "seed" / "client.pcap"), lean=True)
    got = read_focused(str(busy), focus_of(c))
    assert got is not None
    n = len(t) + 3
    f = got.packets["frame"].tolist()
    assert f == sorted(f) and f[0] == 1 and f[-2:] == [n - 1, n]
    assert got.skipped == 0  # nothing else was there to leave
    whole = read_capture(str(busy), lean=True)
    assert (got.packets["ts_ns"] == whole.packets["ts_ns"]).all()


def test_a_busy_capture_given_first_is_read_whole(seed_busy):
    """Only the server's capture (the second) is ever read focused: the client's decides
    what is asked, and its exchanges lost on the way out have nothing in the other to be
    found by."""
    from rig.capture.pair import read_for_diff

    a, b = read_for_diff(str(seed_busy[0]), str(DATA / "seed" / "client.pcap"))
    assert a.skipped == b.skipped == 0
    assert len(a.packets) == len(seed_busy[1]) + 1_000_000
