"""The pipeline's NAT hook (rig.run calls these): which probes were asked for, what the
captures leave out, and ``measure``: responder up, the tests from the client, responder
down, a NatProfile back.

``--probes nat`` runs the NAT tests alone; ``--probes all,nat`` (or ``icmp,tcp,nat``)
runs them after the other probes, so they never compete with them for a NAT's ports.
The NAT tests' own traffic is kept out of the client and server captures (it is
measured by the responder, and its deliberately unanswerable packets are not the path's
faults); the router capture keeps it, to tell the layers apart (rig.nat.layers).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from rig.errors import InfraError, InputError, UsageError
from rig.nat.client import Target, Wait, profile
from rig.nat.records import NatProfile, Proto, ProtoProfile, Undecided
from rig.nat.responder import Responder, ResponderPlan, plan_from
from rig.netns import in_netns

NAT = "nat"
ALL = "all"
LIFETIME_BUDGET = 180.0  # seconds: --nat-lifetime without a number
# backends whose firewall rig writes, for a rig made without the responder (a kept rig
# from 'rig up' without --probes nat): the tests would only wait for answers that cannot come
CLOSED_BACKENDS = {"azure": "this Azure rig was made without --probes nat: no second public IP, and its NSG "
                            "keeps the responder's ports (udp/tcp 3478-3479) closed"}
LAB_WAIT = Wait(reply=0.3, extra=0.3)
REMOTE_WAIT = Wait(reply=1.0, extra=1.0)


def split_probes(probes: Sequence[str] | str | None) -> tuple[tuple[str, ...] | None, bool]:
    """(the other probe kinds to run, None for the default set and () for none; whether
    the NAT tests run). ``all`` names every other kind."""
    from rig.probes.runner import PROBE_KINDS, parse_kinds

    if probes is None:
        return None, False
    items = [k.strip() for k in (probes.split(",") if isinstance(probes, str) else probes) if k.strip()]
    if not items:
        return None, False
    nat = NAT in items
    rest = [k for k in items if k != NAT]
    if ALL in rest:
        rest = [k for k in rest if k != ALL] + list(PROBE_KINDS)
    if not rest:
        return (), nat
    try:
        return parse_kinds(rest), nat
    except UsageError as exc:
        raise UsageError(f"{exc} (or {ALL}, {NAT})") from None


@dataclass(frozen=True)
class NatOptions:
    lifetime_budget: float | None = None  # --nat-lifetime [SECONDS]: UDP and TCP binding lifetime search


def nat_options(options: Mapping[str, str]) -> NatOptions:
    raw = options.get("nat_lifetime")
    if raw is None or raw.strip().lower() in ("", "false", "no", "off", "0"):
        return NatOptions()
    if raw.strip().lower() in ("true", "yes", "on"):
        return NatOptions(LIFETIME_BUDGET)
    try:
        budget = float(raw)
    except ValueError:
        budget = math.nan
    if not (math.isfinite(budget) and 1 <= budget <= 3600):
        raise UsageError(f"--nat-lifetime: expected a budget in seconds (1-3600), got {raw!r}")
    return NatOptions(budget)


def check(probes: Sequence[str] | str | None, options: Mapping[str, str]) -> None:
    """The NAT flags of a run spec, refused early: ``--nat-lifetime`` needs ``--probes nat``."""
    opts = nat_options(options)
    _, nat = split_probes(probes)
    if opts.lifetime_budget is not None and not nat:
        raise UsageError("--nat-lifetime measures the NAT profile's binding lifetimes: add nat to --probes (e.g. all,nat)")


def capture_exclusion(facts: Mapping[str, str], server_addr: str) -> str:
    """BPF that keeps the NAT tests' traffic out of a capture."""
    plan = plan_from(facts, server_addr)
    return " and ".join(f"not port {int(p)}" for p in plan.ports)


def undecided_profile(reason: str, plan: ResponderPlan) -> NatProfile:
    u = Undecided(reason)
    one = ProtoProfile(u, u, u, u, u, u, u)
    return NatProfile({Proto.UDP: one, Proto.TCP: one}, len(plan.public), len(plan.ports))


def measure(facts: Mapping[str, str], server_addr: str, ssh, client_netns: str | None, python: str,
            options: NatOptions, backend: str) -> NatProfile:
    """Start the responder over ``ssh``, run the tests from ``client_netns``, stop it."""
    plan = plan_from(facts, server_addr)
    if backend in CLOSED_BACKENDS and "nat_addrs" not in facts:
        return undecided_profile(CLOSED_BACKENDS[backend], plan)
    lab = backend == "lab"
    budget = options.lifetime_budget
    responder = Responder(ssh, plan, python=python, max_seconds=(budget or 0) + 300)
    try:
        responder.start()
    except InfraError as exc:
        return undecided_profile(str(exc), plan)
    try:
        target = Target(plan.public, plan.ports, responder.secret)
        protos = in_netns(client_netns, profile, target, LAB_WAIT if lab else REMOTE_WAIT, budget)
    finally:
        responder.stop()
    return NatProfile(protos, len(plan.public), len(plan.ports))


def attach(verdict: Any, profile: NatProfile, router_pcap: str | None, facts: Mapping[str, str]) -> Any:
    """``verdict`` (rig.verdict.Verdict) with the profile, its layers filled from the router
    capture where there is one."""
    from rig.nat.layers import with_layers

    return with_profile(verdict, with_layers(profile, router_pcap, facts))


def carried(verdict: Any, recorded: Mapping[str, Any] | None) -> Any:
    """A re-analysed ``verdict`` (rig show) with the ``nat`` section of the ``recorded``
    one: the captures do not hold the profile (the NAT tests' traffic is kept out of them)."""
    raw = (recorded or {}).get("nat")
    if not raw:
        return verdict
    try:
        profile = NatProfile.from_dict(raw)
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"malformed nat section in the recorded verdict: {exc!r}") from exc
    return with_profile(verdict, profile)


def with_profile(verdict: Any, profile: NatProfile) -> Any:
    """``verdict`` with its ``nat`` key; a run of the NAT tests alone, with no exchange to
    speak of, gets the profile's summary as its diagnosis, and a diagnosis of failures
    gains what the profile says about them (rig.nat.words.failure_clause)."""
    from rig.nat.words import failure_clause, summary

    verdict = dataclasses.replace(verdict, nat=profile)
    diag = verdict.diagnosis
    if not verdict.exchanges:
        return dataclasses.replace(verdict, diagnosis=dataclasses.replace(diag, summary=summary(profile)))
    clause = failure_clause(profile, diag.by_protocol)
    if clause:
        verdict = dataclasses.replace(verdict, diagnosis=dataclasses.replace(diag, summary=f"{diag.summary}; {clause}"))
    return verdict
