"""Router profiles as data: the nft rules each one plans, how it folds into a scenario,
and how --router / rig.toml reach the lab (no namespaces here)."""

from __future__ import annotations

import subprocess

import pytest

from _runhelp import rig_cmd
from rig.backends.base import RunSpec
from rig.cli import build_parser
from rig.config import check_spec, spec_from
from rig.errors import EXIT_USAGE, UsageError
from rig.lab import scenarios
from rig.lab.access import access_topology
from rig.lab.build import plan
from rig.lab.routers import ROUTERS, get_router, router_for
from rig.lab.topology import seed_topology

PREFIX = "rig-abcdef"


def _router_ruleset(scenario: str, router: str) -> str:
    s = get_router(router).apply(scenarios.get(scenario))
    return plan(access_topology(s.access), PREFIX, s).rulesets.get("router", "")


def test_pf_rules_as_data():
    pf = ROUTERS["pf"]
    assert (pf.nat_ports, pf.random_ip_id, pf.max_mss, pf.nat_random) == ((50001, 65535), True, 1440, True)
    rules = {(r.node, r.chain, r.rule) for r in pf.rules("router", "wan")}
    assert rules == {
        ("router", "mangle",
         'oifname "wan" ip frag-off & 0x3fff == 0 ip id set numgen random mod 4294967295'),
        ("router", "mangle", "tcp flags syn tcp option maxseg size > 1440 tcp option maxseg size set 1440"),
    }
    assert any("modulate state" in c for c in pf.cannot_emulate)
    assert any("timestamp" in c for c in pf.cannot_emulate)


def test_pf_plans_its_nat_and_mangle_on_the_router_only():
    text = _router_ruleset("healthy", "pf")
    assert 'oifname "wan" meta l4proto { tcp, udp } masquerade to :50001-65535 fully-random' in text
    assert 'oifname "wan" masquerade fully-random' in text  # ICMP and the rest
    assert "chain mangle {" in text and "ip id set numgen random" in text and "maxseg size set 1440" in text
    hgw = plan(seed_topology(), PREFIX, ROUTERS["pf"].apply(scenarios.get("healthy"))).rulesets["hgw"]
    assert "50001" not in hgw and "numgen" not in hgw and "maxseg" not in hgw


def test_linux_is_todays_masquerade():
    for name in scenarios.SCENARIOS:
        if scenarios.get(name).router != "linux":
            continue
        assert ROUTERS["linux"].apply(scenarios.get(name)) == scenarios.get(name)
    assert _router_ruleset("healthy", "linux").count("masquerade") == 1


def test_pf_combines_with_any_scenario():
    seed = ROUTERS["pf"].apply(scenarios.get("seed"))
    assert seed.name == "seed" and seed.expect == scenarios.get("seed").expect
    assert set(scenarios.get("seed").rules) < set(seed.rules)  # the fault stays
    # fully-random already asks for random ports: said once
    text = _router_ruleset("fully-random", "pf")
    assert "fully-random fully-random" not in text and ":50001-65535 fully-random" in text
    for name in scenarios.SCENARIOS:
        _router_ruleset(name, "pf")  # plans everywhere


def test_pf_router_scenario_is_the_pf_profile_and_healthy():
    s = scenarios.get("pf-router")
    assert s.router == "pf" and not s.rules
    assert set(s.expect) == {"tcp", "icmp", "udp", "change"} and s.expect["change"] == "ip.id"
    assert {s.expect[p] for p in ("tcp", "icmp", "udp")} == {"delivered"}
    assert "50001-65535" in s.description and "1440" in s.description
    assert router_for(s, None).name == "pf" and router_for(s, "pf").name == "pf"
    with pytest.raises(UsageError, match="scenario pf-router is the pf router"):
        router_for(s, "linux")
    assert router_for(scenarios.get("seed"), None).name == "linux"
    assert router_for(scenarios.get("seed"), "pf").name == "pf"


def test_facts_record_the_profile():
    assert ROUTERS["linux"].facts() == {"router": "linux"}
    facts = ROUTERS["pf"].facts()
    assert facts["router"] == "pf" and facts["router_nat_ports"] == "50001-65535"
    assert facts["router_max_mss"] == "1440" and facts["router_random_ip_id"] == "true"
    assert "modulate state" in facts["router_cannot_emulate"]


def args(*argv):
    return build_parser().parse_args(["run", *argv])


def test_router_from_flag_and_from_rig_toml():
    assert "router" not in spec_from({}, args()).options
    assert spec_from({}, args("--router", "pf")).options["router"] == "pf"
    assert spec_from({"router": "pf"}, args()).options["router"] == "pf"
    assert spec_from({"lab": {"router": "pf"}}, args()).options["router"] == "pf"
    assert spec_from({"router": "pf"}, args("--router", "linux")).options["router"] == "linux"  # the flag wins
    with pytest.raises(UsageError, match="router: expected str"):
        spec_from({"router": 1}, args())


@pytest.mark.parametrize("spec,message", [
    (RunSpec(options={"router": "bsd"}), r"unknown router 'bsd' \(choose from linux, pf\)"),
    (RunSpec(backend="azure", options={"router": "pf"}), "--router is an option of the lab backend, not of azure"),
    (RunSpec(backend="ssh", options={"router": "pf", "host": "me@h"}), "--router is an option of the lab backend"),
    (RunSpec(scenario="pf-router", options={"router": "linux"}), "scenario pf-router is the pf router"),
])
def test_check_spec_refuses(spec, message):
    with pytest.raises(UsageError, match=message) as err:
        check_spec(spec)
    assert "\n" not in str(err.value)


def test_check_spec_accepts():
    check_spec(RunSpec(options={"router": "pf"}))
    check_spec(RunSpec(scenario="seed", options={"router": "pf"}))
    check_spec(RunSpec(scenario="pf-router"))


def test_unknown_router_is_one_line_exit_2(tmp_path):
    res = subprocess.run(rig_cmd("run", "--router", "bsd", "--out", str(tmp_path / "run")),
                         capture_output=True, text=True, cwd=tmp_path)
    assert res.returncode == EXIT_USAGE
    assert res.stderr.strip().splitlines() == ["rig: unknown router 'bsd' (choose from linux, pf)"]
    assert not (tmp_path / "run").exists()
