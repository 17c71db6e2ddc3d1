"""What an Azure run will create, as data: resources, NSG rules, size, region, cost.

``make_plan(options)`` turns the run's flags into a frozen ``Plan`` without touching
Azure or needing credentials; ``render_plan`` prints it for ``--dry-run`` with the
region's prices that prices.py read from the Azure Retail Prices API, or, when those
could not be had, the East US estimate below and why; provision.py builds exactly what
the plan says.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from rig.backends.azure.prices import PriceFailure, RegionPrices, Unavailable
from rig.backends.base import new_run_id
from rig.config import run_options
from rig.errors import UsageError

DEFAULT_LOCATION = "eastus"
DEFAULT_SIZES = ("Standard_B2s", "Standard_B2als_v2", "Standard_D2s_v5", "Standard_D2as_v5")
DEFAULT_TTL_HOURS = 4.0
ADMIN_USER = "rig"
UDP_ECHO_PORT = 7

# USD per hour, pay-as-you-go Linux, East US list prices: the --dry-run estimate when the
# Azure Retail Prices API (prices.py) cannot be asked. The figures carry no dated source;
# other regions differ (up to about a third), and the dry run says whose price it shows.
PRICED_REGION = "eastus"
SIZE_PRICES = {
    "Standard_B1s": 0.0104,
    "Standard_B1ms": 0.0207,
    "Standard_B2s": 0.0416,
    "Standard_B2ats_v2": 0.0094,
    "Standard_B2als_v2": 0.0376,
    "Standard_B2as_v2": 0.0752,
    "Standard_D2s_v5": 0.096,
    "Standard_D2as_v5": 0.086,
    "Standard_D2ds_v5": 0.113,
}
PUBLIC_IP_PRICE = 0.005  # Standard static IPv4
OS_DISK_PRICE = 0.0033  # Standard SSD E4 (32 GiB), ~2.40 USD per month


@dataclass(frozen=True)
class Image:
    """A marketplace image that runs cloud-init (rig installs the pinned host key with it)."""

    name: str
    publisher: str
    offer: str
    sku: str
    version: str = "latest"
    os_family: str = "debian"

    @property
    def urn(self) -> str:
        return f"{self.publisher}:{self.offer}:{self.sku}:{self.version}"


IMAGES = {
    "ubuntu": Image("ubuntu", "Canonical", "ubuntu-24_04-lts", "server"),
}

# Why FreeBSD is refused (docs/azure-and-ssh.md, "FreeBSD"): its Azure images run waagent,
# not cloud-init, so rig cannot install a host key it generated; waagent deletes the host
# keys at first boot and makes an RSA key; run-command's Linux extension does not run on
# FreeBSD; and the serial log's fingerprints are printed by rc.d/sshd only for the keys it
# generates itself, which is not shown to include the key sshd finally serves.
FREEBSD_REFUSAL = ("rig cannot pin the SSH host key of a FreeBSD VM on Azure before the first connection "
                   "(no cloud-init; waagent regenerates the host key at first boot; run-command is Linux-only), "
                   "and never trusts a key on first use: use --image ubuntu, or --backend ssh with a FreeBSD "
                   "host whose key you know (docs/azure-and-ssh.md)")


VNET_PREFIX6 = "fd77:7700:7700::/48"  # ULA: Azure wants an IPv6 range in the VNet for a dual-stack NIC
SUBNET_PREFIX6 = "fd77:7700:7700:1::/64"  # Azure's IPv6 subnets are /64
NO_CALLER6 = ("IPv6: not probed: rig does not know your IPv6 address, and opens IPv6 to nobody else; "
              "add it to --allow-from (e.g. --allow-from 203.0.113.7,2001:db8::7) for a dual-stack VM")
NAT_PORT_RANGE = "3478-3479"  # the NAT responder's ports (rig.nat.responder.NAT_PORTS)


def nat_private_ip(attempt: int) -> str:
    """The static private address of the NAT responder's IP configuration on the NIC of VM
    attempt ``attempt``: far above the dynamic ones (from .4), one per NIC, because Azure
    holds a failed VM's NIC (and its addresses) for 180 s."""
    return f"10.77.1.{200 + attempt}"


@dataclass(frozen=True)
class Rule:
    """One inbound NSG rule."""

    name: str
    priority: int
    protocol: str  # "Tcp" | "Udp" | "Icmp" | "*"
    port: str  # destination port or "*"
    source: str  # CIDR, or "*" for the final deny
    access: str = "Allow"


