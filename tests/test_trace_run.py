"""`rig run` on the lab names the node where each drop scenario loses its packets.

Ground truth is the scenario's own ``drops`` record (rig.lab.scenarios.DropAt), set
beside the fault; rig's ``lost_at`` comes from the traces alone (captures only at the
client and the server). Every packet goes to the lab's own namespaces."""

from __future__ import annotations

import json
import subprocess

import pytest

from _runhelp import LAB_SKIP, lab_leftovers, rig_cmd, rig_run
from rig.lab.scenarios import SCENARIOS
from rig.lab.access import access_topology
from rig.lab.topology import seed_topology
from rig.trace.nodes import path_nodes

pytestmark = [pytest.mark.root, pytest.mark.lab,
              pytest.mark.skipif(LAB_SKIP is not None, reason=str(LAB_SKIP))]

FAST = ("--no-configure", "--timeout", "1", "--json")
LOST = ("lost-outbound", "lost-return", "unanswered")
PATH = path_nodes(seed_topology())
DROPPING = sorted(name for name, s in SCENARIOS.items() if s.drops)


def test_the_drop_scenarios_are_the_issues_four_at_least():
    assert {"seed", "outbound-drop", "edge-filter-icmp", "host-firewall-icmp"} <= set(DROPPING)


@pytest.mark.parametrize("name", DROPPING)
def test_lost_at_names_the_node_that_drops(tmp_path, name):
    r = rig_run(tmp_path / "b", "--scenario", name, *FAST)
    assert r.rc == 1, r.stderr
    for proto, drop in SCENARIOS[name].drops.items():
        lost = [e for e in r.exchanges(proto) if e["outcome"] in LOST]
        assert lost, (proto, r.outcomes(proto))
        for e in lost:
            where = e["lost_at"]
            assert where["direction"] == drop.direction, (e["id"], where)
            if drop.fragments_only:  # no trace can follow a later fragment: it says why, untraced
                assert e["fragments_lost"] is True, e
                assert where["after_hop"] is None and "later fragments" in where["undecided_because"], where
                continue
            assert where["evidence"], e["id"]
            path = path_nodes(access_topology(SCENARIOS[name].access))
            order = path if drop.direction == "out" else path[::-1]
            if drop.on_arrival:  # dropped as they arrive: the hop before answered, the node never did
                assert where["after_hop"]["node"] == order[order.index(drop.node) - 1], (e["id"], where)
                assert where["before_hop"]["node"] == drop.node, (e["id"], where)
                continue
            assert where["after_hop"]["node"] == drop.node, (e["id"], where)
            if drop.node != "server":  # the next node on the path never got them
                assert where["before_hop"]["node"] == order[order.index(drop.node) + 1], (e["id"], where)
    # what is not lost carries no lost_at, and the stdout JSON is the bundle's verdict
    assert all("lost_at" not in e for e in r.verdict["exchanges"] if e["outcome"] not in LOST)
    assert json.loads(r.stdout) == r.verdict
    traces = json.loads((r.out / "logs" / "traces.json").read_text())
    assert any(t["direction"] == "out" for t in traces)
    assert lab_leftovers(r.prefix) == []
    # the report draws the path with a cross where the packets died (where a trace found it)
    report = (r.out / "report.html").read_text()
    if not any(d.fragments_only for d in SCENARIOS[name].drops.values()):
        assert '<table class="path">' in report and '<td class="lost">' in report
    # rig show re-analyses the captures and places the loss again from logs/traces.json
    shown = subprocess.run(rig_cmd("show", str(r.out), "--json"), capture_output=True, text=True, timeout=120)
    assert [e.get("lost_at") for e in json.loads(shown.stdout)["exchanges"]] == [
        e.get("lost_at") for e in r.verdict["exchanges"]]


def test_no_trace_leaves_the_verdict_without_lost_at(tmp_path):
    r = rig_run(tmp_path / "b", "--scenario", "seed", "--no-trace", *FAST)
    assert r.rc == 1, r.stderr
    assert r.outcomes("tcp")["lost-return"] >= 1
    assert all("lost_at" not in e for e in r.verdict["exchanges"])
    assert not (r.out / "logs" / "traces.json").exists()


def test_an_ipv6_loss_is_undecided_by_the_ipv4_traces(tmp_path):
    """ipv4-works-ipv6-fails: IPv6 TCP replies die at the hgw, but the traces go to the
    server's IPv4 address: the IPv6 group's lost_at says so, never an IPv4 path's hop."""
    r = rig_run(tmp_path / "b", "--scenario", "ipv4-works-ipv6-fails", "--access", "map-e", *FAST)
    assert r.rc == 1, r.stderr
    lost6 = [e for e in r.exchanges("tcp", 6) if e["outcome"] == "lost-return"]
    assert lost6, r.outcomes("tcp", 6)
    for e in lost6:
        where = e["lost_at"]
        assert (where["direction"], where["after_hop"], where["evidence"]) == ("return", None, []), where
        assert where["undecided_because"] == "the traces are IPv4-only: no trace follows these IPv6 packets"
    assert all("lost_at" not in e for e in r.exchanges("tcp", 4))  # IPv4 TCP is delivered
    traces = json.loads((r.out / "logs" / "traces.json").read_text())
    ids6 = {e["id"] for e in r.verdict["exchanges"] if e["family"] == 6}
    assert traces and not any(t["exchange"] in ids6 for t in traces)  # no IPv4 trace copied an IPv6 exchange
    assert lab_leftovers(r.prefix) == []
    shown = subprocess.run(rig_cmd("show", str(r.out), "--json"), capture_output=True, text=True, timeout=120)
    assert [e.get("lost_at") for e in json.loads(shown.stdout)["exchanges"]] == [
        e.get("lost_at") for e in r.verdict["exchanges"]]
