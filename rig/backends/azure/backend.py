"""AzureBackend: a disposable VM that answers the probes, described as a Rig.

provision(spec): plan (plan.py) -> per-run keys + pinned host key (cloudinit.py) ->
the caller's /32 (caller_ip.py, or --allow-from) -> build it (provision.py, which
deletes the resource group itself if anything fails) -> a Rig.
preflight(rig): the NIC's *effective* NSG rules must let the probes in (nsg.py).
teardown(rig): delete the resource group, remove the run's keys.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import sys
import tempfile
from typing import Callable

from rig.backends.azure import errors as E
from rig.backends.azure import prices
from rig.backends.azure.plan import Plan, make_plan, render_plan
from rig.backends.azure.prices import Fetch
from rig.backends.base import CapturePoint, Rig, RunSpec, SSHEndpoint
from rig.config import run_options
from rig.errors import InfraError

ARM_SCOPE = "https://management.azure.com/.default"


def wants_nat(spec: RunSpec) -> bool:
    """The run measures the NAT profile (--probes nat): the plan gains its second public IP."""
    from rig.nat.run import split_probes

    return split_probes(spec.probes or None)[1]


def dry_run(spec: RunSpec, fetch: Fetch | None = None) -> str:
    """The --dry-run text for ``spec``: no credentials, creates nothing; asks the Azure Retail
    Prices API (unauthenticated) for the region's prices, and says so when it cannot."""
    plan = make_plan(dict(spec.options), nat=wants_nat(spec))
    return render_plan(plan, prices.lookup(plan.location, plan.sizes, fetch=fetch))


def _stderr(line: str) -> None:
    print(f"azure: {line}", file=sys.stderr, flush=True)