@dataclass(frozen=True)
class Plan:
    run_id: str
    location: str
    sizes: tuple[str, ...]  # the first is tried first; the rest are fallbacks
    image: Image
    allow_from: str | None  # None: detected at run time (the caller's /32)
    created_by: str
    expires_at: datetime
    admin_user: str = ADMIN_USER
    names: dict = field(default_factory=dict)
    fallback_locations: tuple[str, ...] = ()  # tried in order when no size can be had
    nat: bool = False  # --probes nat: a second public IP on the NIC and the responder's ports open (rig.nat)
    allow_from6: str | None = None  # the caller's IPv6 range: the VM is dual-stack and the probes go to both

    @property
    def dual_stack(self) -> bool:
        """An IPv6 public IP, range and rules: only when the caller's IPv6 is known."""
        return self.allow_from6 is not None

    @property
    def resource_group(self) -> str:
        return self.run_id

    @property
    def vm_name(self) -> str:
        return self.names["vm"]

    @property
    def tags(self) -> dict[str, str]:
        return {"rig-run": self.run_id, "created-by": self.created_by,
                "expires-at": self.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ")}

    def rules(self, source: str | None = None) -> tuple[Rule, ...]:
        """The NSG's inbound rules: the probes from ``source`` only (and, dual-stack, from
        the caller's IPv6 range to the same ports; Azure's "Icmp" covers ICMPv6), then deny
        the rest. The NAT responder is IPv4's alone: its second address is an IPv4 one."""
        src = source or self.allow_from or "<your address>/32"
        src6 = self.allow_from6
        return (
            Rule("rig-allow-icmp", 100, "Icmp", "*", src),
            Rule("rig-allow-ssh", 110, "Tcp", "22", src),
            Rule("rig-allow-http", 120, "Tcp", "80", src),
            Rule("rig-allow-udp-echo", 130, "Udp", str(UDP_ECHO_PORT), src),
            *((Rule("rig-allow-nat-udp", 140, "Udp", NAT_PORT_RANGE, src),
               Rule("rig-allow-nat-tcp", 150, "Tcp", NAT_PORT_RANGE, src)) if self.nat else ()),
            *((Rule("rig-allow-icmp6", 200, "Icmp", "*", src6),
               Rule("rig-allow-ssh6", 210, "Tcp", "22", src6),
               Rule("rig-allow-http6", 220, "Tcp", "80", src6),
               Rule("rig-allow-udp-echo6", 230, "Udp", str(UDP_ECHO_PORT), src6)) if src6 else ()),
            Rule("rig-deny-rest", 4096, "*", "*", "*", access="Deny"),
        )

    def resources(self) -> tuple[tuple[str, str, int], ...]:
        """(type, name, wave): resources of one wave are created concurrently."""
        n = self.names
        return (
            ("Microsoft.Resources/resourceGroups", self.resource_group, 1),
            ("Microsoft.Network/virtualNetworks", n["vnet"], 2),
            ("Microsoft.Network/networkSecurityGroups", n["nsg"], 2),
            ("Microsoft.Network/publicIPAddresses", n["pip"], 2),
            *((("Microsoft.Network/publicIPAddresses", n["pip_nat"], 2),) if self.nat else ()),
            *((("Microsoft.Network/publicIPAddresses", n["pip6"], 2),) if self.dual_stack else ()),
            ("Microsoft.Network/networkInterfaces", n["nic"], 3),
            ("Microsoft.Compute/virtualMachines", n["vm"], 4),
            ("Microsoft.DevTestLab/schedules", f"shutdown-computevm-{n['vm']}", 5),
        )

    def cost_per_hour(self, size: str | None = None) -> float | None:
        """The East US estimate (SIZE_PRICES) of VM + public IP + OS disk."""
        return _table_total(size or self.sizes[0])


def check_allow_from(cidr: str) -> str:
    """A CIDR the NSG may allow; refuses the whole Internet. Bare addresses become /32
    (IPv4) or /128 (IPv6)."""
    try:
        net = ipaddress.ip_network(cidr.strip(), strict=False)
    except ValueError:
        raise UsageError(f"--allow-from {cidr!r} is not an address or CIDR (e.g. 203.0.113.7/32)") from None
    if net.prefixlen < (8 if net.version == 4 else 32):
        raise UsageError(f"--allow-from {cidr!r} would open the VM to a large part of the Internet; give your own address")
    return str(net)


def split_allow_from(value: str | None) -> tuple[str | None, str | None]:
    """``--allow-from`` as (IPv4 CIDR, IPv6 CIDR): one of each at most, comma-separated.
    No IPv4 one: the caller's /32 is detected at run time; no IPv6 one: no IPv6 at all."""
    v4: str | None = None
    v6: str | None = None
    parts = [part for part in (value or "").split(",") if part.strip()] or [value or ""]
    for part in parts:
        net = check_allow_from(part)
        if ":" in net:
            if v6 is not None:
                raise UsageError(f"--allow-from {value!r}: give one IPv6 range, not two")
            v6 = net
        else:
            if v4 is not None:
                raise UsageError(f"--allow-from {value!r}: give one IPv4 range, not two")
            v4 = net
    return v4, v6


def _created_by() -> str:
    user = os.environ.get("USER") or os.environ.get("LOGNAME") or "unknown"
    host = os.uname().nodename
    return re.sub(r"[^\w@.\-]", "_", f"{user}@{host}")[:256]


def make_plan(options: dict, now: datetime | None = None, run_id: str | None = None, nat: bool = False) -> Plan:
    """The plan for the flags in ``options`` (RunSpec.options); no I/O. ``nat``: the run
    measures the NAT profile (--probes nat)."""
    now = now or datetime.now(timezone.utc)
    run_id = run_id or options.get("run_id") or new_run_id(now)
    image_name = (options.get("image") or "ubuntu").strip()
    if "freebsd" in image_name.lower():
        raise UsageError(f"--image {image_name}: {FREEBSD_REFUSAL}")
    if image_name.count(":") == 3:  # a marketplace URN publisher:offer:sku:version
        pub, offer, sku, version = image_name.split(":")
        image = Image(image_name, pub, offer, sku, version)
    elif image_name.lower() in IMAGES:
        image = IMAGES[image_name.lower()]
    else:
        raise UsageError(f"--image {image_name!r}: choose one of {', '.join(IMAGES)} or give a URN "
                         "publisher:offer:sku:version")
    size = options.get("size")
    sizes = (size, *[s for s in DEFAULT_SIZES if s != size]) if size else DEFAULT_SIZES
    allow4, allow6 = split_allow_from(options.get("allow_from")) if options.get("allow_from") else (None, None)
    ttl = run_options(options).ttl_hours or DEFAULT_TTL_HOURS
    short = run_id.removeprefix("rig-").replace("-", "")[-10:]
    names = {"vnet": "rig-vnet", "subnet": "rig-subnet", "nsg": "rig-nsg", "pip": "rig-ip", "pip_nat": "rig-ip-nat",
             "pip6": "rig-ip6",
             "nic": "rig-nic", "vm": f"rig{short}"}
    locations = [loc.strip().lower() for loc in
                 (options.get("location") or os.environ.get("RIG_AZURE_LOCATION") or DEFAULT_LOCATION).split(",")
                 if loc.strip()]
    for loc in locations:
        if not re.fullmatch(r"[a-z0-9]+", loc):
            raise UsageError(f"--location {loc!r} is not an Azure region name (e.g. japaneast)")
    if not locations:
        raise UsageError("--location is empty")
    return Plan(
        run_id=run_id,
        location=locations[0],
        fallback_locations=tuple(dict.fromkeys(locations))[1:],
        sizes=tuple(sizes),
        image=image,
        allow_from=allow4,
        allow_from6=allow6,
        created_by=options.get("created_by") or _created_by(),
        expires_at=(now + timedelta(hours=ttl)).replace(microsecond=0),
        names=names,
        nat=nat,
    )


def _why(failure: PriceFailure, region: str) -> str:
    host = failure.host
    return {
        Unavailable.UNREACHABLE: f"{host} not reachable",
        Unavailable.TIMEOUT: f"{host} did not answer in time",
        Unavailable.HTTP_STATUS: f"{host} answered HTTP {failure.detail}",
        Unavailable.MALFORMED: f"{host}'s answer was not the documented shape ({failure.detail})",
        Unavailable.NO_METER: f"{host} lists no Linux pay-as-you-go price for {failure.detail} in {region}",
    }[failure.reason]


def _table_total(size: str) -> float | None:
    price = SIZE_PRICES.get(size)
    return None if price is None else price + PUBLIC_IP_PRICE + OS_DISK_PRICE


def _cost_lines(plan: Plan, prices: RegionPrices | PriceFailure | None) -> list[str]:
    """The cost of the first size in the plan's region (or the East US estimate, saying why),
    then the same for each fallback size."""
    first, region = plan.sizes[0], plan.location
    if isinstance(prices, RegionPrices):
        total = prices.total
        lines = [f"  cost:     about {total(first):.3f} USD/hour in {region} (Azure retail prices, "
                 f"{prices.as_of.isoformat()}): VM {prices.vm[first]:.4f} + static IPv4 {prices.public_ip:.4f}"
                 f" + OS disk {prices.os_disk:.4f}"]
        missing = f"not listed in {region}"
    else:
        total = _table_total
        if prices is None:  # not asked
            source = "(East US list price" + ("" if region == PRICED_REGION else f"; {region} may differ") + ")"
        elif region == PRICED_REGION:
            source = f"— rig's East US estimate; the current price list is not available: {_why(prices, region)}"
        else:
            source = f"— the East US estimate; {region}'s price is not available: {_why(prices, region)}"
        cost = total(first)
        why = "" if prices is None else f"{_why(prices, region)}; "
        lines = [f"  cost:     unknown for {first} ({why}rig's East US table does not list it)" if cost is None
                 else f"  cost:     about {cost:.3f} USD/hour for VM + static IP + OS disk {source}"]
        missing = "unknown"
    if plan.sizes[1:]:
        each = [f"{s} about {c:.3f}" if (c := total(s)) is not None else f"{s} {missing}" for s in plan.sizes[1:]]
        lines.append(f"            fallback sizes, the same way: {', '.join(each)}")
    if plan.fallback_locations and isinstance(prices, RegionPrices):
        lines.append(f"            (prices are {region}'s; {', '.join(plan.fallback_locations)} may differ)")
    return lines


def render_plan(plan: Plan, prices: RegionPrices | PriceFailure | None = None) -> str:
    """The --dry-run text: what would be created, allowed, and what it costs.

    ``prices``: the region's prices (prices.lookup), or why they could not be had; None
    (not asked) shows the East US estimate as such."""
    lines = [f"Azure plan for {plan.run_id} (dry run: nothing is created, no credentials used)",
             f"  region:   {plan.location}" + (f"  (fallbacks: {', '.join(plan.fallback_locations)})"
                                                if plan.fallback_locations else ""),
             f"  size:     {plan.sizes[0]}  (fallbacks: {', '.join(plan.sizes[1:]) or 'none'})",
             f"  image:    {plan.image.urn}",
             f"  expires:  {plan.tags['expires-at']}  (tag expires-at; auto-shutdown at that time; 'rig gc' deletes it)",
             "  resources (one wave at a time; each wave concurrently):"]
    for typ, name, wave in plan.resources():
        lines.append(f"    {wave}. {typ}/{name}")
    lines.append("  inbound NSG rules (on the NIC):")
    for r in plan.rules():
        lines.append(f"    {r.priority:>4} {r.access:<5} {r.protocol:<4} port {r.port:<3} from {r.source}")
    if plan.allow_from is None:
        lines.append("  (your public address is detected when the run starts; --allow-from CIDR overrides it)")
    if plan.dual_stack:
        lines.append(f"  IPv6:     dual stack: {plan.names['pip6']} (Standard static IPv6) on an IPv6 IP configuration "
                     f"of the NIC, VNet range {VNET_PREFIX6}, subnet {SUBNET_PREFIX6}; the probes go to both "
                     "addresses (the IPv6 public IP's price is not in the estimate below)")
    else:
        lines.append(f"  {NO_CALLER6}")
    if plan.nat:
        lines.append(f"  NAT profile (--probes nat): {plan.names['pip_nat']} on a second IP configuration of the NIC "
                     f"(private {nat_private_ip(0)}), the responder on ports {NAT_PORT_RANGE} of both addresses; "
                     f"the second static IPv4 adds about {PUBLIC_IP_PRICE:.3f} USD/hour (East US list price)")
    lines += _cost_lines(plan, prices)
    lines.append(f"  tags:     {', '.join(f'{k}={v}' for k, v in plan.tags.items())}")
    return "\n".join(lines)
