"""Sweep random worlds of the independent TCP generator through the whole `rig diff`
and count what rig said against what the generator did (not a test: it takes minutes).

    .venv/bin/python tests/sweep_scapy_worlds.py [FIRST_SEED [LAST_SEED]] [--base TREE]

Each seed draws a path (pf, Linux or no router; ISN/timestamp modulation, random IP IDs,
random provider ports, MSS clamp), the captures (a late server start, an early client
stop, clock offsets of 0, 3.5 and ±90 s, three link types) and the traffic. Counts:
``right`` (the outcome the generator knows), ``incomplete-ok`` (incomplete where the files
cannot tell), ``incomplete-where-knowable``, ``CONFIDENT-WRONG`` (a decided outcome the
generator denies: the worst thing rig can print), ``missing``. ``--base TREE`` runs
another checkout's rig on the same worlds.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
from _scapy_world import Router, Setup, build  # noqa: E402


def setup_of(seed: int) -> Setup:
    r = random.Random(seed)
    router = Router(kind=r.choice(["pf", "pf", "linux", "none"]), modulate=r.random() < 0.6,
                    ts_modulate=r.random() < 0.3, random_id=r.random() < 0.5)
    return Setup(seed=seed, family=r.choice([4, 4, 6]), router=router, cgn_ports=r.choice(["keep", "random"]),
                 mss_clamp=r.choice([None, 1414]), gap=r.choice([0.002, 0.05, 0.3]),
                 clock_offset=r.choice([0, 0, 90, -90, 3.5]),
                 server_starts_late=r.choice([None, None, r.uniform(0.3, 4)]),
                 client_stops_early=r.choice([None, None, r.uniform(2, 8)]),
                 client_link=r.choice(["ether", "sll", "sll2-any"]), server_link=r.choice(["ether", "sll"]),
                 clients=r.choice([1, 3]), servers=r.choice([1, 2]), per_fate=1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("first", type=int, nargs="?", default=100)
    ap.add_argument("last", type=int, nargs="?", default=299)
    ap.add_argument("--base", help="another checkout whose rig to run on the same worlds")
    a = ap.parse_args()
    env = dict(os.environ)
    if a.base:
        env["PYTHONPATH"] = a.base
    tally: collections.Counter = collections.Counter()
    wrong = []
    unsure = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(a.first, a.last + 1):
            w = build(setup_of(seed))
            c, s = os.path.join(tmp, "c.pcap"), os.path.join(tmp, "s.pcap")
            w.write(c, s)
            res = subprocess.run([sys.executable, "-m", "rig", "diff", c, s, "--json"], capture_output=True, text=True,
                                 env=env)
            if res.returncode not in (0, 1):
                tally[f"exit {res.returncode}"] += 1
                continue
            got = {e["client"]: e for e in json.loads(res.stdout)["exchanges"] if e["protocol"] == "tcp"}
            for t in w.truths:
                e = got.get(t.client)
                if e is None:  # the test's rule: rig may leave out what nothing shows
                    known = t.seen_anywhere and t.knowable and t.server_seen
                    tally["missing" if known else "left out (nothing to know)"] += 1
                    continue
                o = e["outcome"]
                if t.accepts(o):
                    tally["incomplete-ok" if o == "incomplete" else "right"] += 1
                elif o == "incomplete":
                    tally["incomplete-where-knowable"] += 1
                    unsure.append((seed, t.fate, t.outcome, e.get("undecided_because")))
                else:
                    tally["CONFIDENT-WRONG"] += 1
                    wrong.append((seed, t.fate, t.outcome, o, t.knowable))
    for k, v in sorted(tally.items()):
        print(f"{k:28} {v}")
    for x in wrong:
        print("wrong: seed %d %s: generator %s, rig %s (knowable %s)" % x)
    for x in unsure:
        print("incomplete: seed %d %s: generator %s, rig undecided because %s" % x)


if __name__ == "__main__":
    main()
