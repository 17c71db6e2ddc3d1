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


def test_a_full_disk_under_the_output_is_one_line_and_exit_3(tmp_path):
    """``rig diff ... > file`` on a full disk (/dev/full): the machine's problem, one line
    on stderr and exit 3, never a traceback and exit 1 (a path problem)."""
    data = os.path.join(os.path.dirname(__file__), "data", "analysis", "seed")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    diff = ["diff", os.path.join(data, "client.pcap"), os.path.join(data, "server.pcap")]
    # a verdict written while main runs; a short listing still in the buffer when it returns
    for args in ([*diff, "--json"], diff, ["lab", "scenarios"], ["--version"], ["diff", "--help"]):
        with open("/dev/full", "w") as full:
            res = subprocess.run([sys.executable, "-m", "rig", *args], stdout=full, stderr=subprocess.PIPE,
                                 text=True, timeout=120, env=env)
        assert res.returncode == 3, res.stderr
        assert res.stderr.strip().splitlines() == ["rig: No space left on device"], res.stderr
