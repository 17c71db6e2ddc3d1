"""The whole `rig run` on the lab, exec to exit, beside its stages (needs root).

    sudo .venv/bin/python bench/lab.py [--scenarios healthy,seed,healthy@map-e] [--repeat 5] [--timeout 3]
                                       [--no-configure] [--base DIR ...]

Each figure is the median of --repeat runs of `python -m rig run --scenario S --json`
(the default run: the playbook is applied through ansible-runner over SSH), timed from
exec to exit. Printed beside it, all measured in this same run, interleaved with it so
that load on the machine weighs on all alike:
- the CLI floor, `python -m rig --version` (interpreter and import), and the ratio of
  the run to it;
- the stages from the bundle's manifest (they may overlap: on a fresh lab configure
  runs beside preflight, captures and probes), and what lies outside every stage
  (``outside``), split into ``start-up`` (exec to the first stage: interpreter, imports, spec, the bundle's
  directory), ``between`` (the gaps between stages, e.g. rig's own SSH connection after
  configure) and ``end`` (the last stage's end to exit: the bundle's report and seal,
  the verdict printed, the interpreter's exit);
- with --base DIR (a checkout of another revision, e.g. `git worktree add /tmp/base
  main`): the same runs of that checkout (PYTHONPATH=DIR, this interpreter), run for
  run alternating with this one, and the ratio this / base. Every run starts in the
  temp dir (``python -m`` puts the working directory first on sys.path), and each
  checkout's rig is byte-compiled first (writes DIR/rig/**/__pycache__).
Goals (issue 15, item 7): the healthy run within 2.5 s wall; the seed run within its
probe time-out + 1.5 s; healthy behind an access line (SCENARIO@ACCESS, e.g.
healthy@map-e) within 2.5 s too (issue 12); the trace stage within 3 s (issue 11).
Nothing here is a test: no figure fails the suite.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STAGES = ("provision", "configure", "preflight", "captures start", "probes", "nat", "captures stop", "analysis",
          "trace", "verdict", "teardown")
GOAL_HEALTHY = 2.5  # seconds, exec to exit
GOAL_SEED_OVER_TIMEOUT = 1.5  # seconds beyond the probe time-out
GOAL_TRACE = 3.0  # seconds for the trace stage (issue 11)


def _env(checkout: str | None) -> dict[str, str]:
    env = dict(os.environ)
    if checkout:
        env["PYTHONPATH"] = checkout
    return env


# every run starts in a directory that holds no checkout: `python -m` puts the working
# directory first on sys.path, so run from a checkout it imports that checkout's rig
# whatever PYTHONPATH says (--base measured this checkout twice), and a ./rig.toml
# there would be read
_CWD = tempfile.gettempdir()


def cli_floor(checkout: str | None) -> float:
    t = time.monotonic()
    subprocess.run([sys.executable, "-m", "rig", "--version"], capture_output=True, check=True, env=_env(checkout),
                   cwd=_CWD)
    return time.monotonic() - t


def compile_checkout(where: str) -> None:
    """Byte-compile the rig a checkout imports, before any run is timed: with
    PYTHONDONTWRITEBYTECODE set (as here) nothing writes __pycache__, and a checkout
    that lacked it compiled every such module again on every run (a checkout of main
    had 43 of its 149 modules so: its start-up looked 0.15 s slower than it is)."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", os.path.join(where, "rig")], check=True,
                   capture_output=True, cwd=_CWD)


def imported_from(checkout: str | None) -> str:
    """The rig package a run of ``checkout`` imports (said in the table's heading)."""
    res = subprocess.run([sys.executable, "-c", "import rig, os; print(os.path.dirname(os.path.dirname(rig.__file__)))"],
                         capture_output=True, text=True, check=True, env=_env(checkout), cwd=_CWD)
    return res.stdout.strip()


OUTSIDE = ("start-up", "between", "end")  # what "outside" is made of (see the docstring)


def _epoch(stamp: str) -> float:
    return datetime.datetime.fromisoformat(stamp).timestamp()


def outside_parts(begin: float, end: float, timings: list[dict]) -> dict[str, float]:
    """``OUTSIDE`` of one run: exec (``begin``, epoch s) to the first stage, the gaps
    between stages, the last stage to exit (``end``); from the manifest's stage starts
    (milliseconds) and durations."""
    spans = sorted((_epoch(rec["start"]), _epoch(rec["start"]) + rec["seconds"]) for rec in timings)
    if not spans:
        return {"start-up": end - begin, "between": 0.0, "end": 0.0}
    between, reached = 0.0, spans[0][1]  # gaps no stage covers (a stage may run beside others)
    for start, stop in spans[1:]:
        between += max(0.0, start - reached)
        reached = max(reached, stop)
    return {"start-up": spans[0][0] - begin, "between": between, "end": end - reached}


