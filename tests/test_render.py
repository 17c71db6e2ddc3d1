"""The table for people groups exchanges that tell the same story; --json keeps them all."""

import dataclasses
import io

import numpy as np
import pytest

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
    """The table view builds a record only for the exchanges it prints, without evidence
    and frames where a fast path holds them; every other field is the full record's."""
    from rig.analysis.api import analyse
    from rig.capture import read_capture
    from rig.capture.synth import Path
    from rig.grouping import Stories
    from tests._analysis_scenarios import ping, syn_only, tcp_delivered, udp

    w = Path()
    for i in range(3):
        tcp_delivered(w, 40000 + i, 1000 + i, 9000 + i)
        ping(w, i + 1)
        udp(w, 50000 + i, i + 1)
    syn_only(w, 41000, 77, arrive=False)  # one the close look decides
    c, s = w.write(tmp_path)
    v = analyse(read_capture(str(c)), read_capture(str(s)))
    stories = Stories(v.exchanges)
    full, light = list(v.exchanges), [stories.record_at(p) for p in range(stories.n)]
    assert len(full) == len(light) == 10 and v.exchanges.batches  # the fast paths took part
    for p, (a, b) in enumerate(zip(full, light)):
        assert (a.id, a.protocol, a.client, a.server, a.seen_at_server_as, a.outcome, a.explanation, a.changes) == \
               (b.id, b.protocol, b.client, b.server, b.seen_at_server_as, b.outcome, b.explanation, b.changes)
        assert (b.evidence, b.frames) in (((), ()), (a.evidence, a.frames))
        assert stories.id_at(p) == a.id
    assert any(b.evidence == () for b in light) and any(b.evidence for b in light)
    # the changes by group (one per change_keys key): each exchange's once, its record's
    got: dict[int, tuple] = {}
    for where, ch in stories.changes():
        assert list(where) == sorted(where) and not set(where.tolist()) & set(got)
        got.update((p, ch) for p in where.tolist())
    assert sorted(got) == [p for p, e in enumerate(full) if e.changes]
    assert [got[p] for p in sorted(got)] == [e.changes for e in full if e.changes]


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


def _tables(v) -> list[str]:
    """The table of ``v`` as printed from its ExchangeList and from a tuple of its full
    records, each at two widths."""
    texts = []
    for verdict in (v, Verdict(v.capture_points, tuple(v.exchanges), v.diagnosis)):
        for width in (100, 200):
            out = io.StringIO()
            print_verdict(verdict, Console(file=out, width=width, color_system=None))
            texts.append(out.getvalue())
    return texts


def test_the_table_from_columns_is_the_table_from_records(tmp_path):
    """The table view groups the fast paths' exchanges by their columns (rig.grouping)
    and builds a record for the first of each row only: the printed table is the one
    the records themselves give."""
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
    texts = _tables(v)
    assert texts[:2] == texts[2:] and "What the path changed" in texts[0]
    assert "icmp.id -> 77 => 78 (echo id rewritten)   icmp-1, icmp-2" in texts[1] and "tcp.mss <- 1460 => 1400" in texts[1]


@pytest.mark.parametrize("family", [4, 6])
def test_rows_of_batch_and_close_look_records_together(tmp_path, monkeypatch, family):
    """Behind pf (a sequence offset per connection, a random IP ID per packet, random
    ports) a change line per field sums a value per exchange; stories mix exchanges the
    fast path decided with the same stories the close look decided (every other
    connection and echo is left to it here); IPv6 endpoints group by endpoint, IPv4 by
    host. The table from the columns is the records' table, line for line."""
    import numpy as np

    import rig.analysis.reqrep as reqrep
    import rig.analysis.tcp as tcp
    from rig.analysis.api import analyse
    from rig.capture import read_capture
    from rig.capture.synth_pf import PfPath
    from rig.grouping import Stories
    from tests._analysis_scenarios import ping, syn_only, tcp_delivered, udp

    kw = {} if family == 4 else {"client": "2001:db8::10", "public": "2001:db8::10", "server": "2001:db8:1::80"}
    w = PfPath(seed=7, **kw)
    for i in range(30):
        tcp_delivered(w, 40000 + i, 1000 + 7919 * i, 9000 + 104729 * i, nonce=i)
        ping(w, i + 1, reply_arrives=i % 7 != 4)
        udp(w, 50000 + i, i + 1, arrive=i % 11 != 3)
    syn_only(w, 41000, 77, arrive=False)
    c, s = w.write(tmp_path)
    mask, singles = tcp.delivered_mask, reqrep._singletons
    monkeypatch.setattr(tcp, "delivered_mask", lambda ctx, ci, si: mask(ctx, ci, si) & (np.arange(len(ci)) % 2 == 0))
    monkeypatch.setattr(reqrep, "_singletons", lambda gk: singles(gk) & (np.arange(len(gk)) % 3 != 0))
    v = analyse(read_capture(str(c)), read_capture(str(s)))
    ex = v.exchanges
    assert ex.batches and (ex.src < 0).sum() > 20  # both kinds of record, many of each
    texts = _tables(v)
    assert texts[:2] == texts[2:]
    mixed = [g for g in Stories(ex).groups() if len(np.unique(ex.src[g.positions] < 0)) == 2]
    assert {g.first.protocol for g in mixed} == {"tcp", "udp", "icmp"}  # rows of both kinds
    assert "tcp.isn -> 30 different rewrites" in texts[1]
    if family == 4:
        assert "192.168.1.10, 20 ports" in texts[1] and "203.0.113.2, 20 ports" in texts[1]
    else:
        assert "20 endpoints" in texts[1] and "ports" not in texts[1]


