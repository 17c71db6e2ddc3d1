"""`rig run`: the whole pipeline of DESIGN.md §1, with teardown on every exit path.

    provision -> configure -> preflight -> captures start -> probes -> captures stop
    -> analysis -> verdict (+ bundle) -> teardown

``Pipeline`` runs the stages in order; each stage is a call into its own module
(rig.configure, rig.preflight, rig.capture.tcpdump, rig.probes, rig.analysis) and is
timed into the bundle's manifest. On a lab the run provisioned itself, whose provision
already started the responder from the playbook's own templates, the playbook runs
beside preflight, captures and probes, and must end well having changed nothing before
the verdict is written (``Pipeline.configure_beside``). Probes start only once every capture is listening;
captures stop only after the probes, and are flushed. Teardown runs on success, on any
failure, on Ctrl-C and on SIGTERM (rig.cli turns it into KeyboardInterrupt); while it
runs, further SIGINT/SIGTERM are held back so a second signal cannot abort it.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from rig.backends.base import Rig, RunSpec
from rig.concurrency import Background, on_main_thread, run_all, start
from rig.errors import EXIT_INFRA, InfraError, MissingToolError, NotRootError, RigError

STAGES = ("provision", "configure", "preflight", "captures start", "probes", "nat", "captures stop",
          "analysis", "trace", "verdict", "teardown")


# ------------------------------------------------------------------ signals


class Signals:
    """SIGINT/SIGTERM during a run (installed on the main thread only).

    The first signal raises KeyboardInterrupt (rig.cli reports it; "SIGTERM" says which),
    unless signals are being held (``holding()``, around the lab's provision: a
    half-built lab is never left without a Rig to tear down), in which case it is raised
    when the hold ends. From ``shield()`` on (teardown, sealing the bundle) and after
    the first signal, further signals are only counted: a second Ctrl-C cannot abort
    teardown."""

    def __init__(self) -> None:
        self.hold = False
        self.fired = False
        self.shielded = False
        self.pending: int | None = None
        self.raised: int | None = None  # the signal whose KeyboardInterrupt was raised
        self.received: int | None = None  # the first signal before shield(): the run was interrupted
        self.ignored = 0
        self._old: dict[int, Any] = {}
        self._old_hook: Any = None

    def _handle(self, signum, frame) -> None:
        if self.received is None and not self.shielded:
            self.received = signum
        if self.fired:
            self.ignored += 1
            return
        if self.hold:
            self.pending = signum
            return
        self.fired = True
        self.raised = signum
        raise KeyboardInterrupt("SIGTERM" if signum == signal.SIGTERM else "")

    def check(self) -> None:
        """Raise again an interrupt that was raised but never arrived. A signal handled
        while Python runs a weakref callback or ``__del__`` has its KeyboardInterrupt
        printed and dropped ('Exception ignored in: ... WeakSet ... KeyboardInterrupt',
        seen in test_run_signals), and the run went on to its end. Called at every
        stage boundary; once shielded (teardown) it does nothing."""
        if self.raised is not None and not self.shielded:
            signum, self.raised = self.raised, None
            raise KeyboardInterrupt("SIGTERM" if signum == signal.SIGTERM else "")

    def install(self, hold: bool = False) -> "Signals":
        """Handle SIGINT/SIGTERM from now on (once; a second call changes nothing).
        ``hold``: a signal is kept until ``release()`` (rig.run.cli_run installs them
        held before anything is made, and the run releases them inside its ``try``,
        so a signal at any moment ends in a sealed, ``interrupted`` bundle)."""
        if on_main_thread() and not self._old:
            self.hold = self.hold or hold
            self._old_hook, sys.unraisablehook = sys.unraisablehook, self._unraisable
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _unraisable(self, info: Any) -> None:
        """Python prints "Exception ignored in ... Traceback ... KeyboardInterrupt" when
        the interrupt was raised inside a weakref callback or ``__del__`` (seen during
        the paramiko import under load); ``check()`` raises it again at the next stage
        boundary, so that one is not printed. Anything else goes to the usual hook."""
        if issubclass(info.exc_type, KeyboardInterrupt) and self.raised is not None:
            return
        (self._old_hook or sys.__unraisablehook__)(info)

    def release(self) -> None:
        """End a hold: a signal that came meanwhile is raised now."""
        self.hold = False
        if self.pending is not None and not self.fired:
            self.fired = True
            self.raised = self.pending
            raise KeyboardInterrupt("SIGTERM" if self.pending == signal.SIGTERM else "")

    def restore(self) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        if self._old:
            sys.unraisablehook = self._old_hook or sys.__unraisablehook__
        self._old.clear()

    @contextlib.contextmanager
    def holding(self) -> Iterator[None]:
        self.hold = True
        try:
            yield
        finally:
            self.hold = False
        self.release()

    def why(self) -> str:
        """The bundle's error text for the signal received: "terminated" or "interrupted"."""
        return "terminated" if self.received == signal.SIGTERM else "interrupted"

    def shield(self) -> None:
        """From now on signals are only counted."""
        self.fired = True
        self.shielded = True


