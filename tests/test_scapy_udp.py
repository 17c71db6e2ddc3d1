"""`rig diff` on UDP and ICMP capture pairs drawn by an independent generator (scapy,
tests/_scapy_udp.py): each exchange's outcome and datagram counts against the
generator's own record of what it dropped and where."""

from __future__ import annotations

import json
import subprocess

import pytest

pytest.importorskip("scapy")

import _scapy_udp as g  # noqa: E402
from _runhelp import rig_cmd  # noqa: E402


def mixed(seed: int, peers: int = 30, **kw) -> g.Drawing:
    """Several client hosts, each with QUIC, DNS, STUN and NTP, and every fault the
    generator draws, over IPv4 and IPv6; each host's DHT node asks ``peers`` peers
    elsewhere, which the server's capture never sees."""
    w = g.Drawing(seed, **kw)
    for h in (10, 11, 12):
        g.quic(w, h)
        g.dns(w, h)
        g.stun(w, h)
        g.ntp(w, h)
    g.quic(w, 10, loss=0.03, n_out=8)
    g.quic(w, 11, drop_all="out")
    g.quic(w, 12, drop_all="back")
    g.quic(w, 10, family=6, loss=0.03)
    g.dns(w, 11, lost_out=True)
    g.dns(w, 12, lost_back=True)
    g.dns(w, 10, retries=1)
    g.dns(w, 10, family=6)
    g.dns(w, 11, family=6, lost_back=True)
    g.stun(w, 10, lost_back=True)
    g.ntp(w, 11, lost_out=True)
    g.silent(w, 10)
    g.refused(w, 11)
    g.refused(w, 12, by_router=True)
    g.refused(w, 10, lost_back=True)
    g.refused(w, 10, family=6)
    g.refused(w, 11, family=6, by_router=True)
    g.refused(w, 12, tries=3, port=4500)
    g.refused(w, 10, family=6, tries=3, port=4501, lost_back=True)
    g.refused(w, 11, tries=3, port=4502, by_router=True)
    g.ping(w, 10)
    g.ping(w, 11, lost_out={2}, lost_back={3})
    g.ping(w, 12, big_seq=2)
    g.ping(w, 10, family=6, lost_back={1})
    g.big_udp(w, 10)
    g.big_udp(w, 11, later_lost=True)
    g.big_udp(w, 12, uncaptured=True)
    g.dns(w, 12, big_reply=True)
    g.dns(w, 10, big_reply=True, later_frags_lost=True, name="dns-big-cut")
    g.rebound(w, 11, loss=0.03)
    g.ping(w, 12, to="100.90.0.1")
    g.ping(w, 11, answer=False)
    g.ping(w, 11, family=6, big_seq=2)
    g.ping(w, 12, family=6, to="2001:db8:9999::1")
    g.tftp(w, 10)
    g.tftp(w, 12, through=True)
    for h in (10, 11, 12):
        g.peers(w, h, peers)
    return w


def diff(w: g.Drawing, tmp_path, link="ether", ng=False, twice=False, swap=False) -> subprocess.CompletedProcess:
    c, s = w.packets()
    cf, sf = tmp_path / "c.pcap", tmp_path / "s.pcap"
    g.write(cf, c, link, ng, twice)
    g.write(sf, s, link, ng, twice)
    args = (sf, cf) if swap else (cf, sf)
    return subprocess.run(rig_cmd("diff", *map(str, args), "--json"), capture_output=True, text=True, timeout=300)


def _key(e: dict) -> tuple:
    echo = e.get("echo")
    return (e["protocol"], e["client"], e["server"], (echo["id"], echo["seq"]) if echo else None)


def mismatches(w: g.Drawing, verdict: dict, twice: bool = False) -> list[tuple]:
    """Every exchange whose outcome (or datagram counts) the generator's record denies,
    every exchange it drew that rig left out, and every one rig made up."""
    left = list(verdict["exchanges"])
    by_frame: dict[int, dict] = {}
    for e in left:
        for fr in e.get("frames", {}).get("client", []):
            by_frame.setdefault(fr, e)
    bad = []
    for t in w.truths():
        e = None
        if t.frame is not None:
            e = (by_frame.get(2 * t.frame + 1) or by_frame.get(2 * t.frame + 2)) if twice else by_frame.get(t.frame + 1)
        if e is None or _key(e) != t.key:
            e = next((x for x in left if _key(x) == t.key), None)
        if e is None:
            if t.outcomes:  # nothing is true of an exchange with no capture at its far end: rig may leave it out
                bad.append(("missing", t.name, t.key))
            continue
        left = [x for x in left if x is not e]
        o = e["outcome"]
        if not (o in t.outcomes or (o == "incomplete" and not t.knowable)):
            bad.append(("outcome", t.name, t.key, sorted(t.outcomes), o, e["explanation"]))
            continue
        if o == "incomplete" and not e.get("undecided_because"):
            bad.append(("no reason", t.name, t.key))
        dg = e.get("datagrams")
        if t.datagrams and t.knowable and o != "incomplete":
            got = dg and (dg["out"]["sent"], dg["out"]["lost"], dg["back"]["sent"], dg["back"]["lost"])
            if got != t.datagrams:
                bad.append(("datagrams", t.name, t.key, t.datagrams, got))
    bad += [("extra", _key(e), e["outcome"], e["explanation"]) for e in left]
    return bad


