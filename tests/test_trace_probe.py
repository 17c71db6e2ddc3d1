"""``rig probe``: a destination rig does not control, one-ended (rig.trace.destination).
The lab's server namespace plays the third-party server; nothing is sent outside the lab
(``--lab`` refuses any other address before it builds anything)."""

from __future__ import annotations

import json
import subprocess

import pytest

from _runhelp import LAB_SKIP, lab_leftovers, rig_cmd, rig_run
from rig.errors import UsageError
from rig.lab.scenarios import SCENARIOS
from rig.lab.topology import seed_topology
from rig.trace.destination import Target, compare, parse_target
from rig.trace.nodes import path_nodes

LAB = [pytest.mark.root, pytest.mark.lab, pytest.mark.skipif(LAB_SKIP is not None, reason=str(LAB_SKIP))]


def needs_lab(test):
    for mark in LAB:
        test = mark(test)
    return test


def test_destinations_parse_without_a_name_lookup_for_addresses():
    assert parse_target("198.51.100.10:587", None) == Target("198.51.100.10", "198.51.100.10", 587, "tcp")
    assert parse_target("198.51.100.10", None) == Target("198.51.100.10", "198.51.100.10", 0, "icmp")
    assert parse_target("198.51.100.10:53", "udp").proto == "udp"
    for bad, proto in (("198.51.100.10:x", None), ("198.51.100.10:70000", None), (":80", None),
                       ("198.51.100.10:80", "icmp")):
        with pytest.raises(UsageError):
            parse_target(bad, proto)


def _trace(hops: list[str]) -> dict:
    return {"direction": "out", "protocol": "tcp", "hops": [{"ttl": i, "address": a} for i, a in enumerate(hops, 1)]}


def test_compare_names_the_hop_where_the_paths_part():
    t = Target("mail.example.net", "198.51.100.25", 587, "tcp")
    mine = {"diagnosis": {"by_protocol": {"tcp": {"incomplete": 1}}}}
    resp = {"diagnosis": {"by_protocol": {"tcp": {"delivered": 3}}}}
    c = compare(mine, [_trace(["10.0.0.1", "10.0.1.1", "10.9.9.9"])], t, resp,
                [_trace(["10.0.0.1", "10.0.1.1", "10.2.2.2", "10.3.3.3"])], "runs/x")
    assert (c["same_hops"], c["paths_part_after_hop"]) == (2, 2)
    assert c["summary"] == ("to your responder TCP works; to mail.example.net:587 TCP is incomplete ×1; "
                            "the forward traces are identical up to hop 2, where the paths part")
    same = compare(mine, [_trace(["10.0.0.1"])], t, resp, [_trace(["10.0.0.1", "10.2.2.2"])], "runs/x")
    assert same["paths_part_after_hop"] is None