# ------------------------------------------------------------------ progress


class Progress:
    """One line per stage on stderr (rich), so --json keeps stdout for the verdict."""

    def __init__(self, quiet: bool = False):
        from rich.console import Console

        self.console = Console(stderr=True, highlight=False)
        self.quiet = quiet

    def done(self, stage: str, seconds: float, note: str = "") -> None:
        if not self.quiet:
            self.console.print(f"[green]✓[/] {stage:<15} {seconds:6.2f} s  [dim]{note}[/]")

    def failed(self, stage: str, seconds: float, why: str) -> None:
        self.console.print(f"[red]✗[/] {stage:<15} {seconds:6.2f} s  {why}")

    def say(self, text: str) -> None:
        if not self.quiet:
            self.console.print(text)


# ------------------------------------------------------------------ environment

LOCAL_TOOLS = {"tcpdump": "tcpdump", "ip": "iproute2", "ss": "iproute2"}


def which(tool: str) -> str | None:
    return shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/sbin:/usr/local/sbin")


def check_environment(spec: RunSpec) -> None:
    """Not root or a missing tool: one clear line saying what to do."""
    if spec.backend == "lab" and os.geteuid() != 0:
        raise NotRootError("rig run with the lab backend needs root (network namespaces, tcpdump, sshd, "
                           "Apache): run it with sudo")
    tools = dict(LOCAL_TOOLS)
    if spec.configure:
        tools["ssh"] = "openssh-client"
    for tool, pkg in tools.items():
        if which(tool) is None:
            raise MissingToolError(f"{tool} not found: install {pkg} (e.g. 'apt-get install {pkg}' or 'make system')")


def default_out(spec: RunSpec, root: str = "runs") -> Path:
    """./runs/<UTC timestamp>-<scenario>/, made here (a second run in the same second
    gets -2, -3...)."""
    from rig.bundle.outdir import prepare_out

    return prepare_out(None, spec.scenario, default_root=root).path


# ------------------------------------------------------------------ the pipeline


@dataclass(frozen=True)
class RunOutcome:
    exit_code: int
    out: Path
    status: str  # bundle status: ok | path-problem | failed | interrupted
    verdict: Any = None
    rig: Rig | None = None


