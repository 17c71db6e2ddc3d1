"""The plain lost cases built from column lists (reqrep_lost) read exactly as the close look
(reqrep) writes them: the same run is analysed with the fast path and with it turned off,
and the verdicts must be the same text."""

from __future__ import annotations

import numpy as np
import pytest

import rig.analysis.reqrep as reqrep
from rig.analysis.api import analyse
from rig.capture import read_capture
from rig.capture.synth import ICMP_TIME_EXCEEDED, ICMP_UNREACH, Path, Pkt
from rig.capture.synth_capture import windows_of

from tests._analysis_scenarios import by_id, ping, udp


def _udp_reply(w: Path, q: Pkt, ip_id: int, arrive: bool = True, payload: bytes | None = None) -> None:
    w.back(Pkt(q.dst, q.src, 17, sport=q.dport, dport=q.sport, payload=payload or b"echo:" + q.payload, ip_id=ip_id),
           arrive=arrive)


def _lossy_run(w: Path) -> None:
    """The plain lost cases between their look-alikes, which the close look must keep."""
    udp(w, 40001, 1, arrive=False)  # plain: never reached the server
    udp(w, 40002, 2, reply_arrives=False)  # plain: the one reply lost
    udp(w, 40003, 3)
    udp(w, 40003, 4, reply_arrives=False)  # plain, on a 4-tuple used before and after
    udp(w, 40003, 5, arrive=False)  # plain
    udp(w, 40003, 6)
    w.at_client(Pkt(w.server, w.client, 17, sport=7, dport=40004, payload=b"stray", ip_id=9))  # before the request:
    udp(w, 40004, 7, arrive=False)  # the close look counts the stray datagram as its reply
    udp(w, 40005, 8, reply=False)  # unanswered
    q = w.out(Pkt(w.client, w.server, 17, sport=40006, dport=7, payload=b"twice", ip_id=10))
    _udp_reply(w, q, 11, arrive=False)  # two replies, both lost
    _udp_reply(w, q, 12, arrive=False)
    p = Pkt(w.client, w.server, 17, sport=40007, dport=7, payload=b"ttl", ip_id=13, ttl=2)  # lost, with an ICMP error
    w.out(p, arrive=False)
    w.at_client(Pkt("192.168.0.1", w.client, 1, icmp_type=ICMP_TIME_EXCEEDED, quoted=p, ttl=63))
    q = w.out(Pkt(w.client, w.server, 17, sport=40008, dport=9999, payload=b"closed", ip_id=14))
    w.back(Pkt(w.server, q.src, 1, icmp_type=ICMP_UNREACH, icmp_code=3, quoted=q), arrive=False)  # error lost
    for _ in range(2):  # the same datagram twice, both lost: not alone in its group
        w.out(Pkt(w.client, w.server, 17, sport=40009, dport=7, payload=b"again", ip_id=15), arrive=False)
    q = w.out(Pkt(w.client, w.server, 17, sport=40010, dport=7, payload=b"", ip_id=16))  # empty, reply lost
    _udp_reply(w, q, 17, arrive=False, payload=b"")
    ping(w, 1)
    ping(w, 2, arrive=False)
    ping(w, 3, reply_arrives=False)
    ping(w, 4, reply=False)
    ping(w, 5, arrive=False)  # something on the path answers in the server's place
    w.at_client(Pkt(w.server, w.client, 1, icmp_type=0, icmp_id=77, icmp_seq=5, payload=b"rig-nonce-%08d" % 5))
    p = Pkt(w.client, w.server, 1, icmp_type=8, icmp_id=77, icmp_seq=6, payload=b"dup", ip_id=6)
    q = w.nat_out(p)
    w.out(p)  # duplicated on the way, the reply lost: the copy 5 ms later (a packet that
    w.server_frames.append((w.server_frames[-1][0] + 5_000_000, q))  # tcpdump -i any saw twice is µs apart)
    w.back(Pkt(q.dst, q.src, 1, icmp_type=0, icmp_id=q.icmp_id, icmp_seq=6, payload=b"dup"), arrive=False)


