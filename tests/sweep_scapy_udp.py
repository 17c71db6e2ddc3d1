"""Sweep random worlds of the independent UDP/ICMP generator through the whole `rig diff`
and count what rig said against what the generator did (not a test: it takes minutes).

    .venv/bin/python tests/sweep_scapy_udp.py [FIRST_SEED [LAST_SEED]] [--base TREE]

Each seed draws ``test_scapy_udp.mixed`` (three hosts' QUIC, DNS, STUN, NTP, pings,
refusals, fragments, losses both ways, over IPv4 and IPv6, MAP-E ports) with capture
windows drawn at random (the server's capture starting up to half-way through, the
client's stopping in the second half, each half the time), a clock offset of 0, ±3.5 or
±90 s, a link type, pcap or pcapng, and on Linux cooked links sometimes every packet
twice (``tcpdump -i any``). Counts: ``right``, ``incomplete-where-knowable``,
``CONFIDENT-WRONG`` (a decided outcome the generator denies), and ``other`` (an exchange
rig left out that the generator has an outcome for, an incomplete one without its
reason, datagram counts the generator denies). ``--base TREE`` runs another checkout's
rig on the same worlds.
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
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))
import _scapy_udp as g  # noqa: E402
from test_scapy_udp import mismatches, mixed  # noqa: E402

HERE = Path(__file__).resolve().parent.parent


def world(seed: int) -> tuple[g.Drawing, tuple[str, bool, bool]]:
    r = random.Random(seed * 7919)
    end = mixed(seed, peers=5)
    end.packets()
    span = end.t - 1000.0
    kw: dict = {"offset_s": r.choice([0.0, 3.5, -3.5, 90.0, -90.0])}
    if r.random() < 0.5:
        kw["server_start"] = 1000.0 + r.random() * span * 0.5
    if r.random() < 0.5:
        kw["client_stop"] = 1000.0 + (0.5 + r.random() * 0.5) * span
    link = r.choice(["ether", "sll", "sll2", "raw"])
    ng = r.random() < 0.3
    twice = link.startswith("sll") and r.random() < 0.3  # tcpdump -i any: each packet on two interfaces
    return mixed(seed, peers=5, **kw), (link, ng, twice)


def run(tree: Path, w: g.Drawing, how: tuple[str, bool, bool], d: Path) -> dict | None:
    c, s = w.packets()
    cf, sf = d / "c.pcap", d / "s.pcap"
    g.write(cf, c, *how)
    g.write(sf, s, *how)
    res = subprocess.run([sys.executable, "-m", "rig", "diff", str(cf), str(sf), "--json"], capture_output=True,
                         text=True, env=dict(os.environ, PYTHONPATH=str(tree)), cwd=tree, timeout=600)
    if res.returncode not in (0, 1):
        print(f"rig exited {res.returncode}: {res.stderr.strip()[-300:]}")
        return None
    return json.loads(res.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("first", nargs="?", type=int, default=0)
    ap.add_argument("last", nargs="?", type=int, default=19)
    ap.add_argument("--base", type=Path, help="another checkout to run on the same worlds")
    a = ap.parse_args()
    trees = [("this", HERE)] + ([("base", a.base.resolve())] if a.base else [])
    counts = {name: collections.Counter() for name, _ in trees}
    for seed in range(a.first, a.last + 1):
        for name, tree in trees:
            w, how = world(seed)  # drawn anew for each tree: ``packets`` fills the truth
            with tempfile.TemporaryDirectory() as d:
                v = run(tree, w, how, Path(d))
            if v is None:
                counts[name]["rig failed"] += 1
                continue
            bad = mismatches(w, v, twice=how[2])
            for m in bad:
                if m[0] == "outcome" and m[4] == "incomplete":
                    counts[name]["incomplete-where-knowable"] += 1
                elif m[0] == "outcome":
                    counts[name]["CONFIDENT-WRONG"] += 1
                    print(f"{name} seed {seed}: {m[1]} {m[2]}: generator {m[3]}, rig {m[4]} ({m[5]})")
                else:
                    counts[name]["other"] += 1
                    print(f"{name} seed {seed}: {m[0]} {m[1:3]}")
            counts[name]["right"] += len(w.truths()) - sum(m[0] == "outcome" for m in bad)
    for name, c in counts.items():
        print(f"{name}: " + ", ".join(f"{k} {n}" for k, n in sorted(c.items())))


if __name__ == "__main__":
    main()
