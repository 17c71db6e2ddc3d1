"""rig.cli.entry, the program's way out: everything printed arrives, atexit handlers run,
and the exit code is main()'s, although the interpreter's teardown is skipped."""

import os
import subprocess
import sys

_PROGRAM = (
    "import atexit, sys\n"
    "from rig.cli import entry\n"
    "atexit.register(lambda: print('atexit ran', flush=False))\n"
    "sys.argv = ['rig', *sys.argv[1:]]\n"
    "raise SystemExit(entry())\n"
)


def _run(*args: str) -> subprocess.CompletedProcess:
    # stdout a pipe, block-buffered (not PYTHONUNBUFFERED): what is not flushed is lost
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    return subprocess.run([sys.executable, "-c", _PROGRAM, *args], capture_output=True, text=True, timeout=60,
                          env=env)


def test_output_and_atexit_survive_the_quick_exit():
    res = _run("lab", "scenarios")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert "seed" in res.stdout and "healthy" in res.stdout
    assert lines[-1] == "atexit ran"  # run, and its unflushed print flushed, after everything main printed


def test_the_exit_code_is_mains():
    res = _run("show", "/nonexistent/bundle")
    assert res.returncode == 2, (res.returncode, res.stderr)
    assert res.stderr.startswith("rig: ") and res.stdout.splitlines()[-1] == "atexit ran"
