"""NSG rules: the SDK models rig sends, and the check of the rules actually in effect.

``security_rules(rules)`` turns plan.Rule records into network model objects.
``check_effective(effective, caller, needs)`` is a pure function over the NIC's
*effective* rules (what Azure applies, not what was asked for): for each probe it finds
the first matching inbound rule by priority and reports a probe that rule would not let
through. That is the seed's first confound — an NSG rule added but not in effect — said
as a configuration problem, never as a path verdict.
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


def flatten(result) -> list[EffectiveRule]:
    """Inbound effective rules from an EffectiveNetworkSecurityGroupListResult (or its dict)."""
    out = []
    for group in _get(result, "value", None) or []:
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


def _source_matches(sources: Sequence[str], caller: ipaddress.IPv4Network) -> bool:
    """True only if the rule covers the caller's whole range (service tags never match)."""
    for s in sources:
        s = s.strip()
        if s in ("*", "Internet", "0.0.0.0/0"):
            return True
        try:
            if caller.subnet_of(ipaddress.ip_network(s, strict=False)):  # type: ignore[arg-type]
                return True
        except (ValueError, TypeError):
            continue
    return False


def check_effective(rules: Sequence[EffectiveRule], caller: str, needs=PROBE_NEEDS) -> list[str]:
    """Problems with the effective inbound rules for probes from ``caller`` (a CIDR)."""
    net = ipaddress.ip_network(caller, strict=False)
    problems = []
    for proto, port, what in needs:
        matching = [r for r in sorted(rules, key=lambda r: r.priority)
                    if _proto_matches(r.protocol, proto) and _port_matches(r.ports, port)
                    and _source_matches(r.sources, net)]
        allow = next((r for r in matching if r.access.lower() == "allow"), None)
        first = matching[0] if matching else None
        if allow is None:
            problems.append(f"NSG: no rule allowing {what} from {caller} is in effect on the NIC "
                            "(added but not applied yet?) — a configuration problem, not a path problem")
        elif first is not allow:
            problems.append(f"NSG: {what} from {caller} is denied by effective rule {first.name} "
                            f"(priority {first.priority}) before {allow.name} — the NSG, not the path")
    return problems
