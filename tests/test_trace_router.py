"""``--capture-at router=user@host``: tcpdump on the user's router over SSH, the host key
pinned (rig.trace.router). The lab's router namespace runs a real sshd on its LAN
address for it; every connection goes to that lab address."""

from __future__ import annotations

import pytest

from _runhelp import LAB_SKIP, lab_leftovers, rig_run
from rig.config import check_spec, spec_from
from rig.errors import UsageError
from rig.trace.router import OPTION, split_point

ROUTER = "root@192.168.1.1"
FAST = ("--no-configure", "--timeout", "1", "--probes", "tcp,icmp")
LAB = [pytest.mark.root, pytest.mark.lab, pytest.mark.skipif(LAB_SKIP is not None, reason=str(LAB_SKIP))]


def test_a_capture_point_may_name_the_router_to_reach():
    assert split_point("router") == ("router", None)
    assert split_point("router=admin@192.168.1.1:2222") == ("router", "admin@192.168.1.1:2222")
    for bad in ("client=me@host", "router="):
        with pytest.raises(UsageError):
            split_point(bad)


def test_the_target_travels_in_the_options_and_opens_router_capture_to_other_backends():
    spec = spec_from({"backend": "ssh", "ssh": {"host": "me@vps.example.net"},
                      "capture_at": [f"router={ROUTER}"]})
    assert spec.capture_at == ("client", "server", "router") and spec.options[OPTION] == ROUTER
    check_spec(spec)  # a router of the user's own: fine with any backend
    with pytest.raises(UsageError, match="no router to capture at"):
        check_spec(spec_from({"backend": "ssh", "ssh": {"host": "me@vps.example.net"}, "capture_at": ["router"]}))


def _lab(test):
    for mark in LAB:
        test = mark(test)
    return test


@_lab
def test_seed_with_the_router_captured_over_ssh(tmp_path):
    r = rig_run(tmp_path / "run", "--scenario", "seed", "--capture-at", f"router={ROUTER}", *FAST)
    assert r.rc == 1, r.stderr
    assert {p["name"] for p in r.verdict["capture_points"]} == {"client", "router", "server"}
    assert (r.out / "captures" / "router.pcap").stat().st_size > 24
    assert r.manifest["backend"]["router_host_key"].startswith("ssh-ed25519 ")  # the lab's router sshd, pinned
    assert "listening on wan" in (r.out / "logs" / "tcpdump-router.txt").read_text()  # its default route's
    lost = r.exchanges("tcp")
    assert lost and all(e["outcome"] == "lost-return" for e in lost)
    assert all(e["lost_between"] == ["server", "router"] for e in lost)
    assert lab_leftovers(r.prefix) == []


@_lab
def test_a_router_whose_key_is_not_the_pinned_one_is_refused(tmp_path):
    wrong = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOzWLdejyAkPzYG3H9TAsmuFVs0qNnAHOYTfJssV+Rcb"
    cfg = tmp_path / "rig.toml"
    cfg.write_text(f'[lab]\nrouter_host_key = "{wrong}"\n')
    r = rig_run(tmp_path / "run", "--config", str(cfg), "--scenario", "seed", "--capture-at", f"router={ROUTER}",
                *FAST)
    assert r.rc == 3
    assert "does not match the pinned key" in r.stderr and "Traceback" not in r.stderr
    assert lab_leftovers(r.manifest["backend"]["prefix"]) == []


def test_the_labs_router_is_only_at_its_lan_address(tmp_path):
    if LAB_SKIP is not None:
        pytest.skip(LAB_SKIP)
    r = rig_run(tmp_path / "run", "--scenario", "seed", "--capture-at", "router=root@192.168.1.77", *FAST)
    assert r.rc == 2 and "listens on 192.168.1.1:22" in r.stderr
