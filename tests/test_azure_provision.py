"""The Azure backend driving the real SDK clients against the fake ARM (no network).

Bodies sent, operations awaited, waves concurrent, and the resource group deleted on
every failure path (ARM errors, size fallbacks exhausted, time-out, Ctrl-C).
"""

from __future__ import annotations

import base64
import ipaddress
import os

import paramiko
import pytest
import yaml

from rig.backends.azure import AzureBackend
from rig.backends.azure.fake import FakeARM
from rig.backends.azure.plan import DEFAULT_SIZES
from rig.backends.base import RunSpec
from rig.errors import InfraError, RigError, UsageError

CALLER = "198.51.100.7/32"


def spec(**options) -> RunSpec:
    return RunSpec(backend="azure", options={"location": "japaneast", **options})


def backend(arm: FakeARM, **kw) -> AzureBackend:
    logs: list[str] = []
    b = AzureBackend(clients=arm.clients(), caller_ip=lambda: CALLER, log=logs.append, wait_ssh=False, **kw)
    b.logs = logs  # type: ignore[attr-defined]
    return b


def provision(arm: FakeARM, tmp_path, **options):
    b = backend(arm)
    return b, b.provision(spec(workdir=str(tmp_path / "wd"), **options))


def only_group(arm: FakeARM) -> str:
    puts = arm.puts("resourcegroups")
    assert len(puts) == 1
    return puts[0].path.rsplit("/", 1)[-1]


# -- the happy path --------------------------------------------------------------------

def test_rig_describes_the_vm_with_pinned_key(tmp_path):
    arm = FakeARM()
    b, rig = provision(arm, tmp_path)
    assert rig.backend == "azure" and rig.server_addr == arm.public_ip
    assert rig.ssh.host == arm.public_ip and rig.ssh.port == 22 and rig.ssh.user == "rig"
    assert rig.ssh.host_key.startswith("ssh-ed25519 ")
    assert os.stat(rig.ssh.key_file).st_mode & 0o077 == 0
    assert rig.client_netns is None and rig.os_family == "debian" and rig.install_packages
    points = {p.name: p for p in rig.capture_points}
    assert points["server"].remote and not points["client"].remote and points["client"].netns is None
    f = rig.facts
    assert f["region"] == "japaneast" and f["size"] == DEFAULT_SIZES[0] and f["allow_from"] == CALLER
    assert f["resource_group"] == rig.run_id and f["vm_name"] and f["expires_at"].endswith("Z")
    assert f["listen_addr"] == "0.0.0.0"  # the public IP is not on the VM (Azure NATs it)
    assert arm.group_exists(rig.run_id)


def test_nsg_allows_the_probes_from_the_caller_only(tmp_path):
    arm = FakeARM()
    provision(arm, tmp_path)
    rules = arm.put_body("networkSecurityGroups")["properties"]["securityRules"]
    allows = [r["properties"] for r in rules if r["properties"]["access"] == "Allow"]
    assert {(r["protocol"], r["destinationPortRange"]) for r in allows} == {
        ("Icmp", "*"), ("Tcp", "22"), ("Tcp", "80"), ("Udp", "7")}
    for r in allows:
        assert r["direction"] == "Inbound"
        assert r["sourceAddressPrefix"] == CALLER and not r.get("sourceAddressPrefixes")
        assert ipaddress.ip_network(r["sourceAddressPrefix"]).prefixlen == 32
    deny = [r["properties"] for r in rules if r["properties"]["access"] == "Deny"]
    assert deny and max(r["priority"] for r in allows) < min(r["priority"] for r in deny)
    assert len({r["properties"]["priority"] for r in rules}) == len(rules)
    # the NSG sits on the NIC, and the public IP is Standard + static
    nic = arm.put_body("networkInterfaces")["properties"]
    assert nic["networkSecurityGroup"]["id"].endswith("/networkSecurityGroups/rig-nsg")
    pip = arm.put_body("publicIPAddresses")
    assert pip["sku"]["name"] == "Standard" and pip["properties"]["publicIPAllocationMethod"] == "Static"


