"""A dual-stack Azure VM: with the caller's IPv6 in --allow-from, the plan and the fake
ARM's record show an IPv6 range in the VNet and subnet, a Standard static IPv6 public IP on
an IPv6 IP configuration of the NIC, NSG rules for the caller's /128 only, and facts that
send the probes to both families; all of it goes with the group. Without the caller's
IPv6 nothing IPv6 is created or opened, and the plan says why. No network: the fake ARM
answers the real SDK clients."""

from __future__ import annotations

import base64

import pytest
import yaml

from rig.backends.azure import AzureBackend
from rig.backends.azure.backend import dry_run
from rig.backends.azure.fake import FakeARM
from rig.backends.azure.plan import NO_CALLER6, SUBNET_PREFIX6, VNET_PREFIX6, make_plan, split_allow_from
from rig.backends.base import RunSpec
from rig.backends.facts import BackendFacts
from rig.errors import UsageError

CALLER = "198.51.100.7/32"
CALLER6 = "2001:db8:1234::7/128"
RULES6 = {("Icmp", "*"), ("Tcp", "22"), ("Tcp", "80"), ("Udp", "7")}


def spec(**options) -> RunSpec:
    return RunSpec(backend="azure", probes=("all",), options={"location": "japaneast", **options})


def provision(arm: FakeARM, tmp_path, allow_from: str):
    b = AzureBackend(clients=arm.clients(), caller_ip=lambda: CALLER, log=lambda s: None, wait_ssh=False)
    return b, b.provision(spec(allow_from=allow_from, workdir=str(tmp_path / "wd")))


def test_allow_from_takes_one_range_of_each_family():
    assert split_allow_from("203.0.113.7, 2001:db8::7") == ("203.0.113.7/32", "2001:db8::7/128")
    assert split_allow_from("2001:db8::7") == (None, "2001:db8::7/128")  # IPv4: detected at run time
    for bad in ("2001:db8::7,2001:db8::8", "203.0.113.7,203.0.113.8", "203.0.113.7,::/0"):
        with pytest.raises(UsageError):
            split_allow_from(bad)


def test_dry_run_lists_the_ipv6_address_range_and_rules():
    text = dry_run(spec(allow_from=f"{CALLER},{CALLER6}"))
    assert "Microsoft.Network/publicIPAddresses/rig-ip6" in text
    assert VNET_PREFIX6 in text and SUBNET_PREFIX6 in text
    for prio, proto, port in ((200, "Icmp", "*"), (210, "Tcp", "22"), (220, "Tcp", "80"), (230, "Udp", "7")):
        assert f"{prio} Allow {proto:<4} port {port:<3} from {CALLER6}" in text
    assert NO_CALLER6 not in text


def test_without_the_callers_ipv6_the_plan_says_so_and_opens_nothing():
    plan = make_plan({"allow_from": CALLER})
    assert not plan.dual_stack
    assert all(":" not in r.source for r in plan.rules())
    text = dry_run(spec(allow_from=CALLER))
    assert "rig-ip6" not in text and VNET_PREFIX6 not in text and NO_CALLER6 in text


