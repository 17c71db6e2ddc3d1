"""Kept rigs: the state directory, up/down with the Azure backend on the fake ARM,
ls with age and expiry, gc of expired resource groups — and `rig up`/`ls`/`down` for
real with the lab backend."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest

from _runhelp import lab_skip_reason
from rig import lifecycle as L
from rig.backends.azure import AzureBackend
from rig.backends.azure.fake import FakeARM
from rig.backends.base import CapturePoint, Rig, RunSpec, SSHEndpoint
from rig.errors import InfraError, UsageError

NOW = datetime(2026, 11, 26, 10, 0, tzinfo=timezone.utc)


def sample_rig(**facts) -> Rig:
    return Rig("rig-20261126-090000-abcd", "azure", "203.0.113.50",
               SSHEndpoint("203.0.113.50", 22, "rig", "/k/id", "ssh-ed25519 AAAA", None),
               (CapturePoint("client", "any"), CapturePoint("server", "eth0", remote=True)),
               facts={"resource_group": "rig-20261126-090000-abcd", **facts})


def test_rig_record_round_trips(tmp_path):
    rig = sample_rig(expires_at="2026-11-26T13:00:00Z")
    kept = L.Kept("mine", NOW, rig)
    L.save(kept, tmp_path)
    assert oct((tmp_path / "mine.json").stat().st_mode & 0o777) == "0o600"
    back = L.load("mine", tmp_path)
    assert back == kept and back.rig == rig
    assert back.expires_at == datetime(2026, 11, 26, 13, 0, tzinfo=timezone.utc)


def test_unknown_and_bad_records(tmp_path):
    with pytest.raises(UsageError, match="no kept rig named 'nope'.*rig ls"):
        L.load("nope", tmp_path)
    (tmp_path / "old.json").write_text(json.dumps({"format": "rig.kept/9"}))
    with pytest.raises(UsageError, match="rig.kept/9"):
        L.load("old", tmp_path)
    with pytest.raises(UsageError):
        L.check_name("../etc")


def test_state_dir_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("RIG_STATE_DIR", str(tmp_path / "s"))
    assert L.state_dir() == tmp_path / "s"
    monkeypatch.delenv("RIG_STATE_DIR")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "x"))
    assert L.state_dir() == tmp_path / "x" / "rig" / "rigs"


# -- up / ls / down with Azure on the fake ARM ---------------------------------------------------

def azure(arm):
    return AzureBackend(clients=arm.clients(), caller_ip=lambda: "198.51.100.7/32", log=lambda s: None,
                        wait_ssh=False)


def test_up_keeps_key_in_state_dir_and_down_removes_everything(tmp_path):
    arm = FakeARM()
    configured = []
    kept = L.up(RunSpec(backend="azure", options={"location": "japaneast"}), "probe1", backend=azure(arm),
                configure=configured.append, root=tmp_path, say=lambda s: None)
    rig = kept.rig
    assert configured == [rig]
    assert rig.ssh.key_file.startswith(str(tmp_path / "probe1.d"))  # survives this process
    assert os.path.exists(rig.ssh.key_file) and L.load("probe1", tmp_path) == kept
    assert arm.group_exists(rig.run_id)
    L.down("probe1", backend=azure(arm), root=tmp_path)
    assert not arm.group_exists(rig.run_id)
    assert not list(tmp_path.iterdir())


def test_up_without_name_uses_run_id(tmp_path):
    arm = FakeARM()
    kept = L.up(RunSpec(backend="azure"), None, backend=azure(arm), root=tmp_path, say=lambda s: None)
    assert kept.name == kept.rig.run_id
    assert os.path.exists(kept.rig.ssh.key_file) and (tmp_path / f"{kept.name}.d").is_dir()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("new-")] == []


def test_failed_configure_tears_the_rig_down(tmp_path):
    arm = FakeARM()

    def broken(rig):
        raise InfraError("ansible failed")

    with pytest.raises(InfraError, match="ansible failed"):
        L.up(RunSpec(backend="azure"), "x", backend=azure(arm), configure=broken, root=tmp_path, say=lambda s: None)
    [rg] = [r.path.rsplit("/", 1)[-1] for r in arm.puts("resourcegroups")]
    assert rg in arm.deleted_groups and not list(tmp_path.iterdir())


def test_up_refuses_a_taken_name(tmp_path):
    L.save(L.Kept("dup", NOW, sample_rig()), tmp_path)
    with pytest.raises(UsageError, match="exists already"):
        L.up(RunSpec(backend="azure"), "dup", backend=azure(FakeARM()), root=tmp_path)


def test_preflight_problems_are_warned_at_up(tmp_path):
    arm = FakeARM(effective_nsg=False)
    said = []
    L.up(RunSpec(backend="azure"), "w", backend=azure(arm), root=tmp_path, say=said.append)
    assert len(said) == 4 and all(s.startswith("warning: NSG:") for s in said)


def test_listing_shows_age_expiry_and_groups(tmp_path):
    arm = FakeARM()
    b = azure(arm)
    kept = L.up(RunSpec(backend="azure"), "a", backend=b, root=tmp_path, say=lambda s: None)
    from azure.mgmt.resource.resources.models import ResourceGroup

    c = arm.clients()
    c.resource.resource_groups.create_or_update("rig-20261120-010000-dead", ResourceGroup(
        location="eastus", tags={"rig-run": "rig-20261120-010000-dead", "expires-at": "2026-11-20T05:00:00Z",
                                 "created-by": "someone@else"}))
    c.resource.resource_groups.create_or_update("unrelated", ResourceGroup(location="eastus"))
    groups = L.azure_groups(c)
    assert [g.name for g in groups] == sorted([kept.rig.run_id, "rig-20261120-010000-dead"])
    now = kept.created_at + timedelta(minutes=30)
    text = L.render_listing([kept], groups, now)
    assert "a " in text and "30m" in text
    # the expiry is the plan's (made a second or two before the rig was kept): read from it
    assert "in 3h30m" in L.render_listing([kept], groups, kept.expires_at - timedelta(hours=3, minutes=30))
    assert "EXPIRED" in text and "not kept here" in text and "kept as a" in text
    data = L.listing([kept], groups, now)
    orphan = next(g for g in data["azure_groups"] if g["name"] == "rig-20261120-010000-dead")
    assert orphan["expired"] and orphan["orphan"] and data["rigs"][0]["age_seconds"] == 1800


def test_gc_deletes_only_expired_rig_groups(tmp_path):
    from azure.mgmt.resource.resources.models import ResourceGroup

    arm = FakeARM()
    c = arm.clients()
    for name, exp in (("rig-old", "2026-11-26T09:00:00Z"), ("rig-new", "2026-11-26T11:00:00Z")):
        c.resource.resource_groups.create_or_update(name, ResourceGroup(
            location="eastus", tags={"rig-run": name, "expires-at": exp}))
    c.resource.resource_groups.create_or_update("not-rig", ResourceGroup(
        location="eastus", tags={"expires-at": "2020-01-01T00:00:00Z"}))
    assert L.gc_azure(c, NOW, dry_run=True, say=lambda s: None) == ["rig-old"]
    assert arm.group_exists("rig-old")
    assert L.gc_azure(c, NOW, say=lambda s: None) == ["rig-old"]
    assert not arm.group_exists("rig-old") and arm.group_exists("rig-new") and arm.group_exists("not-rig")


def test_ls_and_gc_without_azure_say_so(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AZURE_")}
    env["RIG_STATE_DIR"] = str(tmp_path)
    L.save(L.Kept("k1", NOW, sample_rig(expires_at="2999-01-01T00:00:00Z")), tmp_path)
    ls = subprocess.run([sys.executable, "-m", "rig", "ls"], env=env, capture_output=True, text=True, timeout=60)
    assert ls.returncode == 0, ls.stderr
    assert "k1" in ls.stdout and "203.0.113.50" in ls.stdout and "AZURE_SUBSCRIPTION_ID is not set" in ls.stdout
    js = subprocess.run([sys.executable, "-m", "rig", "ls", "--json"], env=env, capture_output=True, text=True, timeout=60)
    assert json.loads(js.stdout)["rigs"][0]["name"] == "k1"
    gc = subprocess.run([sys.executable, "-m", "rig", "gc", "--dry-run"], env=env, capture_output=True, text=True,
                        timeout=60)
    assert gc.returncode == 0 and "AZURE_SUBSCRIPTION_ID is not set" in gc.stdout
    down = subprocess.run([sys.executable, "-m", "rig", "down", "nope"], env=env, capture_output=True, text=True,
                          timeout=60)
    assert down.returncode == 2 and "no kept rig named 'nope'" in down.stderr


# -- for real: rig up / ls / down with the lab ---------------------------------------------------

LAB_SKIP = lab_skip_reason()  # the lab needs root and its tools (tests/_runhelp.py says which)


@pytest.mark.root
@pytest.mark.lab
@pytest.mark.slow
@pytest.mark.skipif(LAB_SKIP is not None, reason=str(LAB_SKIP))
def test_rig_up_ls_down_with_the_lab(tmp_path):
    env = {**os.environ, "RIG_STATE_DIR": str(tmp_path / "state")}
    rig = [sys.executable, "-m", "rig"]
    upped = subprocess.run(rig + ["up", "--backend", "lab", "--name", "labkeep"], env=env, capture_output=True,
                           text=True, timeout=240)
    try:
        assert upped.returncode == 0, upped.stderr
        kept = L.load("labkeep", tmp_path / "state")
        ns = kept.rig.client_netns
        assert os.path.exists(f"/run/netns/{ns}")  # still up after the command returned
        ls = subprocess.run(rig + ["ls"], env=env, capture_output=True, text=True, timeout=60)
        assert "labkeep" in ls.stdout and "lab" in ls.stdout
        rerun = subprocess.run(rig + ["run", "--rig", "labkeep", "--no-configure", "--json", "--probes", "icmp,tcp",
                                      "--out", str(tmp_path / "bundle")], env=env, capture_output=True, text=True,
                               timeout=240)
        assert rerun.returncode == 0, rerun.stderr
        assert json.loads(rerun.stdout)["exchanges"] and "stays up" in rerun.stderr
        assert os.path.exists(f"/run/netns/{ns}")  # a rerun leaves the kept rig up
    finally:
        down = subprocess.run(rig + ["down", "labkeep"], env=env, capture_output=True, text=True, timeout=120)
    assert down.returncode == 0, down.stderr
    assert not os.path.exists(f"/run/netns/{ns}")
    assert not (tmp_path / "state" / "labkeep.json").exists()


def test_kept_backend_reruns_without_provisioning_or_removing(tmp_path):
    arm = FakeARM()
    kept = L.up(RunSpec(backend="azure"), "again", backend=azure(arm), root=tmp_path, say=lambda s: None)
    puts = len(arm.puts())
    kb = L.KeptBackend("again", tmp_path, inner=azure(arm))
    assert kb.name == "azure" and kb.provision(RunSpec(backend="lab")) == kept.rig
    assert kb.preflight(kept.rig) == []  # the inner backend's check (effective NSG rules)
    kb.teardown(kept.rig)
    assert len(arm.puts()) == puts and arm.group_exists(kept.rig.run_id)
    assert not [r for r in arm.requests if r.method == "DELETE"]


def test_kept_backend_refuses_an_expired_rig(tmp_path):
    L.save(L.Kept("old", NOW, sample_rig(expires_at="2020-01-01T00:00:00Z")), tmp_path)
    with pytest.raises(UsageError, match="expired.*rig down old"):
        L.KeptBackend("old", tmp_path, inner=object())