def test_allow_from_flag_replaces_detection(tmp_path):
    arm = FakeARM()
    b = AzureBackend(clients=arm.clients(), caller_ip=lambda: pytest.fail("detection must not run"), log=lambda s: None,
                     wait_ssh=False)
    b.provision(spec(workdir=str(tmp_path / "wd"), allow_from="203.0.113.9"))
    rules = arm.put_body("networkSecurityGroups")["properties"]["securityRules"]
    assert {r["properties"]["sourceAddressPrefix"] for r in rules if r["properties"]["access"] == "Allow"} == {"203.0.113.9/32"}


def test_tags_on_every_resource(tmp_path):
    arm = FakeARM()
    _, rig = provision(arm, tmp_path)
    rg = arm.put_body("resourcegroups")
    assert rg["location"] == "japaneast"
    assert rg["tags"]["rig-run"] == rig.run_id and rg["tags"]["created-by"]
    assert rg["tags"]["expires-at"] == rig.facts["expires_at"]
    for rtype in ("virtualNetworks", "networkSecurityGroups", "publicIPAddresses", "networkInterfaces", "virtualMachines"):
        assert arm.put_body(rtype)["tags"]["rig-run"] == rig.run_id


def test_cloud_init_installs_the_pinned_host_key(tmp_path):
    arm = FakeARM()
    _, rig = provision(arm, tmp_path)
    vm = arm.put_body("virtualMachines")["properties"]
    cfg_text = base64.b64decode(vm["osProfile"]["customData"]).decode()
    assert cfg_text.startswith("#cloud-config")
    cfg = yaml.safe_load(cfg_text)
    assert cfg["ssh_genkeytypes"] == [] and cfg["ssh_deletekeys"] is True
    assert cfg["ssh_keys"]["ed25519_public"] == rig.ssh.host_key
    host = paramiko.Ed25519Key.from_private_key(__import__("io").StringIO(cfg["ssh_keys"]["ed25519_private"]))
    assert f"{host.get_name()} {host.get_base64()}" == rig.ssh.host_key  # the private half matches the pin
    login = paramiko.PKey.from_path(rig.ssh.key_file)
    keys = vm["osProfile"]["linuxConfiguration"]["ssh"]["publicKeys"]
    assert [k["keyData"].split()[1] for k in keys] == [login.get_base64()]
    assert vm["osProfile"]["linuxConfiguration"]["disablePasswordAuthentication"] is True
    img = vm["storageProfile"]["imageReference"]
    assert (img["publisher"], img["offer"], img["sku"], img["version"]) == ("Canonical", "ubuntu-24_04-lts", "server", "latest")


def test_auto_shutdown_schedule_at_expiry(tmp_path):
    arm = FakeARM()
    _, rig = provision(arm, tmp_path)
    [req] = arm.puts("schedules")
    vm = rig.facts["vm_name"]
    assert req.path.endswith(f"/providers/Microsoft.DevTestLab/schedules/shutdown-computevm-{vm}")
    assert req.query["api-version"] == ["2018-09-15"]
    props = req.body["properties"]
    assert props["taskType"] == "ComputeVmShutdownTask" and props["status"] == "Enabled"
    assert props["targetResourceId"].endswith(f"/virtualMachines/{vm}")
    exp = rig.facts["expires_at"]  # 2026-11-26T13:37:00Z
    assert props["dailyRecurrence"]["time"] == exp[11:13] + exp[14:16] and props["timeZoneId"] == "UTC"
    assert rig.facts["auto_shutdown"] == "true"


