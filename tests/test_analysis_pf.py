"""A client behind FreeBSD pf (``modulate state``, ``scrub random-id``, ports from
50001-65535, with and without timestamp modulation): rig follows each connection through
the rewrites, says what pf changed, and never guesses a direction it cannot tell."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rig.analysis import tcp as tcp_mod
from rig.analysis.api import analyse
from rig.capture import read_capture
from rig.capture.synth import SYN, Pkt
from rig.capture.synth_pf import PF_PORT_HIGH, PF_PORT_LOW, PfPath, rewrite_server_capture
from rig.verdict import Verdict

from tests._analysis_scenarios import REQUEST, by_id, changes, handshake, ping, run, scanner_noise, tcp_delivered, tcp_seg

ACK, PSH = 0x10, 0x08


def _port(mapping: str) -> int:
    return int(mapping.rsplit(":", 1)[1])


def _syn_ack_lost(w: PfPath, sport: int, isn_c: int, isn_s: int, copies: int = 3, gap_ns: int = 1_000_000_000,
                  answer: bool = True, arrive: bool = True):
    """A connection attempt whose SYN-ACKs all die on the way back: ``copies`` SYNs, each
    answered by the server (``answer``); ``arrive``: the SYNs reach the server."""
    syn = w.syn(sport, isn_c)
    for k in range(copies):
        if k:
            w._now += gap_ns * 2 ** (k - 1)  # the client's SYN backoff: 1 s, 2 s, ...
        ss = w.out(syn, arrive=arrive)
        if arrive and answer:
            w.back(w.synack(ss, isn_s), arrive=False)


@pytest.mark.parametrize("modulate_ts", [False, True], ids=["ts-kept", "ts-modulated"])
def test_healthy_connection_is_delivered_with_the_isn_offset(tmp_path, modulate_ts):
    w = PfPath(seed=5, modulate_ts=modulate_ts)
    ping(w, 1)
    tcp_delivered(w, 40000, 1000, 2000)
    tcp_delivered(w, 40001, 7000, 9000, nonce=2)
    v = run(w, tmp_path)
    e = by_id(v)
    for xid, sport, isn_c in (("tcp-1", 40000, 1000), ("tcp-2", 40001, 7000)):
        t = e[xid]
        assert t.outcome == "delivered", t.explanation
        assert (len(t.frames_at("client")), len(t.frames_at("server"))) == (7, 7)
        offset = w.isn_offset(sport)
        isn = changes(t, "tcp.isn", "out")[0]
        assert (isn.client, isn.server, isn.offset) == (isn_c, (isn_c + offset) % 2**32, offset)
        assert not changes(t, "tcp.isn", "back")  # pf leaves the responder's sequence numbers alone
        ip_id = changes(t, "ip.id", "out")[0]
        assert ip_id.client == isn_c & 0xFFFF and ip_id.server != ip_id.client
        # the port pf picked is the mapping, not another connection
        assert t.seen_at_server_as == f"203.0.113.2:{w.public_sport(sport)}"
        assert PF_PORT_LOW <= _port(t.seen_at_server_as) <= PF_PORT_HIGH
    assert len(v.exchanges) == 3
    d = Verdict.from_json(v.to_json()).exchanges[1].changes
    assert [c.offset for c in d if c.field == "tcp.isn"] == [w.isn_offset(40000)]


@pytest.mark.parametrize("modulate_ts", [False, True], ids=["ts-kept", "ts-modulated"])
def test_lost_syn_ack_behind_pf_is_lost_return(tmp_path, modulate_ts):
    """The mission's fault behind pf: nothing the client holds shares a value with the server."""
    w = PfPath(seed=9, modulate_ts=modulate_ts)
    ping(w, 1)
    _syn_ack_lost(w, 40000, 1000, 2000)
    w._now += 5_000_000_000
    _syn_ack_lost(w, 40001, 3000, 4000)
    v = run(w, tmp_path)
    e = by_id(v)
    for xid, sport in (("tcp-1", 40000), ("tcp-2", 40001)):
        t = e[xid]
        assert t.outcome == "lost-return", t.explanation
        assert t.seen_at_server_as == f"203.0.113.2:{w.public_sport(sport)}"
        assert changes(t, "tcp.isn", "out")[0].offset == w.isn_offset(sport)
        assert len(t.frames_at("client")) == 3 and len(t.frames_at("server")) == 6
    assert v.diagnosis.by_protocol["tcp"] == {"lost-return": 2}


