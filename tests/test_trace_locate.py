"""From traces to ``lost_at`` (rig.trace.locate, nodes, words, stage): pure functions on
recorded traces, no network."""

from __future__ import annotations

import dataclasses

from rig.analysis.diagnosis import diagnose
from rig.lab.topology import seed_topology
from rig.outcome import Outcome
from rig.trace.locate import locate
from rig.trace.nodes import ends_namer, lab_namer, path_nodes
from rig.trace.records import Hop, HopRef, LostAt, Trace, TraceEvidence
from rig.trace.stage import add_lost_at, groups
from rig.trace.words import place
from rig.verdict import CapturePointInfo, Exchange, Verdict

SERVER = "198.51.100.10"
NAME = lab_namer(seed_topology())


def _trace(direction: str, hops: list[tuple[int, str, str]], arrived: int | None = None, error: str | None = None,
           proto: str = "tcp") -> Trace:
    return Trace(direction, proto, "s", "t", 16, tuple(Hop(t, a, k) for t, a, k in hops), arrived, error)


SEED_BACK = _trace("return", [(1, "198.51.100.1", "time-exceeded"), (2, "203.0.113.2", "time-exceeded")])


def test_the_lab_path_runs_from_client_to_server():
    assert path_nodes(seed_topology()) == ["client", "router", "hgw", "inet", "server"]


def test_lab_hops_are_named_by_position_when_a_nat_answers_for_the_node_behind_it():
    assert NAME("return", 2, "203.0.113.2") == "hgw"
    assert NAME("out", 2, "192.168.0.1") == "hgw"
    assert NAME("out", 3, "203.0.113.1") == "inet"
    # the router's time-exceeded toward the server leaves through the hgw's NAT
    assert NAME("return", 3, "203.0.113.2") == "router"
    assert NAME("out", 7, "10.9.9.9") is None


def test_ends_namer_knows_the_server_and_the_clients_public_address():
    name = ends_namer(SERVER, "203.0.113.2")
    assert name("return", 2, "203.0.113.2") == "client-public"
    assert name("out", 4, SERVER) == "server"
    assert name("out", 2, "10.0.0.1") is None


def test_lost_return_is_placed_at_the_last_hop_that_answered():
    la = locate(Outcome.LOST_RETURN, SERVER, None, SEED_BACK, NAME)
    assert la.direction == "return" and la.undecided_because is None
    assert la.after_hop == HopRef(2, "203.0.113.2", "hgw")
    assert la.before_hop == HopRef(3, None, "router")  # from the lab's path alone
    assert la.evidence[-1] == TraceEvidence("return", 3, None, "nothing", 16)
    fwd = _trace("out", [(1, "192.168.1.1", "time-exceeded"), (2, "192.168.0.1", "time-exceeded"),
                         (3, "203.0.113.1", "time-exceeded"), (4, SERVER, "reply")], 4)
    # the forward trace's hop 1 stands where the return path's hop 3 does
    assert locate(Outcome.LOST_RETURN, SERVER, fwd, SEED_BACK, NAME).before_hop == HopRef(3, "192.168.1.1", "router")
    edge = _trace("return", [(1, "198.51.100.1", "time-exceeded")])
    assert locate(Outcome.LOST_RETURN, SERVER, fwd, edge, NAME).before_hop == HopRef(2, "192.168.0.1", "hgw")


def test_lost_outbound_uses_the_forward_trace():
    fwd = _trace("out", [(1, "192.168.1.1", "time-exceeded"), (2, "192.168.0.1", "time-exceeded")])
    back = _trace("return", [(1, "198.51.100.1", "time-exceeded"), (2, "203.0.113.2", "time-exceeded"),
                             (3, "203.0.113.2", "time-exceeded"), (4, "192.168.1.10", "reply")], 4)
    la = locate(Outcome.LOST_OUTBOUND, SERVER, fwd, back, NAME)
    assert (la.direction, la.after_hop) == ("out", HopRef(2, "192.168.0.1", "hgw"))
    assert la.before_hop == HopRef(3, "198.51.100.1", "inet")  # the return trace's hop 1, on the same line
    assert locate(Outcome.LOST_OUTBOUND, SERVER, fwd, None, NAME).before_hop == HopRef(3, None, "inet")
    assert locate(Outcome.LOST_OUTBOUND, SERVER, fwd, None, ends_namer(SERVER, None)).before_hop is None