def check(w: g.Drawing, tmp_path, **kw) -> dict:
    r = diff(w, tmp_path, **kw)
    clean = all(t.outcomes == {"delivered"} for t in w.truths())
    assert r.returncode == (0 if clean else 1), r.stderr
    v = json.loads(r.stdout)
    assert mismatches(w, v, kw.get("twice", False)) == []
    return v


@pytest.mark.parametrize("link,ng,twice", [("ether", False, False), ("sll", False, True),
                                            ("sll2", True, True), ("raw", False, False), ("raw", True, False)])
def test_every_link_type_gives_the_generators_truth(tmp_path, link, ng, twice):
    check(mixed(1), tmp_path, link=link, ng=ng, twice=twice)


@pytest.mark.parametrize("seed", [2, 3])
def test_other_draws_give_the_generators_truth(tmp_path, seed):
    check(mixed(seed, refrag=seed == 3), tmp_path)


@pytest.mark.parametrize("offset_s", [90.0, -90.0])
def test_clock_offsets_of_ninety_seconds(tmp_path, offset_s):
    check(mixed(4, offset_s=offset_s), tmp_path)


def test_thousands_of_other_hosts_at_the_server(tmp_path):
    """3,000 strangers at the server, 1,500 peers elsewhere at the client."""
    check(mixed(5, peers=500, noise_hosts=3000), tmp_path)


def test_server_refusal_reaches_the_client_through_random_ids(tmp_path):
    """pf's scrub random-id: the server's ICMP port unreachable quotes the IP ID it
    received, and no NAT restores it; the client still got the refusal."""
    w = g.Drawing(6)
    f = g.refused(w, 11)
    g.refused(w, 12, lost_back=True)
    g.dns(w, 13)  # the client capture ran on past the lost refusal (without: incomplete)
    v = check(w, tmp_path)
    assert f.dgrams[0].ip_ids[0] != f.dgrams[0].ip_ids[1]
    assert [e["outcome"] for e in v["exchanges"]] == ["refused", "lost-return", "delivered"]


def test_reply_whose_later_fragments_were_lost_never_arrived(tmp_path):
    """A 3 kB DNS reply fragmented by the server; its non-first fragments are dropped on the
    way back (a MAP-E border relay): the client holds a first fragment, not the reply."""
    w = g.Drawing(7)
    g.dns(w, 10, big_reply=True, later_frags_lost=True)
    g.dns(w, 11, big_reply=True)
    v = check(w, tmp_path)
    assert [e["outcome"] for e in v["exchanges"]] == ["lost-return", "delivered"]


def test_flow_to_a_closed_port_is_refused(tmp_path):
    """An application that retries (three datagrams, each its own payload, on one 4-tuple):
    the server answers each with ICMP port unreachable. That is a refusal when the client
    got them, a lost return when it did not; never `unanswered`."""
    w = g.Drawing(8)
    g.refused(w, 10, tries=3, port=4500)
    g.refused(w, 11, tries=3, port=4501, lost_back=True)
    g.refused(w, 12, family=6, tries=3, port=4502)
    v = check(w, tmp_path)
    assert [e["outcome"] for e in v["exchanges"]] == ["refused", "lost-return", "refused"]


def same_bytes(seed: int) -> g.Drawing:
    """Three hosts behind the NATs send the same bytes at once: Windows' ping (id 1, the
    same payload every time, the same sequence numbers) and SNTP queries with every
    timestamp zero; one of each lost out, one reply lost back."""
    w = g.Drawing(seed)
    t = w.step()
    g.ping(w, 10, payload=g.WINDOWS_PING, ident=1, lost_out={1}, at=t)
    g.ping(w, 11, payload=g.WINDOWS_PING, ident=1, at=t + 0.1)
    g.ping(w, 12, payload=g.WINDOWS_PING, ident=1, lost_back={2}, at=t + 0.2)
    w.step(5)
    t = w.step()
    g.ntp(w, 10, zeros=True, lost_out=True, at=t)
    g.ntp(w, 12, zeros=True, at=t + 0.1)
    g.ntp(w, 14, zeros=True, lost_back=True, at=t + 0.2)
    return w


