"""`rig diff` end to end, as a user runs it: the installed console script in a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path as FsPath

from rig.capture.synth import Path

from tests._analysis_scenarios import ping, syn_only, tcp_delivered

RIG = FsPath(sys.executable).with_name("rig")


def _rig(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(RIG), *args], capture_output=True, text=True, timeout=120)


def test_clean_path_exits_0(tmp_path):
    w = Path()
    tcp_delivered(w, 40000, 1, 2)
    ping(w, 1)
    c, s = w.write(tmp_path)
    r = _rig("diff", str(c), str(s), "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["format"] == "rig.verdict/1"
    assert [e["outcome"] for e in d["exchanges"]] == ["delivered", "delivered"]
    table = _rig("diff", str(c), str(s))
    assert table.returncode == 0
    assert "Diagnosis" in table.stdout and "delivered" in table.stdout


def test_path_problem_exits_1(tmp_path):
    w = Path()
    for s in syn_only(w, 40000, 1, copies=3):
        w.back(w.synack(s, 2), arrive=False)
    ping(w, 1)
    c, s = w.write(tmp_path)
    r = _rig("diff", str(c), str(s), "--json", "--server-addr", "198.51.100.10")
    assert r.returncode == 1, r.stderr
    d = json.loads(r.stdout)
    assert d["exchanges"][0]["outcome"] == "lost-return"
    assert "return path" in d["diagnosis"]["summary"]


def test_unreadable_input_exits_2_with_one_line(tmp_path):
    w = Path()
    ping(w, 1)
    c, s = w.write(tmp_path)
    junk = tmp_path / "notes.txt"
    junk.write_text("this is not a capture\n")
    for args in ((str(junk), str(s)), (str(c), str(tmp_path / "missing.pcap"))):
        r = _rig("diff", *args)
        assert r.returncode == 2
        assert r.stdout == ""
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("rig: "), r.stderr
        assert "Traceback" not in r.stderr
    bad_addr = _rig("diff", str(c), str(s), "--server-addr", "not-an-ip")
    assert bad_addr.returncode == 2 and "not an IP address" in bad_addr.stderr


def test_a_capture_cut_mid_record_is_analysed_with_a_warning(tmp_path):
    w = Path()
    tcp_delivered(w, 40000, 1, 2)
    ping(w, 1)
    c, s = w.write(tmp_path)
    whole = _rig("diff", str(c), str(s), "--json")
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(c.read_bytes()[:-10])  # the last record loses its tail
    r = _rig("diff", str(cut), str(s), "--json")
    assert r.returncode in (0, 1)
    assert "warning" in r.stderr and str(cut) in r.stderr and "inside the record" in r.stderr
    got = json.loads(r.stdout)["capture_points"][0]["packets"]
    assert got == json.loads(whole.stdout)["capture_points"][0]["packets"] - 1
    assert "warning" not in whole.stderr
