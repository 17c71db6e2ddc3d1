"""Packets captured twice at one point (tcpdump -i any) count once, and the evidence
names both frames; changes along the whole exchange: DSCP and ECN on data segments
(ECN bleaching shows only there), the same from the bulk path and the close look."""

from __future__ import annotations

import numpy as np
import pytest

import rig.analysis.tcp as tcp
from rig.analysis.api import analyse
from rig.analysis.sides import Side, capture_copies
from rig.capture import read_capture
from rig.capture.synth_capture import TosPath, write_any
from rig.capture.synth_capture import windows_of

from tests._analysis_scenarios import (ACK, FIN, PSH, Path, by_id, changes, handshake, ping, syn_only, tcp_delivered,
                                       tcp_seg, udp)

ECT0 = 2


def _ecn_conn(w: Path, sport: int, isn_c: int, isn_s: int, first_lost: bool = False) -> None:
    """A connection whose data segments carry ECT(0) both ways (the handshake carries
    none, as Linux sends it). ``first_lost``: the client's first data segment is lost and
    resent without ECT (RFC 3168: a retransmission is never ECT-marked)."""
    ss, _ = handshake(w, sport, isn_c, isn_s)
    req = b"GET /?ecn HTTP/1.1\r\n\r\n"
    c1, s1 = isn_c + 1, isn_s + 1
    seg = tcp_seg(w.client, w.server, sport, ss.dport, c1, s1, req, ACK | PSH, tos=ECT0, ip_id=(isn_c + 10) & 0xFFFF)
    if first_lost:
        w.out(seg, arrive=False)
        seg = tcp_seg(w.client, w.server, sport, ss.dport, c1, s1, req, ACK | PSH, tos=0, ip_id=(isn_c + 11) & 0xFFFF)
    w.out(seg)
    resp = b"HTTP/1.1 200 OK\r\n\r\nok"
    w.back(tcp_seg(ss.dst, ss.src, ss.dport, ss.sport, s1, c1 + len(req), resp, ACK | PSH, tos=ECT0, ip_id=7))
    w.out(tcp_seg(w.client, w.server, sport, ss.dport, c1 + len(req), s1 + len(resp), b"", ACK | FIN, ip_id=(isn_c + 12) & 0xFFFF))
    w.back(tcp_seg(ss.dst, ss.src, ss.dport, ss.sport, s1 + len(resp), c1 + len(req) + 1, b"", ACK | FIN, ip_id=8))


def _caps(w: Path, tmp, any_at: str | None = None):
    c, s = write_any(w, tmp, any_at) if any_at else w.write(tmp)
    return read_capture(str(c), lean=True), read_capture(str(s), lean=True)


def _close_look_only(monkeypatch) -> None:
    monkeypatch.setattr(tcp, "delivered_mask", lambda ctx, ci, si: np.zeros(len(ci), bool))


def _facts(v):
    return [(e.id, e.outcome, e.changes, e.frames) for e in v.exchanges]


# -- tcpdump -i any -------------------------------------------------------------------

@pytest.mark.parametrize("point", ["client", "server"])
def test_any_copies_count_once(tmp_path, point):
    w = Path()
    syn_only(w, 40000, 1, copies=4, arrive=False)  # 4 SYNs, none arrive (each 21 ms apart: retransmissions)
    tcp_delivered(w, 40001, 2, 3)
    ping(w, 1)
    udp(w, 50000, 1, reply_arrives=False)
    plain = analyse(*_caps(w, tmp_path / "plain"), windows=windows_of(w))
    caps = _caps(w, tmp_path / "any", point)
    twice = analyse(*caps, windows=windows_of(w))
    assert [p.packets for p in twice.capture_points if p.name == point][0] == 2 * [
        p.packets for p in plain.capture_points if p.name == point][0]
    assert [(e.id, e.outcome, e.explanation, e.changes) for e in twice.exchanges] == [
        (e.id, e.outcome, e.explanation, e.changes) for e in plain.exchanges]
    e = by_id(twice)
    assert e["tcp-1"].outcome == ("lost-outbound")
    assert e["tcp-1"].explanation.startswith("the client sent SYN 4 times")  # not 8
    # every frame of the exchange is named, both copies of each packet
    for x, y in zip(twice.exchanges, plain.exchanges):
        assert len(x.frames_at(point)) == 2 * len(y.frames_at(point)), x.id
    side = Side(point, caps[0] if point == "client" else caps[1])
    assert len(side.dup_rows) == side.n_total // 2 and (side.dup_rows == side.dup_of + 1).all()


