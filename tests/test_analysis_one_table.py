"""The vectorised passes (tcp_fast, reqrep_fast, reqrep_lost) and the close looks (tcp,
reqrep) decide the same exchanges the same way: the same captures analysed with the fast
paths on and turned off give the same records, key for key (outcome, explanation,
changes, evidence, frames and every optional fact). And a capture on the user's router
adds to a delivered exchange only the frames the router saw: its explanation, changes
and evidence stay what the two ends show."""

from __future__ import annotations

import json
from pathlib import Path as FsPath

import numpy as np
import pytest

import rig.analysis.reqrep as reqrep
import rig.analysis.tcp as tcp
from rig.analysis.api import analyse
from rig.capture import read_capture
from rig.capture.synth import Path
from rig.jsontext import join_compact

from tests._analysis_scenarios import ping, tcp_delivered, udp
from tests.test_analysis_copies import TosPath, _caps, _ecn_conn

DATA = FsPath(__file__).parent / "data" / "analysis"
GOLDEN = sorted(p.name for p in DATA.iterdir() if (p / "client.pcap").exists())


def _close_look_only(monkeypatch) -> None:
    """Every exchange to the close look: no connection plainly delivered in bulk, no
    request alone in its group (so neither reqrep_fast nor reqrep_lost takes it)."""
    monkeypatch.setattr(tcp, "delivered_mask", lambda ctx, ci, si: np.zeros(len(ci), bool))
    monkeypatch.setattr(reqrep, "_singletons", lambda gk: np.zeros(len(gk), bool))


def _both(monkeypatch, caps, **kw):
    fast = analyse(*caps, **kw)
    with monkeypatch.context() as m:
        _close_look_only(m)
        slow = analyse(*caps, **kw)
    assert (slow.exchanges.src < 0).all()  # the close look built every record
    return fast, slow


def _assert_same_records(fast, slow) -> None:
    a, b = [e.to_dict() for e in fast.exchanges], [e.to_dict() for e in slow.exchanges]
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x == y, x["id"]
    assert fast.diagnosis == slow.diagnosis


def _assert_written_as_its_records(v) -> None:
    """The JSON writer's text of each exchange, made by the fast paths without record
    objects (``ExchangeList.dicts``), is ``json.dumps`` of the record's ``to_dict``."""
    lines = join_compact([d for chunk in v.exchanges.dicts() for d in chunk], "\n").splitlines()
    assert lines == [json.dumps(e.to_dict(), separators=(",", ":")) for e in v.exchanges]


def _golden(name: str, router: bool = False):
    d = DATA / name
    extra = {"router": read_capture(str(d / "router.pcap"))} if router else None
    return (read_capture(str(d / "client.pcap")), read_capture(str(d / "server.pcap"))), extra


@pytest.mark.parametrize("name", GOLDEN)
def test_golden_pairs_read_the_same_on_both_paths(monkeypatch, name):
    caps, _ = _golden(name)
    fast, slow = _both(monkeypatch, caps)
    assert (fast.exchanges.src >= 0).any()  # the fast paths built some of them
    _assert_same_records(fast, slow)
    _assert_written_as_its_records(fast)


@pytest.mark.parametrize("any_at", [None, "server", "client"])
def test_synthetic_mix_reads_the_same_on_both_paths(tmp_path, monkeypatch, any_at):
    """Retransmitted SYNs, data with ECN marks bleached, an MSS clamp, rewritten ports and
    echo ids, copies of every packet at one point (tcpdump -i any)."""
    w = TosPath(bleach_out=True, mss_clamp=1400, port_map=lambda p: p + 1000)
    w.echo_id_map = lambda i: i + 1
    for k in range(9):
        if k % 3 == 0:
            _ecn_conn(w, 40000 + k, 1000 + 7919 * k, 5000 + 104729 * k, first_lost=k % 2 == 1)
        else:
            tcp_delivered(w, 40000 + k, 1000 + 7919 * k, 5000 + 104729 * k, nonce=k, syn_lost=k % 3 - 1)
        ping(w, k + 1)
        udp(w, 41000 + k, k)
    fast, slow = _both(monkeypatch, _caps(w, tmp_path, any_at))
    assert {e.protocol for e in fast.exchanges} == {"tcp", "udp", "icmp"}
    assert {e.outcome for e in fast.exchanges} == {"delivered"}
    assert (fast.exchanges.src >= 0).all()
    _assert_same_records(fast, slow)
    _assert_written_as_its_records(fast)


def test_delivered_evidence_is_the_arrival_each_way(tmp_path):
    w = Path()
    tcp_delivered(w, 40000, 1000, 5000)
    ping(w, 1)
    udp(w, 41000, 1)
    v = analyse(*_caps(w, tmp_path))
    notes = {e.protocol: [(x.point, x.summary.rsplit(" — ", 1)[1]) for x in e.evidence] for e in v.exchanges}
    assert notes == {"tcp": [("server", "SYN arrived"), ("client", "SYN-ACK arrived")],
                     "icmp": [("server", "echo request arrived"), ("client", "echo reply arrived")],
                     "udp": [("server", "datagram arrived"), ("client", "reply arrived")]}


def test_a_router_capture_adds_only_its_frames_to_delivered_exchanges():
    caps, extra = _golden("seed-router", router=True)
    two = analyse(*caps)
    three = analyse(*caps, extra=extra)
    delivered = 0
    for x, y in zip(two.exchanges, three.exchanges):
        if x.outcome != "delivered":
            continue
        delivered += 1
        a, b = x.to_dict(), y.to_dict()
        assert b["frames"].pop("router")  # the router saw it
        assert a == b, x.id
    assert delivered == 7
