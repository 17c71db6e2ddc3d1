"""Bad places, full disks and malformed bundles: one line on stderr, exit 2 (input) or
3 (infrastructure), never a traceback; a run that dies of a full disk still leaves its
bundle sealed ``failed`` with the reason."""

import json
import shutil
import subprocess
import sys

import pytest

from _runhelp import LAB_SKIP, rig_cmd
from rig.bundle import BundleWriter

NO_UNSHARE = None if shutil.which("unshare") else "unshare (util-linux) is not installed"
# rig run checks root and its tools before it looks at --out
needs_root = pytest.mark.skipif(LAB_SKIP is not None, reason=str(LAB_SKIP))
needs_unshare = pytest.mark.skipif(NO_UNSHARE is not None, reason=str(NO_UNSHARE))


def rig(*args, **kw):
    return subprocess.run(rig_cmd(*args), capture_output=True, text=True, timeout=240, **kw)


def one_error_line(p) -> str:
    """The run's error: exactly one 'rig: ...' line (progress lines aside), no traceback."""
    assert "Traceback" not in p.stderr, p.stderr
    errors = [ln for ln in p.stderr.splitlines() if ln.startswith("rig: ")]
    assert len(errors) == 1, p.stderr
    return errors[0]


def in_private_mounts(script: str, tmp_path) -> None:
    """Run a shell script in a private mount namespace (its tmpfs mounts vanish with it)."""
    p = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-eu", "-c", script],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path,
                       env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PY": sys.executable, "T": str(tmp_path)})
    assert p.returncode == 0, p.stderr


# ------------------------------------------------------------------ --out that cannot hold a bundle


@pytest.mark.root
@needs_root
@needs_unshare
@pytest.mark.parametrize("where", ["file", "proc", "read-only", "read-only-empty"])
def test_out_that_cannot_hold_a_bundle_is_exit_2(where, tmp_path):
    if where == "file":
        (tmp_path / "f").write_text("mine\n")
        p = rig("run", "--out", str(tmp_path / "f"), "--no-configure")
        assert (tmp_path / "f").read_text() == "mine\n"
    elif where == "proc":
        p = rig("run", "--out", "/proc/rig-test/b", "--no-configure")
    else:
        out = "$T/m/empty" if where == "read-only-empty" else "$T/m/new/b"
        in_private_mounts(
            "mkdir -p $T/m; mount -t tmpfs -o size=32m tmpfs $T/m; mkdir $T/m/empty; mount -o remount,ro $T/m;"
            f" set +e; $PY -m rig run --out {out} --no-configure >$T/out 2>$T/err; echo $? >$T/rc", tmp_path)
        p = subprocess.CompletedProcess([], int((tmp_path / "rc").read_text()), (tmp_path / "out").read_text(),
                                        (tmp_path / "err").read_text())
    assert p.returncode == 2, p.stderr
    line = one_error_line(p)
    assert "--out" in line and ("Read-only" in line if where.startswith("read-only") else True), line
    assert p.stderr.count("\n") == 1  # refused before anything ran


@pytest.mark.root
@needs_root
@needs_unshare
def test_too_little_space_is_exit_3_before_the_run(tmp_path):
    in_private_mounts(
        "mkdir -p $T/m; mount -t tmpfs -o size=4m tmpfs $T/m; set +e;"
        " $PY -m rig run --out $T/m/b --no-configure >$T/out 2>$T/err; echo $? >$T/rc; ls -A $T/m >$T/ls", tmp_path)
    err = (tmp_path / "err").read_text()
    assert (tmp_path / "rc").read_text().strip() == "3", err
    assert err.count("\n") == 1 and "MiB free" in err and "Traceback" not in err
    assert (tmp_path / "ls").read_text() == ""  # nothing made


