"""The bulk path of UDP flows (``udpflow_fast.FlowBatch``: flows every datagram of which
arrived) gives the records the close look in ``udpflow.flow_drafts`` gives: the same
verdict JSON and the same table, with the bulk path and without, on worlds of this
project's generator (NAT, losses next to clean flows, packets captured twice) and of the
independent one (tests/_scapy_udp.py: IPv6, MAP-E ports, capture windows, link types)."""

from __future__ import annotations

import functools
import io
import json
import random

import pytest
from rich.console import Console

import rig.analysis.reqrep as reqrep
from rig.analysis import udpflow
from rig.analysis.api import analyse
from rig.analysis.udpflow_fast import FlowBatch
from rig.capture import read_capture
from rig.capture.synth_capture import windows_of, write_any
from rig.capture.synth_flows import quic_flow
from rig.grouping import Stories
from rig.render import print_verdict

from tests._analysis_scenarios import Path, ping, tcp_delivered, udp


def _both(monkeypatch, make) -> list[tuple[str, str, int]]:
    """(JSON, table, flows in the bulk batch) of ``make()``'s verdict, with the bulk path
    and without."""
    out = []
    for bulk in (True, False):
        monkeypatch.setattr(reqrep, "flow_drafts", functools.partial(udpflow.flow_drafts, bulk=bulk))
        v = make()
        table = io.StringIO()
        print_verdict(v, Console(file=table, width=160))
        stories = Stories(v.exchanges)
        assert stories.at_least <= len(stories.groups())  # (the table's bound on its rows holds)
        batches = getattr(v.exchanges, "batches", [])
        out.append((v.to_json(), table.getvalue(), sum(len(b) for b in batches if isinstance(b, FlowBatch))))
    return out


def _world(seed: int) -> Path:
    rng = random.Random(seed)
    w = Path(port_map=lambda p: p + 1000, hops=2 + seed % 3)
    for k in range(30):
        lossy = rng.random() < 0.3
        quic_flow(w, 50000 + k, client_datagrams=rng.randint(1, 6), per_reply=rng.randint(1, 12),
                  loss=0.15 if lossy else 0.0, rng=rng, size=rng.choice([40, 120, 400]))
        if k % 5 == 0:
            udp(w, 41000 + k, k, arrive=k % 10 != 5)
            ping(w, k)
        if k % 7 == 0:
            tcp_delivered(w, 30000 + k, 1000 + 7919 * k, 5000 + 104729 * k, nonce=k)
    return w


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("twice", [None, "client", "server"])
def test_flows_in_bulk_are_the_close_looks(tmp_path, monkeypatch, seed, twice):
    w = _world(seed)
    if twice:  # tcpdump -i any at that point: every third packet on two interfaces
        c, s = write_any(w, tmp_path, twice, every=3)
    else:
        c, s = w.write(tmp_path)
    (fast, fast_table, bulk), (slow, slow_table, none) = _both(
        monkeypatch, lambda: analyse(read_capture(str(c)), read_capture(str(s)), windows=windows_of(w)))
    assert bulk >= 10 and none == 0  # most flows clean, some lossy: both paths at work
    assert fast == slow and fast_table == slow_table


@pytest.mark.parametrize("seed", [3, 8, 21, 40, 77])
def test_the_independent_generators_worlds(tmp_path, monkeypatch, seed):
    from tests import _scapy_udp as g
    from tests.sweep_scapy_udp import world

    w, how = world(seed)
    c, s = w.packets()
    cf, sf = tmp_path / "c.pcap", tmp_path / "s.pcap"
    g.write(cf, c, *how)
    g.write(sf, s, *how)
    (fast, fast_table, bulk), (slow, slow_table, _) = _both(
        monkeypatch, lambda: analyse(read_capture(str(cf)), read_capture(str(sf)), orient=True))
    assert fast == slow and fast_table == slow_table
    assert bulk > 0, how


def test_a_flow_whose_first_datagram_was_lost_keeps_its_place(tmp_path, monkeypatch):
    """A flow is ordered by its first datagram at the client, arrived or not: here another
    exchange begins between that lost datagram and the flow's first that arrived."""
    from rig.capture.synth import Pkt

    w = Path(port_map=lambda p: p + 1000)
    sport = 50100

    def datagram(i: int, arrive: bool):
        body = (b"quic-c-%d-%d-" % (sport, i)).ljust(120, b"c")
        return w.out(Pkt(w.client, w.server, 17, sport=sport, dport=443, payload=body, ip_id=i + 1), arrive=arrive)

    datagram(0, False)  # the flow's first datagram: lost
    udp(w, 41000, 1)  # another exchange meanwhile
    for i in (1, 2, 3):
        q = datagram(i, True)
        for j in range(4):
            body = (b"quic-s-%d-%d-%d-" % (sport, i, j)).ljust(1200, b"s")
            w.back(Pkt(q.dst, q.src, 17, sport=q.dport, dport=q.sport, payload=body, ip_id=100 + 4 * i + j),
                   arrive=(i, j) != (2, 1))
    for k in range(3):
        quic_flow(w, 50200 + k)  # and clean flows after
    c, s = w.write(tmp_path)
    (fast, fast_table, bulk), (slow, slow_table, _) = _both(
        monkeypatch, lambda: analyse(read_capture(str(c)), read_capture(str(s)), windows=windows_of(w)))
    assert bulk == 4 and fast == slow and fast_table == slow_table
    exchanges = json.loads(fast)["exchanges"]
    assert [e["id"] for e in exchanges[:2]] == ["udp-1", "udp-2"]
    first = exchanges[0]
    assert first["server"].endswith(":443") and first["datagrams"] == {"out": {"sent": 4, "lost": 1},
                                                                        "back": {"sent": 12, "lost": 1}}
