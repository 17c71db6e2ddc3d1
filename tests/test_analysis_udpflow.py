"""UDP flows (rig.analysis.udpflow): a conversation that is not one request and one reply
is one exchange, its datagrams counted each way; request/reply stays as it was."""

from __future__ import annotations

import random

import numpy as np

import rig.analysis.reqrep as reqrep
from rig.analysis.api import analyse
from rig.capture import read_capture
from rig.capture.synth import Path, Pkt
from rig.capture.synth_flows import quic_flow
from rig.verdict import Datagrams, Verdict
from rig.capture.synth_capture import windows_of

from tests._analysis_scenarios import ping, udp


def _verdict(w: Path, tmp_path, **kw):
    c, s = w.write(tmp_path)
    kw.setdefault("windows", windows_of(w))
    return analyse(read_capture(str(c)), read_capture(str(s)), **kw)


def _udp(v) -> list:
    return [e for e in v.exchanges if e.protocol == "udp"]


def _ttl(e, direction: str):
    return [(ch.client, ch.server) for ch in e.changes if ch.field == "ip.ttl" and ch.direction == direction]


def test_quic_like_flow_with_loss_both_ways_is_delivered_with_its_counts(tmp_path):
    w = Path(port_map=lambda p: p + 1000)
    quic_flow(w, 50000, client_datagrams=4, per_reply=10, lost_out={2}, lost_back={0, 7, 21})
    v = _verdict(w, tmp_path)
    (e,) = _udp(v)
    assert e.outcome == "delivered"
    # the client's datagram 2 was lost: the server answered 3 of the 4 with 10 each
    assert e.datagrams == Datagrams(out_sent=4, out_lost=1, back_sent=30, back_lost=3)
    assert (e.client, e.server, e.seen_at_server_as) == ("192.168.1.10:50000", "198.51.100.10:443", "203.0.113.2:51000")
    assert _ttl(e, "out") == [(64, 61)] and _ttl(e, "back") == [(61, 64)]
    assert len(e.frames_at("client")) == 4 + 27 and len(e.frames_at("server")) == 3 + 30
    assert v.diagnosis.by_protocol == {"udp": {"delivered": 1}}
    assert v.to_dict()["exchanges"][0]["datagrams"] == {"out": {"sent": 4, "lost": 1}, "back": {"sent": 30, "lost": 3}}


def test_server_sending_ten_times_the_client_is_not_taken_for_the_client(tmp_path):
    """No SYN, no echo: the old rule took the most frequent UDP source for the client and
    found the server's datagrams "unanswered"."""
    w = Path()
    rng = random.Random(5)
    for k in range(30):
        quic_flow(w, 50000 + k, loss=0.03, rng=rng)
    v = _verdict(w, tmp_path)
    ex = _udp(v)
    assert len(ex) == 30
    assert {e.client.rsplit(":", 1)[0] for e in ex} == {"192.168.1.10"}
    assert {e.outcome for e in ex} == {"delivered"}
    lost = sum(e.datagrams.out_lost + e.datagrams.back_lost for e in ex)
    assert lost > 0
    assert sum(e.datagrams.back_sent for e in ex) > 9 * sum(e.datagrams.out_sent - e.datagrams.out_lost for e in ex)


def test_flow_outcomes_each_way(tmp_path):
    w = Path()
    quic_flow(w, 50001, lost_out={0, 1, 2, 3})  # nothing reached the server
    quic_flow(w, 50002, per_reply=0)  # the server received and never sent
    quic_flow(w, 50003, client_datagrams=1, lost_back=set(range(10)))  # one datagram out, ten back, all lost
    quic_flow(w, 50004, client_datagrams=2, per_reply=3)
    v = _verdict(w, tmp_path)
    got = {e.client: (e.outcome, e.datagrams) for e in _udp(v)}
    assert got == {
        "192.168.1.10:50001": ("lost-outbound", Datagrams(4, 4, 0, 0)),
        "192.168.1.10:50002": ("unanswered", Datagrams(4, 0, 0, 0)),
        "192.168.1.10:50003": ("lost-return", Datagrams(1, 0, 10, 10)),
        "192.168.1.10:50004": ("delivered", Datagrams(2, 0, 6, 0)),
    }


def test_request_reply_keeps_its_exchanges_and_counts(tmp_path):
    """DNS on one 4-tuple, many queries: still one exchange per query; a single datagram
    to another port decides as before."""
    w = Path()
    for n in range(5):
        udp(w, 40000, n, dport=53, reply_arrives=n != 3)
    udp(w, 40001, 9, dport=9999, arrive=False)
    udp(w, 40002, 10, dport=9999, reply_arrives=False)
    v = _verdict(w, tmp_path)
    got = [(e.server, e.outcome, e.datagrams) for e in _udp(v)]
    one, lost_back = Datagrams(1, 0, 1, 0), Datagrams(1, 0, 1, 1)
    assert got == [("198.51.100.10:53", "delivered", one)] * 3 + [("198.51.100.10:53", "lost-return", lost_back),
                                                                   ("198.51.100.10:53", "delivered", one),
                                                                   ("198.51.100.10:9999", "lost-outbound", Datagrams(1, 1, 0, 0)),
                                                                   ("198.51.100.10:9999", "lost-return", lost_back)]