def test_any_copies_named_in_the_evidence(tmp_path):
    w = Path()
    syn_only(w, 40000, 1, copies=2, arrive=False)
    tcp_delivered(w, 40001, 2, 3)  # delivered: built in bulk
    v = analyse(*_caps(w, tmp_path, "client"))
    e = by_id(v)
    lost = [x for x in e["tcp-1"].evidence if x.point == "client"]
    assert [(x.frame, x.summary.endswith(f"(captured twice here: also frame {x.frame + 1})")) for x in lost] == [
        (1, True), (3, True)]
    sent = [x for x in e["tcp-2"].evidence if x.point == "client"][0]
    assert sent.summary.endswith(f"(captured twice here: also frame {sent.frame + 1})")
    assert sent.frame + 1 in e["tcp-2"].frames_at("client")


def test_capture_copies_rule():
    """Identical rows microseconds apart are copies (up to 4 rows back); the same bytes
    200 ms later are a retransmission; a changed field is another packet."""
    from rig.capture.table import empty_table

    t = empty_table(8)
    t["frame"] = np.arange(1, 9)
    t["ipver"], t["proto"], t["seq"], t["ip_id"] = 4, 6, 100, 5
    t["ts_ns"] = [0, 3_000, 5_000, 7_000, 9_000, 200_000_000, 200_004_000, 400_000_000]
    t["seq"][[2, 3, 4]] = [101, 102, 103]  # three other packets between row 1's copies
    t["seq"][6] = 100  # row 6: a copy of row 5 (the retransmission at 200 ms)
    t["ttl"][7] = 1  # row 7: other TTL
    t["seq"][1] = 100
    rows, orig = capture_copies(t, np.ones(8, bool))
    assert rows.tolist() == [1, 6] and orig.tolist() == [0, 5]
    t["seq"][4] = 100  # row 4: a third copy of row 0, 4 rows after row 0... and 3 after row 1
    rows, orig = capture_copies(t, np.ones(8, bool))
    assert rows.tolist() == [1, 4, 6] and orig.tolist() == [0, 0, 5]
    valid = np.ones(8, bool)
    valid[0] = False  # an untrusted row has no copies
    rows, _ = capture_copies(t, valid)
    assert rows.tolist() == [4, 6]


# -- changes along the whole exchange ------------------------------------------------

def test_ecn_bleaching_shows_on_data_segments(tmp_path):
    w = TosPath(bleach_out=True, dscp_back=10)
    _ecn_conn(w, 40000, 100, 200)
    v = analyse(*_caps(w, tmp_path))
    t = v.exchanges[0]
    assert t.outcome == "delivered"
    ecn = changes(t, "ip.ecn")
    assert [(c.direction, c.client, c.server, c.note) for c in ecn] == [("out", ECT0, 0, "ECN bleached on data segments")]
    dscp = changes(t, "ip.dscp")  # on the SYN-ACK and on the data segment, both back
    assert [(c.direction, c.client, c.server) for c in dscp] == [("back", 10, 0), ("back", 10, 0)]
    assert [c.note for c in dscp] == [None, "data segments"]
    assert [(c.direction, c.client - c.server) for c in changes(t, "ip.ttl")] == [("out", 3), ("back", -3)]
    s = v.diagnosis.summary
    assert "the path is clean" not in s
    assert v.exchanges.change_fields() == {("ip.ttl", "out"), ("ip.ttl", "back"), ("ip.ecn", "out"),
                                           ("ip.dscp", "back")}


def test_a_plain_nat_is_clean(tmp_path):
    w = TosPath()
    _ecn_conn(w, 40000, 100, 200)
    ping(w, 1)
    v = analyse(*_caps(w, tmp_path))
    assert {c.field for e in v.exchanges for c in e.changes} == {"ip.ttl"}
    assert v.diagnosis.summary == "Every exchange (2) was delivered both ways: the path is clean"


def test_resent_segment_without_ect_is_no_bleaching(tmp_path):
    w = TosPath()
    _ecn_conn(w, 40000, 100, 200, first_lost=True)
    t = analyse(*_caps(w, tmp_path)).exchanges[0]
    assert t.outcome == "delivered" and changes(t, "ip.ecn") == []


@pytest.mark.parametrize("any_at", [None, "server"])
def test_bulk_and_close_look_give_the_same_changes(tmp_path, monkeypatch, any_at):
    w = TosPath(bleach_out=True, dscp_back=46, mss_clamp=1400, port_map=lambda p: p + 1000)
    for k in range(12):
        if k % 3:
            _ecn_conn(w, 40000 + k, 1000 + 7919 * k, 5000 + 104729 * k, first_lost=k % 4 == 1)
        else:
            tcp_delivered(w, 40000 + k, 1000 + 7919 * k, 5000 + 104729 * k, nonce=k)
    caps = _caps(w, tmp_path, any_at)
    fast = analyse(*caps)
    assert (fast.exchanges.src >= 0).all()  # every connection built in bulk here
    _close_look_only(monkeypatch)
    slow = analyse(*caps)
    assert (slow.exchanges.src < 0).all()
    assert _facts(fast) == _facts(slow)
    assert sum(1 for e in fast.exchanges for c in e.changes if c.field == "ip.ecn") == 6  # 8 marked, 2 resent unmarked
    assert fast.diagnosis == slow.diagnosis
