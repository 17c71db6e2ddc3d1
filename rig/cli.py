"""The thin command line: parse, build a record, call the library, map to an exit code.

The surface here is a contract (DESIGN.md §2). Each subcommand's work lives in the
module named in its handler; those modules are imported only when that subcommand
runs, so `rig diff` starts without paramiko, ansible or the Azure SDK.

Exit codes: 0 clean path, 1 path problem, 2 usage/input error, 3 infrastructure error.
Errors are one line on stderr; ``--debug`` adds the traceback.
"""

from __future__ import annotations

import argparse
import atexit
import errno
import importlib
import os
import signal
import sys
import threading
import traceback
from typing import NoReturn

from rig import __version__
from rig.errors import EXIT_INFRA, EXIT_USAGE, RigError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, exit 2 (argparse's own code)
        self.exit(EXIT_USAGE, f"rig: {message} (see '{self.prog} --help')\n")


def _handler(target: str):
    """Lazy reference "module:function" to a subcommand implementation."""

    def call(args: argparse.Namespace) -> int:
        module, _, fn = target.partition(":")
        return getattr(importlib.import_module(module), fn)(args)

    return call


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="rig", description="Find out where packets die between a client behind NATs and a server.")
    p.add_argument("--version", action="version", version=f"rig {__version__}")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    # rig run
    r = sub.add_parser("run", help="provision a responder, capture at both ends, probe, and give a verdict")
    r.add_argument("--backend", default=None, help="lab (default), azure or ssh")
    r.add_argument("--scenario", default=None, help="lab fault to inject (see 'rig lab scenarios')")
    r.add_argument("--router", default=None,
                   help="lab: the user's router profile, linux (default) or pf (see README)")
    r.add_argument("--access", default=None,
                   help="lab: the access line, plain (default), pppoe, map-e or ds-lite (see README)")
    r.add_argument("--probes", default=None, help="comma-separated probe kinds (default: all); 'nat' adds the "
                   "NAT profile, e.g. 'all,nat'")
    r.add_argument("--nat-lifetime", nargs="?", const="true", default=None, metavar="SECONDS",
                   help="with --probes nat: also search the UDP and TCP (established-idle) binding "
                   "lifetimes, at once (budget, default 180 s)")
    r.add_argument("--out", default=None, help="bundle directory (default ./runs/<timestamp>-<scenario>/)")
    r.add_argument("--keep", action="store_true", help="leave the rig up afterwards")
    r.add_argument("--json", action="store_true", help="print the verdict as rig.verdict/1 JSON")
    r.add_argument("--config", default=None, help="rig.toml (default ./rig.toml if present)")
    r.add_argument("--capture-at", default=None, help="extra capture points, e.g. 'router'")
    r.add_argument("--timeout", type=float, default=None, help="probe time-out in seconds")
    r.add_argument("--burst", type=int, default=None, help="concurrent connections in the burst probe")
    r.add_argument("--no-configure", action="store_true", help="skip the Ansible configure step")
    r.add_argument("--archive", action="store_true", help="also write <out>.tar.gz")
    r.add_argument("--redact", action="store_true", help="replace the client's private addresses in the bundle")
    r.add_argument("--no-trace", action="store_true", help="no TTL-limited traces of the lost exchanges")
    r.add_argument("--rig", dest="rig_id", default=None, help="rerun against a rig kept with 'rig up'")
    # backend options (azure / ssh)
    r.add_argument("--location", default=None, help="azure: region")
    r.add_argument("--size", default=None, help="azure: VM size (falls back when unavailable)")
    r.add_argument("--image", default=None,
                   help="azure: ubuntu (default) or a cloud-init image URN publisher:offer:sku:version")
    r.add_argument("--allow-from", default=None,
                   help="azure: CIDR allowed by the NSG (default: your IPv4 address); add your IPv6 (comma) for IPv6 probes")
    r.add_argument("--dry-run", action="store_true", help="azure: print the plan and cost, touch nothing")
    r.add_argument("--host", default=None, help="ssh: user@host[:port] of your server")
    r.add_argument("--host-key", default=None, help="ssh: pinned host key line or file (else known_hosts)")
    r.add_argument("--identity", default=None, help="ssh: private key file")
    r.set_defaults(func=_handler("rig.run:cli_run"))

    # rig diff
    d = sub.add_parser("diff", help="analyse two captures: CLIENT (initiating side) and SERVER")
    d.add_argument("client", help="capture taken on the side that initiates (behind the NATs)")
    d.add_argument("server", help="capture taken on the responder")
    d.add_argument("--json", action="store_true", help="print rig.verdict/1 JSON")
    d.add_argument("--server-addr", default=None, help="the server address as the client addressed it")
    d.add_argument("--progress", action="store_true",
                   help="say on stderr what a long diff is doing even when stderr is not a terminal")
    d.set_defaults(func=_handler("rig.analysis.api:cli_diff"))

    # rig show
    s = sub.add_parser("show", help="re-analyse and re-render an archived run")
    s.add_argument("bundle", help="bundle directory or .tar.gz")
    s.add_argument("--json", action="store_true")
    s.add_argument("--html", default=None, metavar="FILE", help="write the HTML report to FILE")
    s.set_defaults(func=_handler("rig.bundle:cli_show"))

    # rig up | down | ls | gc | clean
    u = sub.add_parser("up", help="provision and configure a rig and keep it for reruns")
    u.add_argument("--backend", default="lab")
    u.add_argument("--scenario", default=None)
    u.add_argument("--router", default=None, help="lab: linux (default) or pf")
    u.add_argument("--access", default=None, help="lab: plain (default), pppoe, map-e or ds-lite")
    u.add_argument("--config", default=None)
    u.add_argument("--location", default=None)
    u.add_argument("--size", default=None)
    u.add_argument("--image", default=None)
    u.add_argument("--allow-from", default=None)
    u.add_argument("--host", default=None)
    u.add_argument("--host-key", default=None)
    u.add_argument("--identity", default=None)
    u.add_argument("--name", default=None, help="name for the kept rig")
    u.set_defaults(func=_handler("rig.lifecycle:cli_up"))
    dn = sub.add_parser("down", help="remove a kept rig")
    dn.add_argument("name")
    dn.set_defaults(func=_handler("rig.lifecycle:cli_down"))
    ls = sub.add_parser("ls", help="list kept rigs with age and expiry")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=_handler("rig.lifecycle:cli_ls"))
    gc = sub.add_parser("gc", help="delete expired rigs (Azure resource groups past expires-at)")
    gc.add_argument("--dry-run", action="store_true")
    gc.set_defaults(func=_handler("rig.lifecycle:cli_gc"))
    cl = sub.add_parser("clean", help="remove lab namespaces and processes that killed runs left behind",
                        description="Without --prefix this removes EVERY rig lab on this machine, "
                                    "including labs of runs still in progress.")
    cl.add_argument("--prefix", default=None,
                    help="only the lab with this prefix (rig-<6 hex>); safe while other runs are alive")
    cl.set_defaults(func=_handler("rig.lab.clean:cli_clean"))

    # rig schedule ... ; rig history DIR
    sc = sub.add_parser("schedule", help="scheduled reruns (systemd timer or cron)")
    scs = sc.add_subparsers(dest="schedule_command", required=True, parser_class=_Parser)
    sa = scs.add_parser("add", help="add a named schedule")
    sa.add_argument("--name", default=None)
    sa.add_argument("--every", required=True, help="interval: 15m, 1h, 1d")
    sa.add_argument("--backend", default="lab")
    sa.add_argument("--scenario", default=None)
    sa.add_argument("--out", default=None, help="directory for the bundles")
    sa.add_argument("--keep-rig", action="store_true", help="provision once, rerun against it")
    sa.add_argument("--retain", type=int, default=48, help="keep the last N bundles")
    sa.add_argument("--root", default="/", help="write units under this root (for packaging/tests)")
    sa.add_argument("--scheduler", choices=["auto", "systemd", "cron"], default="auto")
    sa.add_argument("--config", default=None, help="rig.toml whose settings every rerun uses (frozen now)")
    sa.set_defaults(func=_handler("rig.schedule:cli_add"))
    sl = scs.add_parser("list", help="list schedules")
    sl.add_argument("--root", default="/")
    sl.set_defaults(func=_handler("rig.schedule:cli_list"))
    sr = scs.add_parser("remove", help="remove a schedule")
    sr.add_argument("name")
    sr.add_argument("--root", default="/")
    sr.set_defaults(func=_handler("rig.schedule:cli_remove"))
    sx = scs.add_parser("exec", help=argparse.SUPPRESS)  # what the timer runs
    sx.add_argument("name")
    sx.add_argument("--root", default="/")
    sx.set_defaults(func=_handler("rig.schedule:cli_exec"))
    h = sub.add_parser("history", help="runs in time order; marks each change of verdict")
    h.add_argument("dir")
    h.add_argument("--json", action="store_true")
    h.add_argument("--html", default=None, metavar="FILE")
    h.add_argument("--png", default=None, metavar="FILE")
    h.set_defaults(func=_handler("rig.history:cli_history"))

    # rig probe: a destination rig does not control (rig.trace.destination)
    pr = sub.add_parser("probe", help="probe a server rig does not control: client capture, probe, forward trace")
    pr.add_argument("destination", metavar="HOST[:PORT]")
    pr.add_argument("--proto", choices=("tcp", "udp", "icmp"), default=None, help="default: tcp with a port, else icmp")
    pr.add_argument("--compare", default=None, metavar="BUNDLE", help="put it beside a responder run")
    pr.add_argument("--json", action="store_true")
    pr.add_argument("--out", default=None, metavar="DIR", help="keep the capture, probes, traces and verdict here")
    pr.add_argument("--timeout", type=float, default=3.0, help="seconds to wait for an answer")
    pr.add_argument("--capture-at", default=None, metavar="router=USER@HOST[:PORT]",
                    help="also capture at your router over SSH (host key pinned as for rig run)")
    pr.add_argument("--config", default=None, help="rig.toml (default ./rig.toml if present)")
    pr.add_argument("--lab", default=None, metavar="SCENARIO",
                    help="from the lab's client namespace toward a lab address (testing)")
    pr.set_defaults(func=_handler("rig.trace.destination:cli_probe"))

    # rig lab scenarios
    lab = sub.add_parser("lab", help="the local lab")
    labs = lab.add_subparsers(dest="lab_command", required=True, parser_class=_Parser)
    lsc = labs.add_parser("scenarios", help="the fault scenarios the lab can inject")
    lsc.set_defaults(func=_handler("rig.lab.scenarios:cli_scenarios"))
    return p


