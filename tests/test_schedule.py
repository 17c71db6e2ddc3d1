"""rig schedule: unit / cron files into a temporary root, reruns, failures, retention."""

import fcntl
import json
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests._runhelp import lab_skip_reason
from rig.bundle import BundleWriter
from rig.errors import UsageError
from rig.history import runs_in
from rig.schedule import apply_retention, parse_interval, run_once, state_dir

RIG = [sys.executable, "-m", "rig"]


def rig(*argv, check=True):
    p = subprocess.run([*RIG, *argv], capture_output=True, text=True)
    if check:
        assert p.returncode == 0, p.stderr
    return p


def _set_command(root: Path, name: str, cmd: list[str]) -> None:
    """Point a schedule at another rig executable (the frozen rig_command)."""
    f = root / "etc/rig/schedules" / f"{name}.toml"
    text = f.read_text()
    start = text.index("rig_command = ")
    end = text.index("\n", start)
    f.write_text(text[:start] + "rig_command = " + json.dumps(cmd) + text[end:])
    assert tomllib.loads(f.read_text())["schedule"]["rig_command"] == cmd


def test_systemd_units_verify(tmp_path):
    root = tmp_path / "root"
    p = rig("schedule", "add", "--every", "1h", "--backend", "lab", "--scenario", "seed", "--name", "hourly",
            "--out", str(tmp_path / "runs"), "--root", str(root), "--scheduler", "systemd", "--retain", "5")
    service = root / "etc/systemd/system/rig-schedule-hourly.service"
    timer = root / "etc/systemd/system/rig-schedule-hourly.timer"
    assert service.exists() and timer.exists() and "hourly" in p.stdout
    assert "OnUnitActiveSec=1h" in timer.read_text()
    assert f"ExecStart={sys.executable} -m rig schedule exec hourly" in service.read_text()
    spec = tomllib.loads((root / "etc/rig/schedules/hourly.toml").read_text())
    assert spec["backend"] == "lab" and spec["scenario"] == "seed"
    assert spec["schedule"]["retain"] == 5 and spec["schedule"]["out"] == str(tmp_path / "runs")
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze not installed: unit files checked by content only")
    v = subprocess.run(["systemd-analyze", "verify", str(service), str(timer)], capture_output=True, text=True)
    assert v.returncode == 0, v.stderr


def test_systemd_analyze_would_catch_a_broken_unit(tmp_path):
    """The verify step is not vacuous: a unit with a bad timer value fails it."""
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze not installed")
    bad = tmp_path / "rig-schedule-bad.timer"
    bad.write_text("[Timer]\nOnUnitActiveSec=1hour-ish\n[Install]\nWantedBy=timers.target\n")
    v = subprocess.run(["systemd-analyze", "verify", str(bad)], capture_output=True, text=True)
    assert v.returncode != 0


def _parse_cron_line(line: str):
    fields = line.split(None, 6)
    assert len(fields) == 7, line
    minute, hour, dom, month, dow, user, command = fields
    return (minute, hour, dom, month, dow), user, command


@pytest.mark.parametrize("every, expect", [("15m", ("*/15", "*", "*", "*", "*")), ("1h", ("0", "*", "*", "*", "*")),
                                           ("6h", ("0", "*/6", "*", "*", "*")), ("1d", ("0", "0", "*", "*", "*"))])
def test_cron_entry(tmp_path, every, expect):
    root = tmp_path / "root"
    rig("schedule", "add", "--every", every, "--name", "c", "--out", str(tmp_path / "runs"), "--root", str(root),
        "--scheduler", "cron")
    lines = [ln for ln in (root / "etc/cron.d/rig-c").read_text().splitlines() if ln and not ln.startswith("#")]
    env = [ln for ln in lines if "=" in ln.split()[0]]
    jobs = [ln for ln in lines if ln not in env]
    assert {e.split("=")[0] for e in env} == {"SHELL", "PATH"}
    assert len(jobs) == 1
    when, user, command = _parse_cron_line(jobs[0])
    assert when == expect and user == "root"
    assert f"{sys.executable} -m rig schedule exec c" in command
    # the command is valid sh
    assert subprocess.run(["sh", "-n", "-c", command]).returncode == 0