def test_lost_syn_ack_with_nothing_else_to_learn_from(tmp_path):
    """No ping, no other connection: no clock offset, no known public address. The
    SYN's option layout and its retransmissions still single it out among scanners."""
    w = PfPath(seed=37, modulate_ts=True)
    scanner_noise(w, 20)
    _syn_ack_lost(w, 40000, 1000, 2000)
    scanner_noise(w, 20)
    v = run(w, tmp_path)
    assert [(x.protocol, x.outcome) for x in v.exchanges] == [("tcp", "lost-return")]
    assert v.exchanges[0].seen_at_server_as == f"203.0.113.2:{w.public_sport(40000)}"


def test_spaced_attempts_each_get_their_own_outcome(tmp_path):
    """Probes spaced seconds apart: lost on the way out, lost on the way back, unanswered."""
    w = PfPath(seed=11, modulate_ts=True)
    ping(w, 1)
    tcp_delivered(w, 39999, 500, 600)
    _syn_ack_lost(w, 40000, 1000, 2000, copies=2)
    w._now += 4_000_000_000
    _syn_ack_lost(w, 40001, 3000, 4000, copies=3, arrive=False)
    w._now += 9_000_000_000
    _syn_ack_lost(w, 40002, 5000, 6000, copies=1, answer=False)
    w._now += 4_000_000_000
    scanner_noise(w, 40)  # Internet scanners on port 80 at the same time: other sources
    v = run(w, tmp_path)
    e = by_id(v)
    assert [e[f"tcp-{k}"].outcome for k in range(1, 5)] == ["delivered", "lost-return", "lost-outbound", "unanswered"]
    assert e["tcp-3"].seen_at_server_as is None
    assert e["tcp-4"].seen_at_server_as == f"203.0.113.2:{w.public_sport(40002)}"


def test_concurrent_attempts_alike_at_both_ends_are_lost_return(tmp_path):
    """Many SYNs within a millisecond (rig's concurrency probe), all answered, no answer
    back: whichever pairing, every one is lost-return."""
    w = PfPath(seed=13, modulate_ts=True, step_ns=20_000, latency_ns=0)
    ping(w, 1)
    syns = [w.syn(41000 + k, 10_000 * k + 1) for k in range(12)]
    for syn in syns:
        ss = w.out(syn)
        w.back(w.synack(ss, 999 + syn.seq), arrive=False)
    v = run(w, tmp_path)
    assert v.diagnosis.by_protocol["tcp"] == {"lost-return": 12}
    mapped = {x.seen_at_server_as for x in v.exchanges if x.protocol == "tcp"}
    assert mapped == {f"203.0.113.2:{w.public_sport(41000 + k)}" for k in range(12)}


def test_concurrent_attempts_the_captures_cannot_tell_apart_are_incomplete(tmp_path):
    """Concurrent SYNs, one lost on the way out: which one is not in the captures, so no
    direction is guessed for any of them."""
    w = PfPath(seed=17, modulate_ts=True, step_ns=20_000, latency_ns=0)
    ping(w, 1)
    for k in range(5):
        ss = w.out(w.syn(42000 + k, 77 + k), arrive=k != 2)
        if k != 2:
            w.back(w.synack(ss, 5000 + k), arrive=False)
    v = run(w, tmp_path)
    tcp = [x for x in v.exchanges if x.protocol == "tcp"]
    assert [x.outcome for x in tcp] == ["incomplete"] * 5
    assert {x.undecided_because for x in tcp} == {
        "5 connection attempts to port 80 within 0 ms fit 4 server connections equally well, "
        "and no value the two captures share tells them apart"}
    assert Verdict.from_json(v.to_json()) == v
    assert '"undecided_because": "5 connection attempts' in v.to_json()