def _sigterm(signum, frame):  # turn SIGTERM into an exception so teardown runs
    raise KeyboardInterrupt("SIGTERM")


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _sigterm)  # first: a SIGTERM from here on ends in exit 3
    try:
        args = build_parser().parse_args(argv)
    except KeyboardInterrupt as exc:
        print(f"rig: {'terminated' if str(exc) == 'SIGTERM' else 'interrupted'}", file=sys.stderr)
        return EXIT_INFRA
    try:
        return int(args.func(args) or 0)
    except RigError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"rig: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt as exc:
        what = "terminated" if str(exc) == "SIGTERM" else "interrupted"
        print(f"rig: {what}", file=sys.stderr)
        return EXIT_INFRA
    except BrokenPipeError:
        return 0
    except OSError as exc:
        if exc.errno not in _MACHINE_ERRORS:
            raise
        # the machine's problem (a full disk under a redirected stdout): one line, exit 3
        if args.debug:
            traceback.print_exc()
        _say_machine_error(exc)
        return EXIT_INFRA


# what a write (of the verdict to a redirected stdout, say) meets on a full or failing disk
_MACHINE_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO)


def _say_machine_error(exc: OSError) -> None:
    try:
        print(f"rig: {exc.strerror}" + (f": {exc.filename}" if exc.filename else ""), file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


def entry() -> int:
    """The program: the console script and ``python -m rig``. ``main()``, then out at
    once: the atexit handlers run and stdout/stderr are flushed, and the interpreter's
    teardown of every module and object left (numpy, paramiko, ansible-runner, the
    analysis' tables), which only costs time at the end of a run (bench/lab.py's
    ``end``), is skipped. The usual way out is taken when another thread still runs
    (the interpreter waits for it) or a flush fails (it reports that), except where the
    output met a full or failing disk: that is one line (if ``main`` has not said it
    already) and exit 3, not the interpreter's report of the same failed flush at exit.

    OpenBLAS, which numpy loads, starts a thread per core at import; rig calls no BLAS
    routine, so one is asked for unless the environment says otherwise (``rig diff`` of
    two small captures, whole command: CPU 0.38 -> 0.28 s, wall unchanged within the
    machine's noise)."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    try:
        code = main()
    except SystemExit as exc:  # argparse's --help, --version and usage errors leave the same way
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
        code = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
    if any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.main_thread()):
        return code
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except OSError as exc:
        if exc.errno not in _MACHINE_ERRORS:
            return code
        if code != EXIT_INFRA:  # (main reports it, and returns 3, when a write failed so)
            _say_machine_error(exc)
        code = EXIT_INFRA
    except ValueError:
        return code
    atexit._run_exitfuncs()
    try:  # what an atexit handler printed
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    os._exit(code)
