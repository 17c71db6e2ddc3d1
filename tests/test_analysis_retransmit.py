"""Retransmitted SYNs and SYN-ACKs as Linux sends them: each copy has a new IP ID and TCP
timestamp. When the first copy is lost, the changes must compare the copy that arrived
with that same copy as sent — not with the first one sent (which reported IP ID and
timestamp "changes" that never happened)."""

from __future__ import annotations

from dataclasses import replace

from rig.capture.table import ACK, FIN, PSH

from tests._analysis_scenarios import Path, by_id, changes, run, tcp_seg

REQ = b"GET /rig/n/1 HTTP/1.1\r\nHost: x\r\n\r\n"
RESP = b"HTTP/1.1 200 OK\r\n\r\nhi"


def _copies(p, n):
    """n copies of a SYN or SYN-ACK as a Linux sender retransmits it."""
    return [replace(p, ip_id=(p.ip_id + 977 * k) & 0xFFFF, ts=(p.ts[0] + 1000 * k, p.ts[1])) for k in range(n)]


def _connection(w: Path, sport: int, *, syn_lost: int = 0, synack_lost: int = 0, server_sees=None,
                synack_arrives: bool = True, data: bool = True):
    isn_c, isn_s = 1000 + sport, 9000 + sport
    syns = _copies(w.syn(sport, isn_c), syn_lost + 1)
    for s in syns[:-1]:
        w.out(s, arrive=False)
    ss = w.out(syns[-1], server_sees=server_sees)
    synacks = _copies(w.synack(ss, isn_s), synack_lost + 1)
    for sa in synacks[:-1]:
        w.back(sa, arrive=False)
    w.back(synacks[-1], arrive=synack_arrives)
    if data and synack_arrives:
        c1, s1 = isn_c + 1, isn_s + 1
        w.out(tcp_seg(w.client, w.server, sport, 80, c1, s1, REQ, ACK | PSH))
        w.back(tcp_seg(ss.dst, ss.src, 80, ss.sport, s1, c1 + len(REQ), RESP, ACK | PSH))
        w.out(tcp_seg(w.client, w.server, sport, 80, c1 + len(REQ), s1 + len(RESP), b"", ACK | FIN))
        w.back(tcp_seg(ss.dst, ss.src, 80, ss.sport, s1 + len(RESP), c1 + len(REQ) + 1, b"", ACK | FIN))
        w.out(tcp_seg(w.client, w.server, sport, 80, c1 + len(REQ) + 1, s1 + len(RESP) + 1, b"", ACK))
    return syns, ss


def _fields(e) -> set[str]:
    return {c.field for c in e.changes}


def test_delivered_after_lost_first_syn_and_synack_reports_no_invented_changes(tmp_path):
    w = Path()
    _connection(w, 40000, syn_lost=2)
    _connection(w, 40001, synack_lost=1)
    _connection(w, 40002)
    e = by_id(run(w, tmp_path))
    assert [e[i].outcome for i in ("tcp-1", "tcp-2", "tcp-3")] == ["delivered"] * 3
    for i in ("tcp-1", "tcp-2", "tcp-3"):
        assert _fields(e[i]) == {"ip.ttl"}, (i, e[i].changes)


def test_lost_return_after_a_lost_first_syn_reports_no_invented_changes(tmp_path):
    w = Path()
    _connection(w, 40000, syn_lost=1, synack_arrives=False)  # the per-exchange look, not the bulk path
    e = by_id(run(w, tmp_path))["tcp-1"]
    assert e.outcome == "lost-return"
    assert changes(e, "ip.id") == []


def test_an_ip_id_the_path_really_rewrote_is_still_reported(tmp_path):
    w = Path()
    second = _copies(w.syn(40000, 1000 + 40000), 2)[1]  # the copy _connection sends second
    seen = replace(w.nat_out(second), ip_id=4242)  # it arrives with an IP ID the client never sent
    _connection(w, 40000, syn_lost=1, server_sees=[seen])
    e = by_id(run(w, tmp_path))["tcp-1"]
    assert e.outcome == "delivered"
    idc = changes(e, "ip.id", "out")
    assert len(idc) == 1 and idc[0].server == 4242
