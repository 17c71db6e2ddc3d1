"""`rig run --probes nat` on the lab, one run per NAT the lab builds, against the truth
read from the lab's own NAT rules (rig.nat.truth): mapping, filtering, allocation, the
range or block the public ports fall in, hairpinning, for UDP and TCP.

What each profile is: healthy (two Linux masquerades: ports kept, endpoint-independent),
fully-random (both random: address-and-port-dependent, any port), pf-router (the pf-like
router: random in 50001-65535), port-set (the hgw maps into 16 ports, a MAP-E-like
block), and pf behind the port-set hgw (the narrower range wins). On the NGN access lines
(rig.lab.access): MAP-E's CE NATs into its 240-port set, a block drawn per flow
(address-and-port-dependent, the set inferred from the burst), map-e-exhaustion's CE
into its first block alone, and DS-Lite's AFTR is a plain masquerade (the B4 keeps the
ports): the truth is read from what the lab builds for that line (rig.lab.config)."""

import json
import subprocess

import pytest

from _runhelp import LAB_SKIP, lab_leftovers, rig_cmd, rig_run
from rig.lab.routers import router_for
from rig.lab.scenarios import get
from rig.lab.topology import seed_topology
from rig.nat.truth import lab_truth, scenario_truth

pytestmark = [pytest.mark.root, pytest.mark.lab,
              pytest.mark.skipif(LAB_SKIP is not None, reason=str(LAB_SKIP))]

CASES = [("healthy", None), ("fully-random", None), ("pf-router", None), ("port-set", None), ("port-set", "pf")]


def _truth(scenario: str, router: str | None, nodes=None):
    applied = router_for(get(scenario), router).apply(get(scenario), node="router", wan="wan")
    return lab_truth(applied, nodes or [n.node for n in seed_topology().nats])


def _check_layers(layers, scenario, router):
    """Layer 1 is the router's NAT, layer 2 the hgw's: each as its own rules say."""
    alone, both = _truth(scenario, router, ["router"]), _truth(scenario, router, ["router", "hgw"])
    assert [(x["index"], x["at"], x["address_in"], x["address_out"]) for x in layers] == [
        (1, "router", "192.168.1.10", "192.168.0.2"), (2, "beyond router", "192.168.0.2", "203.0.113.2")]
    assert layers[0]["mapping"] == alone.mapping
    assert layers[0]["ports_preserved"] is ("router" not in both.rewriters)
    assert layers[1]["ports_preserved"] is ("hgw" not in both.rewriters)
    if alone.mapping == "endpoint-independent":
        assert layers[1]["mapping"] == both.mapping
    else:  # the hgw sees a new source per destination: its own mapping cannot be told apart
        assert "undecided" in layers[1]["mapping"]


@pytest.mark.parametrize("scenario, router", CASES, ids=[f"{s}-{r or 'default'}" for s, r in CASES])
def test_profile_matches_the_lab_nat(tmp_path, scenario, router):
    args = ["--probes", "nat", "--scenario", scenario, "--no-configure", "--json", "--capture-at", "router"]
    r = rig_run(tmp_path / "run", *args, *(["--router", router] if router else []))
    assert r.rc == 0, r.stderr
    truth = _truth(scenario, router)
    nat = r.verdict["nat"]
    assert nat["responder"] == {"addresses": 2, "ports": 2}
    for proto in ("udp", "tcp"):
        assert nat["public"][proto].startswith("203.0.113.2:"), proto  # the hgw's address
        assert nat["mapping"][proto] == truth.mapping, proto
        assert nat["filtering"][proto] == truth.filtering, proto
        alloc = nat["port_allocation"][proto]
        assert alloc["kind"] == truth.allocation, (proto, alloc)
        assert alloc["samples"] >= 8, (proto, alloc)
        if truth.range is not None:
            assert alloc["range"] == list(truth.range), (proto, alloc)
            assert truth.range[0] <= alloc["low"] <= alloc["high"] <= truth.range[1]
        if truth.block is not None:
            assert nat["port_set"][proto]["size"] == truth.block, (proto, nat["port_set"][proto])
        assert nat["hairpin"][proto] is truth.hairpin, proto
        assert "undecided" in nat["udp_binding_s"][proto]  # not asked for (--nat-lifetime)
        _check_layers(nat["layers"][proto], scenario, router)
    assert lab_leftovers(r.prefix) == []