def test_operations_awaited_and_waves_concurrent(tmp_path):
    arm = FakeARM(latency=0.4)  # each operation stays InProgress for a while (longer than a wave takes to send)
    _, rig = provision(arm, tmp_path)
    depth = {t: [r.depth for r in arm.puts(t)] for t in
             ("resourcegroups", "virtualNetworks", "networkSecurityGroups", "publicIPAddresses",
              "networkInterfaces", "virtualMachines", "schedules")}
    assert depth == {"resourcegroups": [1], "virtualNetworks": [2], "networkSecurityGroups": [2],
                     "publicIPAddresses": [2], "networkInterfaces": [3], "virtualMachines": [4], "schedules": [5]}
    assert rig.facts["critical_path_waits"] == "5"
    # every long-running operation was polled to its end before rig went on
    assert all(op.observed for op in arm.ops.values() if op.kind == "put")
    assert all(r["properties"].get("provisioningState") == "Succeeded" for r in arm.resources.values()
               if "/providers/microsoft.marketplaceordering/" not in r["id"].lower())


def test_fake_counts_a_serial_chain_as_serial():
    """The depth measure is not a constant: one-at-a-time waits show up as a deeper path."""
    from azure.mgmt.network import models as N
    from azure.mgmt.resource.resources.models import ResourceGroup

    arm = FakeARM(latency=0.05)
    c = arm.clients()
    c.resource.resource_groups.create_or_update("rg1", ResourceGroup(location="eastus"))
    c.network.virtual_networks.begin_create_or_update("rg1", "v", N.VirtualNetwork(location="eastus")).result()
    c.network.network_security_groups.begin_create_or_update("rg1", "n", N.NetworkSecurityGroup(location="eastus")).result()
    c.network.public_ip_addresses.begin_create_or_update("rg1", "p", N.PublicIPAddress(location="eastus")).result()
    assert [r.depth for r in arm.puts()] == [1, 2, 3, 4] and arm.critical_path() == 4


# -- size fallbacks ----------------------------------------------------------------------

def test_sku_not_available_falls_back_to_next_size(tmp_path):
    arm = FakeARM()
    arm.inject("virtualMachines", "SkuNotAvailable", "The requested size for resource is currently not available")
    b, rig = provision(arm, tmp_path)
    sizes = [r.body["properties"]["hardwareProfile"]["vmSize"] for r in arm.puts("virtualMachines")]
    assert sizes == list(DEFAULT_SIZES[:2])
    assert rig.facts["size"] == DEFAULT_SIZES[1] and arm.group_exists(rig.run_id)
    assert any("SkuNotAvailable" in line for line in b.logs)


def test_async_allocation_failure_removes_the_failed_vm_and_retries(tmp_path):
    arm = FakeARM()
    arm.inject("virtualMachines", "AllocationFailed", "Allocation failed. We do not have sufficient capacity",
               mode="async")
    _, rig = provision(arm, tmp_path)
    assert rig.facts["size"] == DEFAULT_SIZES[1]
    vm_deletes = [r for r in arm.requests if r.method == "DELETE" and "/virtualmachines/" in r.path.lower()]
    assert len(vm_deletes) == 1  # the failed VM held the NIC; it is removed before the retry
    assert arm.group_exists(rig.run_id)


def test_every_size_unavailable_deletes_the_group(tmp_path):
    arm = FakeARM()
    arm.inject("virtualMachines", "SkuNotAvailable", "not available", times=0)
    with pytest.raises(InfraError, match="no capacity.*japaneast.*--location") as err:
        provision(arm, tmp_path)
    assert "\n" not in str(err.value)
    assert len(arm.puts("virtualMachines")) == len(DEFAULT_SIZES)
    rg = only_group(arm)
    assert not arm.group_exists(rg) and rg in arm.deleted_groups
    assert not (tmp_path / "wd").exists()  # the run's keys go with it


def test_quota_exceeded_is_one_line_and_group_deleted(tmp_path):
    arm = FakeARM()
    arm.inject("virtualMachines", "OperationNotAllowed",
               "Operation could not be completed as it results in exceeding approved standardBSFamily Cores quota.",
               times=0)
    with pytest.raises(InfraError, match="quota exceeded.*Usage \\+ quotas") as err:
        provision(arm, tmp_path)
    assert "\n" not in str(err.value)
    assert only_group(arm) in arm.deleted_groups


# -- failure at each step ------------------------------------------------------------------

