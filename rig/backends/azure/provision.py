"""Build what a Plan says in Azure, wave by wave, and delete it on any failure.

Critical path (each arrow is one wait): resource group -> {VNet, NSG, public IP}
started together -> NIC (NSG on the NIC) -> VM (size fallbacks) -> auto-shutdown
schedule. Within a wave every ``begin_*`` call is sent before any poller is waited on,
so the wave costs one wait, not one per resource. A size that fails asynchronously
(AllocationFailed) leaves a failed VM: it is deleted and the next size gets a fresh NIC
and public IP, since Azure holds the old NIC for 180 s (NicReservedForAnotherVm).

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
from rig.backends.azure.plan import SUBNET_PREFIX6, VNET_PREFIX6, Plan, nat_private_ip
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
    nat_public_ip: str = ""  # --probes nat: the NIC's second public IP (rig.nat's responder), and
    nat_private_ip: str = ""  # the private address it reaches on the VM
    public_ip6: str = ""  # dual stack: the NIC's IPv6 public IP, and
    private_ip6: str = ""  # the private (ULA) address Azure translates it to on the VM


@dataclass(frozen=True)
class _Nic:
    """A network interface the VM may use, with the public IP on it."""

    name: str
    id: str
    pip_name: str
    public_ip: str
    private_ip: str
    nat_pip_name: str = ""  # the second public IP, on the NAT responder's IP configuration
    nat_private_ip: str = ""
    pip6_name: str = ""  # dual stack: the IPv6 public IP, on the IPv6 IP configuration
    private_ip6: str = ""


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
        self._nsg_id = ""  # the NSG every NIC of the run carries

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

        p, c, rg = self.plan, self.c, self.plan.resource_group
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
                address_space=N.AddressSpace(address_prefixes=["10.77.0.0/16", *([VNET_PREFIX6] if p.dual_stack else [])]),
                subnets=[N.Subnet(name=n["subnet"], properties=self._subnet_properties())])))
        nsg = c.network.network_security_groups.begin_create_or_update(rg, n["nsg"], N.NetworkSecurityGroup(
            location=p.location, tags=tags, properties=N.NetworkSecurityGroupPropertiesFormat(
                security_rules=security_rules(p.rules(self.source)))))
        wave = {"the virtual network": vnet, "the network security group": nsg,
                "the public IP": self._begin_public_ip(n["pip"])}
        if p.nat:
            wave["the NAT responder's public IP"] = self._begin_public_ip(n["pip_nat"])
        if p.dual_stack:
            wave["the IPv6 public IP"] = self._begin_public_ip(n["pip6"], version="IPv6")
        net = self._wait(wave)
        self._nsg_id = net["the network security group"].id

        nic = self._network_interface(n["nic"], net["the public IP"], net.get("the NAT responder's public IP"),
                                      pip6=net.get("the IPv6 public IP"))
        size, nic = self._create_vm(nic)

        self._doing = "creating the auto-shutdown schedule"
        auto = self._auto_shutdown()
        public_ip = nic.public_ip or c.network.public_ip_addresses.get(rg, nic.pip_name).properties.ip_address
        if not public_ip:
            raise InfraError(f"Azure assigned no address to public IP {nic.pip_name}")
        nat_public = ""
        if nic.nat_pip_name:
            nat_public = c.network.public_ip_addresses.get(rg, nic.nat_pip_name).properties.ip_address or ""
            if not nat_public:
                raise InfraError(f"Azure assigned no address to public IP {nic.nat_pip_name}")
        public6 = ""
        if nic.pip6_name:
            public6 = c.network.public_ip_addresses.get(rg, nic.pip6_name).properties.ip_address or ""
            if not public6 or not nic.private_ip6:
                raise InfraError(f"Azure assigned no IPv6 address to public IP {nic.pip6_name} or its IP configuration")
        return Provisioned(public_ip, nic.private_ip, size, n["vm"], nic.name, self.keys.host_public, auto,
                           self.waits, nat_public_ip=nat_public, nat_private_ip=nic.nat_private_ip,
                           public_ip6=public6, private_ip6=nic.private_ip6)

    def _subnet_properties(self):
        """The subnet: rig's IPv4 /24, and the IPv6 /64 beside it when the VM is dual-stack."""
        from azure.mgmt.network import models as N

        if not self.plan.dual_stack:
            return N.SubnetPropertiesFormat(address_prefix="10.77.1.0/24")
        return N.SubnetPropertiesFormat(address_prefixes=["10.77.1.0/24", SUBNET_PREFIX6])

    # -- the NIC (and its public IP) ----------------------------------------------------------
    def _begin_public_ip(self, name: str, version: str = "IPv4"):
        from azure.mgmt.network import models as N

        p = self.plan
        return self.c.network.public_ip_addresses.begin_create_or_update(
            p.resource_group, name, N.PublicIPAddress(
                location=p.location, tags=p.tags, sku=N.PublicIPAddressSku(name="Standard", tier="Regional"),
                properties=N.PublicIPAddressPropertiesFormat(public_ip_allocation_method="Static",
                                                             public_ip_address_version=version)))

    def _network_interface(self, name: str, pip, nat_pip=None, attempt: int = 0, pip6=None) -> "_Nic":
        """Create NIC ``name`` in the subnet, with the NSG and public IP ``pip`` on it (one wait);
        ``nat_pip`` (--probes nat) on a second IP configuration with a static private address;
        ``pip6`` (dual stack) on an IPv6 one, whose private address Azure gives the VM by DHCPv6."""
        from azure.mgmt.network import models as N

        p, rg = self.plan, self.plan.resource_group
        self._doing = f"creating the network interface {name}"
        subnet_id = _id(self.c.subscription_id, rg, "Microsoft.Network", "virtualNetworks", p.names["vnet"],
                        "subnets", p.names["subnet"])
        poller = self.c.network.network_interfaces.begin_create_or_update(rg, name, N.NetworkInterface(
            location=p.location, tags=p.tags, properties=N.NetworkInterfacePropertiesFormat(
                network_security_group=N.NetworkSecurityGroup(id=self._nsg_id),
                ip_configurations=[N.NetworkInterfaceIPConfiguration(
                    name="ipconfig1", properties=N.NetworkInterfaceIPConfigurationPropertiesFormat(
                        private_ip_allocation_method="Dynamic", subnet=N.Subnet(id=subnet_id),
                        public_ip_address=N.PublicIPAddress(id=pip.id), primary=True)),
                    *self._nat_ip_configuration(subnet_id, nat_pip, attempt),
                    *self._ip6_configuration(subnet_id, pip6)])))
        res = self._wait({f"the network interface {name}": poller})[f"the network interface {name}"]
        private_ip = res.properties.ip_configurations[0].properties.private_ip_address or ""
        six = ({"pip6_name": pip6.name, "private_ip6": next(
            (c.properties.private_ip_address or "" for c in res.properties.ip_configurations if c.name == "ipconfig6"), "")}
            if pip6 is not None else {})
        if nat_pip is None:
            return _Nic(name, res.id, pip.name, pip.properties.ip_address or "", private_ip, **six)
        return _Nic(name, res.id, pip.name, pip.properties.ip_address or "", private_ip, nat_pip.name,
                    nat_private_ip(attempt), **six)

    @staticmethod
    def _ip6_configuration(subnet_id: str, pip6) -> list:
        """The IPv6 IP configuration (none without ``pip6``): a dynamic private address from
        the subnet's /64, with the IPv6 public IP on it (Azure's dual-stack NIC)."""
        from azure.mgmt.network import models as N

        if pip6 is None:
            return []
        return [N.NetworkInterfaceIPConfiguration(
            name="ipconfig6", properties=N.NetworkInterfaceIPConfigurationPropertiesFormat(
                private_ip_allocation_method="Dynamic", private_ip_address_version="IPv6",
                subnet=N.Subnet(id=subnet_id), public_ip_address=N.PublicIPAddress(id=pip6.id), primary=False))]

    @staticmethod
    def _nat_ip_configuration(subnet_id: str, nat_pip, attempt: int) -> list:
        """The NAT responder's IP configuration (none without ``nat_pip``)."""
        from azure.mgmt.network import models as N

        if nat_pip is None:
            return []
        return [N.NetworkInterfaceIPConfiguration(
            name="ipconfig-nat", properties=N.NetworkInterfaceIPConfigurationPropertiesFormat(
                private_ip_allocation_method="Static", private_ip_address=nat_private_ip(attempt),
                subnet=N.Subnet(id=subnet_id), public_ip_address=N.PublicIPAddress(id=nat_pip.id), primary=False))]

    def _fresh_network_interface(self, attempt: int) -> "_Nic":
        """A new public IP and NIC for the next VM attempt. Azure holds a NIC for 180 s after
        its VM failed or was deleted (``NicReservedForAnotherVm``), and the old public IP
        stays associated with the held NIC: the next VM gets a pair of its own."""
        n = self.plan.names
        pip_name, nic_name = f"{n['pip']}-{attempt + 2}", f"{n['nic']}-{attempt + 2}"  # the 2nd, 3rd... pair
        self._doing = f"creating the public IP {pip_name} for the next VM attempt"
        self.log(f"a fresh NIC {nic_name} and public IP {pip_name} (Azure holds the failed VM's NIC for 180 s)")
        pips = {pip_name: self._begin_public_ip(pip_name)}
        nat_name = f"{n['pip_nat']}-{attempt + 2}"
        if self.plan.nat:
            pips[nat_name] = self._begin_public_ip(nat_name)
        pip6_name = f"{n['pip6']}-{attempt + 2}"
        if self.plan.dual_stack:
            pips[pip6_name] = self._begin_public_ip(pip6_name, version="IPv6")
        got = self._wait({f"the public IP {k}": v for k, v in pips.items()})
        return self._network_interface(nic_name, got[f"the public IP {pip_name}"],
                                       got.get(f"the public IP {nat_name}"), attempt=attempt + 1,
                                       pip6=got.get(f"the public IP {pip6_name}"))

    # -- the VM, with size fallbacks ------------------------------------------------------
    def _vm_body(self, size: str, nic_id: str, nat_addr: str = ""):
        from azure.mgmt.compute import models as C

        p = self.plan
        image = p.image
        os_profile = C.OSProfile(
            computer_name=p.vm_name, admin_username=p.admin_user,
            linux_configuration=C.LinuxConfiguration(
                disable_password_authentication=True,
                ssh=C.SshConfiguration(public_keys=[C.SshPublicKey(
                    path=f"/home/{p.admin_user}/.ssh/authorized_keys", key_data=self.keys.login_public)])))
        # the pinned host key (and the NAT address, and DHCPv6 on a dual-stack VM)
        os_profile.custom_data = custom_data(self.keys, nat_addr, dhcp6=p.dual_stack)
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
        return vm

    def _create_vm(self, nic: "_Nic") -> tuple[str, "_Nic"]:
        """The first size Azure can give, and the NIC the VM got. A synchronous refusal
        (409 SkuNotAvailable...) leaves nothing behind; an asynchronous one (AllocationFailed)
        leaves a failed VM: it is deleted, and the next size gets a fresh NIC."""
        p, rg = self.plan, self.plan.resource_group
        vms = self.c.compute.virtual_machines
        last: BaseException | None = None
        for i, size in enumerate(p.sizes):
            self._doing = f"creating VM {p.vm_name} ({size})"
            self.log(f"VM {p.vm_name}: {size}, {p.image.urn}")
            created = False
            try:
                poller = vms.begin_create_or_update(rg, p.vm_name, self._vm_body(size, nic.id, nic.nat_private_ip))
                created = True
                self._wait({f"VM {p.vm_name} ({size})": poller})
                return size, nic
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
                    nic = self._fresh_network_interface(i)
        raise last or InfraError("no VM size to try")  # pragma: no cover - loop always returns or raises

    # -- cost bound ---------------------------------------------------------------------
    def _auto_shutdown(self) -> bool:
        """DevTestLab schedule shutdown-computevm-<vm> at expires-at (UTC).

        A refusal the subscription brings (Microsoft.DevTestLab not registered and the role
        may not register it, a policy, a missing permission) ends the run like any other
        refusal: one line naming what to ask an administrator for, exit 3, the group
        deleted. A disposable VM without its stop time is not what rig promises, and the
        user can ask for the registration once. Any other failure of the schedule (a
        transient error) is a warning: the expires-at tag and 'rig gc' still bound the cost."""
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
            if E.kind_of(exc) in (E.REGISTRATION, E.POLICY, E.PERMISSION):
                raise E.to_rig_error(exc, "creating the auto-shutdown schedule") from exc  # what to ask for
            code, message = E.code_and_message(exc)
            why = f"{code or type(exc).__name__}: {message[:100]}"
            self.log(f"warning: no auto-shutdown schedule ({why}); the expires-at tag and 'rig gc' still apply")
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