def test_nat_with_the_other_probes_keeps_their_verdicts(tmp_path):
    r = rig_run(tmp_path / "run", "--probes", "icmp,tcp,udp,nat", "--no-configure", "--json", "--timeout", "1")
    assert r.rc == 0, r.stderr
    assert set(r.outcomes("tcp")) == {"delivered"} and set(r.outcomes("udp")) == {"delivered"}
    # the NAT tests' packets stay out of the client and server captures: no exchange of theirs
    assert all(not e["server"].endswith((":3478", ":3479")) for e in r.verdict["exchanges"])
    assert r.verdict["nat"]["mapping"]["udp"] == "endpoint-independent"
    # rig show re-analyses the captures and keeps the recorded profile (it is not in them)
    shown = subprocess.run(rig_cmd("show", "--json", str(r.out)), capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["nat"] == r.verdict["nat"]


def test_port_set_diagnosis_names_the_block(tmp_path):
    r = rig_run(tmp_path / "run", "--probes", "tcp,burst,nat", "--scenario", "port-set", "--no-configure", "--json",
                "--timeout", "1")
    assert r.rc == 1, r.stderr
    assert r.outcomes("tcp")["lost-outbound"] > 0
    assert r.verdict["nat"]["port_set"]["tcp"]["size"] == 16
    assert "confined to one block of 16 ports, 40000-40015" in r.verdict["diagnosis"]["summary"]


def test_tcp_blocked_towards_the_responder_is_not_a_clean_path(tmp_path):
    """seed: the hgw drops SYN-ACKs from outside; UDP's profile is measured, TCP's says why not."""
    r = rig_run(tmp_path / "run", "--probes", "nat", "--scenario", "seed", "--no-configure", "--json")
    assert r.rc == 1, r.stderr
    nat = r.verdict["nat"]
    assert nat["mapping"]["udp"] == "endpoint-independent"
    assert nat["mapping"]["tcp"] == {"undecided": "no answer from the responder"}
    assert nat["public"]["tcp"] is None


ACCESS_CASES = [("healthy", "map-e"), ("healthy", "ds-lite"), ("map-e-exhaustion", None)]


@pytest.mark.parametrize("scenario, access", ACCESS_CASES, ids=[f"{s}-{a or 'own'}" for s, a in ACCESS_CASES])
def test_profile_matches_the_access_lines_nat(tmp_path, scenario, access):
    args = ["--probes", "nat", "--scenario", scenario, "--no-configure", "--json"]
    r = rig_run(tmp_path / "run", *args, *(["--access", access] if access else []))
    assert r.rc == 0, r.stderr
    truth = scenario_truth(get(scenario), access=access)
    nat = r.verdict["nat"]
    for proto in ("udp", "tcp"):
        assert nat["public"][proto].startswith(f"{truth.public}:"), proto  # the last NAT's address
        assert nat["mapping"][proto] == truth.mapping, proto
        assert nat["filtering"][proto] == truth.filtering, proto
        alloc, pset = nat["port_allocation"][proto], nat["port_set"][proto]
        assert alloc["kind"] == truth.allocation, (proto, alloc)
        assert alloc["samples"] >= 8, (proto, alloc)
        if truth.range is not None:
            assert alloc["range"] == list(truth.range), (proto, alloc)
        if truth.block is not None:
            assert pset["size"] == truth.block, (proto, pset)
        if truth.port_set is not None:
            ps = truth.port_set
            assert alloc["range"] is None, (proto, alloc)  # the set says more than a range
            assert all(ps.contains(int(p)) for p in (alloc["low"], alloc["high"])), (proto, alloc)
            if pset["kind"] == "port-set":
                assert (pset["size"], pset["blocks"], pset["block_size"], pset["psid_offset"], pset["psid_length"],
                        pset["psid"]) == (ps.size, ps.blocks, ps.block_size, ps.offset, ps.length, ps.psid), pset
            else:  # too few ports to tell: undecided, with the reason, never a wrong set
                assert pset.get("reason") or "undecided" in pset, (proto, pset)
        else:
            assert pset.get("kind") != "port-set", (proto, pset)
        assert nat["hairpin"][proto] is truth.hairpin, proto


def test_nat_lifetime_brackets_the_hgws_idle_timeouts(tmp_path):
    """short-tcp-idle: the hgw forgets an idle established TCP connection after TCP_IDLE s
    (an nft ct timeout), and an idle UDP mapping after Linux's nf_conntrack_udp_timeout
    (30 s); --nat-lifetime measures both at once: TCP's bounds on each side of TCP_IDLE,
    UDP outliving a budget that stops short of 30 s (no upper bound claimed)."""
    from rig.lab.scenarios import TCP_IDLE

    r = rig_run(tmp_path / "run", "--probes", "nat", "--scenario", "short-tcp-idle", "--no-configure", "--json",
                "--nat-lifetime", "20")
    assert r.rc == 0, r.stderr
    binding = r.verdict["nat"]["udp_binding_s"]
    tcp, udp = binding["tcp"], binding["udp"]
    assert tcp["at_most"] is not None and tcp["at_least"] <= TCP_IDLE <= tcp["at_most"], tcp
    assert udp["at_most"] is None and 8 <= udp["at_least"] <= 20, udp
    assert lab_leftovers(r.prefix) == []
