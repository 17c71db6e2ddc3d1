"""``rig probe HOST[:PORT]``: the destination that fails, a server rig does not control.

From the client side only: tcpdump at the client, one probe of the protocol asked
(a TCP handshake, a UDP datagram, ICMP echoes), then the forward trace with the probe's
own 5-tuple. There is no server capture, so the one-ended verdict uses the contract's
outcome words only where the client alone can tell (``delivered``; ``refused`` for a
RST or unreachable the client saw, whoever sent it) and says ``incomplete`` where only
a capture at the server could (no answer: lost on the way out, unanswered, or lost on
the way back). ``lost_at`` then holds what the forward trace showed.

``--compare BUNDLE`` puts it beside a responder run (``rig run``): the outcomes to
both, and the hop where the two forward paths part. ``--lab SCENARIO`` runs it from the
lab's client namespace toward a lab address (the lab's server namespace plays the
third-party server): how it is tested, never sending anywhere outside the lab.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import json
import socket
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

from rig.errors import UsageError
from rig.outcome import Outcome
from rig.trace.forward import forward
from rig.trace.nodes import Namer, ends_namer, named
from rig.trace.records import LostAt, Trace
from rig.trace.locate import trace_evidence
from rig.trace.words import place, with_places

DEFAULT_PORT = {"tcp": 80, "udp": 53, "icmp": 0}
UDP_PAYLOAD = b"rig-probe"


@dataclass(frozen=True)
class Target:
    host: str  # as the user wrote it
    addr: str  # the IPv4 address it resolved to
    port: int  # 0 for icmp
    proto: str

    @property
    def label(self) -> str:
        return f"{self.host}:{self.port}" if self.proto != "icmp" else self.host


def parse_target(text: str, proto: str | None) -> Target:
    """HOST[:PORT] and --proto -> a Target (UsageError on bad input; the name is
    resolved here, IPv4 only)."""
    host, _, port_text = text.rpartition(":") if text.count(":") == 1 else (text, "", "")
    if not host:
        raise UsageError(f"bad destination {text!r}: expected HOST[:PORT]")
    proto = proto or ("tcp" if port_text else "icmp")
    if proto == "icmp" and port_text:
        raise UsageError("an ICMP probe takes no port")
    try:
        port = int(port_text) if port_text else DEFAULT_PORT[proto]
    except ValueError:
        raise UsageError(f"bad port {port_text!r} in {text!r}") from None
    if proto != "icmp" and not 0 < port < 65536:
        raise UsageError(f"bad port {port} in {text!r}: 1-65535")
    try:
        addr = str(ipaddress.IPv4Address(host))
    except ValueError:
        try:
            addr = str(socket.getaddrinfo(host, None, socket.AF_INET)[0][4][0])
        except (socket.gaierror, IndexError) as exc:
            raise UsageError(f"cannot resolve {host!r} to an IPv4 address ({exc})") from None
    return Target(host, addr, port, proto)


def _probe(netns: str | None, t: Target, timeout: float) -> list:
    from rig.probes.runner import run_probes

    kinds = {"tcp": ("tcp",), "udp": ("udp",), "icmp": ("icmp",)}[t.proto]
    return run_probes(netns, t.addr, kinds, timeout=timeout, run_tag="probe", tcp_port=t.port or 80,
                      udp_port=t.port or 53, icmp_sizes=(84,) * 3)


def _one_ended(p, t: Target) -> tuple[Outcome, str, str | None]:
    """(outcome, explanation, undecided_because) from what the client saw of probe ``p``."""
    from rig.probes import records as r

    if p.ok or p.error == r.ECHO_MISMATCH:  # a UDP answer is an answer, whatever it holds
        return Outcome.DELIVERED, f"{t.label} answered the client", None
    if p.error in (r.REFUSED, r.RESET, r.HOST_UNREACHABLE, r.NET_UNREACHABLE):
        return (Outcome.REFUSED, f"the client got '{p.error}' (without a capture at {t.host}, "
                                 "rig cannot tell whether the server or a box on the way sent it)", None)
    why = f"destination {t.host} is not rig's: no capture there shows whether the request arrived"
    return Outcome.INCOMPLETE, f"no answer reached the client ({p.error or 'nothing came back'})", why


def _lost_at(outcome: Outcome, trace: Trace, name: Namer) -> LostAt | None:
    """What the forward trace says about an exchange the client got no answer for."""
    if outcome != Outcome.INCOMPLETE:
        return None
    if trace.error:
        return LostAt("out", None, None, (), trace.error)
    if trace.reached:
        return LostAt("out", None, None, trace_evidence(trace),
                      f"the trace's copies reach {trace.target} (from TTL {trace.arrived_ttl}): "
                      "without a capture there rig cannot tell which way the loss is")
    last = trace.last_answer
    if last is None:
        return LostAt("out", None, None, trace_evidence(trace), "no hop answered the trace")
    # Silence past hop k does not say the copies died there: the hops past it may not
    # answer traces, and a request that arrived may have its reply lost on the way back
    # (the seed: SYN-ACKs dropped at the hgw look exactly like this from the client).
    # Without a capture at the destination (or a router capture) no device is named.
    node = name("out", last.ttl, last.address)
    hop = f"hop {last.ttl} ({last.address}{f', {node}' if node else ''})"
    return LostAt("out", None, None, trace_evidence(trace),
                  f"the trace's copies are answered up to {hop} and not past it: they may die past it, "
                  f"the hops past it may not answer traces, or the replies may be lost on the way back; "
                  f"without a capture at {trace.target} rig cannot tell which")


def probe_destination(t: Target, netns: str | None, iface: str, workdir: Path, timeout: float = 3.0,
                      name: Namer | None = None, router=None):
    """Capture, probe, trace: returns (Verdict, [Trace], probes). ``router``: a capture at
    the user's router (``rig.trace.router``), not started, or None. The captures stop
    before the trace, whose copies would join the probe's exchanges."""
    from rig.analysis.diagnosis import diagnose
    from rig.capture.tcpdump import LocalCapture, start_all, stop_all
    from rig.verdict import CapturePointInfo, Exchange, Verdict

    name = name or ends_namer(t.addr, None)
    pcap = workdir / "client.pcap"
    caps = [LocalCapture("client", iface, str(pcap), f"host {t.addr}", netns), *([router] if router else [])]
    start_all(caps)
    try:
        probes = _probe(netns, t, timeout)
        results = stop_all(caps)
    finally:
        for c in caps:
            if getattr(c, "result", None) is None:
                c.abort()
    for r in results:
        (workdir / f"tcpdump-{r.point}.txt").write_text(r.stderr)
    first = probes[0]
    sport = int(first.local.rsplit(":", 1)[1]) if t.proto != "icmp" and first.local else None
    echo_id = first.seen.get("ident") if t.proto == "icmp" else None
    trace = named(dataclasses.replace(forward(netns, t.proto, t.addr, t.port, sport, echo_id),
                                      exchange=f"{t.proto}-1"), name)
    views = {}
    if router is not None:
        from rig.trace.router_view import router_views

        views = router_views(pcap, Path(results[1].file), t.addr)
    exchanges = []
    for i, p in enumerate(probes, 1):
        outcome, words, why = _one_ended(p, t)
        server = f"{t.addr}:{t.port}" if t.proto != "icmp" else t.addr
        e = Exchange(f"{t.proto}-{i}", t.proto, p.local or "", server, None, outcome, words,
                     undecided_because=why, lost_at=_lost_at(outcome, trace, name))
        if router is not None:
            from rig.trace.router_view import exchange_key, with_router

            echo = (p.seen.get("ident"), p.seen.get("seq")) if t.proto == "icmp" else None
            e = with_router(e, views.get(exchange_key(t.proto, p.local, echo)), trace, t.host)
        exchanges.append(e)
    diag = diagnose(tuple(exchanges))
    clauses = list(dict.fromkeys(place(t.proto, e.lost_at) for e in exchanges if e.lost_at is not None))
    diag = dataclasses.replace(diag, summary=with_places(diag.summary, clauses))
    points = tuple(CapturePointInfo(r.point, Path(r.file).name, r.packets or 0, 0, r.kernel_drops or 0)
                   for r in results)
    return Verdict(points, tuple(exchanges), diag), [trace], probes


