"""NSG rules: the SDK models rig sends, and the check of the rules actually in effect.

``security_rules(rules)`` turns plan.Rule records into network model objects.
``effective_groups(result)`` reads the NIC's *effective* rules (what Azure applies, not
what was asked for), one group per associated NSG: the NIC's, and the subnet's if it has
one. ``check_groups(groups, caller, written_for)`` is a pure function over them: a probe
must be let through by *every* group (the first matching inbound rule by priority wins
within a group). That is the seed's first confound — an NSG rule added but not in
effect — said as a configuration problem, never as a path verdict. When the caller's
address is no longer the one the rules were written for, it says that instead, with the
command that updates the rules.
"""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass
from typing import Iterable, Sequence

from rig.backends.azure.plan import UDP_ECHO_PORT, Rule

# (protocol, destination port or None for ICMP, what the probe is)
PROBE_NEEDS = (("Icmp", None, "ICMP echo"), ("Tcp", 22, "SSH (TCP 22)"),
               ("Tcp", 80, "HTTP (TCP 80)"), ("Udp", UDP_ECHO_PORT, f"UDP echo (UDP {UDP_ECHO_PORT})"))


def security_rules(rules: Iterable[Rule]):
    from azure.mgmt.network.models import SecurityRule, SecurityRulePropertiesFormat

    return [
        SecurityRule(name=r.name, properties=SecurityRulePropertiesFormat(
            protocol=r.protocol, access=r.access, direction="Inbound", priority=r.priority,
            source_address_prefix=r.source, source_port_range="*",
            destination_address_prefix="*", destination_port_range=r.port,
            description="rig: probes from the caller only" if r.access == "Allow" else "rig: deny the rest"))
        for r in rules
    ]


@dataclass(frozen=True)
class EffectiveRule:
    """An effective inbound rule, flattened from the SDK's EffectiveNetworkSecurityRule."""

    name: str
    priority: int
    protocol: str  # Tcp | Udp | Icmp | All
    ports: tuple[str, ...]  # "80-80", "0-65535", "*"
    sources: tuple[str, ...]  # expanded prefixes, "0.0.0.0/0", "*", service tags
    access: str  # Allow | Deny


def _get(obj, name, default=None):
    value = obj.get(name, default) if isinstance(obj, dict) else getattr(obj, name, default)
    return value.value if isinstance(value, enum.Enum) else value


@dataclass(frozen=True)
class EffectiveGroup:
    """The effective inbound rules of one NSG, and where it is associated."""

    nsg: str  # the NSG's name
    scope: str  # "NIC" | "subnet"
    rules: tuple[EffectiveRule, ...]


def _rules(group) -> list[EffectiveRule]:
    out = []
    for r in _get(group, "effective_security_rules", None) or _get(group, "effectiveSecurityRules", None) or []:
        if str(_get(r, "direction", "Inbound")).lower() != "inbound":
            continue
        ports = tuple(_get(r, "destination_port_ranges", None) or _get(r, "destinationPortRanges", None)
                      or [_get(r, "destination_port_range", None) or _get(r, "destinationPortRange", None) or "*"])
        sources = tuple(_get(r, "expanded_source_address_prefix", None) or _get(r, "expandedSourceAddressPrefix", None)
                        or _get(r, "source_address_prefixes", None) or _get(r, "sourceAddressPrefixes", None)
                        or [_get(r, "source_address_prefix", None) or _get(r, "sourceAddressPrefix", None) or "*"])
        out.append(EffectiveRule(str(_get(r, "name", "")), int(_get(r, "priority", 65500)),
                                 str(_get(r, "protocol", "All")), ports, sources, str(_get(r, "access", "Deny"))))
    return sorted(out, key=lambda r: r.priority)


def effective_groups(result) -> list[EffectiveGroup]:
    """The groups of an EffectiveNetworkSecurityGroupListResult (or its dict)."""
    groups = []
    for group in _get(result, "value", None) or []:
        nsg_id = str(_get(_get(group, "network_security_group", None) or _get(group, "networkSecurityGroup", None)
                          or {}, "id", "") or "")
        assoc = _get(group, "association", None) or {}
        scope = "subnet" if _get(assoc, "subnet", None) else "NIC"
        groups.append(EffectiveGroup(nsg_id.rsplit("/", 1)[-1] or "?", scope, tuple(_rules(group))))
    return groups