def one_run(checkout: str | None, scenario: str, timeout: float, configure: bool,
            out: Path) -> tuple[float, dict[str, float], int]:
    name, _, access = scenario.partition("@")  # healthy@map-e: the scenario behind an access line
    argv = [sys.executable, "-m", "rig", "run", "--scenario", name, "--timeout", str(timeout), "--json",
            "--out", str(out)]
    if access:
        argv += ["--access", access]
    if not configure:
        argv.append("--no-configure")
    t, begin = time.monotonic(), time.time()
    res = subprocess.run(argv, capture_output=True, text=True, env=_env(checkout), cwd=_CWD)
    wall, end = time.monotonic() - t, time.time()
    if res.returncode not in (0, 1):
        last = (res.stderr.strip().splitlines() or ["no output"])[-1]
        raise SystemExit(f"{scenario} ({checkout or 'this checkout'}): rig run failed (exit {res.returncode}): {last}")
    manifest = json.loads((out / "manifest.json").read_text())
    stages = {rec["stage"]: rec["seconds"] for rec in manifest["timings"]}
    return wall, {**stages, **outside_parts(begin, end, manifest["timings"])}, res.returncode


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scenarios", default="healthy,seed")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--timeout", type=float, default=3.0, help="probe time-out (rig run's default)")
    p.add_argument("--no-configure", action="store_true", help="runs without the playbook")
    p.add_argument("--base", action="append", default=[], metavar="DIR", help="another checkout to compare with")
    a = p.parse_args()
    if os.geteuid() != 0:
        print("bench/lab.py needs root (the lab)", file=sys.stderr)
        return 2
    checkouts: list[str | None] = [None, *a.base]
    name = {c: (c or "this") for c in checkouts}
    where = {c: imported_from(c) for c in checkouts}
    if len(set(where.values())) < len(checkouts):
        print(f"bench/lab.py: two checkouts import the same rig ({where}); is --base a checkout?", file=sys.stderr)
        return 2
    for c in checkouts:
        compile_checkout(where[c])
    walls: dict[tuple[str | None, str], list[float]] = {}
    stages: dict[tuple[str | None, str], dict[str, list[float]]] = {}
    floors: list[float] = []
    codes: dict[str, int] = {}
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="rig-bench-") as tmp:
        for i in range(a.repeat):
            floors.append(cli_floor(None))
            for scenario in a.scenarios.split(","):
                for c in checkouts:  # alternating: the same load weighs on each
                    wall, st, rc = one_run(c, scenario, a.timeout, not a.no_configure,
                                           Path(tmp) / f"{scenario}-{checkouts.index(c)}-{i}")
                    walls.setdefault((c, scenario), []).append(wall)
                    for s, v in st.items():
                        stages.setdefault((c, scenario), {}).setdefault(s, []).append(v)
                    codes[scenario] = rc
    floor = statistics.median(floors)
    print(f"load average {load:.2f} -> {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; medians of {a.repeat}; "
          f"playbook {'off' if a.no_configure else 'on'}; probe time-out {a.timeout:g} s")
    print(f"reference: CLI floor (python -m rig --version) {floor:.3f} s")
    print("rig imported from: " + "; ".join(f"{name[c]}: {where[c]}" for c in checkouts) + "\n")
    short = [s.replace("captures ", "cap ") for s in STAGES]
    head = f"{'scenario':<10}{'checkout':<22}{'exit':>5}{'wall s':>8}{'/floor':>8}  " + \
        " ".join(f"{s[:9]:>9}" for s in short) + f"{'outside':>9}" + "".join(f"{s:>9}" for s in OUTSIDE)
    print(head)
    print("-" * len(head))
    med: dict[tuple[str | None, str], float] = {}
    for scenario in a.scenarios.split(","):
        for c in checkouts:
            w = med[(c, scenario)] = statistics.median(walls[(c, scenario)])
            st = {s: statistics.median(v) for s, v in stages[(c, scenario)].items()}
            cells = " ".join(f"{st[s]:9.2f}" if s in st else f"{'-':>9}" for s in STAGES)
            label = name[c] if len(name[c]) <= 21 else "..." + name[c][-18:]
            # outside: what no stage covers (stages may overlap: configure runs beside the
            # probes on a fresh lab), so the sum of its parts, not the wall less the stages
            outside = sum(st.get(s, 0.0) for s in OUTSIDE)
            parts = "".join(f"{st.get(s, 0.0):9.2f}" for s in OUTSIDE)
            print(f"{scenario:<10}{label:<22}{codes[scenario]:>5}{w:8.2f}{w / floor:8.1f}  {cells}"
                  f"{outside:9.2f}{parts}")
    print("\nruns (s): " + "; ".join(f"{s} {name[c]}: " + " ".join(f"{x:.2f}" for x in walls[(c, s)])
                                    for s in a.scenarios.split(",") for c in checkouts))
    print("\ngoals (issue 15, item 7), measured above:")
    if (None, "healthy") in med:
        h = med[(None, "healthy")]
        print(f"  healthy run {h:.2f} s wall (goal <= {GOAL_HEALTHY} s: {'met' if h <= GOAL_HEALTHY else 'NOT met'}); "
              f"{h / floor:.1f}x the CLI floor")
    for key in [k for k in med if k[0] is None and k[1].startswith("healthy@")]:
        h = med[key]
        print(f"  {key[1]} run {h:.2f} s wall (goal <= {GOAL_HEALTHY} s: {'met' if h <= GOAL_HEALTHY else 'NOT met'})")
    if (None, "seed") in med:
        s = med[(None, "seed")]
        over = s - a.timeout
        print(f"  seed run {s:.2f} s = probe time-out {a.timeout:g} s + {over:.2f} s "
              f"(goal within {GOAL_SEED_OVER_TIMEOUT} s: {'met' if over <= GOAL_SEED_OVER_TIMEOUT else 'NOT met'})")
    traced = [(sc, statistics.median(v["trace"])) for (c, sc), v in stages.items() if c is None and "trace" in v]
    if traced:
        sc, worst = max(traced, key=lambda x: x[1])
        print(f"  trace stage (issue 11) at most {worst:.2f} s ({sc}) "
              f"(goal <= {GOAL_TRACE:g} s: {'met' if worst <= GOAL_TRACE else 'NOT met'})")
    for c in a.base:
        for scenario in a.scenarios.split(","):
            print(f"  {scenario}: this / {name[c]} = {med[(None, scenario)] / med[(c, scenario)]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