# ------------------------------------------------------------------ --compare


def _path(traces: list[Mapping[str, Any]], proto: str) -> list[str | None]:
    """The forward path's hop addresses by TTL (None where no hop answered)."""
    outs = [t for t in traces if t.get("direction") == "out"]
    pick = next((t for t in outs if t.get("protocol") == proto), outs[0] if outs else None)
    if pick is None:
        return []
    by = {h["ttl"]: h["address"] for h in pick.get("hops", ())}
    return [by.get(i) for i in range(1, max(by, default=0) + 1)]


def _words(by: Mapping[str, Mapping[str, int]], proto: str) -> str:
    counts = by.get(proto) or {}
    if not counts:
        return f"{proto.upper()} was not probed"
    if all(Outcome.known(o) is not None and Outcome(o).clean for o in counts):
        return f"{proto.upper()} works"
    return f"{proto.upper()} is {', '.join(f'{o} ×{n}' for o, n in counts.items())}"


def compare(verdict: Mapping[str, Any], traces: list, t: Target, bundle_verdict: Mapping[str, Any],
            bundle_traces: list, bundle_name: str) -> dict[str, Any]:
    """The ``compare`` key: the responder's outcomes beside the destination's, and where
    the two forward paths part (None: they do not, as far as both traces went)."""
    mine, theirs = _path(traces, t.proto), _path(bundle_traces, t.proto)
    same = 0
    for a, b in zip(mine, theirs):
        if a is None or a != b:
            break
        same += 1
    parts = same < min(len(mine), len(theirs))
    resp_by = (bundle_verdict.get("diagnosis") or {}).get("by_protocol") or {}
    dest_by = (verdict.get("diagnosis") or {}).get("by_protocol") or {}
    words = f"to your responder {_words(resp_by, t.proto)}; to {t.label} {_words(dest_by, t.proto)}"
    if not theirs:
        words += "; the responder run recorded no forward trace"
    elif parts:
        words += f"; the forward traces are identical up to hop {same}, where the paths part"
    else:
        words += f"; the forward traces are identical for all {same} hops both show"
    return {"bundle": bundle_name, "responder_by_protocol": resp_by, "same_hops": same,
            "paths_part_after_hop": same if parts else None, "summary": words}