class Pipeline:
    def __init__(self, spec: RunSpec, out: Path, progress: Progress | None = None, backend=None,
                 signals: Signals | None = None):
        from rig.bundle import BundleWriter

        if backend is None and spec.options.get("rig_id"):  # `rig run --rig NAME`: a rig kept by `rig up`
            from rig.lifecycle import KeptBackend

            backend = KeptBackend(spec.options["rig_id"])
        if backend is None:
            from rig.backends import get_backend

            try:
                backend = get_backend(spec.backend)()
            except ImportError as exc:
                raise InfraError(f"the {spec.backend} backend cannot be loaded: {exc}") from exc
        self.backend = backend
        self.spec = spec
        self.out = out
        self.progress = progress or Progress(quiet=True)
        self.bundle = BundleWriter(out, spec)
        self.rig: Rig | None = None
        self.signals = signals or Signals()
        self._own_signals = signals is None  # (given: the caller restores them, after its output)
        self.captures: list = []
        self.probes: list = []
        self.capture_results: list = []
        self.verdict: Any = None
        self.traces: list = []
        self.nat: Any = None  # rig.nat.records.NatProfile, when --probes has nat
        self._configuring: Any = None  # rig.configure.Configuring, once the playbook runs
        self._configured: Any = None
        self._ending = False  # the run is on its way out: a playbook still running is cancelled
        self._beside: Any = None  # (start, end of its stage record) of a playbook run beside the probes

    @property
    def _rig(self) -> Rig:
        """The provisioned Rig: every stage after provision has one."""
        if self.rig is None:
            raise RuntimeError("a stage that needs the rig ran before provision")
        return self.rig

    @contextlib.contextmanager
    def stage(self, name: str, note: Callable[[], str] = lambda: "") -> Iterator[None]:
        self.signals.check()
        t = time.monotonic()
        try:
            with self.bundle.stage(name):
                yield
            self.signals.check()
        except BaseException as exc:
            self.progress.failed(name, time.monotonic() - t, _why(exc))
            raise
        self.progress.done(name, time.monotonic() - t, note())

    # -- stages
    def provision(self) -> Rig:
        # the lab builds in well under a second: hold Ctrl-C until the Rig exists, so
        # teardown always has a complete description of what to remove
        hold = self.signals.holding() if self.spec.backend == "lab" else contextlib.nullcontext()
        with self.stage("provision", lambda: f"{self._rig.backend} {self._rig.run_id} server {self._rig.server_addr}"):
            with hold:  # the facts too: an interrupted run's bundle still names its lab
                self.rig = self.backend.provision(self.spec)
                self.bundle.set_facts(backend={"name": self.rig.backend, "run_id": self.rig.run_id,
                                               "server_addr": self.rig.server_addr, **dict(self.rig.facts)})
        return self.rig

    def configure(self) -> None:
        from rig.configure import start

        # a signal cancels the playbook (ansible-runner kills it) and is raised afterwards.
        # The stage ends when the play has (ansible's closing stats, no failure): the
        # stages after it go on while ansible-playbook exits (``configured_fully``)
        with self.stage("configure", lambda: f"{self._configured.changed} changed"):
            with self.signals.holding():
                self._configuring = start(self._rig, log_path=self.bundle.log_path("ansible.log"),
                                          cancel=lambda: self.signals.pending is not None or self._ending)
                self._configured = self._configuring.applied()

    def provisioned_as_configured(self) -> bool:
        """Whether the rig is a lab this run provisioned: its provision started Apache and
        the UDP echo from the templates the playbook renders, to the same places, so the
        playbook finds them as it wants them, reads that, and changes nothing (a kept rig,
        ``--rig``, may have drifted since)."""
        return self.spec.backend == "lab" and self._rig.backend == "lab" and not self.spec.options.get("rig_id")

    def configure_beside(self) -> None:
        """The playbook on a fresh lab (``provisioned_as_configured``): it runs beside
        preflight, captures and probes rather than before them, and ``configured_fully``
        (before the verdict) ends its stage: the verdict is written only if it ended well
        and changed nothing. A playbook that changed the responder while the probes ran
        voids them: InfraError (exit 3)."""
        from rig.configure import start

        self.signals.check()
        self._beside = (time.monotonic(), self.bundle.begin_stage("configure"))
        try:
            self._configuring = start(self._rig, log_path=self.bundle.log_path("ansible.log"),
                                      cancel=lambda: self._ending)
        except BaseException as exc:
            self._end_beside(_why(exc))
            raise

    def _end_beside(self, why: str | None, note: str = "", say: bool = True) -> None:
        """Close the stage of the playbook run beside the probes: its record, with the
        seconds to the play's end (to now if it has not played), ``why`` it failed (None:
        it did not); ``say``: its progress line too."""
        t, end = self._beside
        self._beside = None
        played_at = self._configuring.played_at if self._configuring is not None else None
        seconds = (played_at or time.monotonic()) - t
        end(seconds, why)
        if not say:
            return
        if why is None:
            self.progress.done("configure", seconds, note)
        else:
            self.progress.failed("configure", seconds, why)

    def configured_fully(self) -> None:
        """The playbook's whole run has ended well (its log written, its SSH masters
        closed): InfraError if it did not. Before the verdict is written. For a playbook
        that ran beside the probes, its stage ends here, and it must have changed nothing."""
        if self._beside is not None:
            from rig.configure import PLAYBOOK

            try:
                applied = self._configuring.applied()
                if applied.changed:
                    raise InfraError(f"configure ({PLAYBOOK}) changed {applied.changed} things on the lab's responder, "
                                     "which its provision had set up as wanted: the probes, made meanwhile, met another")
            except BaseException as exc:
                self._end_beside(_why(exc))
                raise
            self._end_beside(None, f"{applied.changed} changed (beside preflight and probes)")
        if self._configuring is not None:
            self._configured = self._configuring.result()

    def _stop_configuring(self) -> None:
        """On the way out: a playbook still running or exiting is stopped (cancelled,
        within CANCEL_POLL) and waited for, so no SSH master of it outlives the run; a
        stage of it still open is closed with what became of it."""
        self._ending = True
        if self._configuring is not None:
            self._configuring.wait()
        if self._beside is not None:
            why = None
            try:
                if self._configuring.result().status == "canceled":
                    why = "canceled: the run ended first"
            except BaseException as exc:
                why = _why(exc)
            self._end_beside(why, say=False)

    def preflight_and_captures(self, ssh) -> None:
        """Preflight, while the captures start (the preflight talks to the server from
        the server itself, on its loopback: the captures do not see it); probes, then
        captures stop."""
        from rig.capture.tcpdump import LocalCapture, RemoteCapture, ssh_exclusion, start_all, stop_all
        from rig.preflight import preflight
        from rig.probes.records import make_nonce
        from rig.probes.runner import parse_kinds, run_probes

        from rig.nat.run import capture_exclusion, split_probes

        rig, spec = self._rig, self.spec
        kinds, nat = split_probes(spec.probes or _scenario_probes(spec))
        bpf = ssh_exclusion(rig.ssh.port)  # rig's own SSH control connection stays out
        for cp in rig.capture_points:
            if cp.name not in spec.capture_at and cp.name not in ("client", "server"):
                continue
            path = str(self.bundle.capture_path(cp.name))
            # the NAT tests' traffic: only the router capture keeps it (rig.nat.run)
            cp_bpf = f"{bpf} and {capture_exclusion(rig.facts, rig.server_addr)}" if nat and cp.name in (
                "client", "server") else bpf
            self.captures.append(RemoteCapture(cp.name, cp.iface, path, ssh, cp_bpf, rig.os_family,
                                               rig.known.remote_tmp) if cp.remote
                                 else LocalCapture(cp.name, cp.iface, path, cp_bpf, cp.netns))
        from rig.trace.router import open_capture  # --capture-at router=user@host

        router = open_capture(spec.options, rig, str(self.bundle.capture_path("router")), bpf)
        if router is not None:
            self.captures.append(router[1])
        starter = Background(lambda: start_all(self.captures), name="captures start")
        try:
            with self.stage("preflight"):
                preflight(rig, ssh, self.backend, nonce=make_nonce(self.out.name, "preflight"))
            with self.stage("captures start", lambda: ", ".join(c.point for c in self.captures)):
                starter.result()
            _preimport(LATE_IMPORTS)
            with self.stage("probes", lambda: _probe_note(self.probes)):
                if kinds != ():
                    self.probes = run_probes(rig.client_netns, rig.server_addr, parse_kinds(kinds),
                                             timeout=spec.probe_timeout, burst=spec.burst, run_tag=self.out.name,
                                             tcp_port=rig.known.probe_port, udp_port=rig.known.udp_port,
                                             server_addr6=rig.known.server_addr6)
            if nat:
                self._measure_nat(ssh)
            for p in self.probes:
                self.bundle.add_probe(p)
            # socket states and the access log are read while the captures stop
            # (separate channels; nothing they do is on a captured interface)
            logs = Background(lambda: self._collect_logs(ssh), name="logs")
            with self.stage("captures stop", lambda: _capture_note(self.capture_results)):
                self.capture_results = stop_all(self.captures)
                logs.result()
            self.bundle.set_facts(kernel_drops={r.point: r.kernel_drops for r in self.capture_results},
                                  capture_windows={p: w.to_dict() for p, w in self._windows().items()})
            for r in self.capture_results:
                self.bundle.write_log(f"tcpdump-{r.point}.txt", r.stderr)
        finally:
            starter.wait()  # never abort a capture that is still starting
            for c in self.captures:
                if getattr(c, "result", None) is None:
                    c.abort()
            if router is not None:
                router[0].close()

    def _measure_nat(self, ssh) -> None:
        """The NAT profile (rig.nat), after the other probes."""
        from rig.nat.run import measure, nat_options
        from rig.nat.words import note

        rig = self._rig
        with self.stage("nat", lambda: note(self.nat) if self.nat is not None else ""):
            self.nat = measure(rig.facts, rig.server_addr, ssh, rig.client_netns, rig.known.python or "python3",
                               nat_options(self.spec.options), backend=rig.backend)

    def _collect_logs(self, ssh) -> None:
        """Client socket states, the access log and the server's socket states, at once."""
        run_all([self._client_sockets, lambda: self._access_log(ssh), lambda: self._server_sockets(ssh)])

    def _client_sockets(self) -> None:
        """The client's socket states right after the probes (ss), for logs/."""
        argv = ["ss", "-tanoi"]
        if self._rig.client_netns:
            argv = ["ip", "netns", "exec", self._rig.client_netns, *argv]
        res = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        self.bundle.write_log("ss-client.txt", res.stdout + res.stderr)

    def _access_log(self, ssh) -> None:
        """Apache's access log, fetched over SSH (SFTP)."""
        known = self._rig.known  # server_dir: where the playbook puts it unless told
        log = known.access_log or f"{known.server_dir}/logs/access.log"
        try:
            ssh.fetch(log, str(self.bundle.log_path("access.log")))
        except InfraError as exc:
            self.bundle.write_log("access.log.error", str(exc) + "\n")

    def _server_sockets(self, ssh) -> None:
        res = ssh.run(["sh", "-c", "ss -tan 2>/dev/null || netstat -an -p tcp"], check=False, timeout=15)
        self.bundle.write_log("ss-server.txt", res.stdout + res.stderr)

    def _windows(self) -> dict:
        """When each tcpdump listened, as the analysis takes it (``windows.CaptureWindow``)."""
        from rig.analysis.windows import CaptureWindow

        return {r.point: CaptureWindow(r.listening_ns, r.stop_ns) for r in self.capture_results}

    def analyse(self) -> Any:
        from rig.analysis.api import analyse
        from rig.analysis.unsent import not_sent_of, with_probes
        from rig.capture import read_capture

        with self.stage("analysis", lambda: _verdict_note(self.verdict)):
            caps = {r.point: read_capture(r.file, lean=True) for r in self.capture_results}
            extra = {p: c for p, c in caps.items() if p not in ("client", "server")}
            servers = ",".join(a for a in (self._rig.server_addr, self._rig.known.server_addr6) if a)
            verdict = analyse(caps["client"], caps["server"], server_addr=servers,
                              extra=extra, kernel_drops={r.point: r.kernel_drops for r in self.capture_results},
                              windows=self._windows())
            self.verdict = with_probes(verdict, not_sent_of(self.probes))  # the probes no capture can show
            if self.nat is not None:
                from rig.nat.run import attach

                router = next((r.file for r in self.capture_results if r.point == "router"), None)
                self.verdict = attach(self.verdict, self.nat, router, self._rig.facts)
        self.trace()
        self.configured_fully()
        with self.stage("verdict"):
            self.bundle.write_verdict(self.verdict)
        return self.verdict

    def trace(self) -> None:
        """The traces (rig.trace.stage): where the lost exchanges died; --no-trace skips."""
        from rig.config import run_options

        if not run_options(self.spec.options).trace:
            return
        with self.stage("trace", lambda: _trace_note(self.traces)):
            from rig.trace.run import trace_run
            from rig.trace.wait import trace_wait

            # as long as this path's round trips say an answer can take (the probes measured them)
            wait = trace_wait(self.probes, self._rig.server_addr, self._rig.backend)
            self.bundle.set_facts(trace_wait_s=round(wait, 3))
            self.verdict, self.traces = trace_run(self.verdict, self._rig, wait=wait)
            self.bundle.write_log("traces.json", json.dumps([t.to_dict() for t in self.traces], indent=1))

    def teardown(self) -> None:
        if self.rig is None:
            return
        self.signals.shield()
        t = time.monotonic()
        try:
            with self.bundle.stage("teardown"):
                self.backend.teardown(self.rig)
        except Exception as exc:  # reported; the run's own result stands
            self.progress.failed("teardown", time.monotonic() - t, str(exc))
            return
        note = f"({self.signals.ignored} more signals ignored until it was done)" if self.signals.ignored else ""
        self.progress.done("teardown", time.monotonic() - t, note)

    # -- the whole run
    def run(self) -> RunOutcome:
        status, error, code = "failed", None, EXIT_INFRA
        self.signals.install(hold=True)  # a signal from here on is raised inside the try
        try:
            # with the playbook: only what configure needs, while provision runs (paramiko
            # then made provision 0.1 s longer), the rest while ansible-playbook starts
            _preimport(CONFIGURE_IMPORTS if self.spec.configure else EARLY_IMPORTS, survey_tools=True)
            self.signals.release()
            self.provision()
            if self.spec.configure:
                _preimport(EARLY_IMPORTS)
            early = EarlyConnection(self._rig.ssh) if self.spec.configure and self._rig.backend == "lab" else None
            try:
                if self.spec.configure and self.provisioned_as_configured():
                    self.configure_beside()
                elif self.spec.configure:
                    self.configure()
                from rig.sshclient import SSHClient  # imported by now (first_wave), on the preimport thread

                ssh = early.take() if early is not None else SSHClient(self._rig.ssh)
            except BaseException:
                if early is not None:
                    early.abandon()
                raise
            with ssh:
                self.preflight_and_captures(ssh)
            self.analyse()
            code = int(self.verdict.exit_code())
            status = "ok" if code == 0 else "path-problem"
            return RunOutcome(code, self.out, status, self.verdict, self.rig)
        except KeyboardInterrupt as exc:
            status, error = "interrupted", "terminated" if str(exc) == "SIGTERM" else "interrupted"
            raise
        except BaseException as exc:
            if isinstance(exc, RigError):
                error = str(exc)
            elif isinstance(exc, OSError):  # a write that failed mid-run (the bundle's disk is full)
                error = f"{exc.filename}: {exc.strerror}" if exc.filename and exc.strerror else str(exc)
            else:
                error = f"{type(exc).__name__}: {exc}"
            if self.signals.received is not None:  # a stage failed because of the signal
                status, error = "interrupted", self.signals.why()
                raise KeyboardInterrupt("SIGTERM" if error == "terminated" else "") from exc
            if isinstance(exc, OSError):  # one line, exit 3
                raise InfraError(error) from exc
            raise
        finally:
            while True:  # a first signal right here is raised where shield() starts: take it
                try:
                    self.signals.shield()
                    break
                except KeyboardInterrupt:
                    continue
            late = self.signals.received is not None and status != "interrupted"
            if late:  # the signal came after the last stage: the run is interrupted all the same
                status, error = "interrupted", self.signals.why()
            try:
                self._stop_configuring()
                if self.spec.keep and self.rig is not None:
                    self._print_keep()
                else:
                    self.teardown()
            finally:
                self.bundle.finish(status, error)
                if self._own_signals:
                    self.signals.restore()
            if late:
                raise KeyboardInterrupt("SIGTERM" if error == "terminated" else "")

    def _print_keep(self) -> None:
        rig = self._rig
        prefix = rig.facts.get("prefix", rig.run_id)
        lines = [f"[bold]kept[/] {rig.backend} rig {rig.run_id} (--keep)"]
        if rig.client_netns:
            lines.append(f"  enter the client:  sudo ip netns exec {rig.client_netns} bash")
            for key, ns in sorted(rig.facts.items()):
                if key.startswith("ns_") and ns != rig.client_netns:
                    lines.append(f"  enter the {key[3:]}:  sudo ip netns exec {ns} bash")
        if rig.backend == "lab":
            lines.append(f"  remove it:         sudo rig clean --prefix {prefix}")
        self.progress.console.print("\n".join(lines))