def _close_look_only(monkeypatch) -> None:
    """Turn the fast path off: no request is a plain lost case."""
    for name in ("_plain_lost_udp", "_plain_lost_echo"):
        monkeypatch.setattr(reqrep, name, lambda *a, **k: (np.zeros(0, np.int64),) * 4)


def _verdicts(tmp_path, monkeypatch, **kw):
    w = Path(port_map=lambda p: p + 1000, echo_id_map=lambda i: i + 1)
    _lossy_run(w)
    c, s = w.write(tmp_path)
    caps = read_capture(str(c)), read_capture(str(s))
    made = []
    built = reqrep.lost_drafts

    def counted(ctx, protocol, creq, *a):
        made.append(len(creq))
        return built(ctx, protocol, creq, *a)

    monkeypatch.setattr(reqrep, "lost_drafts", counted)
    kw.setdefault("windows", windows_of(w))
    fast = analyse(*caps, **kw)
    _close_look_only(monkeypatch)
    slow = analyse(*caps, **kw)
    return fast, slow, sum(made)


@pytest.mark.parametrize("kw", [{}, {"kernel_drops": {"server": 3}}, {"kernel_drops": {"client": 2}}],
                         ids=["plain", "server-drops", "client-drops"])
def test_plain_lost_udp_reads_as_the_close_look(tmp_path, monkeypatch, kw):
    fast, slow, made = _verdicts(tmp_path, monkeypatch, **kw)
    assert made == 7  # udp 40001, 40002, 40003 (twice), 40010; pings 2 and 3: the rest went to the close look
    assert fast.to_json() == slow.to_json()
    e = by_id(fast)
    if not kw:
        assert [e[f"udp-{i}"].outcome for i in range(1, 7)] == ["lost-outbound", "lost-return", "delivered",
                                                                "lost-return", "lost-outbound", "delivered"]
        assert e["udp-2"].explanation == "the server answered the datagram with 1 reply; none reached the client"
        assert [e[f"icmp-{i}"].outcome for i in range(1, 7)] == ["delivered", "lost-outbound", "lost-return",
                                                                 "unanswered", "answered-by-middlebox", "lost-return"]
        assert [c.field for c in e["icmp-3"].changes] == ["ip.ttl", "icmp.id"]  # as the close look has them
    else:  # the point that lost packets cannot vouch for an absence
        assert {x.outcome for x in fast.exchanges} >= {"incomplete"}


@pytest.mark.parametrize("step", ["udp", "echo"])
def test_plain_lost_drafts_equal_the_close_look(tmp_path, monkeypatch, step):
    """Below the records: every draft field (times, matched, what absence it rests on)
    and the clock-offset samples."""
    from rig.analysis.api import _client_local
    from rig.analysis.context import Ctx, Draft
    from rig.analysis.sides import Side

    w = Path(port_map=lambda p: p + 1000, echo_id_map=lambda i: i + 1)
    _lossy_run(w)
    c, s = w.write(tmp_path)
    caps = read_capture(str(c)), read_capture(str(s))

    def drafts():
        ctx = Ctx(Side("client", caps[0]), Side("server", caps[1]), {})
        if step == "udp":
            got, out_d, back_d = reqrep.udp_drafts(ctx, _client_local(ctx.client))
        else:
            got, out_d, back_d = reqrep.echo_drafts(ctx)
        return ({d.first_frame: d for d in got if isinstance(d, Draft)},
                sorted(np.concatenate(out_d).tolist()), sorted(np.concatenate(back_d).tolist()))

    fast = drafts()
    _close_look_only(monkeypatch)
    slow = drafts()
    assert fast[0].keys() == slow[0].keys()
    for f, d in fast[0].items():
        assert d == slow[0][f], f
    assert fast[1:] == slow[1:]
    assert sum(d.outcome == "lost-return" for d in fast[0].values()) >= (3 if step == "udp" else 1)
