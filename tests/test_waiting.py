"""Progress of a long `rig diff` goes to stderr only, and only when someone can see it
(rig.waiting); `rig --help` and `rig lab scenarios` start without numpy."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from rig import waiting
from rig.cli import main

SEED = Path(__file__).parent / "data" / "analysis" / "seed"


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_stages_are_plain_lines_when_asked_on_a_pipe():
    err = io.StringIO()
    with waiting.stages(force=True, stream=err, delay=0) as stage:
        stage("reading the captures")
        stage("analysing")
    assert err.getvalue().splitlines() == ["rig: reading the captures", "rig: analysing"]


def test_nothing_on_a_pipe_unless_asked():
    err = io.StringIO()
    with waiting.stages(stream=err, delay=0) as stage:
        stage("reading the captures")
    assert err.getvalue() == ""


def test_nothing_before_the_delay():
    err = _Tty()
    with waiting.stages(stream=err, delay=60) as stage:
        stage("reading the captures")
    assert err.getvalue() == ""


def test_a_spinner_on_a_terminal(monkeypatch):
    err = _Tty()
    monkeypatch.setattr(sys, "stdout", io.StringIO())  # the result goes elsewhere: the spinner stays up
    with waiting.stages(stream=err, delay=0) as stage:
        stage("analysing")
        stage("writing")
    assert "rig: writing" in err.getvalue()
    assert err.getvalue().endswith("\x1b[2K")  # and gone at the end (transient)


def test_no_spinner_through_a_result_written_to_the_same_terminal(monkeypatch):
    err = _Tty()
    monkeypatch.setattr(sys, "stdout", _Tty())
    with waiting.stages(stream=err, delay=0) as stage:
        stage("analysing")
        stage("writing")
        shown = err.getvalue()
        print("the verdict")
        assert err.getvalue() == shown  # stopped before the verdict is written
    assert "rig: writing" not in shown


@pytest.mark.parametrize("as_json", [True, False])
def test_rig_diff_progress_goes_to_stderr_only(monkeypatch, capsys, as_json):
    args = ["diff", str(SEED / "client.pcap"), str(SEED / "server.pcap"), *(["--json"] if as_json else [])]
    main(args)
    quiet = capsys.readouterr()
    monkeypatch.setattr(waiting, "DELAY_S", 0.0)
    assert main([*args, "--progress"]) == 1
    shown = capsys.readouterr()
    assert shown.out == quiet.out  # stdout: the verdict alone, byte for byte
    if as_json:
        json.loads(shown.out)
    assert shown.err.splitlines() == [*quiet.err.splitlines(), "rig: reading the captures", "rig: analysing",
                                      "rig: writing"]


@pytest.mark.parametrize("argv", [["--help"], ["diff", "--help"], ["lab", "scenarios"]])
def test_no_numpy_to_start(argv):
    code = ("import sys\nfrom rig.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            "sys.stdout.flush()\nprint('numpy' in sys.modules, 'rich' in sys.modules, file=sys.stderr)")
    out = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, check=True)
    assert out.stdout  # it did print its help or list
    numpy, _rich = out.stderr.split()[-2:]
    assert numpy == "False", f"rig {' '.join(argv)} imported numpy"