def test_unanswered_is_placed_at_the_server():
    fwd = _trace("out", [(1, "192.168.1.1", "time-exceeded"), (2, "192.168.0.1", "time-exceeded"),
                         (3, "203.0.113.1", "time-exceeded")], proto="icmp")
    la = locate(Outcome.UNANSWERED, SERVER, fwd, None, NAME)
    assert (la.direction, la.after_hop) == ("out", HopRef(4, SERVER, "server"))
    assert la.evidence[-1] == TraceEvidence("server", None, SERVER, "request")


def test_when_the_traces_cannot_decide_lost_at_says_why_and_names_no_hop():
    got_through = _trace("return", [(1, "198.51.100.1", "time-exceeded"), (4, "192.168.1.10", "reply")], arrived=4)
    silent = _trace("return", [])
    failed = _trace("return", [], error="cannot send raw packets: Operation not permitted")
    for trace, why in ((got_through, "got through"), (silent, "no hop answered"), (failed, "cannot send"),
                       (None, "no return-path trace")):
        la = locate(Outcome.LOST_RETURN, SERVER, None, trace, NAME)
        assert la.after_hop is None and why in la.undecided_because, trace
    assert locate(Outcome.DELIVERED, SERVER, None, SEED_BACK, NAME) is None


def test_place_in_words():
    la = locate(Outcome.LOST_RETURN, SERVER, None, SEED_BACK, NAME)
    assert place("tcp", la) == ("SYN-ACKs reach 203.0.113.2 (your home gateway, hop 2 back from the server) and go no "
                                "further: nothing answers from hop 3 on (your router)")
    # a silent next hop the lab names: the provider's border relay, past the CE
    br = LostAt("out", HopRef(2, "192.168.0.1", "hgw"), HopRef(3, None, "br"), ())
    assert place("tcp", br) == ("SYNs reach 192.168.0.1 (your home gateway, hop 2 from the client) and go no further: "
                                "nothing answers from hop 3 on (the provider's MAP-E border relay)")
    assert place("tcp", LostAt("return", None, None, (), "no hop answered the trace")) == (
        "where the SYN-ACKs are lost is not known (no hop answered the trace)")


def _ex(i: int, proto: str, outcome: str) -> Exchange:
    return Exchange(f"{proto}-{i}", proto, f"192.168.1.10:{40000 + i}", f"{SERVER}:80", None, Outcome(outcome), "x")


def test_one_group_per_lost_protocol_and_outcome_plus_one_healthy_exchange():
    ex = [_ex(1, "tcp", "lost-return"), _ex(2, "tcp", "lost-return"), _ex(3, "icmp", "delivered"),
          _ex(4, "tcp", "delivered"), _ex(5, "udp", "unanswered")]
    assert [(g.protocol, g.outcome, g.exchange.id) for g in groups(ex)] == [
        ("tcp", Outcome.LOST_RETURN, "tcp-1"), ("udp", Outcome.UNANSWERED, "udp-5"),
        ("tcp", Outcome.DELIVERED, "tcp-4")]


def test_an_echo_a_router_answered_with_frag_needed_is_not_traced():
    """The router that sent frag-needed said where and why; a small trace copy would pass
    and only add "where ... is not known (the loss did not repeat)"."""
    import dataclasses

    big = dataclasses.replace(_ex(1, "icmp", "lost-outbound"), path_mtu=1460)
    small = _ex(2, "icmp", "lost-outbound")
    assert [g.exchange.id for g in groups([big, _ex(3, "tcp", "delivered")])] == ["tcp-3"]
    assert [g.exchange.id for g in groups([big, small])] == ["icmp-2"]
    v = Verdict((CapturePointInfo("client", "client.pcap", 10, 0, 0),), (big, small), diagnose((big, small)))
    la = LostAt("out", None, None, (), "no hop answered the trace")
    out = add_lost_at(v, {("icmp", "lost-outbound", 4): la})
    assert [e.lost_at for e in out.exchanges] == [None, la]