def test_cron_refuses_what_it_cannot_express(tmp_path):
    p = rig("schedule", "add", "--every", "45m", "--name", "x", "--root", str(tmp_path), "--scheduler", "cron",
            check=False)
    assert p.returncode == 2 and "cron cannot run every 45m" in p.stderr and p.stderr.count("\n") == 1
    with pytest.raises(UsageError):
        parse_interval("1 fortnight")
    with pytest.raises(UsageError):
        parse_interval("1m")  # closer than a run takes


def test_list_and_remove(tmp_path):
    root = tmp_path / "root"
    rig("schedule", "add", "--every", "1h", "--name", "a", "--out", str(tmp_path / "ra"), "--root", str(root),
        "--scheduler", "systemd")
    rig("schedule", "add", "--every", "1d", "--name", "b", "--out", str(tmp_path / "rb"), "--root", str(root),
        "--scheduler", "cron", "--keep-rig")
    out = rig("schedule", "list", "--root", str(root)).stdout
    assert out.startswith("a: every 1h via systemd") and "b: every 1d via cron, keeps 48, rig sched-b" in out
    dup = rig("schedule", "add", "--every", "1h", "--name", "a", "--root", str(root), check=False)
    assert dup.returncode == 2 and "exists already" in dup.stderr
    rig("schedule", "remove", "a", "--root", str(root))
    assert not (root / "etc/systemd/system/rig-schedule-a.timer").exists()
    assert not (root / "etc/rig/schedules/a.toml").exists()
    assert rig("schedule", "list", "--root", str(root)).stdout.startswith("b:")
    gone = rig("schedule", "remove", "a", "--root", str(root), check=False)
    assert gone.returncode == 2 and "no schedule named 'a'" in gone.stderr


def _fake_rig(tmp_path: Path, body: str) -> list[str]:
    """A stand-in for the rig executable at the subprocess boundary (the real `rig run` is
    exercised by the lab test)."""
    f = tmp_path / "fake_rig.py"
    f.write_text("import sys, json, pathlib\nargv = sys.argv[1:]\n" + body)
    return [sys.executable, str(f)]


def test_a_rerun_that_fails_to_run_is_a_failed_bundle(tmp_path):
    root, runs = tmp_path / "root", tmp_path / "runs"
    rig("schedule", "add", "--every", "1h", "--name", "az", "--backend", "azure", "--out", str(runs), "--root",
        str(root), "--scheduler", "cron")
    _set_command(root, "az", _fake_rig(tmp_path, (
        "print('rig: azure: DefaultAzureCredential failed to retrieve a token: credentials expired', file=sys.stderr)\n"
        "sys.exit(3)\n")))
    code, bundle = run_once(root, "az")
    assert code == 3
    m = json.loads((bundle / "manifest.json").read_text())
    assert m["status"] == "failed" and "credentials expired" in m["error"] and m["spec"]["backend"] == "azure"
    assert "logs/schedule-exec.log" in m["files"]
    [r] = runs_in(runs)
    assert r.status == "failed" and "credentials expired" in r.error


def test_a_run_killed_mid_way_is_completed_as_failed(tmp_path):
    root, runs = tmp_path / "root", tmp_path / "runs"
    rig("schedule", "add", "--every", "1h", "--name", "k", "--out", str(runs), "--root", str(root), "--scheduler", "cron")
    # the run started its bundle (manifest 'running') and then died
    _set_command(root, "k", _fake_rig(tmp_path, (
        "from rig.bundle import BundleWriter\n"
        "out = argv[argv.index('--out') + 1]\n"
        "w = BundleWriter(out, {'backend': 'lab'})\n"
        "import os; os._exit(9)\n")))
    code, bundle = run_once(root, "k")
    m = json.loads((bundle / "manifest.json").read_text())
    assert code == 9 and m["status"] == "failed" and "exit 9" in m["error"]


def test_keep_rig_provisions_once_and_reruns_against_it(tmp_path):
    root, runs = tmp_path / "root", tmp_path / "runs"
    calls = tmp_path / "calls.txt"
    rig("schedule", "add", "--every", "1h", "--name", "kr", "--out", str(runs), "--root", str(root), "--scheduler",
        "cron", "--keep-rig")
    _set_command(root, "kr", _fake_rig(tmp_path, (
        f"open({str(calls)!r}, 'a').write(' '.join(argv) + '\\n')\n"
        "if argv[0] == 'run':\n"
        "    from rig.bundle import BundleWriter\n"
        "    w = BundleWriter(argv[argv.index('--out') + 1], {'backend': 'lab'})\n"
        "    w.finish('ok')\n")))
    import datetime as dt

    t = dt.datetime(2026, 11, 26, 1, 0, tzinfo=dt.timezone.utc)
    assert run_once(root, "kr", now=t)[0] == 0
    assert run_once(root, "kr", now=t + dt.timedelta(hours=1))[0] == 0
    lines = calls.read_text().splitlines()
    assert [ln.split()[0] for ln in lines] == ["up", "run", "run"]
    assert "--name sched-kr" in lines[0] and lines[1].endswith("--rig sched-kr") and lines[2].endswith("--rig sched-kr")
    assert json.loads((state_dir(root) / "kr.json").read_text())["provisioned"] is True