def test_concurrent_attempts_with_different_fates_are_incomplete(tmp_path):
    """All arrive, but the server answered some and not others: a pairing by order would
    be a guess that decides the outcome."""
    w = PfPath(seed=19, modulate_ts=True, step_ns=20_000, latency_ns=0)
    ping(w, 1)
    for k in range(3):
        ss = w.out(w.syn(43000 + k, 500 + k))
        if k != 1:
            w.back(w.synack(ss, 9000 + k), arrive=False)
    v = run(w, tmp_path)
    assert [x.outcome for x in v.exchanges if x.protocol == "tcp"] == ["incomplete"] * 3


def test_other_machines_behind_the_nat_are_not_taken_for_a_lost_syn(tmp_path):
    """A lost SYN while another host behind the same pf completes a handshake to the same
    port at the same moment: that server connection saw its SYN-ACK acked, so it is not
    an attempt whose client never got one."""
    w = PfPath(seed=23, modulate_ts=True)
    ping(w, 1)
    w.out(w.syn(44000, 1234), arrive=False)
    other = Pkt("203.0.113.2", "198.51.100.10", 6, sport=61000, dport=80, seq=42, flags=SYN, mss=1460, wscale=7,
                sackok=True, ts=(777, 0))
    w.at_server(other)
    w.at_server(Pkt("198.51.100.10", "203.0.113.2", 6, sport=80, dport=61000, seq=9, ack=43, flags=SYN | ACK,
                    mss=1460, wscale=7, sackok=True, ts=(5, 777)))
    w.at_server(tcp_seg("203.0.113.2", "198.51.100.10", 61000, 80, 43, 10, b"", ACK))
    ping(w, 2)  # the client capture runs past that ACK: it would hold a SYN-ACK sent before
    v = run(w, tmp_path)
    assert [x.outcome for x in v.exchanges if x.protocol == "tcp"] == ["lost-outbound"]


def test_data_is_followed_through_the_offset(tmp_path):
    """A request lost after the handshake: sequence ranges compare through pf's offset."""
    w = PfPath(seed=29, modulate_ts=True)
    ping(w, 1)
    ss, _ = handshake(w, 40000, 1000, 2000)
    req = REQUEST % 1
    for _ in range(3):
        w.out(tcp_seg(w.client, w.server, 40000, 80, 1001, 2001, req, ACK | PSH), arrive=False)
    tcp_delivered(w, 40001, 3000, 4000, nonce=2)
    v = run(w, tmp_path)
    e = by_id(v)
    assert e["tcp-1"].outcome == "lost-outbound"  # the request, not the SYN: the server saw the connection
    assert e["tcp-1"].seen_at_server_as == f"203.0.113.2:{w.public_sport(40000)}"
    assert changes(e["tcp-1"], "tcp.isn", "out")[0].offset == w.isn_offset(40000)
    assert e["tcp-2"].outcome == "delivered"


def test_bulk_delivered_reads_as_the_close_look(tmp_path, monkeypatch):
    """The fast path (tcp_fast) and the per-connection look (tcp) reach the same records
    for pf-modulated connections: outcome, mapping, changes with the ISN offset, frames."""
    w = PfPath(seed=31, modulate_ts=True, mss_clamp=1414)
    ping(w, 1)
    for k in range(20):
        tcp_delivered(w, 45000 + k, 1000 + 7919 * k, 5000 + 104729 * k, nonce=k, syn_lost=k % 7 == 3)
    _syn_ack_lost(w, 46000, 1, 2)
    w.write(tmp_path)
    fast = run(w, tmp_path)
    assert len(fast.exchanges.batches) >= 1 and sum(len(b) for b in fast.exchanges.batches if b.protocol == "tcp") == 20
    monkeypatch.setattr(tcp_mod, "delivered_mask", lambda ctx, ci, si: np.zeros(len(ci), bool))
    slow = run(w, tmp_path)
    assert not [b for b in slow.exchanges.batches if b.protocol == "tcp"]
    # everything but the evidence, which the fast path keeps short by design (one line a point)
    def records(v):
        return [{k: x for k, x in e.to_dict().items() if k != "evidence"} for e in v.exchanges]

    assert records(fast) == records(slow)
    assert {c.offset for x in fast.exchanges for c in x.changes if c.field == "tcp.isn"} == {
        w.isn_offset(45000 + k) for k in range(20)} | {w.isn_offset(46000)}