def test_a_datagram_that_lost_its_later_fragments_is_not_traced_and_says_why():
    import dataclasses

    cut = dataclasses.replace(_ex(1, "udp", "lost-outbound"), fragments_lost=True)
    whole = _ex(2, "udp", "lost-outbound")
    assert [g.exchange.id for g in groups([cut, _ex(3, "tcp", "delivered")])] == ["tcp-3"]
    assert [g.exchange.id for g in groups([cut, whole])] == ["udp-2"]
    v = Verdict((CapturePointInfo("client", "client.pcap", 10, 0, 0),), (cut,), diagnose((cut,)))
    out = add_lost_at(v, {})
    la = out.exchanges[0].lost_at
    assert la.direction == "out" and la.after_hop is None and "later fragments" in la.undecided_because
    assert "Where the UDP datagrams are lost is not known (only their later fragments" in out.diagnosis.summary
    d = out.to_dict()["exchanges"][0]
    assert d["fragments_lost"] is True and Exchange.from_dict(d) == out.exchanges[0]


def test_lost_at_reaches_every_exchange_of_the_group_and_round_trips_through_json():
    ex = (_ex(1, "tcp", "lost-return"), _ex(2, "tcp", "lost-return"), _ex(3, "icmp", "delivered"))
    v = Verdict((CapturePointInfo("client", "client.pcap", 10, 0, 0),), ex, diagnose(ex))
    la = locate(Outcome.LOST_RETURN, SERVER, None, SEED_BACK, NAME)
    out = add_lost_at(v, {("tcp", "lost-return", 4): la})
    assert [e.lost_at for e in out.exchanges] == [la, la, None]
    assert out.diagnosis.summary.startswith(v.diagnosis.summary + ". SYN-ACKs reach 203.0.113.2")
    d = out.to_dict()
    assert d["exchanges"][0]["lost_at"]["after_hop"] == {"index": 2, "address": "203.0.113.2", "node": "hgw"}
    assert "lost_at" not in d["exchanges"][2]
    again = Exchange.from_dict(d["exchanges"][0])
    assert again.lost_at == la


def test_without_a_server_side_lost_return_says_why(monkeypatch):
    import rig.trace.stage as stage

    monkeypatch.setattr(stage, "forward", lambda *a, **k: _trace("out", [(1, "192.168.1.1", "time-exceeded")], 4))
    ex = (_ex(1, "tcp", "lost-return"),)
    v = Verdict((CapturePointInfo("client", "client.pcap", 10, 0, 0),), ex, diagnose(ex))
    out, traces = stage.trace_verdict(v, None, None, SERVER, NAME, no_server="no return-path trace: SSH failed")
    assert [t.direction for t in traces] == ["out"]
    la = out.exchanges[0].lost_at
    assert la.after_hop is None and la.undecided_because == "no return-path trace: SSH failed"
    assert "is not known (no return-path trace: SSH failed)" in out.diagnosis.summary