def test_the_table_of_a_verdict_read_back_is_the_same(tmp_path):
    """A verdict read from its JSON (``rig show``: records only) prints the table its
    run printed."""
    from rig.analysis.api import analyse
    from rig.capture import read_capture
    from rig.capture.synth import Path
    from tests._analysis_scenarios import ping, tcp_delivered, udp

    w = Path(port_map=lambda p: p + 1000)
    for i in range(12):
        tcp_delivered(w, 40000 + i, 1000 + 7919 * i, 9000 + 104729 * i, nonce=i, syn_lost=i % 4 == 1)
        ping(w, i + 1, reply_arrives=i % 5 != 2)
        udp(w, 50000 + i, i + 1)
    c, s = w.write(tmp_path)
    v = analyse(read_capture(str(c)), read_capture(str(s)))
    back = Verdict.from_json(v.to_json())
    assert _tables(v)[:2] == _tables(back)[:2]


@pytest.mark.parametrize("seed", [3, 8])
def test_equal_change_keys_mean_equal_changes(tmp_path, seed):
    """A batch's ``change_keys`` (what the table reads changes once by) never joins two
    exchanges whose changes differ: behind pf (an ISN per connection, an IP ID per
    packet) and on a plain NAT (a few signatures shared by many)."""
    from rig.analysis.api import analyse
    from rig.capture import read_capture
    from rig.capture.synth import Path
    from rig.capture.synth_pf import PfPath
    from tests._analysis_scenarios import ping, tcp_delivered, udp

    for w in (PfPath(seed=seed), Path()):
        for i in range(25):
            tcp_delivered(w, 40000 + i, 1000 + 7919 * i, 9000 + 104729 * i, nonce=i)
            ping(w, i + 1)
            udp(w, 50000 + i, i + 1)
        d = tmp_path / type(w).__name__
        d.mkdir()
        c, s = w.write(d)
        v = analyse(read_capture(str(c)), read_capture(str(s)))
        joined = 0
        for b in v.exchanges.batches:
            idx = np.arange(len(b))
            keys, each = b.change_keys(idx), b.changes_each(idx)
            for k in np.unique(keys).tolist():
                same = np.flatnonzero(keys == k).tolist()
                joined += len(same) - 1
                assert all(each[j] == each[same[0]] for j in same), (b.protocol, k)
        if not isinstance(w, PfPath):  # (behind pf every exchange is its own; a plain NAT's share)
            assert joined > 40


@pytest.mark.parametrize("max_rows", [1, 3, 5, 6, 7, 40])
def test_delivered_stories_not_read_when_they_cannot_be_shown(tmp_path, monkeypatch, max_rows):
    """Past ``MAX_ROWS`` stories for sure (``Stories.at_least``), the table reads no words
    of a batch's stories (no light record is built) and prints what it printed reading
    them all; at or under it, it reads them as before."""
    import rig.render as render
    from rig.grouping import Stories
    from tests.test_analysis_bulk import _verdict as bulk_verdict

    v = bulk_verdict(tmp_path)
    assert v.exchanges.batches
    monkeypatch.setattr(render, "MAX_ROWS", max_rows)

    def printed() -> str:
        out = io.StringIO()
        print_verdict(v, Console(file=out, width=160, color_system=None))
        return out.getvalue()

    built: list[int] = []
    for batch in v.exchanges.batches:
        real = batch.build
        monkeypatch.setattr(batch, "build", lambda *a, real=real, **k: (built.append(len(a[0])), real(*a, **k))[1])
    lazy = printed()
    at_least = Stories(v.exchanges).at_least
    real_init = Stories.__init__

    def no_bound(self, exchanges):
        real_init(self, exchanges)
        self.at_least = 0

    monkeypatch.setattr(Stories, "__init__", no_bound)
    built_before = len(built)
    assert printed() == lazy
    assert built[built_before:]  # reading every story builds a record of each batch's
    assert (built_before == 0) == (at_least > max_rows)
    assert at_least == 6 and len(Stories(v.exchanges).groups()) == 7  # the bound holds, and is tight here