GOLDEN = Path(__file__).parent / "data" / "analysis"


@pytest.mark.parametrize("modulate_ts", [False, True], ids=["ts-kept", "ts-modulated"])
@pytest.mark.parametrize("name", ["seed", "no-listener", "outbound-drop", "rst-inject", "mtu-blackhole", "port-set"])
def test_lab_captures_keep_their_verdicts_behind_pf(tmp_path, name, modulate_ts):
    """The lab's real captures (Linux NATs, real probes: 34 concurrent SYNs, their
    retransmissions) with the server capture rewritten as pf would have it: every
    exchange keeps its outcome, and the mapping is pf's port."""
    d = GOLDEN / name
    offsets = rewrite_server_capture(d / "server.pcap", tmp_path / "server.pcap", "203.0.113.2", seed=7,
                                     modulate_ts=modulate_ts)
    client = read_capture(str(d / "client.pcap"))
    plain = analyse(client, read_capture(str(d / "server.pcap")))
    pf = analyse(client, read_capture(str(tmp_path / "server.pcap")))
    assert [(e.id, e.outcome) for e in pf.exchanges] == [(e.id, e.outcome) for e in plain.exchanges]
    for a, b in zip(plain.exchanges, pf.exchanges):
        if a.protocol != "tcp" or a.seen_at_server_as is None:
            assert b.seen_at_server_as == a.seen_at_server_as or a.protocol != "tcp"
            continue
        assert PF_PORT_LOW <= _port(b.seen_at_server_as) <= PF_PORT_HIGH
        isn = changes(b, "tcp.isn", "out")[0]
        assert isn.offset == offsets[(_port(a.seen_at_server_as), 80)]


def test_copies_after_the_client_capture_ended_need_no_client_copy_with_no_delay_known():
    """With no delay learnt, a pairing's own delay says which server copies arrived after
    the client capture ended (a SYN's later retransmissions): those need no client copy,
    but at least two copies must still be compared, or the pairing is a guess."""
    from rig.analysis.match_syn import _aligns

    s = 1_000_000_000
    tc = [int(0.5 * s), int(1.5 * s), int(3.5 * s)]  # copies at 0, +1 s, +3 s; the capture ends at 3.6 s
    ts = [int(1.51 * s), int(3.51 * s), int(7.51 * s)]  # the server's: the client's second and third, and a fourth
    assert _aligns(tc, None, ts, None, None, s // 4, client_end=int(3.6 * s))
    assert not _aligns(tc, None, ts, None, None, s // 4)  # (without the capture's end: a copy too many)
    # only one copy before the end on this pairing: nothing compared
    assert not _aligns(tc[:2], None, [int(1.51 * s), int(5.51 * s), int(11.51 * s)], None, None, s // 4,
                       client_end=int(1.6 * s))
    # ... unless that copy carries the client copy's IP ID (a path that keeps IDs)
    ids = ([7, 8], [8, 9, 10])
    ts_late = [int(1.51 * s), int(5.51 * s), int(11.51 * s)]
    assert _aligns(tc[:2], None, ts_late, None, None, s // 4, client_end=int(1.6 * s), ids=ids)
    assert not _aligns(tc[:2], None, ts_late, None, None, s // 4, client_end=int(1.6 * s), ids=([7, 8], [5, 9, 10]))
