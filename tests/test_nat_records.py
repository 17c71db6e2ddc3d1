"""The verdict's ``nat`` section (rig.nat.records) and the run's NAT options (rig.nat.run):
JSON shape, round trip through rig.verdict/1, and the flags' refusals."""

import dataclasses
import json

import pytest

from rig.errors import UsageError
from rig.nat.records import (Allocation, Binding, Dependence, Layer, NatProfile, PortAllocation, Proto,
                             ProtoProfile, Undecided)
from rig.nat.run import LIFETIME_BUDGET, nat_options, split_probes
from rig.portset import PortSet, PortSetEstimate
from rig.verdict import Diagnosis, Exchange, Verdict

KEYS = {"responder", "public", "mapping", "filtering", "port_allocation", "port_set", "hairpin", "udp_binding_s",
        "layers"}


def _profile() -> NatProfile:
    udp = ProtoProfile(
        mapping=Dependence.ENDPOINT_INDEPENDENT, filtering=Dependence.ADDRESS_AND_PORT_DEPENDENT,
        port_allocation=PortAllocation(Allocation.RANDOM, 4100, 61000, 16, None),
        port_set=PortSetEstimate("port-set", 16, 4100, 61000, PortSet(4, 8, 0x5A), 1e-30),
        hairpin=False, binding=Binding(28.0, 32.0),
        layers=(Layer(1, "router", "192.168.1.10", "192.168.0.2", True, Dependence.ENDPOINT_INDEPENDENT),),
        public="203.0.113.2:4101")
    u = Undecided("no answer from the responder")
    tcp = ProtoProfile(u, u, PortAllocation(Allocation.PRESERVED, 33000, 34000, 3, (1024, 65535)), u, True,
                       Undecided("not measured"), u, public=None)
    return NatProfile({Proto.UDP: udp, Proto.TCP: tcp}, addresses=2, ports=2)


def test_json_shape_per_protocol():
    d = _profile().to_dict()
    assert set(d) == KEYS
    assert d["mapping"] == {"udp": "endpoint-independent", "tcp": {"undecided": "no answer from the responder"}}
    assert d["port_set"]["udp"]["size"] == 240 and d["port_set"]["udp"]["blocks"] == 15
    assert d["port_allocation"]["tcp"]["range"] == [1024, 65535]
    assert d["udp_binding_s"]["udp"] == {"at_least": 28.0, "at_most": 32.0}
    assert d["hairpin"] == {"udp": False, "tcp": True}
    assert d["layers"]["udp"][0]["at"] == "router"


def test_round_trip_through_the_verdict():
    ok = Exchange("tcp-1", "tcp", "a", "b", None, "delivered", "x")
    v = Verdict((), (ok,), Diagnosis("fine"), nat=_profile())
    back = Verdict.from_json(v.to_json())
    assert back.nat == v.nat
    assert json.loads(back.to_json())["nat"] == json.loads(v.to_json())["nat"]
    # without a profile the key is absent: rig.verdict/1 as before
    assert "nat" not in json.loads(Verdict((), (ok,), Diagnosis("fine")).to_json())


def test_exit_code_of_a_nat_only_run():
    profile = _profile()  # its TCP tests got no answer: not a clean path
    assert Verdict((), (), Diagnosis(""), nat=profile).exit_code() == 1
    ok = Exchange("tcp-1", "tcp", "a", "b", None, "delivered", "x")
    assert Verdict((), (ok,), Diagnosis(""), nat=profile).exit_code() == 1
    both = NatProfile({pr: dataclasses.replace(p, public="203.0.113.2:4101") for pr, p in profile.protocols.items()},
                      2, 2)
    assert Verdict((), (), Diagnosis(""), nat=both).exit_code() == 0  # every protocol reached the responder
    u = Undecided("no answer")
    silent = NatProfile({Proto.UDP: ProtoProfile(u, u, u, u, u, u, u)}, 2, 2)
    assert Verdict((), (), Diagnosis(""), nat=silent).exit_code() == 1


@pytest.mark.parametrize("probes, kinds, nat", [
    (None, None, False),
    ("nat", (), True),
    ("icmp,nat", ("icmp",), True),
    ("tcp", ("tcp",), False),
])
def test_split_probes(probes, kinds, nat):
    assert split_probes(probes) == (kinds, nat)


def test_all_plus_nat_runs_every_kind():
    from rig.probes.runner import PROBE_KINDS

    kinds, nat = split_probes("all,nat")
    assert nat and set(kinds) == set(PROBE_KINDS)


def test_unknown_probe_kind_names_nat_as_a_choice():
    with pytest.raises(UsageError, match="nat"):
        split_probes("icmp,nope")