def _mixed(w: Path) -> None:
    rng = random.Random(9)
    for k in range(6):
        quic_flow(w, 50000 + k, loss=0.1, rng=rng)
    for n in range(8):
        udp(w, 41000 + n, n, arrive=n != 2, reply_arrives=n != 5)
    ping(w, 1)


def test_bulk_and_close_look_see_the_same_flows(tmp_path, monkeypatch):
    """The flow rule is decided once, before either path: with the bulk paths off, the
    close look gives the same verdict, flows included."""
    w = Path(port_map=lambda p: p + 1000)
    _mixed(w)
    c, s = w.write(tmp_path)
    caps = read_capture(str(c)), read_capture(str(s))
    fast = analyse(*caps, windows=windows_of(w))
    monkeypatch.setattr(reqrep, "_plain_lost_udp", lambda *a, **k: (np.zeros(0, np.int64),) * 4)
    monkeypatch.setattr(reqrep, "_sole_answer", lambda side, rows, request: np.full(len(rows), -1, np.int64))
    slow = analyse(*caps, windows=windows_of(w))

    def facts(v):  # the delivered batch lists less evidence than the close look: all else agrees
        return [(e.id, e.outcome, e.explanation, e.client, e.server, e.seen_at_server_as, e.changes, e.datagrams,
                 e.frames) for e in v.exchanges]

    assert facts(fast) == facts(slow)
    assert fast.diagnosis == slow.diagnosis
    flows = [e for e in fast.exchanges if e.protocol == "udp" and e.server.endswith(":443")]
    assert len(flows) == 6 and len(_udp(fast)) == 14


def test_datagrams_round_trip_in_json(tmp_path):
    w = Path()
    _mixed(w)
    v = _verdict(w, tmp_path)
    back = Verdict.from_json(v.to_json())
    assert [e.datagrams for e in back.exchanges] == [e.datagrams for e in v.exchanges]
    assert all((e.datagrams is None) == (e.protocol != "udp") for e in back.exchanges)


def test_diagnosis_counts_datagram_losses_from_the_records(tmp_path):
    w = Path()
    quic_flow(w, 50000, lost_back={1, 2, 3})
    quic_flow(w, 50001, lost_out={0})
    v = _verdict(w, tmp_path)
    assert [e.datagrams for e in _udp(v)] == [Datagrams(4, 0, 40, 3), Datagrams(4, 1, 30, 0)]
    # rewrite the records' explanations: the diagnosis must not read them
    from dataclasses import replace

    from rig.analysis.diagnosis import diagnose

    blank = [replace(e, explanation="") for e in v.exchanges]
    assert diagnose(blank) == v.diagnosis
    assert "1 of 8" in v.diagnosis.summary and "3 of 70" in v.diagnosis.summary


def test_a_lan_capture_with_several_hosts(tmp_path):
    """A client capture taken on a router's LAN side: two inside hosts, one NAT."""
    from rig.capture.synth import LINKTYPE_ETHERNET, encoded, frame, write_pcap

    a = Path(client="192.168.1.10")
    b = Path(client="192.168.1.11", port_map=lambda p: p + 7, t0_ns=a.t0_ns + 500_000)
    quic_flow(a, 50000)
    quic_flow(b, 50000)
    ping(b, 1)
    for name, frames in (("client", a.client_frames + b.client_frames), ("server", a.server_frames + b.server_frames)):
        write_pcap(tmp_path / f"{name}.pcap", ((t, frame(p, LINKTYPE_ETHERNET)) for t, p in encoded(frames)))
    v = analyse(read_capture(str(tmp_path / "client.pcap")), read_capture(str(tmp_path / "server.pcap")))
    got = sorted((e.client, e.outcome, e.seen_at_server_as) for e in v.exchanges)
    assert got == [("192.168.1.10:50000", "delivered", "203.0.113.2:50000"),
                   ("192.168.1.11", "delivered", "203.0.113.2"),
                   ("192.168.1.11:50000", "delivered", "203.0.113.2:50007")]


def test_stray_datagram_from_the_server_first_does_not_make_it_a_client(tmp_path):
    w = Path()
    w.at_client(Pkt(w.server, w.client, 17, sport=443, dport=50000, payload=b"early", ip_id=1, ttl=61))
    quic_flow(w, 50001)
    v = _verdict(w, tmp_path)
    assert [(e.client, e.outcome) for e in _udp(v)] == [("192.168.1.10:50001", "delivered")]
