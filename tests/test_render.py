"""The table for people groups exchanges that tell the same story; --json keeps them all."""

import dataclasses
import io

from rich.console import Console

from rig.render import group_rows, print_verdict
from rig.verdict import CapturePointInfo, Diagnosis, Exchange, Verdict

LOST = "the server answered SYN with SYN-ACK 4 times; none reached the client"


def _x(i: int, proto: str = "tcp", outcome: str = "lost-return", expl: str = LOST, port: int | None = None) -> Exchange:
    port = 40000 + i if port is None else port
    return Exchange(id=f"{proto}-{i}", protocol=proto, client=f"192.168.1.10:{port}", server="198.51.100.10:80",
                    seen_at_server_as=f"203.0.113.2:{port}", outcome=outcome, explanation=expl)


def _verdict(xs) -> Verdict:
    return Verdict(capture_points=(CapturePointInfo("client", "client.pcap", 10, 0, 0),
                                   CapturePointInfo("server", "server.pcap", 10, 0, 0)),
                   exchanges=tuple(xs), diagnosis=Diagnosis("TCP replies are lost", {"tcp": {"lost-return": 33}}))


def test_identical_stories_are_one_row_in_first_seen_order():
    xs = [_x(i) for i in range(1, 33)] + [_x(1, "udp", "delivered", "the datagram came back")]
    xs.insert(1, _x(99, outcome="delivered", expl="handshake and data both ways"))
    rows = group_rows(xs)
    assert [len(r.exchanges) for r in rows] == [32, 1, 1]
    assert rows[0].first.id == "tcp-1" and rows[1].first.id == "tcp-99"
    assert rows[0].ids == "tcp-1 … tcp-32\n(32 exchanges)"
    assert rows[0].client == "192.168.1.10, 32 ports"
    assert rows[0].seen_at_server_as == "203.0.113.2, 32 ports"
    assert rows[2].client == "192.168.1.10:40001"


def test_different_explanations_stay_apart():
    rows = group_rows([_x(1), _x(2, expl="the server answered SYN with SYN-ACK 2 times; none reached the client")])
    assert len(rows) == 2


def test_printed_table_has_one_line_for_the_burst():
    out = io.StringIO()
    print_verdict(_verdict([_x(i) for i in range(1, 34)]), Console(file=out, width=160, color_system=None))
    text = out.getvalue()
    assert "(33 exchanges)" in text
    assert text.count("lost-return") == 1
    assert "Diagnosis: TCP replies are lost" in text


def test_a_large_verdict_shows_the_problems_first_and_counts_the_rest():
    from rig.render import MAX_ROWS

    xs = [_x(2 * k + j, expl=f"story {k}") for k in range(MAX_ROWS + 50) for j in range(2)]  # 2 per problem row
    xs += [_x(1000 + i, outcome="delivered", expl=f"fine {i}") for i in range(60)]
    out = io.StringIO()
    print_verdict(_verdict(xs), Console(file=out, width=160, color_system=None))
    text = out.getvalue()
    assert text.count("lost-return") == MAX_ROWS and "delivered" not in text.split("... and")[0]
    # shown: the first MAX_ROWS problem rows (2 exchanges each); the other 50 rows and the 60 delivered are counted
    assert f"... and {50 * 2 + 60} more exchanges not shown" in text


