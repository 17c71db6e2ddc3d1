"""`rig run`'s NAT flags refused before anything is built: one line on stderr, exit 2."""

import subprocess

import pytest

from _runhelp import rig_cmd


@pytest.mark.parametrize("args, words", [
    (["--nat-lifetime", "30"], "add nat to --probes"),
    (["--probes", "nat", "--nat-lifetime", "soon"], "--nat-lifetime: expected a budget"),
    (["--probes", "nat,bogus"], "(or all, nat)"),
])
def test_bad_nat_flags_exit_2(tmp_path, args, words):
    res = subprocess.run(rig_cmd("run", "--out", str(tmp_path / "run"), *args), capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 2
    assert words in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert not (tmp_path / "run").exists()


def test_lab_scenarios_state_their_nat_truth():
    listed = subprocess.run(rig_cmd("lab", "scenarios"), capture_output=True, text=True, check=True).stdout
    lines = {ln.split()[0]: ln for ln in listed.splitlines()}
    assert lines["healthy"].endswith("[NAT (router, hgw): EIM, APDF, ports kept, no hairpinning]")
    assert lines["fully-random"].endswith("[NAT (router, hgw): APDM, APDF, ports random in 1024-65535, no hairpinning]")
    assert lines["pf-router"].endswith("[NAT (router, hgw): APDM, APDF, ports random in 50001-65535, no hairpinning]")
    assert lines["port-set"].endswith("[NAT (router, hgw): EIM, APDF, ports random in 40000-40015, no hairpinning]")
    # the access lines' NATs: the MAP-E CE's 240-port set, its first block alone, the AFTR
    assert lines["ipv6-works-ipv4-fails"].endswith(
        "[NAT (router, hgw): APDM, APDF, ports random in a 240-port set (PSID 18: 15 blocks of 16), no hairpinning]")
    assert lines["map-e-exhaustion"].endswith("[NAT (router, hgw): EIM, APDF, ports random in 4384-4399, no hairpinning]")
    assert lines["ds-lite-session-cap"].endswith("[NAT (router, aftr): EIM, APDF, ports kept, no hairpinning]")


def test_truth_follows_the_rules_the_lab_builds():
    from rig.lab.routers import ROUTERS
    from rig.lab.scenarios import get
    from rig.nat.truth import lab_truth

    nats = ["router", "hgw"]
    pf_behind_set = ROUTERS["pf"].apply(get("port-set"))
    t = lab_truth(pf_behind_set, nats)
    assert (t.mapping, t.range, t.rewriters, t.block) == ("address-and-port-dependent", (40000, 40015),
                                                          ("router", "hgw"), 16)
    t = lab_truth(ROUTERS["pf"].apply(get("healthy")), nats)
    assert (t.range, t.rewriters, t.block) == ((50001, 65535), ("router",), None)
    t = lab_truth(get("healthy"), nats)
    assert (t.mapping, t.allocation, t.range, t.rewriters) == ("endpoint-independent", "preserved", None, ())


def test_truth_follows_the_access_line_the_lab_builds():
    """The NAT nodes and port sets come from rig.lab.config, which the lab backend builds."""
    from rig.lab.access import V6PLUS
    from rig.lab.scenarios import get
    from rig.nat.truth import scenario_truth

    t = scenario_truth(get("healthy"), access="map-e")
    assert (t.mapping, t.allocation, t.range, t.port_set, t.block) == (
        "address-and-port-dependent", "random", None, V6PLUS, None)
    assert (t.port_set.size, t.port_set.blocks, t.port_set.psid) == (240, 15, 18)
    assert (t.nats, t.rewriters, t.public) == (("router", "hgw"), ("hgw",), "203.0.113.2")
    t = scenario_truth(get("map-e-exhaustion"))
    assert (t.mapping, t.range, t.block, t.port_set) == ("endpoint-independent", (4384, 4399), 16, None)
    # behind a pf router the CE still moves every port into its set (pf's ports are outside it)
    t = scenario_truth(get("healthy"), router="pf", access="map-e")
    assert (t.port_set, t.rewriters) == (V6PLUS, ("router", "hgw"))
    # map-e-outside-set: the CE passes the pf router's ports through
    t = scenario_truth(get("map-e-outside-set"))
    assert (t.range, t.port_set, t.rewriters) == ((50001, 65535), None, ("router",))
    t = scenario_truth(get("healthy"), access="ds-lite")  # the B4 does not NAT; the AFTR does
    assert (t.nats, t.mapping, t.allocation, t.range, t.public) == (
        ("router", "aftr"), "endpoint-independent", "preserved", None, "192.0.2.2")