class AzureBackend:
    name = "azure"
    describe = staticmethod(dry_run)  # `rig run --dry-run`: the plan, no credentials

    def __init__(self, clients=None, caller_ip: Callable[[], str] | None = None, *,
                 timeout: float | None = None, delete_timeout: float | None = None,
                 log: Callable[[str], None] = _stderr, wait_ssh: bool = True, ssh_timeout: float = 600.0,
                 wait_delete: bool = False):
        self._clients = clients  # tests inject FakeARM().clients()
        self.wait_ssh = wait_ssh  # False with the fake ARM: there is no VM to log in to
        self.ssh_timeout = ssh_timeout
        self.wait_delete = wait_delete  # False: teardown returns once Azure accepted the deletion
        self._caller_ip = caller_ip
        self.timeout = timeout
        self.delete_timeout = delete_timeout
        self.log = log

    # -- clients ------------------------------------------------------------------------
    def clients(self, subscription: str | None = None):
        if self._clients is None:
            from rig.backends.azure.credentials import (LIVE_CLIENT_OPTIONS, default_credential, make_clients,
                                                        subscription_id)

            sub = subscription_id(subscription)
            cred = default_credential()
            try:
                cred.get_token(ARM_SCOPE)
            except Exception as exc:  # azure-identity's errors are long; say it in one line
                raise InfraError("no usable Azure credentials: run 'az login', or set AZURE_CLIENT_ID, "
                                 "AZURE_TENANT_ID and AZURE_CLIENT_SECRET (a service principal; "
                                 "needed under cron)") from exc
            self._clients = make_clients(cred, sub, **LIVE_CLIENT_OPTIONS)
        return self._clients

    # -- the interface --------------------------------------------------------------------
    def plan(self, spec: RunSpec) -> Plan:
        return make_plan(dict(spec.options), nat=wants_nat(spec))

    def provision(self, spec: RunSpec) -> Rig:
        from rig.backends.azure.caller_ip import detect
        from rig.backends.azure.cloudinit import new_keys

        plan = self.plan(spec)
        if run_options(spec.options).dry_run:
            raise InfraError("provision() called with --dry-run; use rig.backends.azure.dry_run(spec)")
        clients = self.clients()  # a missing subscription/credential fails here, before any request
        source = plan.allow_from or (self._caller_ip or detect)()
        workdir = spec.options.get("workdir") or tempfile.mkdtemp(prefix=f"{plan.run_id}-")
        keys = new_keys(workdir)
        try:
            plan, prov, got = self._create_somewhere(clients, plan, keys, source, spec)
            endpoint = SSHEndpoint(host=got.public_ip, port=22, user=plan.admin_user,
                                   key_file=keys.login_key_file, host_key=got.host_key)
            if self.wait_ssh:
                from rig.backends.azure.ready import wait_for_ssh

                try:
                    wait_for_ssh(endpoint, self.ssh_timeout, log=self.log)
                except BaseException:
                    self.log(f"VM not reachable over SSH: deleting resource group {plan.resource_group}")
                    prov.delete_group()
                    raise
        except BaseException:
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        self.log(f"{got.vm_name} is up at {got.public_ip} ({got.size}); host key pinned; "
                 f"expires {plan.tags['expires-at']}")
        return Rig(
            run_id=plan.run_id, backend=self.name, server_addr=got.public_ip,
            ssh=endpoint,
            capture_points=(CapturePoint("client", "any"),
                            CapturePoint("server", "eth0", remote=True)),
            client_netns=None, os_family=plan.image.os_family, install_packages=True, workdir=workdir,
            facts={"subscription": clients.subscription_id, "resource_group": plan.resource_group,
                   "region": plan.location, "size": got.size, "image": plan.image.urn,
                   "vm_name": got.vm_name, "nic_name": got.nic_name, "private_ip": got.private_ip,
                   "allow_from": source, "expires_at": plan.tags["expires-at"],
                   "auto_shutdown": str(got.auto_shutdown).lower(), "critical_path_waits": str(got.waits),
                   "listen_addr": "0.0.0.0", "service_mode": "system", **self._nat_facts(got),
                   **self._ipv6_facts(plan, got)},
        )

    @staticmethod
    def _ipv6_facts(plan: Plan, got) -> dict[str, str]:
        """Dual stack: the probes go to the IPv6 public IP too (``server_addr6``), and Apache
        and the UDP echo listen on the private address Azure translates it to."""
        if not got.public_ip6:
            return {}
        return {"server_addr6": got.public_ip6, "rig_listen_addr6": got.private_ip6, "private_ip6": got.private_ip6,
                "allow_from6": plan.allow_from6 or ""}

    @staticmethod
    def _nat_facts(got) -> dict[str, str]:
        """Where rig.nat's responder listens: each public IP with the private address it reaches."""
        if not got.nat_public_ip:
            return {}
        from rig.nat.responder import nat_facts

        return nat_facts((got.public_ip, got.nat_public_ip), local=(got.private_ip, got.nat_private_ip))

    def _create_somewhere(self, clients, plan: Plan, keys, source: str, spec: RunSpec):
        """The plan's region, then its fallback regions when no size can be had there.
        A fallback gets its own resource group (the first one is still being deleted)."""
        from dataclasses import replace

        from rig.backends.azure.provision import DEFAULT_TIMEOUT, DELETE_TIMEOUT, Provisioner

        regions = (plan.location, *plan.fallback_locations)
        for i, region in enumerate(regions):
            here = plan if i == 0 else replace(plan, location=region, run_id=f"{plan.run_id}-{region}"[:90])
            prov = Provisioner(clients, here, keys, source,
                               timeout=self.timeout or run_options(spec.options).provision_timeout or DEFAULT_TIMEOUT,
                               delete_timeout=self.delete_timeout or DELETE_TIMEOUT, wait_delete=self.wait_delete,
                               log=self.log)
            try:
                return here, prov, prov.create()
            except E.CapacityError as exc:
                if i == len(regions) - 1:
                    raise
                self.log(f"{exc}; trying region {regions[i + 1]}")
        raise AssertionError("unreachable")  # pragma: no cover

    def preflight(self, rig: Rig) -> list[str]:
        """Problems with the NSG rules actually in effect on the NIC (not a path verdict),
        for probes from where the caller is now (a kept rig may outlive an address)."""
        from rig.backends.azure.nsg import check_groups, effective_groups

        f = rig.facts
        try:
            poller = self.clients(f.get("subscription")).network.network_interfaces.begin_list_effective_network_security_groups(
                f["resource_group"], f["nic_name"])
            poller.wait(timeout=self.timeout or 300)
            if not poller.done():
                return ["NSG: Azure did not report the NIC's effective rules in time; they may not be in effect yet"]
            result = poller.result()
        except Exception as exc:  # noqa: BLE001 - a preflight problem, said in one line
            code, message = E.code_and_message(exc)
            if code == "NicMustBeAttachedToRunningVmToGetEffectiveSecurityGroups":
                return [f"NSG: the VM {f.get('vm_name', '')} is not running, and Azure reports a NIC's effective "
                        f"rules only while its VM runs ({code}): start it with 'az vm start -g "
                        f"{f['resource_group']} -n {f.get('vm_name', '')}' (the auto-shutdown at expires-at stops it)"]
            return [f"NSG: could not read the NIC's effective rules ({code or type(exc).__name__}: {message[:120]})"]
        written_for = f["allow_from"]
        groups = effective_groups(result)
        problems = check_groups(groups, self._current_caller(written_for), written_for,
                                resource_group=f["resource_group"])
        if f.get("allow_from6"):  # dual stack: the IPv6 rules must be in effect too
            problems += check_groups(groups, f["allow_from6"], resource_group=f["resource_group"])
        return problems

    def _current_caller(self, written_for: str) -> str:
        """The caller's /32 now, or the address the rules were written for when it cannot be
        told (or the rules' range still covers the caller: nothing moved that matters)."""
        from rig.backends.azure.caller_ip import detect

        try:
            now = (self._caller_ip or detect)()
        except Exception:  # noqa: BLE001 - no answer: check for the address rig knows
            return written_for
        try:
            now_net, written_net = ipaddress.ip_network(now, strict=False), ipaddress.ip_network(written_for, strict=False)
            if now_net.subnet_of(written_net):  # type: ignore[arg-type]  # v4 in v6: TypeError, below
                return written_for
        except (ValueError, TypeError):
            return written_for
        return now

    def teardown(self, rig: Rig) -> None:
        from rig.backends.azure.provision import DELETE_TIMEOUT, delete_group

        rg = rig.facts.get("resource_group")
        try:
            if rg:
                self.log(f"deleting resource group {rg}")
                delete_group(self.clients(rig.facts.get("subscription")), rg, wait=self.wait_delete,
                             timeout=self.delete_timeout or DELETE_TIMEOUT, log=self.log)
        finally:
            if rig.workdir and os.path.isdir(rig.workdir):
                shutil.rmtree(rig.workdir, ignore_errors=True)
