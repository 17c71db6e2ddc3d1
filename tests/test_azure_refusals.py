"""What real subscriptions and real capacity answer, against the fake ARM: each refusal
ends the run with one line naming what to do (or what to ask an administrator for), the
right exit code, and the resource group deleted.

The error bodies are the ones public threads and recordings show (tests/data/azure/README.md):
409 SkuNotAvailable / OperationNotAllowed, an asynchronous AllocationFailed, 429 with
Retry-After, 400 NicReservedForAnotherVm, 403 RequestDisallowedByPolicy, 409
MissingSubscriptionRegistration, 400 NicMustBeAttachedToRunningVmToGetEffectiveSecurityGroups.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rig.backends.azure import AzureBackend
from rig.backends.azure.fake import FakeARM
from rig.backends.azure.plan import DEFAULT_SIZES
from rig.backends.base import RunSpec
from rig.errors import RigError

CALLER = "198.51.100.7/32"
DATA = Path(__file__).parent / "data" / "azure"


def errors() -> dict:
    return json.loads((DATA / "errors.json").read_text())


def backend(arm: FakeARM, caller: str = CALLER, live: bool = False) -> AzureBackend:
    logs: list[str] = []
    b = AzureBackend(clients=arm.clients(live=live), caller_ip=lambda: caller, log=logs.append, wait_ssh=False)
    b.logs = logs  # type: ignore[attr-defined]
    return b


def provision(b: AzureBackend, tmp_path, **options):
    return b.provision(RunSpec(backend="azure", options={"location": "japaneast",
                                                         "workdir": str(tmp_path / "wd"), **options}))


def refused(arm: FakeARM, tmp_path, live: bool = False) -> RigError:
    with pytest.raises(RigError) as err:
        provision(backend(arm, live=live), tmp_path)
    msg = str(err.value)
    assert "\n" not in msg and len(msg) < 400, msg
    groups = [r.path.rsplit("/", 1)[-1] for r in arm.puts("resourcegroups")]
    assert groups and all(g in arm.deleted_groups for g in groups), "the resource group is left behind"
    assert not arm.resources and not (tmp_path / "wd").exists()
    return err.value


# -- capacity ------------------------------------------------------------------------------

def test_sku_not_available_everywhere(tmp_path):
    arm = FakeARM()
    e = errors()["SkuNotAvailable"]
    arm.inject("virtualMachines", body=e["body"], status=e["status"], times=0)
    err = refused(arm, tmp_path)
    assert err.exit_code == 3 and "no capacity" in str(err) and "--location" in str(err)
    assert len(arm.puts("virtualMachines")) == len(DEFAULT_SIZES)


def test_quota_names_what_to_ask_for(tmp_path):
    arm = FakeARM()
    e = errors()["OperationNotAllowed"]
    arm.inject("virtualMachines", body=e["body"], status=e["status"], times=0)
    err = refused(arm, tmp_path)
    assert err.exit_code == 3 and "ask an administrator to raise the vCPU quota" in str(err)


def test_async_allocation_failure_on_every_size(tmp_path):
    arm = FakeARM()
    arm.inject("virtualMachines", "AllocationFailed", errors()["AllocationFailed"]["body"]["error"]["message"],
               mode="async", times=0)
    err = refused(arm, tmp_path)
    assert err.exit_code == 3 and "AllocationFailed" in str(err)


def test_after_allocation_failed_the_next_size_gets_a_fresh_nic(tmp_path):
    """Azure holds the failed VM's NIC for 180 s: reusing it answers NicReservedForAnotherVm."""
    arm = FakeARM()
    arm.inject("virtualMachines", "AllocationFailed", "Allocation failed.", mode="async")
    rig = provision(backend(arm), tmp_path)
    nics = [r.body["properties"]["networkProfile"]["networkInterfaces"][0]["id"].rsplit("/", 1)[-1]
            for r in arm.puts("virtualMachines")]
    assert nics == ["rig-nic", "rig-nic-2"] and rig.facts["nic_name"] == "rig-nic-2"
    assert [r.status for r in arm.puts("virtualMachines")] == [201, 201]  # never NicReservedForAnotherVm
    pips = [r.path.rsplit("/", 1)[-1] for r in arm.puts("publicIPAddresses")]
    assert pips == ["rig-ip", "rig-ip-2"]
    assert rig.server_addr == arm.resources[arm.puts("publicIPAddresses")[1].path.lower()]["properties"]["ipAddress"]
    assert rig.server_addr != arm.public_ip  # the address of the IP on the NIC the VM has


