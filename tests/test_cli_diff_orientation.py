"""`rig diff` given its captures the wrong way round (rig.analysis.roles): swapped when the
captures say so clearly, refused (exit 2, one line) when they cannot tell, and a busy
public server's capture given correctly is never turned."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path as FsPath

import pytest

from rig.analysis.api import analyse
from rig.capture import read_capture
from rig.capture.synth import Path
from rig.capture.synth_flows import quic_flow, scanners
from rig.errors import UsageError
from rig.verdict import Verdict

from tests._analysis_scenarios import ping, syn_only, tcp_delivered, udp

RIG = FsPath(sys.executable).with_name("rig")


def _rig(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(RIG), *args], capture_output=True, text=True, timeout=120)


def _run(tmp_path, n_scanners: int = 0, t0_ns: int = Path.t0_ns):
    w = Path(port_map=lambda p: p + 1000, t0_ns=t0_ns)
    tcp_delivered(w, 40000, 1000, 2000)
    for s in syn_only(w, 40001, 3000, copies=2):
        w.back(w.synack(s, 4000), arrive=False)
    quic_flow(w, 50000, lost_back={3})
    udp(w, 41000, 1)
    ping(w, 1)
    ping(w, 2, reply_arrives=False)
    w._now += 2_000_000_000
    ping(w, 3)  # the client capture runs on past when the lost reply was due
    scanners(w, n_scanners)
    return w.write(tmp_path)


def _facts(d: dict) -> list:
    return [(e["id"], e["outcome"], e["client"], e["server"], e["seen_at_server_as"], e.get("datagrams"))
            for e in d["exchanges"]]


@pytest.mark.parametrize("n_scanners", [0, 40])
def test_swapped_arguments_are_analysed_the_right_way_round(tmp_path, n_scanners):
    c, s = _run(tmp_path, n_scanners)
    right = _rig("diff", str(c), str(s), "--json")
    assert right.returncode == 1 and right.stderr == ""
    good = json.loads(right.stdout)
    assert "orientation" not in good
    assert [e["outcome"] for e in good["exchanges"]] == ["delivered", "lost-return", "delivered", "delivered",
                                                         "delivered", "lost-return", "delivered"]
    turned = _rig("diff", str(s), str(c), "--json")
    assert turned.returncode == 1
    assert turned.stderr.count("\n") == 1 and turned.stderr.startswith("rig: analysing client.pcap as the client's")
    d = json.loads(turned.stdout)
    assert d["orientation"]["swapped"] is True
    assert (d["orientation"]["client"], d["orientation"]["server"]) == ("client.pcap", "server.pcap")
    assert _facts(d) == _facts(good)
    assert [p["file"] for p in d["capture_points"]] == ["client.pcap", "server.pcap"]
    assert Verdict.from_dict(d).orientation.client == "client.pcap"


def test_busy_public_server_given_correctly_is_not_turned(tmp_path):
    """Many SYNs from many sources arrive at the server; the client capture starts the run."""
    c, s = _run(tmp_path, 400)
    v = analyse(read_capture(str(c)), read_capture(str(s)), orient=True)
    assert v.orientation is None
    assert {e.client.split(":")[0] for e in v.exchanges} == {"192.168.1.10"}
    assert len(v.exchanges) == 7


def test_two_server_captures_cannot_be_told_apart(tmp_path):
    c, s = _run(tmp_path, 10)
    # a second server capture of another run (the same file twice is refused before this
    # check: rig.capture.checks)
    (tmp_path / "other").mkdir()
    _, s2 = _run(tmp_path / "other", 12, t0_ns=Path.t0_ns + 3_600_000_000_000)  # an hour later
    r = _rig("diff", str(s), str(s2))
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "cannot tell which capture is the client's" in r.stderr
    assert "Traceback" not in r.stderr
    with pytest.raises(UsageError):
        analyse(read_capture(str(s)), read_capture(str(s)), orient=True)


def test_server_addr_settles_it(tmp_path):
    c, s = _run(tmp_path)
    r = _rig("diff", str(s), str(c), "--json", "--server-addr", "198.51.100.10")
    assert r.returncode == 1
    d = json.loads(r.stdout)
    assert d["orientation"]["client"] == "client.pcap"
    (tmp_path / "other").mkdir()
    _, s2 = _run(tmp_path / "other", 0, t0_ns=Path.t0_ns + 3_600_000_000_000)  # another server capture
    same = _rig("diff", str(s), str(s2), "--json", "--server-addr", "198.51.100.10")
    assert same.returncode != 2 and "orientation" not in json.loads(same.stdout)


def test_analyse_keeps_the_given_order_unless_asked(tmp_path):
    """rig run and rig show know which capture is whose: no check there."""
    c, s = _run(tmp_path)
    v = analyse(read_capture(str(s)), read_capture(str(c)))
    assert v.orientation is None