@pytest.mark.parametrize("rtype", ["virtualNetworks", "networkSecurityGroups", "publicIPAddresses",
                                   "networkInterfaces", "virtualMachines"])
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_failure_at_each_step_deletes_the_group(tmp_path, rtype, mode):
    arm = FakeARM()
    arm.inject(rtype, "InternalServerError", "boom", status=500, mode=mode)
    with pytest.raises(RigError, match="InternalServerError") as err:
        provision(arm, tmp_path)
    assert "\n" not in str(err.value)
    rg = only_group(arm)
    assert rg in arm.deleted_groups and not arm.group_exists(rg)
    assert not arm.resources  # nothing of the run is left


def test_timeout_deletes_the_group(tmp_path):
    arm = FakeARM()
    arm.inject("networkInterfaces", mode="hang")
    b = backend(arm, timeout=0.3)
    with pytest.raises(InfraError, match="did not finish the network interface rig-nic within 0.3s"):
        b.provision(spec(workdir=str(tmp_path / "wd")))
    assert only_group(arm) in arm.deleted_groups


def test_ctrl_c_while_waiting_on_a_poller_deletes_the_group(tmp_path):
    arm = FakeARM()
    arm.inject("virtualMachines", mode="interrupt")  # SIGINT at the main thread while it waits
    b = backend(arm)
    with pytest.raises(KeyboardInterrupt):
        b.provision(spec(workdir=str(tmp_path / "wd")))
    assert arm.interrupts == 1
    rg = only_group(arm)
    assert rg in arm.deleted_groups and not arm.group_exists(rg)
    assert any("interrupted" in line for line in b.logs)


def test_missing_permission_says_what_to_ask_for(tmp_path):
    arm = FakeARM()
    arm.inject("resourcegroups", "AuthorizationFailed", "The client 'x' with object id 'y' does not have "
               "authorization to perform action 'Microsoft.Resources/subscriptions/resourcegroups/write'", status=403)
    with pytest.raises(InfraError, match="ask an administrator for the Contributor role"):
        provision(arm, tmp_path)


def test_expired_token_says_log_in(tmp_path):
    arm = FakeARM()
    arm.inject("resourcegroups", "ExpiredAuthenticationToken", "The access token expiry UTC time is earlier "
               "than current UTC time.", status=401)
    with pytest.raises(InfraError, match="az login"):
        provision(arm, tmp_path)


# -- preflight and teardown ------------------------------------------------------------------

def test_preflight_passes_when_rules_are_in_effect(tmp_path):
    arm = FakeARM()
    b, rig = provision(arm, tmp_path)
    assert b.preflight(rig) == []
    assert any(r.method == "POST" and r.path.lower().endswith("/effectivenetworksecuritygroups") for r in arm.requests)


def test_preflight_reports_rules_not_in_effect(tmp_path):
    arm = FakeARM(effective_nsg=False)  # the seed's confound: rules added, not applied
    b, rig = provision(arm, tmp_path)
    problems = b.preflight(rig)
    assert len(problems) == 4
    assert all("in effect" in p and "not a path problem" in p for p in problems)
    assert any("ICMP" in p for p in problems) and any("TCP 80" in p for p in problems)


def test_teardown_deletes_group_and_keys(tmp_path):
    arm = FakeARM()
    b, rig = provision(arm, tmp_path)
    assert os.path.exists(rig.ssh.key_file)
    b.teardown(rig)
    assert not arm.group_exists(rig.run_id) and rig.run_id in arm.deleted_groups
    assert not os.path.exists(rig.workdir)
    b.teardown(rig)  # a second teardown of a gone group is not an error


# -- FreeBSD: refused before anything is created ---------------------------------------------

def test_freebsd_is_refused_before_any_request(tmp_path):
    arm = FakeARM()
    with pytest.raises(UsageError, match="FreeBSD.*host key"):
        provision(arm, tmp_path, image="freebsd")
    assert arm.requests == [] and not (tmp_path / "wd").exists()