def test_the_fake_holds_a_nic_after_its_vm_failed():
    """The fake does what the fix relies on: a VM PUT naming a held NIC is refused."""
    from azure.core.exceptions import HttpResponseError
    from azure.mgmt.compute import models as C
    from azure.mgmt.network import models as N
    from azure.mgmt.resource.resources.models import ResourceGroup

    arm = FakeARM()
    c = arm.clients()
    c.resource.resource_groups.create_or_update("rg", ResourceGroup(location="eastus"))
    nic = c.network.network_interfaces.begin_create_or_update("rg", "nic", N.NetworkInterface(location="eastus")).result()
    vm = C.VirtualMachine(location="eastus", properties=C.VirtualMachineProperties(
        network_profile=C.NetworkProfile(network_interfaces=[C.NetworkInterfaceReference(id=nic.id)])))
    arm.inject("virtualMachines", "AllocationFailed", "Allocation failed.", mode="async")
    with pytest.raises(HttpResponseError):
        c.compute.virtual_machines.begin_create_or_update("rg", "vm", vm).result()
    c.compute.virtual_machines.begin_delete("rg", "vm").result()
    with pytest.raises(HttpResponseError) as err:
        c.compute.virtual_machines.begin_create_or_update("rg", "vm", vm)
    assert err.value.error.code == "NicReservedForAnotherVm" and err.value.status_code == 400


def test_nic_reserved_is_one_line_if_azure_says_it_anyway(tmp_path):
    arm = FakeARM()
    e = errors()["NicReservedForAnotherVm"]
    arm.inject("virtualMachines", body=e["body"], status=e["status"])
    err = refused(arm, tmp_path)
    assert err.exit_code == 3 and "180 s" in str(err)


# -- throttling ------------------------------------------------------------------------------

def test_429_is_retried_after_the_time_azure_asks(tmp_path):
    arm = FakeARM()
    arm.inject("networkSecurityGroups", "TooManyRequests", "throttled", status=429, headers={"Retry-After": "17"})
    rig = provision(backend(arm, live=True), tmp_path)  # the live client options: the SDK's retry policy
    assert arm.group_exists(rig.run_id)
    assert [r.status for r in arm.puts("networkSecurityGroups")] == [429, 201]
    assert 17 in arm.sleeps  # the SDK slept what Azure asked for, through the transport


def test_429_that_does_not_stop_is_one_line(tmp_path):
    arm = FakeARM()
    arm.inject("networkSecurityGroups", "TooManyRequests", "throttled", status=429, headers={"Retry-After": "1"},
               times=0)
    err = refused(arm, tmp_path, live=True)
    assert err.exit_code == 3 and "throttled" in str(err)
    assert len(arm.puts("networkSecurityGroups")) == 4  # the default policy: 1 + 3 status retries
    assert arm.sleeps.count(1) >= 3


# -- what the subscription refuses -------------------------------------------------------------

def test_policy_denying_public_ips_names_the_policy_and_the_ask(tmp_path):
    arm = FakeARM()
    e = errors()["RequestDisallowedByPolicy"]
    arm.inject("networkInterfaces", body=e["body"], status=e["status"])  # the NIC carries the public IP
    err = refused(arm, tmp_path)
    msg = str(err)
    assert err.exit_code == 3 and "Azure Policy" in msg and "policy exemption" in msg
    assert "Network interfaces should not have public IPs" in msg