def test_same_bytes_from_several_hosts_are_never_guessed(tmp_path):
    """Each host's echoes are its own exchanges, and where the bytes cannot say whose copy
    arrived rig says incomplete rather than pairing them by order."""
    w = same_bytes(9)
    r = diff(w, tmp_path)
    v = json.loads(r.stdout)
    wrong = [m for m in mismatches(w, v) if not (m[0] == "outcome" and m[4] == "incomplete")]
    assert wrong == []
    assert sum(e["protocol"] == "icmp" for e in v["exchanges"]) == 9
    assert {e["outcome"] for e in v["exchanges"] if e["client"] == "192.168.1.12"} == {"delivered", "lost-return"}


def test_sntp_queries_of_strangers_at_the_server_are_not_the_clients(tmp_path):
    """A public NTP server's capture holds all-zero SNTP queries from many hosts: the
    client's lost query is not one of theirs, and its delivered one is found by its reply."""
    w = g.Drawing(12, noise_sntp=20)
    g.ntp(w, 10, zeros=True, lost_out=True)
    g.ntp(w, 12, zeros=True)
    g.ntp(w, 14, zeros=True, lost_back=True)
    for h in range(10, 20):
        g.dns(w, h)
    v = json.loads(diff(w, tmp_path).stdout)
    wrong = [m for m in mismatches(w, v) if not (m[0] == "outcome" and m[4] == "incomplete")]
    assert wrong == []
    assert [e["outcome"] for e in v["exchanges"]][:3] == ["incomplete", "delivered", "incomplete"]


@pytest.mark.xfail(strict=True, reason="the pings are told apart by the replies each host got (senders.py); the "
                                       "SNTP queries, one datagram each, only by when they arrived")
def test_same_bytes_from_several_hosts_are_told_apart(tmp_path):
    w = same_bytes(9)
    assert mismatches(w, json.loads(diff(w, tmp_path).stdout)) == []


def _windows_pings(lost_out: dict[int, set[int]], lost_back: dict[int, set[int]]) -> g.Drawing:
    """Three hosts' Windows pings, after a DNS exchange of a fourth host that shows both
    captures ran before them."""
    w = g.Drawing(9)
    g.dns(w, 13)
    t = w.step()
    for k, h in enumerate((10, 11, 12)):
        g.ping(w, h, payload=g.WINDOWS_PING, ident=1, lost_out=lost_out.get(h, set()),
               lost_back=lost_back.get(h, set()), at=t + 0.1 * k)
    return w


def test_same_pings_are_told_apart_by_the_replies_each_host_got(tmp_path):
    """Three hosts' Windows pings, the same bytes; one host's first echo lost on the way
    out. The other two got reply 1, so neither is the sender at the server that lacks
    request 1: that sender is the first host's, whose echo 1 never arrived."""
    w = _windows_pings({10: {1}}, {12: {2}})
    v = json.loads(diff(w, tmp_path).stdout)
    assert mismatches(w, v) == []
    # what the NAT made of each host's echoes (the echo id the server saw) is said only
    # where the copy is known to be that host's, and is then the generator's mapping
    echo_id = {f.client: f.pub_port for f in w.flows if f.proto == "icmp"}
    said = 0
    for e in v["exchanges"]:
        ids = [ch["server"] for ch in e["changes"] if ch["field"] == "icmp.id"]
        if e["protocol"] != "icmp" or e["outcome"] == "lost-outbound":
            continue
        if e.get("seen_at_server_as") is None:
            assert ids == []
            continue
        said += 1
        assert ids == [echo_id[e["client"]]], e["id"]
    assert said >= 5
    # the other hosts' copies of echo 2, paired in bulk, are not the third host's
    frames = [e["frames"]["server"] for e in v["exchanges"] if (e.get("echo") or {}).get("seq") == 2]
    assert sorted(x for f in frames for x in f) == sorted({x for f in frames for x in f})


