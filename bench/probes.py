"""How long the probes take against the lab, against the time-out (root).

For each scenario it runs every probe kind at once (as `rig run` does) and prints the
wall time, the time-out, the sum of the probes' own durations (what running them one
after another would cost, measured in the same run) and the ratios. Goal: the seed
(every TCP probe times out) costs about one time-out, not one per failing probe.

    sudo .venv/bin/python bench/probes.py [--timeout 3] [--scenarios healthy,seed]
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--timeout", type=float, default=3.0)
    ap.add_argument("--burst", type=int, default=32)
    ap.add_argument("--scenarios", default="healthy,seed,mtu-blackhole")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench/probes.py needs root (it builds the lab)", file=sys.stderr)
        return 2
    from rig.backends.base import RunSpec
    from rig.backends.lab import LabBackend
    from rig.probes import run_probes

    print(f"{'scenario':<16}{'wall s':>8}{'timeout':>9}{'wall/timeout':>14}{'sum of probes s':>17}{'wall/sum':>10}  failed")
    for name in args.scenarios.split(","):
        backend = LabBackend()
        rig = backend.provision(RunSpec(scenario=name))
        try:
            t0 = time.monotonic()
            results = run_probes(rig.client_netns, rig.server_addr, timeout=args.timeout, burst=args.burst,
                                 run_tag="bench")
            wall = time.monotonic() - t0
        finally:
            backend.teardown(rig)
        # icmp echoes share one wait: count the kind once, by its longest echo
        per_kind: dict[str, float] = {}
        for r in results:
            per_kind[r.kind] = max(per_kind.get(r.kind, 0.0), r.ended - r.started)
        total = sum(per_kind.values())
        failed = ",".join(r.id for r in results if not r.ok) or "-"
        print(f"{name:<16}{wall:>8.3f}{args.timeout:>9.1f}{wall / args.timeout:>14.2f}{total:>17.3f}"
              f"{wall / total if total else 0:>10.2f}  {failed}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