def test_the_path_diagram_puts_both_traces_on_one_line_and_marks_where_each_group_died():
    from rig.trace.diagram import Column, Mark, path_diagram, path_html
    from rig.trace.nodes import named

    fwd = named(_trace("out", [(1, "192.168.1.1", "time-exceeded"), (2, "192.168.0.1", "time-exceeded"),
                               (3, "203.0.113.1", "time-exceeded"), (4, SERVER, "reply")], 4), NAME)
    back = named(SEED_BACK, NAME)
    la = locate(Outcome.LOST_RETURN, SERVER, None, back, NAME)
    lost = [{"protocol": "tcp", "outcome": "lost-return", "lost_at": la.to_dict()}] * 35
    d = path_diagram([fwd.to_dict(), back.to_dict()], [*lost, {"protocol": "icmp", "outcome": "delivered"}])
    assert d.columns == (Column(0, "client", "s"), Column(1, "router", "192.168.1.1"),
                         Column(2, "hgw", "192.168.0.1", "203.0.113.2"),
                         Column(3, "inet", "203.0.113.1", "198.51.100.1"), Column(4, "server"))
    assert d.marks == (Mark("tcp", "lost-return", 35, "return", 2),)
    html = path_html(d)
    assert "tcp lost-return ×35" in html
    cells = html.split("tcp lost-return ×35</th>")[1].split("</tr>")[0]
    # client, link, router, link (cross), hgw, link, inet, link, server
    assert [c.split(">", 1)[1] for c in cells.split("</td>")[:-1]] == ["", "", "", "✗", "●", "←", "●", "←", "●"]
    assert path_html(path_diagram([], [{"protocol": "tcp", "outcome": "delivered"}])) == ""


def test_a_server_holding_the_probes_connection_may_answer_a_later_copy():
    """Seen in the seed run: the RST to the TTL-6 SYN copy came back; TTL 4 reached the
    server too (no hop answered for it)."""
    from rig.trace.forward import _arrived

    errs = {t: Hop(t, f"10.0.0.{t}", "time-exceeded") for t in (1, 2, 3)}
    assert _arrived("tcp", [6], errs, 16) == 4
    assert _arrived("tcp", [None], errs, 16) == 4  # a challenge ACK names no copy
    assert _arrived("icmp", [4], errs, 16) == 4
    assert _arrived("udp", [None, None], errs, 16) == 15
    assert _arrived("tcp", [], errs, 16) is None


def test_the_other_familys_losses_are_not_traced_and_say_why(monkeypatch):
    """Traces to the server's IPv4 address cannot place an IPv6 loss: that group is
    undecided, no trace copies its exchange, and the IPv4 group keeps its own place."""
    import rig.trace.stage as stage

    made = []

    def fake_forward(netns, proto, addr, dport, sport, *a, **k):
        made.append(("out", sport))
        return _trace("out", [(1, "192.168.1.1", "time-exceeded")], 4)

    def fake_reverse(*a, **k):
        made.append(("return", a[5]))
        return SEED_BACK

    monkeypatch.setattr(stage, "forward", fake_forward)
    monkeypatch.setattr(stage, "reverse", fake_reverse)
    v6 = Exchange("tcp-9", "tcp", "[2001:db8:10:1::10]:40009", "[2001:db8:5::10]:80", None, Outcome.LOST_RETURN, "x")
    ex = (v6, _ex(1, "tcp", "lost-return"), _ex(2, "tcp", "delivered"))
    assert [(g.exchange.id, g.family) for g in groups(ex, 4)] == [("tcp-9", 6), ("tcp-1", 4), ("tcp-2", 4)]
    v = Verdict((CapturePointInfo("client", "client.pcap", 10, 0, 0),), ex, diagnose(ex))
    out, traces = stage.trace_verdict(v, None, object(), SERVER, NAME)
    assert {t.exchange for t in traces} == {"tcp-1", "tcp-2"} and 40009 not in {p for _, p in made}
    six, four = out.exchanges[0].lost_at, out.exchanges[1].lost_at
    assert (six.direction, six.after_hop, six.evidence) == ("return", None, ())
    assert six.undecided_because == "the traces are IPv4-only: no trace follows these IPv6 packets"
    assert four.after_hop is not None and four.after_hop.node == "hgw"


def test_hops_on_an_access_line_are_named_from_its_topology():
    """The NGN link has no IPv4 address; the provider's node stands between hgw and inet."""
    from rig.lab.access import access_topology

    for access, provider in (("map-e", "br"), ("ds-lite", "aftr"), ("pppoe", "bas")):
        name = lab_namer(access_topology(access))
        assert name("out", 3, "192.0.2.2") == provider
        assert name("out", 2, "192.168.0.1") == "hgw"
    assert lab_namer(access_topology("map-e"))("return", 3, "203.0.113.2") == "hgw"  # the CE's tunnel address