def _why(exc: BaseException) -> str:
    """A stage's failure, as its progress line and its manifest record say it."""
    if isinstance(exc, RigError):
        return str(exc)
    return "interrupted" if isinstance(exc, KeyboardInterrupt) else f"{type(exc).__name__}: {exc}"


class EarlyConnection:
    """rig's own SSH connection to the lab's server, opened on a thread while the
    playbook runs (the lab's sshd listens once provision returns), so the stages after
    configure do not wait for its handshake. ``take()`` after configure: the connection,
    or the error its connect raised, as a connect made then would. ``abandon()`` on the
    way out of a failed configure: closed now, or as soon as its connect returns."""

    def __init__(self, endpoint: Any) -> None:
        self._lock = threading.Lock()
        self._abandoned = False
        self._client: Any = None
        self._connecting = Background(lambda: self._connect(endpoint), name="ssh connect")

    def _connect(self, endpoint: Any) -> Any:
        from rig.sshclient import SSHClient

        client = SSHClient(endpoint).connect()
        with self._lock:
            if self._abandoned:
                client.close()
                return None
            self._client = client
        return client

    def take(self) -> Any:
        return self._connecting.result()

    def abandon(self) -> None:
        with self._lock:
            self._abandoned = True
            client, self._client = self._client, None
        if client is not None:
            client.close()


