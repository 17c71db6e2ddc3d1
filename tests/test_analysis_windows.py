"""Capture windows: a point vouches for an absence only while it was capturing. A
capture that starts late or stops early makes the exchanges outside its window
'incomplete' (never lost-*, never a middlebox), with the reason as a fact; clock
offsets of ±60 s; tcpdump's own listening / stop times from a bundle."""

from __future__ import annotations

import numpy as np
import pytest

from rig.analysis.api import analyse
from rig.capture import read_capture
from rig.capture.synth_capture import now, trimmed, window

from tests._analysis_scenarios import Path, Pkt, by_id, ping, run, syn_only, tcp_delivered, udp

OFFSETS = [3_000_000_000, 60_000_000_000, -60_000_000_000, -90_500_000_000]


def _server(v):
    return [p for p in v.capture_points if p.name == "server"][0]


def _late_server(off: int, gap_ns: int = 9_800_000_000):
    """Three exchanges while the server's tcpdump was not running yet (each would have
    arrived), then three after it started ``gap_ns`` after the first one began."""
    w = Path(server_clock_offset_ns=off, port_map=lambda p: p + 1000)
    first = now(w) + w.step_ns  # the first packet the client sends
    tcp_delivered(w, 40000, 1000, 2000, nonce=1)  # the client got replies: "a middlebox answered"
    udp(w, 50000, 1)  # answered too
    ping(w, 1, arrive=False)  # never arrived: "lost-outbound" (the server could not have seen it anyway)
    start = first + gap_ns  # client clock: when the server's tcpdump started
    w._now = start - w.latency_ns - w.step_ns - w.t0_ns  # the next datagram reaches the server right then
    udp(w, 50001, 2)
    tcp_delivered(w, 40001, 3000, 4000, nonce=2)
    ping(w, 2)
    trimmed(w, "server", start_ns=start)
    return w, first, start


@pytest.mark.parametrize("off", OFFSETS, ids=["3s", "+60s", "-60s", "-90.5s"])
def test_server_capture_started_late(tmp_path, off):
    w, _, _ = _late_server(off)
    v = run(w, tmp_path)
    e = by_id(v)
    assert abs(_server(v).clock_offset_s - off / 1e9) < 0.001  # the offset, whatever its size
    before = [e["tcp-1"], e["udp-1"], e["icmp-1"]]
    assert [x.outcome for x in before] == ["incomplete"] * 3
    assert e["tcp-1"].undecided_because == "server capture started 9.8 s later"
    assert all(x.undecided_because.startswith("server capture started ") for x in before)
    assert all(x.explanation.startswith("the " + x.undecided_because) for x in before)
    after = [e["udp-2"], e["tcp-2"], e["icmp-2"]]
    assert [x.outcome for x in after] == ["delivered"] * 3
    assert all(x.undecided_because is None for x in after)
    assert e["tcp-2"].seen_at_server_as == "203.0.113.2:41001" and e["udp-2"].seen_at_server_as == "203.0.113.2:51001"
    assert v.diagnosis.by_protocol["tcp"] == {"delivered": 1, "incomplete": 1}
    assert "answered-by-middlebox" not in {o for c in v.diagnosis.by_protocol.values() for o in c}


def test_old_rule_called_a_late_start_a_middlebox(tmp_path, monkeypatch):
    """The same captures with the window check off: what the packets alone say (the
    symptom of issue 10: an invented proxy, and a loss)."""
    import rig.analysis.api as api

    w, _, _ = _late_server(3_000_000_000)
    monkeypatch.setattr(api, "vouch", lambda d, sides, wins: None)
    e = by_id(run(w, tmp_path))
    assert [e["tcp-1"].outcome, e["udp-1"].outcome, e["icmp-1"].outcome] == [
        "answered-by-middlebox", "answered-by-middlebox", "lost-outbound"]


@pytest.mark.parametrize("off", OFFSETS[:3], ids=["3s", "+60s", "-60s"])
def test_server_capture_stopped_early(tmp_path, off):
    w = Path(server_clock_offset_ns=off)
    tcp_delivered(w, 40000, 1000, 2000)
    stop = now(w)
    w._now += 5_000_000_000
    syn_only(w, 40001, 7, copies=1)  # arrived after the server's tcpdump stopped: "unanswered"
    udp(w, 50000, 1)  # answered: "a middlebox answered"
    trimmed(w, "server", stop_ns=stop)
    e = by_id(run(w, tmp_path))
    assert e["tcp-1"].outcome == "delivered"
    assert [e["tcp-2"].outcome, e["udp-1"].outcome] == ["incomplete", "incomplete"]
    assert e["tcp-2"].undecided_because.startswith("server capture stopped ")
    assert e["tcp-2"].undecided_because.endswith(" s earlier")