def test_same_pings_whose_replies_pin_no_sender_stay_incomplete(tmp_path):
    """The first host's echo 1 lost out, the second's reply 1 lost back: either could be
    the sender that lacks request 1, so neither echo 1 is decided."""
    w = _windows_pings({10: {1}}, {11: {1}})
    v = json.loads(diff(w, tmp_path).stdout)
    assert [m for m in mismatches(w, v) if not (m[0] == "outcome" and m[4] == "incomplete")] == []
    first = {e["client"]: e for e in v["exchanges"] if (e.get("echo") or {}).get("seq") == 1}
    assert [first[h]["outcome"] for h in ("192.168.1.10", "192.168.1.11", "192.168.1.12")] == [
        "incomplete", "incomplete", "delivered"]


@pytest.mark.parametrize("window", [dict(server_start=1012.0), dict(server_start=1009.9, offset_s=90.0),
                                    dict(server_start=1012.0, client_stop=1017.0, offset_s=-90.0)])
def test_capture_windows_cut_into_the_run(tmp_path, window):
    """The server's capture starts seconds after the client's, the client's stops early:
    what the windows cut into may be incomplete, nothing else."""
    check(mixed(10, **window), tmp_path)


@pytest.mark.parametrize("window", [dict(server_start=1008.0, offset_s=-90.0), dict(client_stop=1010.2)])
def test_capture_windows_cut_within_a_second_of_an_exchange(tmp_path, window):
    w = mixed(15, **window)
    assert mismatches(w, json.loads(diff(w, tmp_path).stdout)) == []


def test_swapped_arguments_are_turned_or_refused(tmp_path):
    """The server's capture given first: rig says so on stderr and analyses it the right
    way round (or refuses with one line, exit 2); it never analyses it wrongly."""
    w = mixed(11)
    r = diff(w, tmp_path, swap=True)
    if r.returncode == 2:
        assert r.stderr.count("\n") == 1 and not r.stdout
        return
    assert r.returncode == 1 and r.stderr.startswith("rig: analysing c.pcap as the client's")
    assert mismatches(w, json.loads(r.stdout)) == []


def test_flow_that_the_nats_map_anew_after_an_idle_spell(tmp_path):
    """pf's UDP state expires after 60 s idle: the flow's next datagrams leave by a new
    public port. Both 4-tuples at the server are the flow's: nothing was lost, and the
    server's datagrams on the second one are not strays."""
    w = g.Drawing(13)
    g.rebound(w, 10)
    v = check(w, tmp_path)
    (e,) = v["exchanges"]
    assert e["datagrams"] == {"out": {"sent": 2, "lost": 0}, "back": {"sent": 20, "lost": 0}}
    assert "never sent" not in e["explanation"]


def test_an_error_about_another_hosts_echo_is_not_this_ones(tmp_path):
    """One host pings an address a router says is unreachable while another pings the
    server, which drops echoes: the router's errors (same sequence numbers) are about the
    first host's echoes, not a middlebox answering the second's."""
    w = g.Drawing(14)
    t = w.step()
    g.ping(w, 10, to="100.90.0.1", at=t)
    g.ping(w, 11, answer=False, at=t + 0.1)
    g.ping(w, 12, at=t + 0.2)
    v = check(w, tmp_path)
    assert {e["outcome"] for e in v["exchanges"] if e["client"] == "192.168.1.11"} == {"unanswered"}


def test_datagrams_the_tunnel_fragments_anew(tmp_path):
    """pf reassembles, the MAP-E CE fragments again for its 1460-byte tunnel, and the far
    end gets the fragments last first: a first fragment of another size is still the
    datagram it starts, whole or cut short."""
    w = g.Drawing(15, refrag=True)
    g.big_udp(w, 10)
    g.big_udp(w, 11, later_lost=True)
    g.big_udp(w, 12, uncaptured=True)
    g.dns(w, 12, big_reply=True)
    g.dns(w, 10, big_reply=True, later_frags_lost=True)
    g.dns(w, 11, big_reply=True, later_frags_uncaptured=True)
    v = check(w, tmp_path)
    assert [e["outcome"] for e in v["exchanges"]][:2] == ["delivered", "lost-outbound"]
    assert [e["outcome"] for e in v["exchanges"]][3:5] == ["delivered", "lost-return"]


def test_a_resolver_that_asks_from_one_port(tmp_path):
    w = g.Drawing(16)
    for i in range(5):
        g.dns(w, 13, cport=6353, lost_out=i == 1, lost_back=i == 3)
    v = check(w, tmp_path)
    assert [e["outcome"] for e in v["exchanges"]] == ["delivered", "lost-outbound", "delivered", "lost-return",
                                                      "delivered"]