# Modules the later stages need, imported on a thread while the main one waits (the main
# thread imports none of them before provision), in waves: what configure needs, while
# provision waits on ip/nft and the services; what the captures and probes need
# (paramiko), while ansible-playbook starts (without the playbook: during provision);
# numpy, the analysis and the report, while the probes wait on the network. Measured on
# healthy runs (8 alternated, load ~1.6): paramiko during provision made it 0.1 s
# longer, and it costs configure 0.04 s; numpy and the analysis during configure made
# configure 0.1 s longer; during the SSH handshake they competed with it for the GIL.
EARLY_IMPORTS = ("rig.sshclient", "rig.capture.tcpdump", "rig.preflight", "rig.probes.runner")
CONFIGURE_IMPORTS = ("rig.configure", "ansible_runner")  # the first wave, when the playbook runs
LATE_IMPORTS = ("rig.capture", "rig.analysis.api", "rig.render", "rig.report.html")


def _preimport(names: tuple[str, ...], survey_tools: bool = False) -> threading.Thread:
    def body() -> None:
        for name in names:
            try:
                importlib.import_module(name)
            except Exception:  # the stage that needs it reports it properly
                pass
        if survey_tools:
            try:  # the bundle's survey of tool versions (cached): asked once, early
                from rig.bundle import tool_versions

                tool_versions()
            except Exception:
                pass

    t = threading.Thread(target=body, name="preimport", daemon=True)
    start(t)  # signal-safe: see rig.concurrency.start
    return t