SIGTERM_SCRIPT = """
import json, signal, sys
from rig.cli import _sigterm
from rig.backends.azure import AzureBackend
from rig.backends.azure.fake import FakeARM
from rig.backends.base import RunSpec
signal.signal(signal.SIGTERM, _sigterm)  # as rig's CLI does
arm = FakeARM()
arm.inject("virtualMachines", mode="hang")
b = AzureBackend(clients=arm.clients(), caller_ip=lambda: "198.51.100.7/32",
                 log=lambda s: print(s, flush=True), wait_ssh=False)
try:
    b.provision(RunSpec(backend="azure", options={"workdir": sys.argv[1]}))
except KeyboardInterrupt as exc:
    print(json.dumps({"why": str(exc), "deleted": arm.deleted_groups, "left": list(arm.groups)}), flush=True)
"""


def test_sigterm_during_provisioning_deletes_the_group(tmp_path):
    import json
    import signal
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", SIGTERM_SCRIPT, str(tmp_path / "wd")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stdout:  # readiness: the VM is being created (its poller waited on)
            if line.startswith("VM "):
                break
        else:
            pytest.fail(f"provisioning never reached the VM: {proc.stderr.read()}")
        proc.send_signal(signal.SIGTERM)
        out = proc.stdout.read()
        assert proc.wait(timeout=60) == 0, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
    result = json.loads(out.strip().splitlines()[-1])
    assert result["why"] == "SIGTERM" and len(result["deleted"]) == 1 and result["left"] == []
    assert not (tmp_path / "wd").exists()


# -- region fallback, and how long teardown waits -----------------------------------------------

def test_no_size_in_a_region_falls_back_to_the_next_region(tmp_path):
    arm = FakeARM()
    arm.inject("virtualMachines", "SkuNotAvailable", "not available here", times=0,
               when=lambda body: body["location"] == "japaneast")
    b, rig = provision(arm, tmp_path, location="japaneast,japanwest")
    groups = [r.path.rsplit("/", 1)[-1] for r in arm.puts("resourcegroups")]
    assert len(groups) == 2 and groups[0] in arm.deleted_groups
    assert rig.facts["region"] == "japanwest" and rig.facts["resource_group"] == groups[1]
    assert arm.group_exists(groups[1]) and arm.put_body("virtualMachines")["location"] == "japanwest"
    assert any("trying region japanwest" in line for line in b.logs)


def test_other_failures_do_not_move_to_another_region(tmp_path):
    arm = FakeARM()
    arm.inject("networkInterfaces", "InternalServerError", "boom", status=500)
    with pytest.raises(RigError, match="InternalServerError"):
        provision(arm, tmp_path, location="japaneast,japanwest")
    assert len(arm.puts("resourcegroups")) == 1


def test_teardown_returns_once_azure_accepted_the_deletion(tmp_path):
    arm = FakeARM()
    b, rig = provision(arm, tmp_path)
    arm.latency = 3600.0  # deleting takes "minutes": nobody waits for it
    b.teardown(rig)
    [delete] = [r for r in arm.requests if r.method == "DELETE"]
    assert delete.status == 202 and arm.group_exists(rig.run_id)
    assert any("accepted the deletion" in line for line in b.logs)


def test_teardown_can_wait_until_the_group_is_gone(tmp_path):
    arm = FakeARM()
    b = backend(arm, wait_delete=True)
    rig = b.provision(spec(workdir=str(tmp_path / "wd")))
    arm.latency = 0.2
    b.teardown(rig)
    assert not arm.group_exists(rig.run_id)


def test_missing_subscription_is_one_line_before_any_request(monkeypatch, tmp_path):
    monkeypatch.delenv("AZURE_SUBSCRIPTION_ID", raising=False)
    b = AzureBackend(caller_ip=lambda: CALLER, log=lambda s: None, wait_ssh=False)  # real clients, never built
    from rig.errors import UsageError

    with pytest.raises(UsageError, match="AZURE_SUBSCRIPTION_ID is not set"):
        b.provision(spec(workdir=str(tmp_path / "wd")))
