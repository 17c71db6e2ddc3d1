"""Re-analysis of an archived run with this rig (``rig show BUNDLE``): the captures go
through the current analysis; a verdict that differs from the recorded one is said."""

from __future__ import annotations

import json
import sys
from typing import Any, Mapping

from rig import __version__
from rig.bundle.files import write_output
from rig.bundle.manifest import BUNDLE_VERSION, VERDICT
from rig.bundle.reader import Bundle, open_bundle
from rig.errors import InputError
from rig.outcome import Outcome
from rig.verdict import ExchangeList, Verdict, write_verdict_json


def reanalyse(b: Bundle):
    """Run the current rig's analysis on the bundle's captures; returns a Verdict."""
    from rig.analysis.api import analyse
    from rig.analysis.windows import windows_from_manifest
    from rig.capture import read_capture
    from rig.capture.checks import ensure_distinct

    if "client" not in b.captures or "server" not in b.captures:
        have = ", ".join(sorted(b.captures)) or "none"
        why = f" (the run {b.status}: {b.manifest.error})" if b.status in ("failed", "interrupted") else ""
        raise InputError(f"{b.source}: needs captures/client.pcap and captures/server.pcap to re-analyse, has {have}{why}")

    def read(point: str):
        name = b.captures[point].name
        try:
            cap = read_capture(str(b.captures[point]), lean=True)
        except InputError as exc:
            raise InputError(f"{b.source}: captures/{name}: {exc}") from exc
        except (ValueError, OSError, EOFError, IndexError) as exc:
            raise InputError(f"{b.source}: captures/{name} cannot be read ({exc})") from exc
        if getattr(cap, "truncated_tail", False):
            raise InputError(
                f"{b.source}: captures/{name} is truncated after {len(cap.packets)} packets "
                "(its last record is cut short); the verdict would be built on a partial capture"
            )
        return cap

    client, server = read("client"), read("server")
    ensure_distinct(client, server)
    extra = {p: read(p) for p in b.captures if p not in ("client", "server")} or None
    server_addr = b.manifest.backend.get("server_addr") or b.manifest.facts.get("server_addr")
    addr6 = b.manifest.backend.get("server_addr6") or b.manifest.facts.get("server_addr6")
    traced_to = server_addr  # the traces went to this one address (rig.trace.stage)
    if server_addr and addr6:  # a dual-stack server: both addresses are the server's
        server_addr = f"{server_addr},{addr6}"
    drops = dict(b.manifest.kernel_drops) or None
    windows = windows_from_manifest(b.manifest.facts)  # when each tcpdump listened (rig run)
    verdict = analyse(client, server, server_addr=server_addr, extra=extra, kernel_drops=drops, windows=windows)
    verdict = _with_traces(b, verdict, traced_to)
    if (b.verdict or {}).get("nat"):
        from rig.nat.run import carried

        verdict = carried(verdict, b.verdict)  # the NAT profile is not in the captures
    if not b.probes:
        return verdict
    from rig.analysis.unsent import not_sent_in_records, with_probes

    return with_probes(verdict, not_sent_in_records(b.probes))  # the probes no capture can show


def _with_traces(b: Bundle, verdict, server_addr: str | None):
    """lost_at again, from the traces the run recorded (logs/traces.json; rig.trace)."""
    path = b.root / "logs" / "traces.json"
    if not path.is_file() or not server_addr:
        return verdict
    try:
        traces = json.loads(path.read_text())
        from rig.trace.stage import relocate

        return relocate(verdict, traces, server_addr, _lab_namer(b))
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{b.source}: logs/traces.json cannot be read ({exc})") from exc


def _lab_namer(b: Bundle):
    """The namer the run used where the bundle is the lab's (rig.trace.run): its hops named
    from the topology of the access line it built, a silent hop too; None elsewhere (the
    traces' own names, ``stage.recorded_namer``)."""
    backend = b.manifest.backend
    if backend.get("name") != "lab" or not backend.get("ns_server"):
        return None
    from rig.lab.access import ACCESS, access_topology
    from rig.trace.nodes import lab_namer

    access = backend.get("access", "plain")
    return lab_namer(access_topology(access)) if access in ACCESS else None


def check_outcomes(b: Bundle) -> None:
    """Refuse a recorded verdict whose outcome words this rig does not know (a newer rig's):
    its verdict cannot be compared with this rig's, and saying "it differs" would hide why."""
    for e in (b.verdict or {}).get("exchanges") or ():
        if isinstance(e, Mapping):
            Outcome.parse(e.get("outcome"), f"{b.source}: {VERDICT}, exchange {e.get('id')}")


def outcome_signature(verdict: Mapping[str, Any] | None) -> tuple:
    """What must be equal for two verdicts to say the same thing: outcomes per exchange."""
    if not verdict:
        return ()
    return tuple((e.get("id"), e.get("outcome")) for e in verdict.get("exchanges", ()) if isinstance(e, Mapping))


def _signature(verdict: Verdict) -> tuple:
    """``outcome_signature`` of a verdict just made, without building its evidence and frames."""
    ex = verdict.exchanges
    if isinstance(ex, ExchangeList):
        return tuple(ex.outcomes())
    return tuple((e.id, e.outcome) for e in ex)


def cli_show(args) -> int:
    """rig show BUNDLE [--json] [--html FILE]"""
    with open_bundle(args.bundle) as b:
        if b.upgraded_from is not None:
            print(f"rig: {b.source}: read bundle format {b.upgraded_from}, upgraded to {BUNDLE_VERSION}", file=sys.stderr)
        for w in b.warnings:
            print(f"rig: {w}", file=sys.stderr)
        if b.status == "running":
            print(f"rig: {b.source}: the run never finished (killed?); showing what it left", file=sys.stderr)
        check_outcomes(b)
        verdict = reanalyse(b)
        if b.verdict is not None and outcome_signature(b.verdict) != _signature(verdict):
            print(
                f"rig: {b.source}: re-analysed with rig {__version__}, the verdict differs from the one recorded "
                f"by rig {b.manifest.rig_version}",
                file=sys.stderr,
            )
        if args.json:
            write_verdict_json(verdict, sys.stdout)
        else:
            from rich.console import Console

            from rig.render import print_verdict

            print_verdict(verdict, Console())
        if getattr(args, "html", None):
            from rig.report.html import render_report

            tf = b.root / "logs" / "traces.json"
            traces = json.loads(tf.read_text()) if tf.is_file() else None
            html = render_report(verdict.to_dict(), manifest=b.manifest.to_json(), probes=b.probes, captures=b.captures,
                                 traces=traces)
            write_output(args.html, html)
            if not args.json:
                print(f"report: {args.html}")
        return verdict.exit_code()