def test_a_copy_rewritten_past_pf_is_numbered_by_udp_length_and_never_guessed_for_tcp():
    """pf's scrub random-id rewrites the IP ID the copies are numbered by; modulate state
    shifts TCP sequence numbers. A UDP copy's length survives both; a TCP copy then names
    no TTL at all (None), never a wrong one."""
    from rig.trace import wire
    from rig.trace.forward import PAYLOAD, _copies, _ttl_of

    base, id_base = 70000, 100
    copies = _copies("udp", "192.168.1.10", SERVER, 40001, 7, 0, PAYLOAD, 16, base, id_base)
    for ttl, pkt, _ in copies:
        q = wire.parse(pkt[:28])  # an 8-byte quote of the transport header
        assert q is not None
        q["id"] = 0xBEEF  # rewritten on the way
        assert _ttl_of("udp", q, base, id_base, 16, len(PAYLOAD)) == ttl
    tcp = _copies("tcp", "192.168.1.10", SERVER, 40001, 80, 0, b"", 16, base, id_base)
    for _ttl, pkt, _ in tcp:
        q = wire.parse(pkt[:28])
        assert q is not None
        q["id"], q["seq"] = 0xBEEF, q["seq"] + 0x3C2F1A  # random-id and modulate state
        assert _ttl_of("tcp", q, base, id_base, 16) is None


def test_hops_that_answered_unnumbered_leave_the_place_undecided():
    """Silence after hop 1 is no place when farther hops did answer, with quotes rig could
    not number: the loss is not put after the router."""
    fwd = Trace("out", "tcp", "s", "t", 16, (Hop(1, "192.168.1.1", "time-exceeded"),), None,
                unnumbered=("192.168.0.1", "203.0.113.1"))
    la = locate(Outcome.LOST_OUTBOUND, SERVER, fwd, None, NAME)
    assert la.after_hop is None and la.before_hop is None
    assert la.undecided_because.startswith("192.168.0.1, 203.0.113.1 answered the trace with copies rewritten")
    again = Trace.from_dict(fwd.to_dict())
    assert again == fwd
    plain = Trace("out", "tcp", "s", "t", 16, (Hop(1, "192.168.1.1", "time-exceeded"),), None)
    assert "unnumbered" not in plain.to_dict()
    assert locate(Outcome.LOST_OUTBOUND, SERVER, plain, None, NAME).after_hop.node == "router"


def test_rig_show_names_a_silent_hop_as_the_run_did():
    """A lab run names the hop where a forward trace fell silent from the topology (the BR
    of a MAP-E line); ``rig show`` re-places the loss from logs/traces.json with the same
    namer (the access line is in the manifest), not only with the names the traces
    recorded: when no trace passed the BR (its healthy trace's port fell outside the port
    set too) the recorded names alone cannot say the BR stands there."""
    from rig.lab.access import access_topology
    from rig.trace.stage import relocate

    x = _ex(1, "tcp", "lost-outbound")
    v = Verdict((CapturePointInfo("client", "client.pcap", 10, 0, 0),), (x,), diagnose((x,)))
    fwd = dataclasses.replace(_trace("out", [(1, "192.168.1.1", "time-exceeded"), (2, "192.168.0.1", "time-exceeded")]),
                              exchange="tcp-1")
    name = lab_namer(access_topology("map-e"))
    traces = [dataclasses.replace(fwd, hops=tuple(dataclasses.replace(h, node=name("out", h.ttl, h.address))
                                                  for h in fwd.hops)).to_dict()]
    placed = relocate(v, traces, SERVER, name).exchanges[0].lost_at
    assert placed.after_hop.node == "hgw" and placed.before_hop is not None and placed.before_hop.node == "br"
    assert relocate(v, traces, SERVER).exchanges[0].lost_at.before_hop is None  # the traces' names alone