@pytest.mark.root
@pytest.mark.lab
@needs_root
@needs_unshare
def test_disk_full_during_a_run_seals_the_bundle_failed(tmp_path):
    # the disk fills up once the run has started (its manifest exists): the run must fail
    # with one line, tear down, and seal the bundle from the space it held back
    in_private_mounts(
        "mkdir -p $T/m; mount -t tmpfs -o size=24m tmpfs $T/m; set +e;"
        " $PY -m rig run --out $T/m/b --no-configure --probes icmp,tcp --timeout 1 >$T/out 2>$T/err & pid=$!;"
        " while [ ! -e $T/m/b/manifest.json ] && kill -0 $pid 2>/dev/null; do sleep 0.05; done;"
        " dd if=/dev/zero of=$T/m/filler bs=64k 2>/dev/null; df -k $T/m | tail -1 >$T/df;"
        " wait $pid; echo $? >$T/rc; ls -A $T/m/b >$T/ls; cp -a $T/m/b $T/b", tmp_path)
    p = subprocess.CompletedProcess([], int((tmp_path / "rc").read_text()), "", (tmp_path / "err").read_text())
    assert (tmp_path / "df").read_text().split()[3] == "0"  # it was full
    assert p.returncode == 3, p.stderr
    assert "No space left on device" in one_error_line(p)
    assert "✗ teardown" not in p.stderr and "Errno" not in p.stderr
    m = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert m["status"] == "failed" and "No space left on device" in m["error"]
    assert not {".manifest.json.tmp", ".reserve"} & set((tmp_path / "ls").read_text().split())


# ------------------------------------------------------------------ malformed input


def test_rig_toml_not_utf8_is_exit_2(tmp_path):
    cfg = tmp_path / "rig.toml"
    cfg.write_bytes(b'scenario = "seed\xff"\n')
    p = rig("run", "--config", str(cfg))
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "UTF-8" in p.stderr, p.stderr


def _bundle(path, **manifest):
    w = BundleWriter(path, {"backend": "lab"})
    w.finish("ok")
    m = json.loads((path / "manifest.json").read_text())
    (path / "manifest.json").write_text(json.dumps(manifest.pop("whole", None) or {**m, **manifest}))
    return path


@pytest.mark.parametrize("bad, says", [
    ({"format_version": -1}, "format version -1"),
    ({"files": ["captures/client.pcap"]}, "'files' should be an object"),
    ({"timings": [{"stage": 3}]}, "timings[0]"),
    ({"whole": [1, 2]}, "a list, not a rig bundle manifest"),
])
def test_show_a_malformed_manifest_is_exit_2(bad, says, tmp_path):
    b = _bundle(tmp_path / "b", **bad)
    p = rig("show", str(b))
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "Traceback" not in p.stderr, p.stderr
    assert says in p.stderr


def test_history_lists_a_malformed_bundle_as_unreadable_and_the_rest(tmp_path):
    runs = tmp_path / "runs"
    _bundle(runs / "20261201T000000Z-a")
    _bundle(runs / "20261202T000000Z-b", whole=["not", "a", "manifest"])
    _bundle(runs / "20261203T000000Z-c", files=["x"])
    _bundle(runs / "20261204T000000Z-d")
    p = rig("history", str(runs), "--json")
    assert p.returncode == 0 and p.stderr == "", p.stderr
    got = {r["id"]: (r["status"], r["error"]) for r in json.loads(p.stdout)}
    assert got["20261201T000000Z-a"] == ("ok", None) and got["20261204T000000Z-d"] == ("ok", None)
    assert got["20261202T000000Z-b"][0] == "unreadable" and "list" in got["20261202T000000Z-b"][1]
    assert got["20261203T000000Z-c"][0] == "unreadable" and "'files'" in got["20261203T000000Z-c"][1]


def test_manifest_reads_back_as_written_and_keeps_keys_it_does_not_know(tmp_path):
    from rig.bundle import Manifest, load_manifest

    w = BundleWriter(tmp_path / "b", {"backend": "lab"})
    w.write_log("x.txt", "hello\n")
    with w.stage("probes"):
        pass
    w.finish("ok")
    data = json.loads((tmp_path / "b" / "manifest.json").read_text())
    m = load_manifest(tmp_path / "b")
    assert m.to_json() == data and m.timings[0].ok is True and m.files["logs/x.txt"].bytes == 6
    later = {**data, "from_a_later_rig": {"x": 1}}
    assert Manifest.from_json(later).to_json() == later
