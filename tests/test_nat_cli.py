"""`rig run`'s NAT flags refused before anything is built: one line on stderr, exit 2."""

import subprocess

import pytest

from _runhelp import rig_cmd


@pytest.mark.parametrize("args, words", [
    (["--nat-lifetime", "30"], "add nat to --probes"),
    (["--probes", "nat", "--nat-lifetime", "soon"], "--nat-lifetime: expected a budget"),
    (["--probes", "nat,bogus"], "(or all, nat)"),
])
def test_bad_nat_flags_exit_2(tmp_path, args, words):
    res = subprocess.run(rig_cmd("run", "--out", str(tmp_path / "run"), *args), capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 2
    assert words in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert not (tmp_path / "run").exists()