# ------------------------------------------------------------------ the command


@contextlib.contextmanager
def _client_side(lab: str | None, spec) -> Iterator[tuple[str | None, str, Namer | None, Any]]:
    """(netns, capture interface, namer, rig) for the client: this host, or a lab (with
    the router's sshd when ``spec`` asks for a capture there over SSH)."""
    if lab is None:
        yield None, "any", None, None
        return
    from rig.backends.base import RunSpec
    from rig.backends.lab import LabBackend
    from rig.lab.topology import seed_topology
    from rig.trace.nodes import lab_namer

    backend = LabBackend()
    rig = backend.provision(RunSpec(scenario=lab, capture_at=spec.capture_at, options=dict(spec.options)))
    try:
        yield rig.client_netns, "eth0", lab_namer(seed_topology()), rig
    finally:
        backend.teardown(rig)


def _router_capture(spec, rig, path: Path, t: Target, stack: contextlib.ExitStack):
    """The capture at the user's router the config asks for (None: none): over SSH
    (``router=user@host[:port]``; the SSH session closes with ``stack``), or the lab's
    router namespace (``--capture-at router`` with ``--lab``)."""
    from rig.capture.tcpdump import LocalCapture
    from rig.trace.router import OPTION, open_at

    bpf = f"host {t.addr}"
    if spec.options.get(OPTION):
        if rig is not None:
            opened = open_at(spec.options, str(path), bpf, rig.ssh.key_file, rig.client_netns, rig.facts,
                             rig.facts.get("remote_tmp", "/tmp"))
        else:
            opened = open_at(spec.options, str(path), bpf, spec.options.get("identity"), None)
        stack.callback(opened[0].close)
        return opened[1]
    if "router" not in spec.capture_at:
        return None
    point = next((cp for cp in (rig.capture_points if rig is not None else ()) if cp.name == "router"), None)
    if point is None:
        raise UsageError("rig probe --capture-at router: name the router to reach, router=user@host[:port]")
    return LocalCapture("router", point.iface, str(path), bpf, point.netns)


