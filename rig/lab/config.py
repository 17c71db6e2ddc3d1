"""What one lab run builds, before it builds it: the topology of the access line, the
scenario with its router profile and the access's own rules applied, and the port sets
the NATs map into (pure: no commands run).

rig.backends.lab builds exactly this, and rig.nat.truth reads the NAT ground truth from
it, so the two cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Mapping

from rig.lab.access import AccessProfile, access_for, access_rules, access_topology, nat_sets
from rig.lab.routers import RouterProfile, router_for
from rig.lab.scenarios import Scenario
from rig.lab.topology import Topology
from rig.portset import PortSet


@dataclass(frozen=True)
class LabConfig:
    access: AccessProfile
    router: RouterProfile
    topology: Topology
    scenario: Scenario  # with the router profile and the access's rules applied
    nat_sets: Mapping[str, PortSet]  # node -> the MAP-E port set its NAT maps into


def lab_config(chosen: Scenario, router: str | None = None, access: str | None = None) -> LabConfig:
    """The lab ``chosen`` builds behind ``--router`` ``router`` and ``--access`` ``access``
    (None: the scenario's own). Raises UsageError for a combination the lab refuses."""
    profile = router_for(chosen, router)
    line = access_for(chosen, access)
    scenario = profile.apply(chosen, node="router", wan="wan")
    scenario = replace(scenario, rules=scenario.rules + access_rules(line, scenario))
    return LabConfig(line, profile, access_topology(line.name), scenario, nat_sets(line, scenario))
