"""A large UDP datagram the client's kernel fragments: delivered only when every
fragment reaches the server (its kernel cannot reassemble it otherwise). A MAP-E
border relay drops the non-first fragments (they carry no ports): the first one
arrives, the datagram never does — lost on the way out, not unanswered."""

from __future__ import annotations

from dataclasses import replace

import pytest

from rig.analysis.api import analyse
from rig.capture import read_capture
from rig.capture.synth import Path, Pkt, fragments
from rig.capture.synth_capture import windows_of
from tests._analysis_scenarios import run as run_full

def run(w: Path, tmp, lean: bool = True):
    """The verdict from the lean tables ``rig run`` reads (no IP lengths: the fragments'
    flags must do)."""
    c, s = w.write(tmp)
    return analyse(read_capture(str(c), lean=lean), read_capture(str(s), lean=lean), windows=windows_of(w))


PAYLOAD = bytes(range(256)) * 8  # 2048 bytes: three fragments on a 1000-byte link


def _large_udp(w: Path, reach: int, server_id: int, server_mtu: int = 1000) -> None:
    """The client sends the datagram in fragments; the server sees the first ``reach`` of
    them, under IP ID ``server_id`` (a NAT may rewrite it), fragmented again for a link of
    ``server_mtu`` (a router that reassembles it, as Linux conntrack does, fragments it
    anew), and echoes the datagram when all arrived."""
    big = Pkt(w.client, w.server, 17, sport=50000, dport=7, payload=PAYLOAD, ip_id=4321, df=False)
    frags = fragments(big, 1000)
    t = w.t0_ns + w._now
    for i, f in enumerate(frags):
        w.client_frames.append((t + i, f))
    nat = replace(w.nat_out(big), ip_id=server_id)
    ts = t + w.latency_ns + w.server_clock_offset_ns
    for i, f in enumerate(fragments(nat, server_mtu)[:reach]):
        w.server_frames.append((ts + i, f))
    w._now += 2 * w.latency_ns
    if reach >= len(fragments(nat, server_mtu)):
        echo = Pkt(w.server, nat.src, 17, sport=7, dport=nat.sport, payload=PAYLOAD, ip_id=77, df=False)
        t = w.t0_ns + w._now
        for i, f in enumerate(fragments(echo, server_mtu)):
            w.server_frames.append((t + w.server_clock_offset_ns + i, f))
        for i, f in enumerate(fragments(w.nat_back(echo), server_mtu)):
            w.client_frames.append((t + w.latency_ns + i, f))
        w._now += 2 * w.latency_ns


def test_every_fragment_arrived_is_delivered(tmp_path):
    w = Path()
    _large_udp(w, 3, 999)
    assert run_full(w, tmp_path / "full").exchanges[0].outcome == "delivered"
    u = run(w, tmp_path).exchanges[0]
    assert u.outcome == "delivered" and not u.fragments_lost


@pytest.mark.parametrize("lean", [True, False])
def test_only_the_first_fragment_arrived_is_lost_outbound(tmp_path, lean):
    w = Path()
    _large_udp(w, 1, 999)
    u = run(w, tmp_path, lean).exchanges[0]
    assert u.outcome == "lost-outbound"
    assert "fragment" in u.explanation
    notes = [e.summary for e in u.evidence]
    assert any("later fragments never reached the server" in n for n in notes), notes
    # the client's later fragments are the evidence of what was sent
    assert dict(u.frames)["client"] == (1, 2, 3), u.frames
    size = [" len 976", " len 104"] if not lean else ["", ""]  # the lean table has no IP lengths
    assert [n for n in notes if "later fragment sent" in n] == [
        f"192.168.1.10 > 198.51.100.10 IPv4 fragment of UDP id 4321{n} ttl 64 — later fragment sent" for n in size]
    assert (u.datagrams.out_sent, u.datagrams.out_lost) == (1, 1)
    assert u.fragments_lost and u.to_dict()["fragments_lost"] is True


def test_two_of_three_fragments_arrived_is_lost_outbound(tmp_path):
    w = Path()
    _large_udp(w, 2, 4321)
    assert run(w, tmp_path).exchanges[0].outcome == "lost-outbound"


def test_fragmented_again_on_the_way(tmp_path):
    """A router reassembled the datagram and fragmented it for a smaller link (a MAP-E CE
    into its 1460-byte tunnel): the first fragments differ; IP ID and ports still join them."""
    w = Path()
    _large_udp(w, 1, 4321, server_mtu=800)
    u = run(w, tmp_path).exchanges[0]
    assert u.outcome == "lost-outbound", u.explanation
    assert "only the first fragment" in u.explanation
    w = Path()
    _large_udp(w, 9, 4321, server_mtu=800)
    assert run(w, tmp_path / "all").exchanges[0].outcome == "delivered"


@pytest.mark.parametrize("lean", [True, False])
def test_a_first_fragment_both_points_hold_alone_is_not_lost(tmp_path, lean):
    """Both captures hold the first fragment and nothing more (a capture cut short, a
    capture diffed against itself): nothing was lost between the points."""
    w = Path()
    big = Pkt(w.client, w.server, 17, sport=50000, dport=7, payload=PAYLOAD, ip_id=4321, df=False)
    first = fragments(big, 1000)[0]
    w.client_frames.append((w.t0_ns, first))
    w.server_frames.append((w.t0_ns + w.latency_ns, fragments(w.nat_out(big), 1000)[0]))
    u = run(w, tmp_path, lean).exchanges[0]
    assert u.outcome not in ("lost-outbound", "lost-return"), u.explanation
    assert (u.datagrams.out_sent, u.datagrams.out_lost) == (1, 0)
