"""SIGINT and SIGTERM swept over a whole `rig run`, and SIGKILL followed by `rig clean`:
whenever the signal comes, nothing of the run is left.

Each run gets a /tmp of its own (tests/_privtmp.py), so "nothing under /tmp" is exact
although other runs share this machine. The sweep's zero is the banner (from then on
the bundle exists): 0, 20, 50 and 100 ms after it, then each stage boundary as the run
itself prints it (the signal lands in the next stage), and once inside the playbook.
SIGINT and SIGTERM alternate over the points to keep the sweep short. After SIGINT or
SIGTERM: exit 3, one "rig: interrupted|terminated" line and no traceback, the bundle
sealed ``interrupted``, and 0 namespaces, 0 processes, 0 files under /tmp. After
SIGKILL and `rig clean --prefix` (run in the same /tmp): the same zeros.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from _privtmp import PrivateTmp, private_tmp_skip
from _runhelp import LAB_SKIP, lab_leftovers, rig_cmd

SKIP = LAB_SKIP or private_tmp_skip()
pytestmark = [pytest.mark.root, pytest.mark.lab, pytest.mark.skipif(SKIP is not None, reason=str(SKIP))]

PREFIX_RE = re.compile(r"\b(rig-[0-9a-f]{6})\b")
BANNER = "rig run: backend lab"
NO_CONFIGURE = ("--no-configure",)


@pytest.fixture
def priv():
    p = PrivateTmp()
    yield p
    for prefix in p.lab_prefixes():  # a failed test must not leave its lab behind
        p.run(rig_cmd("clean", "--prefix", prefix), timeout=60)
    p.remove()


class Run:
    """`rig run` in its own /tmp, read line by line from stderr."""

    def __init__(self, priv: PrivateTmp, *args: str):
        self.priv = priv
        self.out = priv.base / "out"
        self.proc = subprocess.Popen(priv.cmd(rig_cmd("run", "--out", str(self.out), "--scenario", "seed",
                                                      "--timeout", "2", *args)),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self.signalled = 0.0

    def wait_for(self, needle: str) -> None:
        for line in self.proc.stderr:
            self.lines.append(line)
            if needle in line:
                return
        raise AssertionError(f"{needle!r} never printed: {''.join(self.lines)}")

    def kill(self, sig: int) -> None:
        self.signalled = time.monotonic()
        os.kill(self.proc.pid, sig)

    def finish(self) -> tuple[int, str]:
        _, rest = self.proc.communicate(timeout=120)
        return self.proc.returncode, "".join(self.lines) + rest

    @property
    def manifest(self) -> dict:
        return json.loads((self.out / "manifest.json").read_text())

    def prefixes(self) -> set[str]:
        """The lab prefixes the run made: its workdirs, what it printed, what its bundle says."""
        found = set(self.priv.lab_prefixes()) | set(PREFIX_RE.findall("".join(self.lines)))
        if (self.out / "manifest.json").exists():
            found |= {p for p in [self.manifest.get("backend", {}).get("prefix")] if p}
        return found


def assert_nothing_left(run: Run) -> None:
    prefixes = run.prefixes()
    for prefix in prefixes:
        assert lab_leftovers(prefix) == [], prefix  # namespaces, and processes naming the lab
    # and processes naming the run's bundle or its /tmp (a capture writes into the bundle)
    assert lab_leftovers(str(run.priv.base)) == []
    assert run.priv.leftovers() == [], run.priv.leftovers()  # files under /tmp
    assert not [p for p in run.priv.lab_prefixes()], prefixes


# (what the run prints, then how long to wait, the signal, extra flags); the runs that
# reach configure keep it, the later ones skip it (5 s each here) to stay affordable
POINTS = [
    (BANNER, 0.0, signal.SIGINT, ()),
    (BANNER, 0.02, signal.SIGTERM, ()),
    (BANNER, 0.05, signal.SIGINT, ()),
    (BANNER, 0.1, signal.SIGTERM, ()),
    ("✓ provision", 0.0, signal.SIGINT, ()),  # configure starts
    ("✓ provision", 1.0, signal.SIGTERM, ()),  # inside the playbook
    ("✓ configure", 0.0, signal.SIGINT, ()),  # preflight
    ("✓ preflight", 0.0, signal.SIGTERM, NO_CONFIGURE),  # captures start
    ("✓ captures start", 0.0, signal.SIGINT, NO_CONFIGURE),  # probes
    ("✓ probes", 0.0, signal.SIGTERM, NO_CONFIGURE),  # captures stop
    ("✓ captures stop", 0.0, signal.SIGINT, NO_CONFIGURE),  # analysis: the run may finish first
    ("✓ analysis", 0.0, signal.SIGTERM, NO_CONFIGURE),  # the traces start
    ("✓ analysis", 0.5, signal.SIGINT, NO_CONFIGURE),  # the traces (0.3 s), teardown or the output
]


@pytest.mark.parametrize("anchor,delay,sig,extra", POINTS,
                         ids=[f"{a.strip('✓ ').replace(' ', '-')}+{int(d * 1000)}ms-{signal.Signals(s).name}"
                              for a, d, s, _ in POINTS])
def test_a_signal_anywhere_leaves_nothing(priv, anchor, delay, sig, extra):
    run = Run(priv, *extra)
    run.wait_for(anchor)
    if delay:
        time.sleep(delay)
    run.kill(sig)
    rc, err = run.finish()
    print(f"exit {rc} {time.monotonic() - run.signalled:.2f} s after {signal.Signals(sig).name}")
    assert "Traceback" not in err, err
    if anchor in ("✓ captures stop", "✓ analysis") and rc == 1:
        # the signal came once teardown had begun: the bundle and the exit code agree
        assert run.manifest["status"] == "path-problem"
    else:
        word = "terminated" if sig == signal.SIGTERM else "interrupted"
        assert rc == 3, err
        assert [line for line in err.splitlines() if line.startswith("rig:")] == [f"rig: {word}"], err
        assert run.manifest["status"] == "interrupted" and run.manifest["error"] == word
    assert_nothing_left(run)


KILL_POINTS = [
    (BANNER, 0.05, ()),
    ("✓ provision", 1.0, ()),  # inside the playbook: ansible-playbook and ssh run outside the lab
    ("✓ captures start", 0.0, NO_CONFIGURE),  # tcpdump at both ends, the remote one in the lab's /tmp
]


@pytest.mark.parametrize("anchor,delay,extra", KILL_POINTS,
                         ids=[f"{a.strip('✓ ').replace(' ', '-')}+{int(d * 1000)}ms" for a, d, _ in KILL_POINTS])
def test_sigkill_then_rig_clean_leaves_nothing(priv, anchor, delay, extra):
    run = Run(priv, *extra)
    run.wait_for(anchor)
    if delay:
        time.sleep(delay)
    run.kill(signal.SIGKILL)
    run.proc.wait(timeout=30)
    run.proc.stderr.close()  # a child of the killed run may still hold its other end
    prefixes = run.prefixes()
    for prefix in priv.lab_prefixes():
        res = priv.run(rig_cmd("clean", "--prefix", prefix), timeout=60)
        assert res.returncode == 0, res.stderr
    run.lines.append(" ".join(prefixes))  # what the run had named, checked again below
    assert_nothing_left(run)


# rig run whose verdict printing is interrupted by the signal given (after the bundle is sealed)
_SIGNAL_WHILE_PRINTING = (
    "import os, signal, sys\n"
    "import rig.render\n"
    "SIG = int(sys.argv.pop(1))\n"
    "real = rig.render.print_verdict\n"
    "def printing(*a, **k):\n"
    "    os.kill(os.getpid(), SIG)\n"
    "    return real(*a, **k)\n"
    "rig.render.print_verdict = printing\n"
    "from rig.cli import entry\n"
    "sys.argv[0] = 'rig'\n"
    "raise SystemExit(entry())\n"
)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_while_the_verdict_is_printed_keeps_the_bundles_word(priv, sig):
    """Once the bundle is sealed, a signal is counted, not raised: the verdict is printed
    whole and the exit code is the bundle's status (the seed: a path problem, 1), not 3
    beside a bundle that says path-problem."""
    out = priv.base / "out"
    res = priv.run([sys.executable, "-c", _SIGNAL_WHILE_PRINTING, str(int(sig)), "run", "--out", str(out),
                    "--scenario", "seed", "--timeout", "2", *NO_CONFIGURE], timeout=300)
    manifest = json.loads((out / "manifest.json").read_text())
    assert (res.returncode, manifest["status"]) == (1, "path-problem"), res.stderr
    assert "Diagnosis:" in res.stdout and "Traceback" not in res.stderr
    assert not [line for line in res.stderr.splitlines() if line.startswith("rig:")], res.stderr
