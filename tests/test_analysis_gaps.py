"""A capture damaged mid-file: the exchanges after the damage keep their verdicts, and the
one whose packets were in the damaged region is `incomplete`, never lost (issue 16, 3).
And one capture given twice to `rig diff` is refused (issue 16, 4)."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys
from pathlib import Path as FsPath

import pytest

from rig.analysis.api import analyse
from rig.capture import container, read_capture
from rig.capture.synth import Path

from tests._analysis_scenarios import ping, tcp_delivered, udp

RIG = FsPath(sys.executable).with_name("rig")


def _rig(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(RIG), *args], capture_output=True, text=True, timeout=120)


def _pair(tmp: FsPath) -> tuple[FsPath, FsPath]:
    """30 exchanges a second apart (more than the gap check's slack): delivered ones and
    some whose reply is lost on the way back."""
    w = Path(latency_ns=5_000_000)
    for i in range(30):
        w._now += 1_000_000_000
        kind = i % 3
        if kind == 0:
            tcp_delivered(w, 40000 + i, 1000 * i, 7000 * i, nonce=i)
        elif kind == 1:
            ping(w, i, reply_arrives=i % 4 != 1)
        else:
            udp(w, 5000 + i, i, reply_arrives=i % 4 != 3)
    return w.write(tmp)


def _damage(path: FsPath, frame: int) -> FsPath:
    """A copy of ``path`` with the caplen of record ``frame`` (1-based) made absurd."""
    data = bytearray(path.read_bytes())
    recs = container.walk(bytes(data), "x")
    struct.pack_into("<I", data, int(recs.data_off[frame - 1]) - 8, 0x7FFFFFFF)
    out = path.with_name("damaged-" + path.name)
    out.write_bytes(bytes(data))
    return out


@pytest.mark.parametrize("point", ["client", "server"])
def test_exchanges_after_a_damaged_header_keep_their_verdicts(tmp_path, point):
    c, s = _pair(tmp_path)
    whole = {e.id: e for e in analyse(read_capture(str(c)), read_capture(str(s))).exchanges}
    assert {e.outcome for e in whole.values()} == {"delivered", "lost-return"}
    # the reply of an exchange in the middle, at the chosen point
    target = next(e for e in list(whole.values())[12:] if e.outcome == "delivered" and e.protocol == "icmp")
    frame = dict(target.frames)[point][-1]
    bad = _damage(c if point == "client" else s, frame)
    caps = (read_capture(str(bad)), read_capture(str(s))) if point == "client" else \
        (read_capture(str(c)), read_capture(str(bad)))
    damaged = caps[0] if point == "client" else caps[1]
    assert len(damaged.gaps) == 1 and damaged.gaps[0].frame_before == frame - 1
    got = {e.id: e for e in analyse(*caps).exchanges}
    assert got.keys() == whole.keys()
    assert got[target.id].outcome == "incomplete"
    assert f"the {point} capture is damaged" in got[target.id].explanation
    for k, e in whole.items():
        if k != target.id:
            assert got[k].outcome == e.outcome, (k, got[k].explanation)
    # the reader read the records after the damage: later exchanges were seen whole
    assert sum(e.outcome == "delivered" for e in got.values()) == sum(e.outcome == "delivered" for e in whole.values()) - 1


def test_rig_diff_warns_in_one_line_and_decides_the_rest(tmp_path):
    c, s = _pair(tmp_path)
    whole = _rig("diff", str(c), str(s), "--json")
    bad = _damage(s, 40)
    r = _rig("diff", str(c), str(bad), "--json")
    assert r.returncode == whole.returncode == 1, r.stderr
    lines = [x for x in r.stderr.splitlines() if "damaged" in x]
    assert len(lines) == 1 and str(bad) in lines[0] and "warning" in lines[0]
    assert "damaged" not in whole.stderr
    before = [e["outcome"] for e in json.loads(whole.stdout)["exchanges"]]
    after = [e["outcome"] for e in json.loads(r.stdout)["exchanges"]]
    assert len(after) == len(before) == 30
    assert all(a == b or a == "incomplete" for a, b in zip(after, before))
    assert after.count("lost-return") >= before.count("lost-return") - 1


def test_one_capture_given_twice_is_refused(tmp_path):
    c, s = _pair(tmp_path)
    copy = tmp_path / "copy.pcap"
    shutil.copyfile(s, copy)
    for a, b, what in ((s, s, "the same file"), (c, c, "the same file"), (s, copy, "hold the same packets")):
        r = _rig("diff", str(a), str(b))
        assert r.returncode == 2, r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and what in lines[0] and str(a) in lines[0] and str(b) in lines[0]
        assert "Traceback" not in r.stderr
    # a capture and the first half of it (tcpdump run twice on one interface)
    half = tmp_path / "half.pcap"
    recs = container.walk(c.read_bytes(), "c")
    half.write_bytes(c.read_bytes()[: int(recs.data_off[len(recs.data_off) // 2]) - 16])
    r = _rig("diff", str(half), str(c))
    assert r.returncode == 2 and "hold the same packets" in r.stderr
    assert _rig("diff", str(c), str(s)).returncode == 1  # two points: diffed