def test_lab_refuses_an_address_outside_the_lab():
    res = subprocess.run(rig_cmd("probe", "--lab", "healthy", "192.0.2.1:80"), capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 2
    assert "only addresses inside the lab" in res.stderr and "Traceback" not in res.stderr


def _probe(*args: str) -> tuple[int, dict]:
    res = subprocess.run(rig_cmd("probe", *args, "--json", "--timeout", "1"), capture_output=True, text=True,
                         timeout=120)
    return res.returncode, json.loads(res.stdout) if res.stdout.strip() else {"stderr": res.stderr}


@needs_lab
def test_probe_of_a_destination_that_drops_syns_on_the_way_and_beside_a_responder(tmp_path):
    responder = rig_run(tmp_path / "healthy", "--no-configure", "--timeout", "1")
    assert responder.rc == 0, responder.stderr
    rc, v = _probe("--lab", "outbound-drop", "198.51.100.10:80", "--compare", str(responder.out),
                   "--out", str(tmp_path / "p"))
    assert rc == 1, v
    (e,) = v["exchanges"]
    assert e["outcome"] == "incomplete" and "not rig's" in e["undecided_because"]
    # the copies are answered up to the hgw; past it, silence: the client alone cannot
    # tell a SYN dropped there from a SYN-ACK dropped on its way back, so no device
    assert e["lost_at"]["after_hop"] is None
    assert "answered up to hop 2 (192.168.0.1, hgw) and not past it" in e["lost_at"]["undecided_because"]
    assert [x["address"] for x in e["lost_at"]["evidence"][:2]] == ["192.168.1.1", "192.168.0.1"]
    assert v["compare"]["summary"].startswith("to your responder TCP works; to 198.51.100.10:80 TCP is incomplete")
    assert v["compare"]["same_hops"] == 2
    assert (tmp_path / "p" / "client.pcap").stat().st_size > 0
    assert json.loads((tmp_path / "p" / "verdict.json").read_text()) == v


@needs_lab
def test_probe_of_a_healthy_destination_is_delivered_for_each_protocol():
    for dest, proto in (("198.51.100.10:80", "tcp"), ("198.51.100.10:7", "udp"), ("198.51.100.10", "icmp")):
        rc, v = _probe("--lab", "healthy", dest, "--proto", proto)
        assert rc == 0, v
        assert {e["outcome"] for e in v["exchanges"]} == {"delivered"}
        assert all("lost_at" not in e for e in v["exchanges"])


ROUTER = "root@192.168.1.1"  # the lab router's own sshd, on its LAN address


@needs_lab
@pytest.mark.parametrize("name", ["router-drop-return", "seed"])
def test_probe_with_the_router_captured_says_whether_the_reply_reached_it(tmp_path, name):
    """The scenario's own drop record decides what rig may say: a reply dropped at the
    router or after it on its way back (toward the client) reached the router's WAN
    capture, so the loss is placed at the router; one dropped before the router never
    arrives there, and only a capture at the destination could tell more: no device."""
    drop = SCENARIOS[name].drops["tcp"]
    back = path_nodes(seed_topology())[::-1]
    reached_router = back.index(drop.node) >= back.index("router")
    out = tmp_path / "p"
    rc, v = _probe("--lab", name, "198.51.100.10:80", "--capture-at", f"router={ROUTER}", "--out", str(out))
    assert rc == 1, v
    assert {p["name"] for p in v["capture_points"]} == {"client", "router"}
    assert (out / "router.pcap").stat().st_size > 24 and "listening on wan" in (out / "tcpdump-router.txt").read_text()
    (e,) = v["exchanges"]
    where = e["lost_at"]
    assert where["direction"] == drop.direction == "return"
    if reached_router:
        assert e["outcome"] == "lost-return" and e["lost_between"] == ["router", "client"]
        assert where["after_hop"]["node"] == drop.node
        assert where["before_hop"]["node"] == back[back.index(drop.node) + 1]
        assert "undecided_because" not in where
    else:
        assert e["outcome"] == "incomplete"
        assert where["after_hop"] is None and "none arrive at your router" in where["undecided_because"]
        assert "never arrive at your router" in e["explanation"]
    assert lab_leftovers(json.loads((out / "lab.json").read_text())["prefix"]) == []


@needs_lab
def test_probe_refuses_a_router_whose_key_is_not_the_pinned_one(tmp_path):
    wrong = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOzWLdejyAkPzYG3H9TAsmuFVs0qNnAHOYTfJssV+Rcb"
    cfg = tmp_path / "rig.toml"
    cfg.write_text(f'[lab]\nrouter_host_key = "{wrong}"\n')
    out = tmp_path / "p"
    res = subprocess.run(rig_cmd("probe", "--lab", "seed", "198.51.100.10:80", "--config", str(cfg), "--capture-at",
                                 f"router={ROUTER}", "--out", str(out), "--timeout", "1"),
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 3, res.stderr
    assert "does not match the pinned key" in res.stderr and "Traceback" not in res.stderr
    assert not (out / "verdict.json").exists()
    assert lab_leftovers(json.loads((out / "lab.json").read_text())["prefix"]) == []


def test_probe_outside_the_lab_needs_the_router_named(tmp_path):
    res = subprocess.run(rig_cmd("probe", "127.0.0.1:9", "--capture-at", "router"), capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 2 and "router=user@host" in res.stderr and "Traceback" not in res.stderr