def test_client_capture_stopped_before_the_answer(tmp_path):
    """The client's tcpdump stopped while the server took 5 s to answer: not a lost reply."""
    w = Path()
    udp(w, 50000, 1)
    p = w.syn(40000, 5)  # a connection the server answers late
    q = w.out(p)
    stop = now(w)
    w._now += 5_000_000_000
    w.back(w.synack(q, 77))
    trimmed(w, "client", stop_ns=stop)
    e = by_id(run(w, tmp_path))
    assert e["udp-1"].outcome == "delivered"
    assert e["tcp-1"].outcome == "incomplete"
    assert e["tcp-1"].undecided_because == "client capture stopped 5.0 s earlier"


def test_client_capture_started_late_invents_nothing(tmp_path):
    """What the client sent before its tcpdump started is not an exchange, and what the
    server saw of it is no evidence against the others."""
    w = Path()
    tcp_delivered(w, 40000, 1000, 2000)
    udp(w, 50000, 1)
    start = now(w)
    tcp_delivered(w, 40001, 3000, 4000)
    ping(w, 1, reply_arrives=False)
    w._now += 2_000_000_000
    ping(w, 2)  # the client capture runs on past when the first echo's reply was due
    trimmed(w, "client", start_ns=start)
    e = by_id(run(w, tmp_path))
    assert sorted(e) == ["icmp-1", "icmp-2", "tcp-1"]
    assert (e["tcp-1"].outcome, e["icmp-1"].outcome) == ("delivered", "lost-return")


def test_tcpdump_window_from_a_bundle(tmp_path):
    """A quiet server capture: its first packet is 5 s after a lost datagram, but rig
    saw its tcpdump listening before. With that window the loss is decided; without
    it (rig diff on the files alone), it cannot be."""
    w = Path()
    listening = now(w)
    udp(w, 50000, 1, arrive=False)
    w._now += 5_000_000_000
    udp(w, 50001, 2)
    stopped = now(w) + 1
    c, s = w.write(tmp_path)
    caps = read_capture(str(c)), read_capture(str(s))
    plain = by_id(analyse(*caps))
    assert plain["udp-1"].outcome == "incomplete"
    assert plain["udp-1"].undecided_because == "server capture started 5.0 s later"
    given = by_id(analyse(*caps, windows={"server": window(listening, stopped), "client": window(listening, stopped)}))
    assert given["udp-1"].outcome == "lost-outbound" and given["udp-1"].undecided_because is None
    late = by_id(analyse(*caps, windows={"server": window(listening + 2_000_000_000, stopped)}))
    assert late["udp-1"].outcome == "incomplete"


def test_tcpdump_window_without_a_clock_offset(tmp_path):
    """Nothing was seen at both points (no offset): tcpdump's window, on rig's clock,
    still decides; the packets' own times are on a clock nobody mapped, so they alone
    decide only a wide gap, and say so."""
    w = Path(server_clock_offset_ns=45_000_000_000)
    listening = now(w)
    syn_only(w, 40000, 1, copies=2, arrive=False)
    w.at_server(Pkt("45.1.2.3", w.server, 6, sport=4444, dport=22, seq=99, flags=0x02))  # a scanner, no match
    c, s = w.write(tmp_path)
    caps = read_capture(str(c)), read_capture(str(s))
    plain = by_id(analyse(*caps, server_addr=w.server))
    assert plain["tcp-1"].outcome == "incomplete"
    assert plain["tcp-1"].undecided_because == ("server capture started 45.0 s later"
                                                " (clocks taken as equal: no packet was surely seen at both points)")
    assert _server(analyse(*caps, server_addr=w.server)).clock_offset_s is None
    stopped = now(w) + 3_000_000_000  # rig stops tcpdump once the probe has timed out
    given = by_id(analyse(*caps, server_addr=w.server, windows={"server": window(listening, stopped)}))
    assert given["tcp-1"].outcome == "lost-outbound"