def test_provision_builds_a_dual_stack_nic(tmp_path):
    arm = FakeARM()
    _, rig = provision(arm, tmp_path, f"{CALLER},{CALLER6}")
    vnet = arm.put_body("virtualNetworks")["properties"]
    assert vnet["addressSpace"]["addressPrefixes"] == ["10.77.0.0/16", VNET_PREFIX6]
    assert vnet["subnets"][0]["properties"]["addressPrefixes"] == ["10.77.1.0/24", SUBNET_PREFIX6]
    pips = {r.path.rsplit("/", 1)[-1]: r.body for r in arm.puts("publicIPAddresses")}
    assert sorted(pips) == ["rig-ip", "rig-ip6"]
    assert pips["rig-ip6"]["sku"]["name"] == "Standard"
    assert pips["rig-ip6"]["properties"]["publicIPAddressVersion"] == "IPv6"
    assert pips["rig-ip6"]["properties"]["publicIPAllocationMethod"] == "Static"
    configs = arm.put_body("networkInterfaces")["properties"]["ipConfigurations"]
    six = configs[-1]["properties"]
    assert six["privateIPAddressVersion"] == "IPv6" and six["primary"] is False
    assert six["publicIPAddress"]["id"].endswith("/publicIPAddresses/rig-ip6")
    assert six["subnet"]["id"].endswith("/subnets/rig-subnet")
    rules = arm.put_body("networkSecurityGroups")["properties"]["securityRules"]
    allows6 = {(r["properties"]["protocol"], r["properties"]["destinationPortRange"])
               for r in rules if r["properties"]["sourceAddressPrefix"] == CALLER6}
    assert allows6 == RULES6
    assert {r["properties"]["sourceAddressPrefix"] for r in rules} == {CALLER, CALLER6, "*"}
    # the pipeline probes both families, and the services listen on the private IPv6 address
    known = BackendFacts.from_facts(rig.facts)
    assert known.server_addr6 == rig.facts["server_addr6"] and known.server_addr6.startswith("2001:db8:77::")
    assert rig.facts["rig_listen_addr6"].startswith("fd77:7700:7700:1::")
    # the VM asks for its private IPv6 address by DHCPv6 (not every image does by default)
    cfg = yaml.safe_load(base64.b64decode(arm.put_body("virtualMachines")["properties"]["osProfile"]["customData"]))
    (drop_in,) = cfg["write_files"]
    assert yaml.safe_load(drop_in["content"]) == {"network": {"version": 2, "ethernets": {"eth0": {"dhcp6": True}}}}
    assert cfg["runcmd"] == [["netplan", "apply"]]


def test_preflight_checks_the_ipv6_rules_too(tmp_path):
    arm = FakeARM()
    b, rig = provision(arm, tmp_path, f"{CALLER},{CALLER6}")
    assert b.preflight(rig) == []
    rig.facts["allow_from6"] = "2001:db8:9999::1/128"  # rules written for another IPv6 caller
    assert any("2001:db8:9999::1/128" in p for p in b.preflight(rig))


def test_without_the_callers_ipv6_nothing_ipv6_is_built(tmp_path):
    arm = FakeARM()
    _, rig = provision(arm, tmp_path, CALLER)
    assert [r.path.rsplit("/", 1)[-1] for r in arm.puts("publicIPAddresses")] == ["rig-ip"]
    vnet = arm.put_body("virtualNetworks")["properties"]
    assert vnet["addressSpace"]["addressPrefixes"] == ["10.77.0.0/16"]
    assert len(arm.put_body("networkInterfaces")["properties"]["ipConfigurations"]) == 1
    assert "server_addr6" not in rig.facts and "rig_listen_addr6" not in rig.facts
    cfg = yaml.safe_load(base64.b64decode(arm.put_body("virtualMachines")["properties"]["osProfile"]["customData"]))
    assert "write_files" not in cfg and "runcmd" not in cfg


def test_a_retried_vm_gets_a_fresh_ipv6_address_too(tmp_path):
    arm = FakeARM()
    arm.inject("virtualMachines", "AllocationFailed", "Allocation failed. We do not have sufficient capacity",
               mode="async")
    _, rig = provision(arm, tmp_path, f"{CALLER},{CALLER6}")
    pips = sorted(r.path.rsplit("/", 1)[-1] for r in arm.puts("publicIPAddresses"))
    assert pips == ["rig-ip", "rig-ip-2", "rig-ip6", "rig-ip6-2"]
    six = arm.puts("networkInterfaces")[-1].body["properties"]["ipConfigurations"][-1]["properties"]
    assert six["publicIPAddress"]["id"].endswith("/publicIPAddresses/rig-ip6-2")
    assert rig.facts["server_addr6"]


def test_teardown_deletes_the_ipv6_address_with_the_group(tmp_path):
    arm = FakeARM()
    b, rig = provision(arm, tmp_path, f"{CALLER},{CALLER6}")
    b.teardown(rig)
    assert not arm.group_exists(rig.run_id) and rig.run_id in arm.deleted_groups
    assert not any(r.get("type") == "Microsoft.Network/publicIPAddresses" for r in arm.resources.values())