def _scenario_probes(spec: RunSpec) -> tuple[str, ...] | None:
    """The probe kinds the lab's scenario asks for when --probes names none (None: the default set)."""
    if spec.backend != "lab":
        return None
    from rig.lab.scenarios import get

    return get(spec.scenario).probes or None


def _probe_note(probes: list) -> str:
    ok = sum(1 for p in probes if p.ok)
    return f"{len(probes)} probes, {ok} succeeded at the client"


def _capture_note(results: list) -> str:
    return ", ".join(f"{r.point} {r.packets} pkts" + (f" ({r.kernel_drops} dropped)" if r.kernel_drops else "")
                     for r in results)


def _trace_note(traces: list) -> str:
    return ", ".join(f"{t.protocol} {t.direction} {len(t.hops)} hops" for t in traces)


def _verdict_note(verdict: Any) -> str:
    try:
        return verdict.diagnosis.summary
    except AttributeError:
        return ""


# ------------------------------------------------------------------ the CLI handler


def cli_run(args: argparse.Namespace) -> int:
    """The handler of `rig run` (rig.cli)."""
    from rig.config import check_spec, load_spec, run_options

    spec = load_spec(args)
    check_spec(spec)  # the whole spec, before anything is made: a usage error is one line, no bundle
    if run_options(spec.options).dry_run:  # the backend's plan (azure); touches nothing
        from rig.backends import get_backend
        from rig.errors import UsageError

        describe = getattr(get_backend(spec.backend), "describe", None)
        if describe is None:
            raise UsageError(f"--dry-run is not supported by the {spec.backend} backend")
        print(describe(spec))
        return 0
    check_environment(spec)
    from rig.bundle.outdir import prepare_out

    # from here a signal is held until the run can record it: whenever it comes, the
    # bundle (made next, before the banner) is sealed "interrupted" and all is torn down
    signals = Signals().install(hold=True)
    try:
        placed = prepare_out(spec.out, spec.scenario)  # new or empty, never the user's files (README)
        out = placed.path
        if placed.note:
            print(f"rig: {placed.note}", file=sys.stderr)
        progress = Progress(quiet=False)
        try:
            pipeline = Pipeline(spec, out, progress, signals=signals)
        except BaseException:
            if placed.created:
                with contextlib.suppress(OSError):
                    out.rmdir()  # only while still empty: nothing else was made
            raise
        progress.say(f"rig run: backend {spec.backend}, scenario {spec.scenario} -> {out}")
        outcome = pipeline.run()
        # the bundle is sealed: a signal from here on is only counted (signals.shield), so
        # the result is printed whole and the exit code is the bundle's status
        _print_outcome(spec, pipeline, progress, outcome)
    finally:
        signals.restore()
    return outcome.exit_code