def test_the_table_reads_light_records_that_agree_with_the_full_ones(tmp_path):
    """The table view builds the fast paths' records without evidence and frames
    (ExchangeList.light); every other field is the full record's."""
    from rig.analysis.api import analyse
    from rig.capture import read_capture
    from rig.capture.synth import Path
    from tests._analysis_scenarios import ping, syn_only, tcp_delivered, udp

    w = Path()
    for i in range(3):
        tcp_delivered(w, 40000 + i, 1000 + i, 9000 + i)
        ping(w, i + 1)
        udp(w, 50000 + i, i + 1)
    syn_only(w, 41000, 77, arrive=False)  # one the close look decides
    c, s = w.write(tmp_path)
    v = analyse(read_capture(str(c)), read_capture(str(s)))
    full, light = list(v.exchanges), list(v.exchanges.light())
    assert len(full) == len(light) == 10 and v.exchanges.batches  # the fast paths took part
    for a, b in zip(full, light):
        assert (a.id, a.protocol, a.client, a.server, a.seen_at_server_as, a.outcome, a.explanation, a.changes) == \
               (b.id, b.protocol, b.client, b.server, b.seen_at_server_as, b.outcome, b.explanation, b.changes)
        assert (b.evidence, b.frames) in (((), ()), (a.evidence, a.frames))
    assert any(b.evidence == () for b in light) and any(b.evidence for b in light)


def test_a_field_rewritten_per_packet_is_one_change_line():
    """Behind pf's random IP IDs every exchange has its own ip.id values: one line for the
    field and direction, not one per exchange (220k lines took the table view 34 s)."""
    from rig.render import MAX_CHANGE_VALUES
    from rig.verdict import Change

    mss = Change("tcp.mss", "out", 1460, 1400)
    xs = [dataclasses.replace(_x(i, outcome="delivered", expl="fine"),
                              changes=(Change("ip.id", "out", i, 50001 + 7 * i), mss)) for i in range(1, 301)]
    out = io.StringIO()
    print_verdict(_verdict(xs), Console(file=out, width=200, color_system=None))
    text = out.getvalue()
    assert text.count("ip.id ->") == 1 and "300 different rewrites" in text and "and 294 more" in text
    assert text.count("tcp.mss ->") == 1  # the same change on every exchange: one line, as before
    few = [dataclasses.replace(_x(i, outcome="delivered", expl="fine"), changes=(Change("ip.id", "out", i, i + 1),))
           for i in range(1, MAX_CHANGE_VALUES + 1)]
    out = io.StringIO()
    print_verdict(_verdict(few), Console(file=out, width=200, color_system=None))
    assert out.getvalue().count("ip.id ->") == MAX_CHANGE_VALUES  # a few distinct values are each shown


def test_the_table_from_views_is_the_table_from_records(tmp_path):
    """The table view reads the fast paths' exchanges as ExchangeView tuples (made by
    the same builder as the records): each holds the full record's fields but evidence
    and frames, and the printed table is the one the records themselves give."""
    from rig.analysis.api import analyse
    from rig.capture import read_capture
    from rig.capture.synth import Path
    from tests._analysis_scenarios import ping, syn_only, tcp_delivered, udp

    w = Path(mss_clamp=1400, port_map=lambda p: p + 1000, echo_id_map=lambda i: i + 1)
    for i in range(40):
        tcp_delivered(w, 40000 + i, 1000 + 7919 * i, 9000 + 104729 * i, nonce=i)
        ping(w, i + 1, reply_arrives=i % 9 != 4)
        udp(w, 50000 + i, i + 1, arrive=i % 11 != 3)
    syn_only(w, 41000, 77, arrive=False)  # one the close look decides
    c, s = w.write(tmp_path)
    v = analyse(read_capture(str(c)), read_capture(str(s)))
    assert v.exchanges.batches  # the fast paths took part
    views, full = v.exchanges.views(), list(v.exchanges)
    assert len(views) == len(full) and any(type(x) is not type(e) for x, e in zip(views, full))
    for x, e in zip(views, full):
        assert [getattr(x, f.name) for f in dataclasses.fields(e) if f.name not in ("evidence", "frames")] == \
               [getattr(e, f.name) for f in dataclasses.fields(e) if f.name not in ("evidence", "frames")]
    texts = []
    for verdict in (v, Verdict(v.capture_points, tuple(full), v.diagnosis)):
        for width in (100, 200):
            out = io.StringIO()
            print_verdict(verdict, Console(file=out, width=width, color_system=None))
            texts.append(out.getvalue())
    assert texts[:2] == texts[2:] and "What the path changed" in texts[0]
