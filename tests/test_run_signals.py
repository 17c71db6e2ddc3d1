"""A second signal does not abort teardown; two runs do not disturb each other; an
interrupt Python dropped is raised again. (Signals at every stage of a run, and
SIGKILL followed by `rig clean`: tests/test_run_sweep.py.)"""

import os
import re
import signal
import subprocess
import threading

import pytest

from _runhelp import LAB_SKIP, Ran, lab_leftovers, rig_cmd

pytestmark = [pytest.mark.root, pytest.mark.lab,
              pytest.mark.skipif(LAB_SKIP is not None, reason=str(LAB_SKIP))]

PREFIX_RE = re.compile(r"\b(rig-[0-9a-f]{6})\b")


class Running:
    """A `rig run` subprocess whose progress lines we can wait on."""

    def __init__(self, out, *args):
        self.out = out
        self.proc = subprocess.Popen(rig_cmd("run", "--out", str(out), *args), stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self.prefix: str | None = None

    def wait_for(self, needle: str) -> None:
        for line in self.proc.stderr:
            self.lines.append(line)
            m = PREFIX_RE.search(line)
            if m and self.prefix is None:
                self.prefix = m.group(1)
            if needle in line:
                return
        raise AssertionError(f"{needle!r} never printed: {''.join(self.lines)}")

    def finish(self, timeout: float = 120) -> tuple[int, str]:
        _, rest = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, "".join(self.lines) + rest

    def kill(self, sig) -> None:
        os.kill(self.proc.pid, sig)


def test_a_second_signal_does_not_abort_teardown(tmp_path):
    run = Running(tmp_path / "run", "--scenario", "seed", "--timeout", "4", "--no-configure")
    run.wait_for("✓ captures start")
    run.kill(signal.SIGINT)
    run.kill(signal.SIGINT)
    run.kill(signal.SIGTERM)
    rc, err = run.finish()
    assert rc == 3 and "✓ teardown" in err, err
    assert lab_leftovers(run.prefix) == []


def test_two_runs_at_once_do_not_disturb_each_other(tmp_path):
    runs = {"healthy": None, "seed": None}

    def go(name):
        res = subprocess.run(rig_cmd("run", "--out", str(tmp_path / name), "--scenario", name, "--timeout", "2",
                                     "--no-configure"), capture_output=True, text=True, timeout=240)
        runs[name] = Ran(res.returncode, res.stdout, res.stderr, tmp_path / name)

    threads = [threading.Thread(target=go, args=(n,)) for n in runs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    healthy, seed = runs["healthy"], runs["seed"]
    assert healthy.rc == 0, healthy.stderr
    assert set(healthy.outcomes("tcp")) == {"delivered"}
    assert seed.rc == 1, seed.stderr
    assert set(seed.outcomes("tcp")) == {"lost-return"} and set(seed.outcomes("icmp")) == {"delivered"}
    assert healthy.prefix != seed.prefix
    assert lab_leftovers(healthy.prefix) == [] and lab_leftovers(seed.prefix) == []


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_an_interrupt_dropped_by_a_weakref_callback_is_raised_at_the_next_stage():
    """A signal handled inside a weakref callback has its KeyboardInterrupt printed and
    dropped by Python; the run raises it again at the next stage boundary."""
    import weakref

    from rig.run import Signals

    sig = Signals()

    class Obj:
        pass

    o = Obj()
    ref = weakref.ref(o, lambda _: sig._handle(signal.SIGTERM, None))
    del o  # the callback runs here: its KeyboardInterrupt is only printed
    assert ref() is None and sig.fired
    with pytest.raises(KeyboardInterrupt, match="SIGTERM"):
        sig.check()
    sig.check()  # once
    shielded = Signals()
    with pytest.raises(KeyboardInterrupt):
        shielded._handle(signal.SIGINT, None)  # raised and delivered; then teardown begins
    shielded.shield()
    shielded.check()  # nothing is raised again during teardown


@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")
def test_an_interrupt_dropped_by_a_weakref_callback_is_not_printed(capfd):
    """While a run's handlers are installed, Python's "Exception ignored ... Traceback
    ... KeyboardInterrupt" for such a drop is not printed (the run raises it again);
    other unraisable errors still go to the usual hook, restored afterwards."""
    import sys
    import weakref

    from rig.run import Signals

    class Obj:
        pass

    before = sys.unraisablehook
    sig = Signals().install()
    try:
        o = Obj()
        ref = weakref.ref(o, lambda _: sig._handle(signal.SIGINT, None))
        del o
        assert ref() is None and sig.fired
        with pytest.raises(KeyboardInterrupt):
            sig.check()
    finally:
        sig.restore()
    assert sys.unraisablehook is before
    assert "Traceback" not in capfd.readouterr().err