def test_overlapping_rerun_is_recorded_not_skipped(tmp_path):
    root, runs = tmp_path / "root", tmp_path / "runs"
    rig("schedule", "add", "--every", "1h", "--name", "o", "--out", str(runs), "--root", str(root), "--scheduler", "cron")
    state_dir(root).mkdir(parents=True, exist_ok=True)
    with open(state_dir(root) / "o.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        code, bundle = run_once(root, "o")
    m = json.loads((bundle / "manifest.json").read_text())
    assert code == 3 and m["status"] == "failed" and "still running" in m["error"]


def test_retention_keeps_compresses_prunes(tmp_path):
    out = tmp_path / "runs"
    names = [f"202611{d:02d}T000000Z-s" for d in range(1, 11)]  # 10 bundles, oldest first
    for n in names:
        w = BundleWriter(out / n, {"backend": "lab"})
        w.finish("ok")
    (out / "notes.txt").write_text("not a bundle: left alone")
    (out / "20261101T000000Z-other").mkdir()  # another schedule's bundle: left alone
    done = apply_retention(out, "s", retain=3, retain_archives=4)
    left = sorted(p.name for p in out.iterdir())
    assert [n for n in names[-3:]] == [n for n in left if n.endswith("-s")]
    assert sorted(done["compressed"]) == names[3:7]
    assert sorted(done["pruned"]) == names[:3]
    assert [f"{n}.tar.gz" for n in names[3:7]] == [n for n in left if n.endswith(".tar.gz")]
    assert "notes.txt" in left and "20261101T000000Z-other" in left
    # history still sees the kept and the compressed ones
    assert [r.id for r in runs_in(out) if r.id.endswith("-s")] == names[3:]


def _lab_ready() -> str | None:
    """The lab needs root and its tools (tests._runhelp says which)"""
    return lab_skip_reason()


@pytest.mark.root
@pytest.mark.lab
@pytest.mark.slow
@pytest.mark.skipif(_lab_ready() is not None, reason=str(_lab_ready()))
def test_scheduled_rerun_of_the_lab_seed_writes_a_bundle(tmp_path):
    """The real thing: the frozen spec drives `rig run` in the lab; the bundle lands in the
    schedule's out dir and history shows its verdict."""
    root, runs = tmp_path / "root", tmp_path / "runs"
    cfg = tmp_path / "rig.toml"
    cfg.write_text('configure = false\nprobes = ["icmp", "tcp"]\n')
    rig("schedule", "add", "--every", "1h", "--backend", "lab", "--scenario", "seed", "--name", "seed",
        "--config", str(cfg), "--out", str(runs), "--root", str(root), "--scheduler", "cron")
    p = subprocess.run([*RIG, "schedule", "exec", "seed", "--root", str(root)], capture_output=True, text=True,
                       timeout=240)
    assert p.returncode == 1, p.stderr[-2000:]  # the seed is a path problem
    [r] = runs_in(runs)
    assert r.status == "path-problem" and r.outcomes["tcp"] == "lost-return" and r.outcomes["icmp"] == "delivered"
    m = json.loads((Path(r.path) / "manifest.json").read_text())
    assert m["spec"]["scenario"] == "seed" and "logs/schedule-exec.log" in m["files"]


def test_a_hung_run_is_stopped_with_sigterm_first(tmp_path):
    from rig.schedule import run_bounded

    marker = tmp_path / "terminated"
    # a shell that "tears down" on SIGTERM (sh starts in milliseconds: the trap is set
    # long before the 1 s limit)
    hang = f"trap 'echo teardown ran > {marker}; exit 3' TERM; while :; do sleep 1; done"
    p = run_bounded(["sh", "-c", hang], limit=1, grace=30)
    assert p.returncode == 3 and "longer than 1 s" in p.stderr
    assert marker.read_text().strip() == "teardown ran"
