"""The rig.verdict/1 contract (DESIGN.md §3): shape, round trip, determinism, refusal of newer formats."""

from __future__ import annotations

import json

import pytest

from rig.errors import InputError
from rig.verdict import CHANGE_FIELDS, FORMAT, OUTCOMES, PROTOCOLS, Verdict

from tests._analysis_scenarios import ping, run, syn_only, tcp_delivered, udp
from rig.capture.synth import Path

EXCHANGE_KEYS = {"id", "protocol", "client", "server", "seen_at_server_as", "outcome", "explanation", "changes", "evidence"}


def _scenario() -> Path:
    w = Path(mss_clamp=1414)
    tcp_delivered(w, 40000, 10, 20)
    for s in syn_only(w, 40001, 30, copies=3):
        w.back(w.synack(s, 40), arrive=False)
    ping(w, 1)
    udp(w, 50000, 1, reply_arrives=False)
    return w


def test_shape_matches_design(tmp_path):
    d = json.loads(run(_scenario(), tmp_path).to_json())
    assert d["format"] == FORMAT == "rig.verdict/1"
    assert set(d) == {"format", "capture_points", "exchanges", "diagnosis"}
    assert [p["name"] for p in d["capture_points"]] == ["client", "server"]
    for p in d["capture_points"]:
        assert {"name", "file", "packets", "undecoded", "kernel_drops"} <= set(p)
        assert isinstance(p["packets"], int) and p["packets"] > 0
        assert p["undecoded"] == 0 and p["kernel_drops"] == 0
    assert d["capture_points"][0]["file"] == "client.pcap"
    for e in d["exchanges"]:
        assert EXCHANGE_KEYS <= set(e)
        assert e["protocol"] in PROTOCOLS and e["outcome"] in OUTCOMES
        assert isinstance(e["explanation"], str) and e["explanation"]
        for c in e["changes"]:
            assert {"field", "direction", "client", "server"} <= set(c)
            assert c["field"] in CHANGE_FIELDS and c["direction"] in ("out", "back")
        for ev in e["evidence"]:
            assert set(ev) == {"point", "frame", "summary"} and ev["frame"] >= 1
    assert [e["id"] for e in d["exchanges"]] == ["tcp-1", "tcp-2", "icmp-1", "udp-1"]
    assert set(d["diagnosis"]) == {"summary", "by_protocol"}
    assert d["diagnosis"]["by_protocol"] == {"tcp": {"delivered": 1, "lost-return": 1}, "udp": {"lost-return": 1},
                                             "icmp": {"delivered": 1}}


def test_round_trip(tmp_path):
    v = run(_scenario(), tmp_path)
    back = Verdict.from_json(v.to_json())
    assert back == v
    assert back.to_dict() == v.to_dict()
    assert back.exit_code() == 1


def test_same_scenario_twice_gives_identical_json(tmp_path):
    a = run(_scenario(), tmp_path / "a").to_json()
    b = run(_scenario(), tmp_path / "b").to_json()
    assert a == b


def test_refuses_newer_and_foreign_formats():
    with pytest.raises(InputError, match="newer"):
        Verdict.from_dict({"format": "rig.verdict/2", "capture_points": [], "exchanges": [], "diagnosis": {}})
    with pytest.raises(InputError, match="not a rig verdict"):
        Verdict.from_dict({"format": "something/1"})
    with pytest.raises(InputError, match="malformed"):
        Verdict.from_dict({"format": FORMAT, "capture_points": [{}], "exchanges": [], "diagnosis": {}})
    with pytest.raises(InputError):
        Verdict.from_json("{nope")


def test_exit_codes():
    from rig.verdict import Diagnosis, Exchange

    ok = Exchange("tcp-1", "tcp", "a", "b", None, "delivered", "x")
    bad = Exchange("tcp-2", "tcp", "a", "b", None, "lost-return", "x")
    assert Verdict((), (ok,), Diagnosis("")).exit_code() == 0
    assert Verdict((), (ok, bad), Diagnosis("")).exit_code() == 1
    assert Verdict((), (), Diagnosis("")).exit_code() == 1  # nothing found is not a clean path


def test_render_shows_table_changes_and_diagnosis(tmp_path):
    from io import StringIO

    from rich.console import Console

    from rig.render import print_verdict

    v = run(_scenario(), tmp_path)
    buf = StringIO()
    print_verdict(v, Console(file=buf, width=200, color_system=None))
    out = buf.getvalue()
    for word in ("tcp-1", "lost-return", "203.0.113.2:40001", "tcp.mss -> 1460 => 1414", "Diagnosis:",
                 v.diagnosis.summary[:40]):
        assert word in out, word


@pytest.mark.parametrize("n", [3, 501, 2000])
def test_written_a_piece_at_a_time_is_the_same_text(n):
    """``write_json`` (what ``rig diff --json`` prints) gives ``to_json``'s characters; past
    500 exchanges one record a line, and the document still parses to ``to_dict``."""
    import io

    from rig.verdict import CapturePointInfo, Change, Diagnosis, Evidence, Exchange

    ex = tuple(Exchange(f"udp-{i + 1}", "udp", f"192.168.1.10:{40000 + i}", "198.51.100.10:53", "203.0.113.2:9",
                        "delivered" if i % 3 else "lost-return", "words \"quoted\" — and more",
                        (Change("ip.ttl", "out", 64, 61, None),), (Evidence("client", 2 * i + 1, "a > b"),),
                        (("client", (2 * i + 1, 2 * i + 2)), ("server", (i + 1,))))
               for i in range(n))
    v = Verdict((CapturePointInfo("client", "c.pcap", 2 * n, 0, 0, 0.0),), ex, Diagnosis("summary", {"udp": {}}))
    out = io.StringIO()
    v.write_json(out)
    text = v.to_json()
    assert out.getvalue() == text and json.loads(text) == v.to_dict()
    lines = text.splitlines()
    if n > 500:
        assert sum(1 for line in lines if line.startswith('    {"id":"udp-')) == n
    else:
        assert len(lines) > 20 * n  # indented throughout