def test_undecided_because_in_the_json(tmp_path):
    from rig.verdict import Verdict

    w, _, _ = _late_server(60_000_000_000)
    v = run(w, tmp_path)
    d = v.to_dict()
    keys = {x["id"]: x.get("undecided_because") for x in d["exchanges"]}
    assert keys["tcp-1"] == "server capture started 9.8 s later" and keys["tcp-2"] is None
    assert all(("undecided_because" in x) == (x["outcome"] == "incomplete") for x in d["exchanges"])
    assert Verdict.from_dict(d) == v
    assert "(the server capture started " in v.diagnosis.summary


def test_bundle_keeps_tcpdump_windows_for_rig_show(tmp_path):
    """rig run records when each tcpdump listened (manifest facts.capture_windows); rig
    show's re-analysis decides with them, as the run did."""
    from rig.analysis.windows import CaptureWindow
    from rig.bundle import BundleWriter, open_bundle, reanalyse

    w = Path()
    listening = now(w)
    udp(w, 50000, 1, arrive=False)
    w._now += 5_000_000_000
    udp(w, 50001, 2)
    out = tmp_path / "b"
    bw = BundleWriter(out, {"backend": "lab"})
    w.write(out / "captures")
    wins = {"client": CaptureWindow(listening, now(w)), "server": CaptureWindow(listening, now(w))}
    bw.set_facts(kernel_drops={"client": 0, "server": 0}, capture_windows={p: x.to_dict() for p, x in wins.items()})
    bw.finish("path-problem")
    with open_bundle(out) as b:
        assert by_id(reanalyse(b))["udp-1"].outcome == "lost-outbound"
    bw2 = BundleWriter(tmp_path / "b2", {"backend": "lab"})  # the same without the windows
    w.write(tmp_path / "b2" / "captures")
    bw2.finish("path-problem")
    with open_bundle(tmp_path / "b2") as b:
        assert by_id(reanalyse(b))["udp-1"].outcome == "incomplete"


def test_capture_windows_from_a_manifest_tolerate_junk():
    from rig.analysis.windows import CaptureWindow, windows_from_manifest

    assert windows_from_manifest({}) is None and windows_from_manifest(None) is None
    got = windows_from_manifest({"capture_windows": {"server": {"start_ns": 5, "stop_ns": "x"}, "client": 3}})
    assert got == {"server": CaptureWindow(5, None), "client": CaptureWindow()}


def test_a_start_a_fraction_of_a_second_late_is_measured_not_assumed(tmp_path):
    """The server's tcpdump started 0.2 s after a datagram left, on a 20 ms path: the
    matched packets say it would have arrived long before, so its absence proves nothing
    (a fixed path-delay allowance of 1 s would call it lost). Through the window a bundle
    records, rig knows better, and decides."""
    w = Path(server_clock_offset_ns=-7_000_000_000)
    udp(w, 50000, 1, arrive=False)
    w._now += 200_000_000
    start = now(w)
    for i in range(2, 6):
        udp(w, 50000 + i, i)
        ping(w, i)
    trimmed(w, "server", start_ns=start)
    e = by_id(run(w, tmp_path, files_only=True))
    assert e["udp-1"].outcome == "incomplete"
    assert e["udp-1"].undecided_because.startswith("server capture started 0.2")
    assert {x.outcome for k, x in e.items() if k != "udp-1"} == {"delivered"}
    listened = by_id(run(w, tmp_path / "b", windows={"server": window(start - 500_000_000, now(w))}))
    assert listened["udp-1"].outcome == "lost-outbound"