@pytest.mark.parametrize("rtype,namespace", [("networkSecurityGroups", "Microsoft.Network"),
                                             ("virtualMachines", "Microsoft.Compute")])
def test_unregistered_provider_says_what_to_ask_for(tmp_path, rtype, namespace):
    arm = FakeARM()
    e = errors()["MissingSubscriptionRegistration"]
    body = json.loads(json.dumps(e["body"]).replace("Microsoft.DevTestLab", namespace))
    arm.inject(rtype, body=body, status=e["status"])
    err = refused(arm, tmp_path)
    assert err.exit_code == 3 and f"az provider register --namespace {namespace}" in str(err)
    assert "ask an administrator" in str(err)


def test_unregistered_devtestlab_ends_the_run_and_says_what_to_ask_for(tmp_path):
    """No auto-shutdown schedule is no disposable VM: the run ends (exit 3), the group goes."""
    arm = FakeARM()
    e = errors()["MissingSubscriptionRegistration"]
    arm.inject("schedules", body=e["body"], status=e["status"])
    err = refused(arm, tmp_path)
    assert err.exit_code == 3 and "az provider register --namespace Microsoft.DevTestLab" in str(err)
    assert "ask an administrator" in str(err)


def test_a_transient_schedule_failure_only_costs_the_auto_shutdown(tmp_path):
    arm = FakeARM()
    arm.inject("schedules", body={"error": {"code": "InternalServerError", "message": "try again"}}, status=500)
    b = backend(arm)
    rig = provision(b, tmp_path)
    assert rig.facts["auto_shutdown"] == "false" and arm.group_exists(rig.run_id)
    [warning] = [line for line in b.logs if line.startswith("warning: no auto-shutdown")]
    assert "InternalServerError" in warning and "rig gc" in warning


# -- preflight: the rules in effect --------------------------------------------------------------

def test_preflight_when_the_vm_is_not_running(tmp_path):
    arm = FakeARM()
    b = backend(arm)
    rig = provision(b, tmp_path)
    arm.vm_running = False
    [problem] = b.preflight(rig)
    assert "not running" in problem and "az vm start" in problem and "added but not applied" not in problem


def test_preflight_says_the_address_changed_and_how_to_update(tmp_path):
    arm = FakeARM()
    rig = provision(backend(arm), tmp_path)  # rules written for CALLER
    later = backend(arm, caller="192.0.2.44/32")  # a kept rig, used from a new address
    [problem] = later.preflight(rig)
    assert "address changed" in problem and "198.51.100.7/32" in problem and "192.0.2.44/32" in problem
    assert "az network nsg rule update" in problem and "added but not applied" not in problem


def test_preflight_a_wider_allow_from_still_covers_the_caller(tmp_path):
    arm = FakeARM()
    b = AzureBackend(clients=arm.clients(), caller_ip=lambda: "198.51.100.99/32", log=lambda s: None, wait_ssh=False)
    rig = provision(b, tmp_path, allow_from="198.51.100.0/24")
    assert b.preflight(rig) == []


def test_preflight_a_subnet_nsg_must_allow_too(tmp_path):
    arm = FakeARM(subnet_nsg_rules=[])  # an NSG on the subnet with only Azure's default rules
    b = backend(arm)
    rig = provision(b, tmp_path)
    problems = b.preflight(rig)
    assert len(problems) == 4 and all("on the subnet" in p for p in problems)


def test_preflight_a_subnet_nsg_that_allows_passes(tmp_path):
    allow = [{"name": "allow-all-from-caller", "properties": {
        "protocol": "*", "access": "Allow", "direction": "Inbound", "priority": 200,
        "sourceAddressPrefix": CALLER, "destinationPortRange": "*"}}]
    arm = FakeARM(subnet_nsg_rules=allow)
    b = backend(arm)
    rig = provision(b, tmp_path)
    assert b.preflight(rig) == []
