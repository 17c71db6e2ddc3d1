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
    assert lines["healthy"].endswith("[NAT: EIM, APDF, ports kept, no hairpinning]")
    assert lines["fully-random"].endswith("[NAT: APDM, APDF, ports random in 1024-65535, no hairpinning]")
    assert lines["pf-router"].endswith("[NAT: APDM, APDF, ports random in 50001-65535, no hairpinning]")
    assert lines["port-set"].endswith("[NAT: EIM, APDF, ports random in 40000-40015, no hairpinning]")


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
