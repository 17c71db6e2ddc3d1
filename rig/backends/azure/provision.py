"""Build what a Plan says in Azure, wave by wave, and delete it on any failure.

Critical path (each arrow is one wait): resource group -> {VNet, NSG, public IP}
started together -> NIC (NSG on the NIC) -> VM (size fallbacks) -> auto-shutdown
schedule. Within a wave every ``begin_*`` call is sent before any poller is waited on,
so the wave costs one wait, not one per resource.

If anything fails — an ARM error, a time-out, Ctrl-C or SIGTERM while a poller is being
waited on — the resource group is deleted before the error goes up: the caller never
holds a half-built rig it would have to clean up. Errors become one line (errors.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

from rig.backends.azure import errors as E
from rig.backends.azure.cloudinit import RunKeys, custom_data
from rig.backends.azure.credentials import Clients
from rig.backends.azure.nsg import security_rules
from rig.backends.azure.plan import Plan
from rig.errors import InfraError

DEFAULT_TIMEOUT = 900.0  # seconds for one wave
DELETE_TIMEOUT = 1200.0  # deleting a resource group takes minutes
SCHEDULE_API = "2018-09-15"


@dataclass(frozen=True)
class Provisioned:
    """What provisioning produced: the facts the Rig is built from."""

    public_ip: str
    private_ip: str
    size: str
    vm_name: str
    nic_name: str
    host_key: str  # pinned "ssh-ed25519 AAAA..."
    auto_shutdown: bool
    waits: int  # sequential waits on the critical path (for tests and the manifest)


def _id(sub: str, rg: str, provider: str, *parts: str) -> str:
    return f"/subscriptions/{sub}/resourceGroups/{rg}/providers/{provider}/" + "/".join(parts)


class Provisioner:
    def __init__(self, clients: Clients, plan: Plan, keys: RunKeys, source: str, *,
                 timeout: float = DEFAULT_TIMEOUT, delete_timeout: float = DELETE_TIMEOUT,
                 wait_delete: bool = False, log: Callable[[str], None] = lambda line: None):
        self.c = clients
        self.plan = plan
        self.keys = keys
        self.source = source  # the caller's CIDR the NSG allows
        self.timeout = timeout
        self.delete_timeout = delete_timeout
        self.wait_delete = wait_delete  # False: Azure accepted the deletion; it goes on without us
        self.log = log
        self.waits = 0
        self._doing = "starting"

    # -- the one public entry ---------------------------------------------------------
    def create(self) -> Provisioned:
        try:
            return self._create()
        except BaseException as exc:
            interrupted = isinstance(exc, (KeyboardInterrupt, SystemExit))
            self.log(f"{'interrupted' if interrupted else 'failed'} while {self._doing}: "
                     f"deleting resource group {self.plan.resource_group}")
            try:
                self.delete_group()
            except Exception as cleanup:  # noqa: BLE001 - the first error is the one to report
                self.log(f"could not delete {self.plan.resource_group}: {cleanup}; run 'rig gc'")
            if interrupted:
                raise
            raise E.to_rig_error(exc, self._doing, location=self.plan.location, sizes=self.plan.sizes) from exc

    def delete_group(self, wait: bool | None = None) -> bool:
        """Delete the run's resource group; True once Azure accepted (and, if wait, finished) it.

        A second Ctrl-C while waiting leaves Azure deleting in the background.
        """
        wait = self.wait_delete if wait is None else wait
        return delete_group(self.c, self.plan.resource_group, wait=wait, timeout=self.delete_timeout, log=self.log)

    # -- waves ------------------------------------------------------------------------
    def _wait(self, pollers: dict[str, Any]) -> dict[str, Any]:
        """One wait on the critical path: every poller of the wave, within one deadline."""
        self.waits += 1
        deadline = time.monotonic() + self.timeout
        results = {}
        for name, poller in pollers.items():
            poller.wait(timeout=max(0.0, deadline - time.monotonic()))
            if not poller.done():
                raise E.ProvisionTimeout(f"Azure did not finish {name} within {self.timeout:g}s "
                                         f"({self.plan.location}); try again or another --location")
            results[name] = poller.result()
        return results

    def _create(self) -> Provisioned:
        from azure.mgmt.network import models as N
        from azure.mgmt.resource.resources.models import ResourceGroup

        p, c, sub, rg = self.plan, self.c, self.c.subscription_id, self.plan.resource_group
        n = p.names
        tags = p.tags

        self._doing = f"creating resource group {rg}"
        self.log(f"resource group {rg} in {p.location}")
        c.resource.resource_groups.create_or_update(rg, ResourceGroup(location=p.location, tags=tags))
        self.waits += 1

        self._doing = "creating the network (VNet, NSG, public IP)"
        self.log("network: VNet, NSG (inbound from %s only), static public IP — together" % self.source)
        vnet = c.network.virtual_networks.begin_create_or_update(rg, n["vnet"], N.VirtualNetwork(
            location=p.location, tags=tags, properties=N.VirtualNetworkPropertiesFormat(
                address_space=N.AddressSpace(address_prefixes=["10.77.0.0/16"]),
                subnets=[N.Subnet(name=n["subnet"], properties=N.SubnetPropertiesFormat(address_prefix="10.77.1.0/24"))])))
        nsg = c.network.network_security_groups.begin_create_or_update(rg, n["nsg"], N.NetworkSecurityGroup(
            location=p.location, tags=tags, properties=N.NetworkSecurityGroupPropertiesFormat(
                security_rules=security_rules(p.rules(self.source)))))
        pip = c.network.public_ip_addresses.begin_create_or_update(rg, n["pip"], N.PublicIPAddress(
            location=p.location, tags=tags, sku=N.PublicIPAddressSku(name="Standard", tier="Regional"),
            properties=N.PublicIPAddressPropertiesFormat(public_ip_allocation_method="Static",
                                                         public_ip_address_version="IPv4")))
        net = self._wait({"the virtual network": vnet, "the network security group": nsg, "the public IP": pip})
        public_ip = net["the public IP"].properties.ip_address

        self._doing = "creating the network interface"
        subnet_id = _id(sub, rg, "Microsoft.Network", "virtualNetworks", n["vnet"], "subnets", n["subnet"])
        nic = c.network.network_interfaces.begin_create_or_update(rg, n["nic"], N.NetworkInterface(
            location=p.location, tags=tags, properties=N.NetworkInterfacePropertiesFormat(
                network_security_group=N.NetworkSecurityGroup(id=net["the network security group"].id),
                ip_configurations=[N.NetworkInterfaceIPConfiguration(
                    name="ipconfig1", properties=N.NetworkInterfaceIPConfigurationPropertiesFormat(
                        private_ip_allocation_method="Dynamic", subnet=N.Subnet(id=subnet_id),
                        public_ip_address=N.PublicIPAddress(id=net["the public IP"].id)))])))
        nic_res = self._wait({"the network interface": nic})["the network interface"]
        private_ip = nic_res.properties.ip_configurations[0].properties.private_ip_address or ""

        if p.image.plan:
            self._doing = "accepting the image's marketplace terms"
            self._accept_terms()

        size = self._create_vm(nic_res.id)

        host_key = self.keys.host_public
        if not p.image.cloud_init:
            self._doing = "fetching the VM's host key through Azure run-command"
            host_key = self._host_key_via_run_command()

        self._doing = "creating the auto-shutdown schedule"
        auto = self._auto_shutdown()
        if not public_ip:
            public_ip = c.network.public_ip_addresses.get(rg, n["pip"]).properties.ip_address
        if not public_ip:
            raise InfraError(f"Azure assigned no address to public IP {n['pip']}")
        return Provisioned(public_ip, private_ip, size, n["vm"], n["nic"], host_key, auto, self.waits)

    # -- the VM, with size fallbacks ------------------------------------------------------
    def _vm_body(self, size: str, nic_id: str):
        from azure.mgmt.compute import models as C

        p = self.plan
        image = p.image
        os_profile = C.OSProfile(
            computer_name=p.vm_name, admin_username=p.admin_user,
            linux_configuration=C.LinuxConfiguration(
                disable_password_authentication=True,
                ssh=C.SshConfiguration(public_keys=[C.SshPublicKey(
                    path=f"/home/{p.admin_user}/.ssh/authorized_keys", key_data=self.keys.login_public)])))
        if image.cloud_init:
            os_profile.custom_data = custom_data(self.keys)
        vm = C.VirtualMachine(
            location=p.location, tags=p.tags,
            properties=C.VirtualMachineProperties(
                hardware_profile=C.HardwareProfile(vm_size=size),
                storage_profile=C.StorageProfile(
                    image_reference=C.ImageReference(publisher=image.publisher, offer=image.offer,
                                                     sku=image.sku, version=image.version),
                    os_disk=C.OSDisk(create_option="FromImage", delete_option="Delete",
                                     managed_disk=C.ManagedDiskParameters(storage_account_type="StandardSSD_LRS"))),
                os_profile=os_profile,
                network_profile=C.NetworkProfile(network_interfaces=[C.NetworkInterfaceReference(
                    id=nic_id, properties=C.NetworkInterfaceReferenceProperties(primary=True))]),
                diagnostics_profile=C.DiagnosticsProfile(boot_diagnostics=C.BootDiagnostics(enabled=True))))
        if image.plan:
            vm.plan = C.Plan(name=image.sku, publisher=image.publisher, product=image.offer)
        return vm

    def _create_vm(self, nic_id: str) -> str:
        p, rg = self.plan, self.plan.resource_group
        vms = self.c.compute.virtual_machines
        last: BaseException | None = None
        for i, size in enumerate(p.sizes):
            self._doing = f"creating VM {p.vm_name} ({size})"
            self.log(f"VM {p.vm_name}: {size}, {p.image.urn}")
            created = False
            try:
                poller = vms.begin_create_or_update(rg, p.vm_name, self._vm_body(size, nic_id))
                created = True
                self._wait({f"VM {p.vm_name} ({size})": poller})
                return size
            except E.ProvisionTimeout:
                raise
            except Exception as exc:
                kind = E.kind_of(exc)
                if kind not in (E.SIZE_UNAVAILABLE, E.QUOTA) or i == len(p.sizes) - 1:
                    raise
                code, _ = E.code_and_message(exc)
                self.log(f"{size} not available in {p.location} ({code}); trying {p.sizes[i + 1]}")
                last = exc
                if created:  # an async failure leaves a failed VM holding the NIC
                    self._doing = f"removing the failed VM {p.vm_name}"
                    self._wait({f"removal of failed VM {p.vm_name}": vms.begin_delete(rg, p.vm_name)})
        raise last or InfraError("no VM size to try")  # pragma: no cover - loop always returns or raises

    # -- trust on images without cloud-init ------------------------------------------------
    def _host_key_via_run_command(self) -> str:
        from azure.mgmt.compute.models import RunCommandInput

        poller = self.c.compute.virtual_machines.begin_run_command(
            self.plan.resource_group, self.plan.vm_name,
            RunCommandInput(command_id="RunShellScript", script=["cat /etc/ssh/ssh_host_ed25519_key.pub"]))
        result = self._wait({"run-command (host key)": poller})["run-command (host key)"]
        for status in (result.value or []):
            for line in (status.message or "").splitlines():
                parts = line.strip().split()
                if len(parts) >= 2 and parts[0] == "ssh-ed25519":
                    return f"{parts[0]} {parts[1]}"
        raise InfraError(f"Azure run-command did not return the host key of {self.plan.vm_name}; "
                         "refusing to trust the key the VM offers on first contact")

    def _accept_terms(self) -> None:
        """Accept the marketplace terms of a plan image (generic ARM call, no extra SDK)."""
        from azure.mgmt.resource.resources.models import GenericResource

        img = self.plan.image
        rid = (f"/subscriptions/{self.c.subscription_id}/providers/Microsoft.MarketplaceOrdering/offerTypes/"
               f"virtualmachine/publishers/{img.publisher}/offers/{img.offer}/plans/{img.sku}/agreements/current")
        current = self.c.resource.resources.get_by_id(rid, api_version="2021-01-01")
        props = dict(current.properties or {})
        if props.get("accepted"):
            return
        props["accepted"] = True
        poller = self.c.resource.resources.begin_create_or_update_by_id(
            rid, GenericResource(properties=props), api_version="2021-01-01")
        self._wait({"marketplace terms": poller})

    # -- cost bound ---------------------------------------------------------------------
    def _auto_shutdown(self) -> bool:
        """DevTestLab schedule shutdown-computevm-<vm> at expires-at (UTC). Best effort:
        the expires-at tag and 'rig gc' still bound the cost if it cannot be made."""
        from azure.mgmt.resource.resources.models import GenericResource

        p, sub, rg = self.plan, self.c.subscription_id, self.plan.resource_group
        vm_id = _id(sub, rg, "Microsoft.Compute", "virtualMachines", p.vm_name)
        rid = _id(sub, rg, "Microsoft.DevTestLab", "schedules", f"shutdown-computevm-{p.vm_name}")
        body = GenericResource(location=p.location, tags=p.tags, properties={
            "status": "Enabled", "taskType": "ComputeVmShutdownTask",
            "dailyRecurrence": {"time": p.expires_at.strftime("%H%M")},
            "timeZoneId": "UTC", "targetResourceId": vm_id,
            "notificationSettings": {"status": "Disabled", "timeInMinutes": 30}})
        try:
            poller = self.c.resource.resources.begin_create_or_update_by_id(rid, body, api_version=SCHEDULE_API)
            self._wait({"the auto-shutdown schedule": poller})
            return True
        except E.ProvisionTimeout:
            raise
        except Exception as exc:  # noqa: BLE001 - reported, and the tag still bounds the cost
            code, message = E.code_and_message(exc)
            self.log(f"warning: no auto-shutdown schedule ({code or type(exc).__name__}: {message[:100]}); "
                     "the expires-at tag and 'rig gc' still apply")
            return False


def delete_group(clients: Clients, rg: str, *, wait: bool = True, timeout: float = DELETE_TIMEOUT,
                 log: Callable[[str], None] = lambda line: None) -> bool:
    """Delete resource group ``rg``; a group that is already gone counts as deleted."""
    try:
        poller = clients.resource.resource_groups.begin_delete(rg)
    except KeyboardInterrupt:
        log(f"interrupted before Azure accepted the deletion: delete {rg} with 'rig gc' or the portal")
        raise
    except Exception as exc:  # noqa: BLE001
        if E.kind_of(exc) == E.NOT_FOUND:
            return True
        log(f"could not delete resource group {rg}: {E.code_and_message(exc)[0] or exc}")
        raise E.to_rig_error(exc, f"deleting resource group {rg}") from exc
    if not wait:
        log(f"Azure accepted the deletion of {rg}; it finishes in a few minutes ('rig ls' shows it until then)")
        return True
    try:
        poller.wait(timeout=timeout)
    except KeyboardInterrupt:
        log(f"Azure is still deleting {rg} in the background ('rig ls' shows it until it is gone)")
        return True
    if not poller.done():
        log(f"Azure is still deleting {rg} after {timeout:g}s; it continues in the background")
        return True
    try:
        poller.result()
    except Exception as exc:  # noqa: BLE001
        if E.kind_of(exc) != E.NOT_FOUND:
            raise E.to_rig_error(exc, f"deleting resource group {rg}") from exc
    return True