def _in_lab(addr: str) -> bool:
    from rig.lab.topology import seed_topology

    nets = [ipaddress.IPv4Interface(e.addr).network for link in seed_topology().links for e in (link.a, link.b)]
    return any(ipaddress.IPv4Address(addr) in n for n in nets)


def cli_probe(args) -> int:
    """rig probe HOST[:PORT] [--proto] [--compare BUNDLE] [--json] [--out DIR] [--lab SCENARIO]"""
    from rig.bundle.reader import open_bundle
    from rig.errors import InfraError

    from rig.config import load_spec

    t = parse_target(args.destination, args.proto)
    spec = load_spec(args)  # rig.toml and --capture-at, as for rig run (the router's options)
    if args.lab is not None and not _in_lab(t.addr):
        raise UsageError(f"--lab probes only addresses inside the lab, not {t.addr}")
    base: tuple[Mapping[str, Any], list, str] | None = None
    if args.compare:
        with open_bundle(args.compare) as b:
            if b.verdict is None:
                raise UsageError(f"{args.compare}: the run left no verdict to compare with")
            tf = b.root / "logs" / "traces.json"
            base = (b.verdict, json.loads(tf.read_text()) if tf.is_file() else [], str(args.compare))
    with contextlib.ExitStack() as stack:
        workdir = Path(args.out) if args.out else Path(stack.enter_context(tempfile.TemporaryDirectory()))
        workdir.mkdir(parents=True, exist_ok=True)
        try:
            with _client_side(args.lab, spec) as (netns, iface, name, rig), contextlib.ExitStack() as ssh:
                if rig is not None and args.out:  # which lab ran it (``rig clean --prefix``)
                    (workdir / "lab.json").write_text(json.dumps({"prefix": rig.facts["prefix"], "scenario": args.lab}))
                router = _router_capture(spec, rig, workdir / "router.pcap", t, ssh)
                verdict, traces, probes = probe_destination(t, netns, iface, workdir, args.timeout, name, router)
        except OSError as exc:
            raise InfraError(f"the probe of {t.label} failed: {exc}") from exc
        vd = verdict.to_dict()
        tdicts = [tr.to_dict() for tr in traces]
        if base is not None:
            vd["compare"] = compare(vd, tdicts, t, *base)
            vd["diagnosis"]["summary"] += f". Compared: {vd['compare']['summary']}"
        if args.out:
            (workdir / "verdict.json").write_text(json.dumps(vd, indent=1) + "\n")
            (workdir / "traces.json").write_text(json.dumps(tdicts, indent=1) + "\n")
            (workdir / "probes.jsonl").write_text("".join(json.dumps(p.to_dict()) + "\n" for p in probes))
    if args.json:
        sys.stdout.write(json.dumps(vd, indent=1) + "\n")
    else:
        for e in vd["exchanges"]:
            print(f"{e['id']:8} {e['client']} > {e['server']}  {e['outcome']}: {e['explanation']}")
        print(f"Diagnosis: {vd['diagnosis']['summary']}")
    return verdict.exit_code()
