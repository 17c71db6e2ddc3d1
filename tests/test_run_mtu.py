"""DF-sized pings through `rig run` on the lab (issue 16 item 10), black-box through the CLI.

The truth per ping size is the scenario's own (``Scenario.expect_ping``: the outcome and
the path MTU its exchange reports, or that it is never sent because it is larger than
the client's interface MTU); the test reads it from the registry rather than restating
it. Every ICMP probe must be accounted for exactly once: as an exchange, or in the
verdict's ``not_sent`` — and `rig show` of the bundle says the same.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from _runhelp import LAB_SKIP, lab_leftovers, rig_cmd, rig_run
from rig.lab.scenarios import SCENARIOS

pytestmark = [pytest.mark.root, pytest.mark.lab,
              pytest.mark.skipif(LAB_SKIP is not None, reason=str(LAB_SKIP))]

SIZED = sorted(name for name, s in SCENARIOS.items() if s.big_pings is not None)


def test_the_sized_scenarios_cover_both_truths():
    """One scenario whose big pings reach the path (and learn its MTU), one whose big pings
    cannot leave the client: the two ways a DF ping above the smallest MTU ends."""
    kinds = {SCENARIOS[n].big_pings.expected.outcome is None for n in SIZED}
    assert kinds == {True, False}, SIZED


def _icmp_probes(out) -> list[dict]:
    probes = [json.loads(line) for line in (out / "probes.jsonl").read_text().splitlines() if line.strip()]
    return [p for p in probes if p["kind"] == "icmp"]


@pytest.mark.parametrize("name", SIZED)
def test_every_ping_size_ends_as_the_scenario_says(name, tmp_path):
    scenario = SCENARIOS[name]
    r = rig_run(tmp_path / "run", "--scenario", name, "--no-configure", "--timeout", "1", "--probes", "icmp,tcp,udp")
    assert r.rc in (0, 1) and (r.out / "verdict.json").exists(), r.stderr
    v = r.verdict
    pings = _icmp_probes(r.out)
    # the small echo and five DF sizes, to the dual-stack server's IPv4 and IPv6 addresses
    assert sorted(p["family"] for p in pings) == [4] * 6 + [6] * 6
    not_sent = {p["id"]: p for p in v["not_sent"]}
    # the echoes that left appear in the client capture in the order they were sent (per
    # family: the two families' echoes leave at the same time)
    by_probe = {}
    for family in (4, 6):
        sent = [p for p in pings if p["not_sent"] is None and p["family"] == family]
        exchanges = r.exchanges("icmp", family)
        assert len(exchanges) == len(sent), (exchanges, sent)
        by_probe.update(zip((p["id"] for p in sent), exchanges))
    problems = 0
    for p in pings:
        size = p["seen"]["size"]
        want = scenario.expect_ping(size, p["family"])
        assert want is not None, size
        if want.outcome is None:
            assert p["id"] not in by_probe, size
            assert not p["ok"] and p["not_sent"] == {"error": "message too long", "size": size,
                                                     "local_mtu": want.local_mtu}
            assert not_sent[p["id"]] == {"id": p["id"], "protocol": "icmp", "target": p["target"], "size": size,
                                         "error": "message too long", "local_mtu": want.local_mtu,
                                         "reason": f"larger than the local interface MTU {want.local_mtu}"}
            problems += 1
            continue
        e = by_probe[p["id"]]
        assert p["id"] not in not_sent, size
        assert (e["outcome"], e.get("path_mtu")) == (want.outcome, want.path_mtu), (size, e)
        problems += e["outcome"] != "delivered"
    assert set(not_sent) <= {p["id"] for p in pings}
    # the diagnosis counts every ping probed: exchanges and the ones never sent
    counts = v["diagnosis"]["by_protocol"]["icmp"]
    assert sum(counts.values()) + len(not_sent) == len(pings)
    summary = v["diagnosis"]["summary"]
    lost = counts.get("lost-outbound", 0)
    if lost:
        assert f"ICMP ({lost} of {len(pings)}) requests are lost" in summary, summary
        assert f"a router reports a path MTU of {scenario.big_pings.expected.path_mtu}" in summary, summary
    if not_sent:
        mtu = scenario.big_pings.expected.local_mtu
        sizes = ", ".join(str(size) for size in sorted(p["size"] for p in v["not_sent"]))
        assert (f"{len(not_sent)} ICMP echoes ({sizes} bytes) were not sent: larger than the local interface MTU {mtu}"
                in summary), summary
    assert problems == lost + len(not_sent)

    # rig show re-analyses the bundle: the same not_sent and diagnosis, in JSON, table and HTML
    shown = subprocess.run(rig_cmd("show", str(r.out), "--json", "--html", str(tmp_path / "r.html")),
                           capture_output=True, text=True)
    assert shown.returncode == r.rc, shown.stderr
    again = json.loads(shown.stdout)
    assert again["not_sent"] == v["not_sent"] and again["diagnosis"] == v["diagnosis"]
    assert [e.get("path_mtu") for e in again["exchanges"]] == [e.get("path_mtu") for e in v["exchanges"]]
    html = (tmp_path / "r.html").read_text()
    table = subprocess.run(rig_cmd("show", str(r.out)), capture_output=True, text=True,
                           env={**os.environ, "COLUMNS": "200"})
    assert table.returncode == r.rc, table.stderr
    for p in v["not_sent"]:
        assert f"<td>{p['id']}</td><td>icmp</td><td>{p['target']}</td><td>{p['size']} bytes</td>" in html
        assert f"{p['id']} " in table.stdout and p["reason"] in table.stdout
    assert ('id="not-sent"' in html) == bool(not_sent)
    assert ("Not sent" in table.stdout) == bool(not_sent)
    assert lab_leftovers(r.prefix) == []