def test_an_answer_from_another_port_is_an_answer(tmp_path):
    """TFTP answers from a new port of the server's. Through a NAT that filters by
    endpoint (pf) that answer is dropped: lost on the way back, not unanswered; where it
    comes through, the exchange was delivered, and its host is still a client."""
    w = g.Drawing(17)
    g.dns(w, 10)
    g.tftp(w, 10)
    g.dns(w, 11)
    g.tftp(w, 11, through=True)
    v = check(w, tmp_path)
    assert [e["outcome"] for e in v["exchanges"]] == ["delivered", "lost-return", "delivered", "delivered"]


def test_a_host_whose_only_exchange_is_answered_from_another_port(tmp_path):
    w = g.Drawing(18)
    g.dns(w, 10)
    g.tftp(w, 11, through=True)
    check(w, tmp_path)


@pytest.mark.parametrize("offset_s", [0.0, 90.0, -3.0])
def test_a_capture_that_ends_with_the_request_does_not_answer_for_the_reply(tmp_path, offset_s):
    """The client's capture stops right after its Windows echo, which is lost on the way
    out; a second host sends the same bytes a moment later, after the capture stopped, and
    the server answers that one. Nothing else was seen at both points, so that copy is all
    the clocks can be fitted on: the reply mapped through it is due after the client
    capture's last packet, which therefore cannot vouch that it never arrived. Never
    lost-return (the wrong direction): incomplete, because the client capture stopped."""
    w = g.Drawing(20, offset_s=offset_s)
    t = w.step()
    g.ping(w, 10, payload=g.WINDOWS_PING, ident=1, seqs=1, lost_out={1}, at=t)
    g.ping(w, 11, payload=g.WINDOWS_PING, ident=1, seqs=1, at=t + 0.3)
    w.client_stop = t + 0.2
    v = json.loads(diff(w, tmp_path).stdout)
    assert mismatches(w, v) == []
    (e,) = v["exchanges"]
    assert (e["client"], e["outcome"]) == ("192.168.1.10", "incomplete")
    assert e["undecided_because"].startswith("client capture stopped")


def test_server_capture_that_starts_between_request_and_reply(tmp_path):
    """The server's capture starts after a DNS query arrived and before its answer left:
    incomplete, with the reason as a fact, and the query not counted as lost (the server
    answered it)."""
    w = mixed(17, peers=5, offset_s=-90.0, server_start=1010.0573836862397)
    v = check(w, tmp_path)
    between = [e for e in v["exchanges"]
               if (e.get("undecided_because") or "").startswith("server capture holds the reply but not the request")]
    assert [e["protocol"] for e in between] == ["udp"]
    assert between[0]["datagrams"]["out"] == {"sent": 1, "lost": 0}


def test_captures_of_different_times_decide_nothing_from_absence(tmp_path):
    """The client's capture stops (true time 1074) before the server's starts (1026.6 + the
    rest of the run: it holds only a flow that resumes at 1096), and the server's clock is
    90 s behind: on the files' own times the server's 3.5 s of capture fall inside the
    client's. Nothing was seen at both points, so the server's clock is not known, and
    what it lacks proves nothing: no proxy, no loss in either direction (rig said
    answered-by-middlebox and lost-outbound here)."""
    w = mixed(131, peers=5, offset_s=-90.0, server_start=1026.555514178921, client_stop=1074.3569925916227)
    v = json.loads(diff(w, tmp_path, link="sll", ng=True, twice=True).stdout)
    # (the IPv6 exchanges are left out: the server capture never shows that address)
    assert [m for m in mismatches(w, v, twice=True) if m[0] != "missing"] == []
    assert not {e["outcome"] for e in v["exchanges"]} & {"answered-by-middlebox", "lost-return", "unanswered"}
    assert sum(e["outcome"] == "incomplete" for e in v["exchanges"]) > 30


def test_a_server_address_met_only_before_the_server_capture_began(tmp_path):
    """The server's capture began 74 s into the run, after every exchange
    to its IPv6 address and before most to its IPv4 one; it holds that IPv6 address only
    in another host's pings. No exchange was matched, and the IPv6 address's exchanges
    were dropped as another server's (the one the client sent most to was kept): they
    are the server's (its capture holds the address), undecided as the rest."""
    from sweep_scapy_udp import world

    w, (link, ng, twice) = world(225)  # (the sweep's draw for that seed: raw IP, pcap)
    v = check(w, tmp_path, link=link, ng=ng, twice=twice)
    assert any(e["server"].startswith(("2001:db8:ffff::10", "[2001:db8:ffff::10]")) for e in v["exchanges"])
