"""`--probes nat` on Azure: the plan, the fake ARM's record of what was created (a second
Standard public IP on a second IP configuration of the NIC, the responder's ports open
from the caller only, the address installed by cloud-init) and the teardown that deletes
it with the group. No network: the fake ARM answers the real SDK clients."""

from __future__ import annotations

import base64

import yaml

from rig.backends.azure import AzureBackend
from rig.backends.azure.backend import dry_run
from rig.backends.azure.fake import FakeARM
from rig.backends.azure.plan import make_plan, render_plan
from rig.backends.base import RunSpec
from rig.nat.responder import plan_from

CALLER = "198.51.100.7/32"
NAT_RULES = {("Udp", "3478-3479"), ("Tcp", "3478-3479")}


def spec(probes: tuple[str, ...], **options) -> RunSpec:
    return RunSpec(backend="azure", probes=probes, options={"location": "japaneast", **options})


def provision(arm: FakeARM, tmp_path, probes=("all", "nat")):
    b = AzureBackend(clients=arm.clients(), caller_ip=lambda: CALLER, log=lambda s: None, wait_ssh=False)
    return b, b.provision(spec(probes, workdir=str(tmp_path / "wd")))


def test_plan_and_dry_run_show_the_second_ip_and_its_rules():
    text = render_plan(make_plan({"allow_from": CALLER}, nat=True))
    assert "Microsoft.Network/publicIPAddresses/rig-ip-nat" in text
    assert "140 Allow Udp  port 3478-3479 from 198.51.100.7/32" in text
    assert "150 Allow Tcp  port 3478-3479 from 198.51.100.7/32" in text
    plain = render_plan(make_plan({"allow_from": CALLER}))
    assert "rig-ip-nat" not in plain and "3478" not in plain
    # the CLI's path: --probes decides (the price lookup fails closed: conftest points it at loopback)
    assert "rig-ip-nat" in dry_run(spec(("icmp", "nat"), allow_from=CALLER))
    assert "rig-ip-nat" not in dry_run(spec(("icmp",), allow_from=CALLER))


def test_provision_creates_the_second_ip_configuration(tmp_path):
    arm = FakeARM()
    _, rig = provision(arm, tmp_path)
    pips = [r.path.rsplit("/", 1)[-1] for r in arm.puts("publicIPAddresses")]
    assert sorted(pips) == ["rig-ip", "rig-ip-nat"]
    rules = arm.put_body("networkSecurityGroups")["properties"]["securityRules"]
    allows = {(r["properties"]["protocol"], r["properties"]["destinationPortRange"]): r["properties"]
              for r in rules if r["properties"]["access"] == "Allow"}
    assert NAT_RULES <= set(allows)
    assert all(allows[k]["sourceAddressPrefix"] == CALLER for k in NAT_RULES)
    configs = arm.put_body("networkInterfaces")["properties"]["ipConfigurations"]
    assert [c["properties"].get("primary") for c in configs] == [True, False]
    nat = configs[1]["properties"]
    assert nat["publicIPAddress"]["id"].endswith("/publicIPAddresses/rig-ip-nat")
    assert (nat["privateIPAllocationMethod"], nat["privateIPAddress"]) == ("Static", "10.77.1.200")
    # the VM configures the address Azure's DHCP does not give it
    vm = arm.put_body("virtualMachines")["properties"]
    cfg = yaml.safe_load(base64.b64decode(vm["osProfile"]["customData"]))
    assert ["ip", "address", "add", "10.77.1.200/24", "dev", "eth0"] in cfg["runcmd"]
    # the responder's plan: both public IPs, each bound as the private address it reaches
    plan = plan_from(rig.facts, rig.server_addr)
    assert plan.public[0] == rig.server_addr and len(set(plan.public)) == 2
    assert plan.local == (rig.facts["private_ip"], "10.77.1.200")


def test_without_nat_nothing_changes(tmp_path):
    arm = FakeARM()
    _, rig = provision(arm, tmp_path, probes=("icmp", "tcp"))
    assert [r.path.rsplit("/", 1)[-1] for r in arm.puts("publicIPAddresses")] == ["rig-ip"]
    assert len(arm.put_body("networkInterfaces")["properties"]["ipConfigurations"]) == 1
    assert "nat_addrs" not in rig.facts
    vm = arm.put_body("virtualMachines")["properties"]
    assert "runcmd" not in yaml.safe_load(base64.b64decode(vm["osProfile"]["customData"]))


def test_a_retried_vm_gets_a_fresh_pair_of_addresses(tmp_path):
    arm = FakeARM()
    arm.inject("virtualMachines", "AllocationFailed", "Allocation failed. We do not have sufficient capacity",
               mode="async")
    _, rig = provision(arm, tmp_path)
    pips = sorted(r.path.rsplit("/", 1)[-1] for r in arm.puts("publicIPAddresses"))
    assert pips == ["rig-ip", "rig-ip-2", "rig-ip-nat", "rig-ip-nat-2"]
    nic = arm.puts("networkInterfaces")[-1].body["properties"]["ipConfigurations"][1]["properties"]
    assert nic["privateIPAddress"] == "10.77.1.201"  # the failed VM's NIC still holds .200
    assert plan_from(rig.facts, rig.server_addr).local[1] == "10.77.1.201"


def test_teardown_deletes_both_ips_with_the_group(tmp_path):
    arm = FakeARM()
    b, rig = provision(arm, tmp_path)
    assert arm.group_exists(rig.run_id)
    b.teardown(rig)
    assert not arm.group_exists(rig.run_id) and rig.run_id in arm.deleted_groups
    assert not any(r.get("type") == "Microsoft.Network/publicIPAddresses" for r in arm.resources.values())
