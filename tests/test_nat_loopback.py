"""The NAT responder (templates/nat_responder.py) and the client's tests (rig.nat.client)
against each other on loopback, no NAT between them and no root needed: every endpoint
sees the client's own address and port, every endpoint may send back in, and the client
reaches its own "public" endpoint (which is its socket): endpoint-independent throughout,
ports preserved, hairpinning. The lab tests (test_nat_lab.py) put real NATs between them."""

import socket
import subprocess
import sys

import pytest

from rig.nat.client import Target, Wait, profile
from rig.nat.records import Allocation, Dependence, Proto, Undecided
from rig.resources import templates_dir

WAIT = Wait(reply=0.5, extra=0.5)


def _free_ports(n: int) -> list[int]:
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


@pytest.fixture
def responder(request):
    addrs, nports = request.param
    ports = _free_ports(nports)
    proc = subprocess.Popen([sys.executable, str(templates_dir() / "nat_responder.py"), "--secret", "s3cret",
                             "--bind", ",".join(addrs), "--ports", ",".join(map(str, ports)), "--max-seconds", "60"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        ready = proc.stdout.readline().split()
        assert ready[:1] == ["READY"] and int(ready[2]) == len(addrs) * nports
        yield Target(tuple(addrs), tuple(ports), "s3cret")
    finally:
        proc.stdin.close()  # its stdin ends: it exits
        proc.wait(timeout=10)


@pytest.mark.parametrize("responder", [(("127.0.0.1", "127.0.0.2"), 2)], indirect=True)
def test_no_nat_is_endpoint_independent_and_hairpins(responder):
    got = profile(responder, WAIT)
    for proto in (Proto.UDP, Proto.TCP):
        p = got[proto]
        assert p.public is not None and p.public.startswith("127.0.0.1:"), proto
        assert p.mapping == Dependence.ENDPOINT_INDEPENDENT, proto
        assert p.filtering == Dependence.ENDPOINT_INDEPENDENT, proto
        assert p.port_allocation.kind is Allocation.PRESERVED, proto
        assert p.hairpin is True, proto
        assert isinstance(p.binding, Undecided)  # not asked for


@pytest.mark.parametrize("responder", [(("127.0.0.1",), 1)], indirect=True)
def test_one_endpoint_leaves_mapping_and_filtering_undecided(responder):
    got = profile(responder, WAIT)
    for proto in (Proto.UDP, Proto.TCP):
        p = got[proto]
        assert p.public is not None
        assert isinstance(p.mapping, Undecided) and "one address" in p.mapping.reason, (proto, p.mapping)
        assert isinstance(p.filtering, Undecided), (proto, p.filtering)
        assert p.port_allocation.kind is Allocation.PRESERVED  # the burst needs one endpoint only


@pytest.mark.parametrize("responder", [(("127.0.0.1", "127.0.0.2"), 2)], indirect=True)
def test_strangers_and_wrong_secrets_get_nothing(responder):
    ip, port = responder.endpoint(0, 0)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(0.5)
    try:
        s.sendto(b"RIGNAT1 wrong id1\n", (ip, port))
        s.sendto(b"hello\n", (ip, port))
        with pytest.raises(socket.timeout):
            s.recv(2048)
        s.sendto(b"RIGNAT1 s3cret id2\n", (ip, port))  # the right secret: an answer
        assert s.recv(2048).split()[:3] == [b"RIGNAT1", b"id2", b"seen"]
    finally:
        s.close()


@pytest.mark.parametrize("responder", [(("127.0.0.1", "127.0.0.2"), 2)], indirect=True)
@pytest.mark.parametrize("proto", ["udp", "tcp"])
def test_binding_search_without_a_nat_outlives_the_budget(responder, proto):
    from rig.nat import client
    from rig.nat.records import Binding

    slept = []
    search = client.udp_binding if proto == "udp" else client.tcp_binding
    got = search(responder, WAIT, budget=180.0, sleep=slept.append)  # no real waiting
    assert got == Binding(128.0, None)  # every idle time of the ladder survived: no NAT forgets
    assert slept and max(slept) <= 128.0


@pytest.mark.parametrize("responder", [(("127.0.0.1",), 1)], indirect=True)
def test_tcp_poke_needs_the_secret_and_a_held_connection(responder):
    """The responder writes on a held connection only when asked with its secret and key."""
    from rig.nat import client

    held = client._tcp_hold(responder, WAIT)
    assert held is not None
    try:
        stranger = Target(responder.addresses, responder.ports, "wrong")
        s = socket.create_connection(responder.endpoint(0, 0), timeout=2)
        s.sendall(stranger.request("x1", "poke=1"))
        assert s.recv(100) == b""  # no secret: closed without a word
        s.close()
        unknown = client._tcp_hold(responder, WAIT)  # a second held connection, poked twice
        assert unknown is not None
        assert unknown.alive() is True
        assert unknown.alive() is None  # gone from the responder: undecided, not "the NAT forgot"
        assert held.alive() is True
    finally:
        held.close()


def test_binding_search_narrows_between_two_rounds():
    """The search itself, with a mapping that is gone after 30 s of silence."""
    from rig.nat import client
    from rig.nat.records import Binding

    rounds = []
    spent = {"s": 1.0}

    def fake_round(idles):
        rounds.append(list(idles))
        survived = [i for i in idles if i < 30]
        gone = [i for i in idles if i >= 30]
        return (max(survived, default=0.0), min(gone) if gone else None, spent["s"])

    got = client.binding_search(fake_round, budget=180.0)
    assert rounds[0] == [1, 2, 4, 8, 16, 32, 64, 128]
    assert got == Binding(28.8, 32.0)
    assert isinstance(client.binding_search(fake_round, budget=0.5), Undecided)
    rounds.clear()  # a budget the second round does not fit in: the first round's bounds
    spent["s"] = 32.0
    assert client.binding_search(fake_round, budget=40.0) == Binding(16.0, 32.0) and len(rounds) == 1


def test_binding_round_stops_at_the_first_gone_and_skips_the_untestable():
    from rig.nat.client import Held, binding_round

    answers = iter([True, None, True, False, True])
    closed = []
    got = binding_round(lambda: Held(lambda: next(answers), lambda: closed.append(1)), [1, 2, 4, 8, 16],
                        sleep=lambda _: None)
    assert got[:2] == (4, 8)  # 2 s could not be tested: neither bound
    assert len(closed) == 5  # every mapping let go
    assert binding_round(lambda: None, [1, 2], sleep=lambda _: None)[:2] == (None, None)