def test_clock_fit_edges_follow_the_measured_path():
    from rig.analysis.windows import MIN_ERR_NS, PATH_DELAY_NS, UNMAPPED_SLACK_NS, fit_clocks

    tight = fit_clocks(np.full(9, 3_010_000_000), np.full(9, -2_990_000_000))  # server - client; client - server
    assert tight.offset_ns == 3_000_000_000 and tight.half_rtt_ns == 10_000_000
    assert tight.edges("server", True) == (10_000_000 + MIN_ERR_NS, 10_000_000 - MIN_ERR_NS)
    out = np.array([3_010_000_000 + j * 100_000 for j in range(9)])  # jitter: the mapping is less sure
    back = np.array([-2_990_000_000 + j * 100_000 for j in range(9)])
    both = fit_clocks(out, back)
    assert abs(both.half_rtt_ns - 10_400_000) < 1000  # the medians
    late, early = both.edges("server", True)
    assert late < 10_400_000 < early  # what the spread adds counts against the exchange
    one = fit_clocks(out, np.zeros(0, np.int64))
    assert one.edges("server", True)[0] < MIN_ERR_NS  # the mapped clock holds the outbound delay
    # the way back is not measured: it may take a path delay, but arrives no sooner than
    # its mapped time (the mapping holds the way out), less the least error and the spread
    assert one.edges("client", True) == (PATH_DELAY_NS, -MIN_ERR_NS + (one.err_ns - MIN_ERR_NS))
    assert one.edges("client", True)[1] > 0  # jitter: the spread counts against the exchange
    assert fit_clocks(np.zeros(0), np.zeros(0)).edges("client", True) == (PATH_DELAY_NS, -PATH_DELAY_NS)
    torn = fit_clocks(np.array([-89_995_000_000, -87_208_000_000]), np.zeros(0, np.int64))  # copies paired across an RTO
    assert torn.edges("server", True)[0] < -2_000_000_000  # vouches for nothing within seconds of an edge
    assert fit_clocks(np.zeros(0), np.zeros(0)).edges("server", False) == (UNMAPPED_SLACK_NS, -UNMAPPED_SLACK_NS)


def test_without_a_clock_offset_a_gap_of_seconds_is_an_edge(tmp_path):
    """Nothing was seen at both points: the clocks are taken as equal, and a server
    capture whose first packet comes 3 s after a SYN lost there cannot vouch for it (an
    allowance for the clocks would call it lost-outbound)."""
    w = Path(server_clock_offset_ns=0)
    syn_only(w, 40000, 1, copies=1, arrive=False)
    w._now += 3_000_000_000
    w.at_server(Pkt("45.1.2.3", w.server, 6, sport=4444, dport=22, seq=99, flags=0x02))  # a scanner, no match
    e = by_id(run(w, tmp_path, files_only=True, server_addr=w.server))
    assert e["tcp-1"].outcome == "incomplete"
    assert e["tcp-1"].undecided_because == ("server capture started 3.0 s later"
                                            " (clocks taken as equal: no packet was surely seen at both points)")


def test_a_dumpcap_capture_says_when_it_listened(tmp_path):
    """A quiet server capture whose first packet comes 5 s after a lost datagram: the file
    alone cannot vouch for it, unless it says when it listened (pcapng interface
    statistics, which dumpcap writes: isb_starttime / isb_endtime, on its own clock)."""
    from rig.capture.synth import encoded, frame, write_pcapng

    w = Path(server_clock_offset_ns=-4_000_000_000)
    listening = now(w) - 1_000_000_000
    udp(w, 50000, 1, arrive=False)
    w._now += 5_000_000_000
    for i in range(2, 5):
        udp(w, 50000 + i, i)
    c, s = w.write(tmp_path)
    plain = by_id(analyse(read_capture(str(c)), read_capture(str(s))))
    assert plain["udp-1"].outcome == "incomplete"
    off = w.server_clock_offset_ns
    ng = tmp_path / "server.pcapng"
    write_pcapng(ng, [(1, "eth0")], [(0, t, frame(b)) for t, b in encoded(w.server_frames)],
                 listened={0: (listening + off, now(w) + 2_000_000_000 + off)})
    cap = read_capture(str(ng))
    assert cap.interfaces[0].listened_ns == ((listening + off) // 1000 * 1000, (now(w) + 2_000_000_000 + off) // 1000 * 1000)
    told = by_id(analyse(read_capture(str(c)), cap))
    assert told["udp-1"].outcome == "lost-outbound" and told["udp-1"].undecided_because is None
    late = tmp_path / "late.pcapng"  # it says it began after the datagram would have arrived: still undecided
    write_pcapng(late, [(1, "eth0")], [(0, t, frame(b)) for t, b in encoded(w.server_frames)],
                 listened={0: (listening + 3_000_000_000 + off, now(w) + off)})
    assert by_id(analyse(read_capture(str(c)), read_capture(str(late))))["udp-1"].outcome == "incomplete"