def _print_outcome(spec, pipeline: "Pipeline", progress: "Progress", outcome: "RunOutcome") -> None:
    """What ``rig run`` prints once its bundle is sealed: redaction and archive notes, and
    the verdict (JSON, or the table and where the bundle is)."""
    from rig.config import run_options

    # --redact / --archive were done by the bundle's writer as it sealed the bundle
    if run_options(spec.options).redact:
        from rig.bundle import load_manifest

        m = load_manifest(outcome.out)
        if m.redact_error or not isinstance(m.redacted, dict):
            progress.say(f"[red]not redacted[/]: {m.redact_error or 'unknown error'}")
        else:
            progress.say(f"redacted {m.redacted.get('stand_ins', 0)} private addresses in {outcome.out}")
    if pipeline.bundle.archive_path is not None:
        progress.say(f"archive: {pipeline.bundle.archive_path}")
    if spec.json:
        from rig.bundle.manifest import VERDICT
        from rig.verdict import write_verdict_json

        sealed = outcome.out / VERDICT
        if run_options(spec.options).redact and sealed.is_file():
            sys.stdout.write(sealed.read_text())  # the one writer's text, redacted as it was sealed
        else:
            write_verdict_json(outcome.verdict, sys.stdout)
    else:
        from rig.render import print_verdict
        from rich.console import Console

        print_verdict(outcome.verdict, Console())
        progress.say(f"bundle: {outcome.out}")