@pytest.mark.parametrize("raw, budget", [(None, None), ("true", LIFETIME_BUDGET), ("60", 60.0), ("off", None)])
def test_nat_lifetime_option(raw, budget):
    opts = {} if raw is None else {"nat_lifetime": raw}
    assert nat_options(opts).lifetime_budget == budget


@pytest.mark.parametrize("raw", ["-5", "soon", "nan", "99999"])
def test_nat_lifetime_refuses_nonsense(raw):
    with pytest.raises(UsageError, match="--nat-lifetime"):
        nat_options({"nat_lifetime": raw})


def test_words_for_every_value():
    from rig.nat.words import rows, summary

    got = dict(rows(_profile()))
    assert got["mapping"] == ["endpoint-independent", "undecided: no answer from the responder"]
    assert got["port set"][0].startswith("240 ports: 15 blocks of 16 (PSID 90, offset 4, length 8")
    assert got["public ports"][1].startswith("preserved")
    assert got["binding lifetime"][0] == "28-32 s"
    assert got["hairpinning"] == ["no", "yes"]
    assert got["layers"][0] == "1: at router, 192.168.1.10 -> 192.168.0.2, ports kept"
    assert summary(_profile()).startswith("NAT profile: UDP mapping endpoint-independent, filtering "
                                          "address-and-port-dependent; TCP mapping undecided")


def test_table_view_and_report_show_the_profile():
    from io import StringIO

    from rich.console import Console

    from rig.render import print_verdict
    from rig.report.html import render_report

    v = Verdict((), (), Diagnosis("fine"), nat=_profile())
    buf = StringIO()
    print_verdict(v, Console(file=buf, width=200, color_system=None))
    out = buf.getvalue()
    assert "NAT profile" in out and "15 blocks of 16" in out and "client > server" not in out
    page = render_report(v.to_dict())
    assert '<h2 id="nat">NAT profile</h2>' in page and "address-and-port-dependent" in page
    assert 'class="diagnosis "' in page  # TCP got no answer: not the clean style
    both = NatProfile({pr: dataclasses.replace(p, public="203.0.113.2:1") for pr, p in _profile().protocols.items()},
                      2, 2)
    assert 'class="diagnosis clean"' in render_report(Verdict((), (), Diagnosis("fine"), nat=both).to_dict())


def test_a_nat_only_verdict_says_the_profile():
    from rig.nat.run import carried, with_profile

    v = with_profile(Verdict((), (), Diagnosis("No exchange was found")), _profile())
    assert v.diagnosis.summary.startswith("NAT profile: UDP mapping endpoint-independent")
    ok = Exchange("tcp-1", "tcp", "a", "b", None, "delivered", "x")
    assert with_profile(Verdict((), (ok,), Diagnosis("fine")), _profile()).diagnosis.summary == "fine"
    # rig show: the re-analysed verdict takes the recorded profile
    again = carried(Verdict((), (ok,), Diagnosis("fine")), v.to_dict())
    assert again.nat == v.nat


def test_azure_without_the_responder_ports_says_so_without_waiting():
    from rig.nat.run import measure, nat_options

    got = measure({}, "203.0.113.50", ssh=None, client_netns=None, python="python3", options=nat_options({}),
                  backend="azure")  # no SSH is touched: ssh=None would fail
    assert not got.reached
    for p in got.protocols.values():
        assert isinstance(p.mapping, Undecided) and "NSG" in p.mapping.reason


def test_a_failing_diagnosis_gains_the_small_port_block():
    from rig.nat.run import with_profile

    est = PortSetEstimate("range", 16, 40000, 40015, PortSet(0, 12, 40000 >> 4), 1e-50)
    u = Undecided("x")
    tcp = ProtoProfile(Dependence.ENDPOINT_INDEPENDENT, u, u, est, False, u, u, public="203.0.113.2:40001")
    profile = NatProfile({Proto.TCP: tcp}, 2, 2)
    lost = Exchange("tcp-2", "tcp", "a", "b", None, "lost-outbound", "x")
    failing = Verdict((), (lost,), Diagnosis("TCP requests are lost", {"tcp": {"lost-outbound": 1}}))
    got = with_profile(failing, profile).diagnosis.summary
    assert got == ("TCP requests are lost; the NAT profile finds TCP's public ports confined to one block of 16 "
                   "ports, 40000-40015, and 1 TCP exchange(s) failed")
    ok = Exchange("tcp-1", "tcp", "a", "b", None, "delivered", "x")
    fine = Verdict((), (ok,), Diagnosis("fine", {"tcp": {"delivered": 1}}))
    assert with_profile(fine, profile).diagnosis.summary == "fine"  # nothing failed: nothing to explain
    wide = dataclasses.replace(tcp, port_set=PortSetEstimate("range", 16, 1024, 65535, None, 1.0, "no set"))
    assert with_profile(failing, NatProfile({Proto.TCP: wide}, 2, 2)).diagnosis.summary == "TCP requests are lost"