def flatten(result) -> list[EffectiveRule]:
    """Every inbound effective rule, all groups together (sorted by priority)."""
    return sorted((r for g in effective_groups(result) for r in g.rules), key=lambda r: r.priority)


def _proto_matches(rule_proto: str, want: str) -> bool:
    p = rule_proto.lower()
    return p in ("all", "*") or p == want.lower()


def _port_matches(ports: Sequence[str], port: int | None) -> bool:
    if port is None:  # ICMP has no port
        return True
    for pr in ports:
        pr = pr.strip()
        if pr in ("*", ""):
            return True
        lo, _, hi = pr.partition("-")
        try:
            if int(lo) <= port <= int(hi or lo):
                return True
        except ValueError:
            continue
    return False


def _source_matches(sources: Sequence[str], caller: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
    """True only if the rule covers the caller's whole range (service tags never match)."""
    for s in sources:
        s = s.strip()
        if s in ("*", "Internet", "0.0.0.0/0"):
            return True
        try:
            if caller.subnet_of(ipaddress.ip_network(s, strict=False)):  # type: ignore[arg-type]  # v4 in v6: TypeError, below
                return True
        except (ValueError, TypeError):
            continue
    return False


def _blocked(rules: Sequence[EffectiveRule], caller: str, needs) -> list[tuple[str, EffectiveRule | None, EffectiveRule | None]]:
    """(probe, first matching rule, first allowing rule) for each probe the rules stop."""
    net = ipaddress.ip_network(caller, strict=False)
    out = []
    for proto, port, what in needs:
        matching = [r for r in sorted(rules, key=lambda r: r.priority)
                    if _proto_matches(r.protocol, proto) and _port_matches(r.ports, port)
                    and _source_matches(r.sources, net)]
        allow = next((r for r in matching if r.access.lower() == "allow"), None)
        first = matching[0] if matching else None
        if allow is None or first is not allow:
            out.append((what, first, allow))
    return out


def check_effective(rules: Sequence[EffectiveRule], caller: str, needs=PROBE_NEEDS, where: str | None = None) -> list[str]:
    """Problems with one set of effective inbound rules for probes from ``caller`` (a CIDR)."""
    problems = []
    for what, first, allow in _blocked(rules, caller, needs):
        if allow is None:
            problems.append(f"NSG: no rule allowing {what} from {caller} is in effect {where or 'on the NIC'} "
                            "(added but not applied yet?) — a configuration problem, not a path problem")
        else:
            assert first is not None
            problems.append(f"NSG: {what} from {caller} is denied by effective rule {first.name} "
                            f"(priority {first.priority}) before {allow.name}{' ' + where if where else ''}"
                            " — the NSG, not the path")
    return problems


def check_groups(groups: Sequence[EffectiveGroup], caller: str, written_for: str | None = None, *,
                 resource_group: str = "RG", needs=PROBE_NEEDS) -> list[str]:
    """Problems for probes from ``caller``: every group must let each probe through.

    ``written_for`` is the address the rules were written for; when the caller has moved
    off it (and the rules still let the old address in) the one problem is that, with the
    command that moves the rules to the new address."""
    if not groups:
        return ["NSG: Azure reports no NSG in effect on the NIC (rig's NSG not applied yet?); a Standard "
                "public IP lets nothing in without one — a configuration problem, not a path problem"]
    if written_for and written_for != caller:
        now_blocked = any(_blocked(g.rules, caller, needs) for g in groups)
        then_ok = not any(_blocked(g.rules, written_for, needs) for g in groups)
        if now_blocked and then_ok:
            nsg = next((g.nsg for g in groups if g.scope == "NIC"), groups[0].nsg)
            return [f"NSG: your public address changed since the rules were written (they allow {written_for}, "
                    f"you are now {caller}): update them with 'az network nsg rule update -g {resource_group} "
                    f"--nsg-name {nsg} -n rig-allow-ssh --source-address-prefixes {caller}' and likewise "
                    "rig-allow-icmp, rig-allow-http and rig-allow-udp-echo, or provision a new rig"]
    problems = []
    for g in groups:
        problems.extend(check_effective(g.rules, caller, needs, where=f"in NSG {g.nsg} on the {g.scope}"))
    return problems
