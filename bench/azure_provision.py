"""How long Azure provisioning waits, rig's waves against a one-at-a-time chain.

Both drive the real SDK clients against the fake ARM (rig.backends.azure.fake), where
every long-running operation takes LATENCY seconds. The reference is measured in the
same run: the same PUTs sent and awaited one after another. Prints seconds, sequential
waits on the critical path, and the ratio. No network.

    .venv/bin/python bench/azure_provision.py [LATENCY]
"""

from __future__ import annotations

import sys
import tempfile
import time

from azure.mgmt.compute import models as C
from azure.mgmt.network import models as N
from azure.mgmt.resource.resources.models import GenericResource, ResourceGroup

from rig.backends.azure import AzureBackend
from rig.backends.azure.fake import FakeARM
from rig.backends.base import RunSpec


def rig_waves(latency: float) -> tuple[float, int]:
    arm = FakeARM(latency=latency)
    b = AzureBackend(clients=arm.clients(), caller_ip=lambda: "198.51.100.7/32", log=lambda s: None, wait_ssh=False)
    with tempfile.TemporaryDirectory(prefix="rig-bench-") as workdir:  # the run's SSH keys go here
        t = time.monotonic()
        b.provision(RunSpec(backend="azure", options={"workdir": workdir}))
        took = time.monotonic() - t
    return took, arm.critical_path()


def one_at_a_time(latency: float) -> tuple[float, int]:
    arm = FakeARM(latency=latency)
    c = arm.clients()
    rg, loc = "serial", "eastus"
    t = time.monotonic()
    c.resource.resource_groups.create_or_update(rg, ResourceGroup(location=loc))
    c.network.virtual_networks.begin_create_or_update(rg, "v", N.VirtualNetwork(location=loc)).result()
    c.network.network_security_groups.begin_create_or_update(rg, "n", N.NetworkSecurityGroup(location=loc)).result()
    c.network.public_ip_addresses.begin_create_or_update(rg, "p", N.PublicIPAddress(location=loc)).result()
    c.network.network_interfaces.begin_create_or_update(rg, "nic", N.NetworkInterface(location=loc)).result()
    c.compute.virtual_machines.begin_create_or_update(rg, "vm", C.VirtualMachine(location=loc)).result()
    sub = c.subscription_id
    c.resource.resources.begin_create_or_update_by_id(
        f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.DevTestLab/schedules/shutdown-computevm-vm",
        GenericResource(location=loc, properties={}), api_version="2018-09-15").result()
    return time.monotonic() - t, arm.critical_path()


def main() -> None:
    latency = float(sys.argv[1]) if len(sys.argv) > 1 else 0.5
    rig_waves(0.0)  # warm the SDK imports
    ours, our_waits = rig_waves(latency)
    ref, ref_waits = one_at_a_time(latency)
    print(f"fake ARM, {latency:g} s per long-running operation")
    print(f"  rig (waves):        {ours:6.2f} s  {our_waits} sequential waits")
    print(f"  one at a time:      {ref:6.2f} s  {ref_waits} sequential waits")
    print(f"  ratio rig/reference: {ours / ref:.2f}")


if __name__ == "__main__":
    main()
