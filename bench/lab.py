"""Time to verdict of `rig run` on the lab, per scenario and per stage (needs root).

    sudo .venv/bin/python bench/lab.py [--scenarios healthy,seed] [--timeout 3] [--repeat 3]

Every figure is measured in this run, beside its reference:
- the CLI floor: `python -m rig --version` (interpreter + import), the part of every
  run that is not the pipeline;
- the probe time-out: a scenario whose probes cannot complete (seed) cannot finish
  before it, so its goal is stated as "within 1.5 s of the time-out".
Goals (issue 3): healthy < 2 s without Ansible, < 6 s with it; seed within 1.5 s of
its probe time-out. Medians of --repeat runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STAGES = ("provision", "configure", "preflight", "captures start", "probes", "captures stop", "analysis",
          "trace", "verdict", "teardown")


def rig(*args: str) -> list[str]:
    return [sys.executable, "-m", "rig", *args]


def one_run(scenario: str, timeout: float, configure: bool, out: Path) -> tuple[float, dict[str, float], int]:
    argv = rig("run", "--scenario", scenario, "--timeout", str(timeout), "--json", "--out", str(out))
    if not configure:
        argv.append("--no-configure")
    t = time.monotonic()
    res = subprocess.run(argv, capture_output=True, text=True)
    wall = time.monotonic() - t
    if res.returncode not in (0, 1):
        raise SystemExit(f"{scenario}: rig run failed (exit {res.returncode}): {res.stderr.strip().splitlines()[-1:]}")
    manifest = json.loads((out / "manifest.json").read_text())
    stages = {rec["stage"]: rec["seconds"] for rec in manifest["timings"]}
    return wall, stages, res.returncode


def median_runs(scenario, timeout, configure, repeat, root):
    walls, per_stage = [], {s: [] for s in STAGES}
    for i in range(repeat):
        wall, stages, rc = one_run(scenario, timeout, configure, root / f"{scenario}-{int(configure)}-{i}")
        walls.append(wall)
        for s in STAGES:
            if s in stages:
                per_stage[s].append(stages[s])
    return statistics.median(walls), {s: statistics.median(v) for s, v in per_stage.items() if v}, rc


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--scenarios", default="healthy,seed,mtu-blackhole,transparent-proxy,port-set")
    p.add_argument("--timeout", type=float, default=3.0, help="probe time-out (the default of rig run)")
    p.add_argument("--repeat", type=int, default=3)
    a = p.parse_args()
    if os.geteuid() != 0:
        print("bench/lab.py needs root (the lab)", file=sys.stderr)
        return 2
    t = time.monotonic()
    for _ in range(3):
        subprocess.run(rig("--version"), capture_output=True, check=True)
    floor = (time.monotonic() - t) / 3
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; reference: CLI floor "
          f"(python -m rig --version) {floor:.2f} s; probe time-out {a.timeout:g} s; medians of {a.repeat}\n")
    head = f"{'scenario':<20}{'ansible':>8}{'exit':>5}{'to verdict':>11}  " + " ".join(f"{s[:9]:>9}" for s in STAGES)
    print(head)
    print("-" * len(head))
    results = {}
    with tempfile.TemporaryDirectory(prefix="rig-bench-") as tmp:
        root = Path(tmp)
        plan = [(s, False) for s in a.scenarios.split(",") if s] + [("healthy", True), ("seed", True)]
        for scenario, configure in plan:
            wall, stages, rc = median_runs(scenario, a.timeout, configure, a.repeat, root)
            results[(scenario, configure)] = (wall, stages)
            cells = " ".join(f"{stages[s]:9.2f}" if s in stages else f"{'-':>9}" for s in STAGES)
            print(f"{scenario:<20}{'yes' if configure else 'no':>8}{rc:>5}{wall:>10.2f}s  {cells}")
    print("\ngoals (issue 3), measured above:")
    h0 = results[("healthy", False)][0]
    h1 = results[("healthy", True)][0]
    print(f"  healthy without Ansible {h0:.2f} s  (goal < 2 s: {'met' if h0 < 2 else 'NOT met'}; "
          f"{h0 - floor:.2f} s beyond the CLI floor)")
    print(f"  healthy with Ansible    {h1:.2f} s  (goal < 6 s: {'met' if h1 < 6 else 'NOT met'}; "
          f"configure stage {results[('healthy', True)][1].get('configure', 0):.2f} s)")
    if ("seed", False) in results:
        s0 = results[("seed", False)][0]
        print(f"  seed without Ansible    {s0:.2f} s  = probe time-out {a.timeout:g} s + {s0 - a.timeout:.2f} s "
              f"(goal within 1.5 s: {'met' if s0 - a.timeout <= 1.5 else 'NOT met'})")
    traced = [(k[0], st["trace"]) for k, (_, st) in results.items() if "trace" in st]
    if traced:
        worst = max(traced, key=lambda x: x[1])
        print(f"  trace stage (issue 11)  at most {worst[1]:.2f} s ({worst[0]})  "
              f"(goal <= 3 s: {'met' if worst[1] <= 3 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
