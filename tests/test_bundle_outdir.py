"""Where a bundle goes (`rig run --out`), and that a bundle only ever touches the files
its writer created: a directory of the user's is never swept, rewritten or overwritten."""

import hashlib
import json
import os
import stat
import subprocess

import pytest

from _runhelp import LAB_SKIP, rig_cmd
from rig.bundle import BundleWriter, finish_failed, prepare_out
from rig.errors import UsageError

KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmU=\n-----END OPENSSH PRIVATE KEY-----\n"
PEM = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\n"


def user_files(d):
    """A directory as a user has one: a key, a PEM, a .env, a JSON with a password, and
    a manifest.json / report.html of their own; returns nothing, see snapshot()."""
    (d / ".ssh").mkdir(parents=True)
    (d / ".ssh" / "id_ed25519").write_text(KEY)
    os.chmod(d / ".ssh" / "id_ed25519", 0o600)
    (d / "certs").mkdir()
    (d / "certs" / "site.pem").write_text(PEM)
    (d / ".env").write_text("API_TOKEN=abcdef123456\nPASSWORD=hunter2222\n")
    (d / "app.json").write_text('{"password": "hunter22", "db": "10.0.0.5"}\n')
    (d / "notes").mkdir()
    (d / "notes" / "manifest.json").write_text('{"mine": true}\n')
    (d / "notes" / "report.html").write_text("<p>my report</p>\n")
    os.symlink("app.json", d / "link-to-app")


def snapshot(d, skip=()):
    """Every path under ``d`` (but ``skip``): its mode and its bytes' sha256 (or link target)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(d):
        dirnames[:] = [n for n in dirnames if os.path.join(dirpath, n) not in skip]
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                what = "-> " + os.readlink(p)
            elif stat.S_ISREG(st.st_mode):
                what = hashlib.sha256(open(p, "rb").read()).hexdigest()
            else:
                what = "dir"
            out[os.path.relpath(p, d)] = (stat.S_IMODE(st.st_mode), what)
    return out


# ------------------------------------------------------------------ the rule (no lab)


def test_the_out_rule(tmp_path):
    # does not exist: made, and is the bundle
    new = prepare_out(tmp_path / "a" / "b", "seed")
    assert new.path == tmp_path / "a" / "b" and new.path.is_dir() and new.note is None
    # empty: is the bundle
    (tmp_path / "empty").mkdir()
    assert prepare_out(tmp_path / "empty", "seed").path == tmp_path / "empty"
    # only hidden files, or a symlink to a directory of the user's: a new subdirectory, said
    (tmp_path / "hidden").mkdir()
    (tmp_path / "hidden" / ".env").write_text("X=1\n")
    got = prepare_out(tmp_path / "hidden", "seed")
    assert got.path.parent == tmp_path / "hidden" and got.path.name.endswith("-seed") and str(got.path) in got.note
    os.symlink(tmp_path / "hidden", tmp_path / "link")
    got = prepare_out(tmp_path / "link", "seed")
    assert got.path.parent == tmp_path / "link" and list(got.path.iterdir()) == []
    # refused, one line each: a rig bundle, a file, a symlink to nothing
    BundleWriter(tmp_path / "old", {}).finish("ok")
    (tmp_path / "file").write_text("x")
    os.symlink(tmp_path / "nowhere", tmp_path / "dangling")
    for bad, why in (("old", "earlier run"), ("file", "is a file"), ("dangling", "symlink to nothing")):
        with pytest.raises(UsageError, match=why):
            prepare_out(tmp_path / bad, "seed")
    assert not (tmp_path / "nowhere").exists()


def test_a_scheduled_rerun_never_reuses_another_reruns_bundle(tmp_path):
    """`rig schedule exec` twice in one second: the second gets the next second's name
    (it passes that to `rig run --out`, and marks it failed if the run did not)."""
    import datetime as dt

    from rig.schedule import BUNDLE_RE, _new_bundle_path

    now = dt.datetime(2026, 12, 1, 10, 0, 0, tzinfo=dt.timezone.utc)
    (tmp_path / "20261201T100000Z-hourly").mkdir()
    (tmp_path / "20261201T100001Z-hourly.tar.gz").write_bytes(b"")
    got = _new_bundle_path(tmp_path, "hourly", now)
    assert got.name == "20261201T100002Z-hourly" and BUNDLE_RE.match(got.name).group(2) == "hourly"


def test_writer_refuses_a_directory_it_did_not_make_or_find_empty(tmp_path):
    user_files(tmp_path / "home")
    before = snapshot(tmp_path / "home")
    with pytest.raises(UsageError, match="not empty"):
        BundleWriter(tmp_path / "home", {})
    assert snapshot(tmp_path / "home") == before


def test_sealing_visits_only_what_the_writer_created(tmp_path):
    """A file put beside the bundle's own files (not through the writer, not in its
    captures/ or logs/) is neither swept nor hashed, here nor in finish_failed."""
    b = tmp_path / "b"
    w = BundleWriter(b, {})
    w.write_log("curl.txt", "Authorization: Bearer abcdefgh12345678\n")
    (b / "theirs.pem").write_text(PEM)
    (b / "theirs.env").write_text("SECRET=abcdef123456\n")
    theirs = {p: (b / p).read_bytes() for p in ("theirs.pem", "theirs.env")}
    w.finish("ok")
    m = json.loads((b / "manifest.json").read_text())
    assert (b / "logs" / "curl.txt").read_text() == "Authorization: [redacted]\n"
    assert {p: (b / p).read_bytes() for p in theirs} == theirs
    assert set(m["files"]) == {"logs/curl.txt"} and m["written"] == ["logs/curl.txt"]
    finish_failed(b, "later failure")
    assert {p: (b / p).read_bytes() for p in theirs} == theirs
    assert not (b / ".reserve").exists()


# ------------------------------------------------------------------ black box (lab)


@pytest.mark.root
@pytest.mark.lab
@pytest.mark.skipif(LAB_SKIP is not None, reason=str(LAB_SKIP))
def test_run_into_a_users_directory_changes_none_of_their_files(tmp_path):
    home = tmp_path / "home"
    user_files(home)
    before = snapshot(home)
    p = subprocess.run(rig_cmd("run", "--out", str(home), "--no-configure", "--probes", "icmp,tcp",
                               "--timeout", "1", "--scenario", "seed"), capture_output=True, text=True, timeout=240)
    assert p.returncode == 1, p.stderr  # the seed fault: a path problem, and a bundle written
    subs = [d for d in home.iterdir() if d.name.endswith("-seed")]
    assert len(subs) == 1 and f"the bundle goes to {subs[0]}" in p.stderr
    assert snapshot(home, skip={str(subs[0])}) == before  # every byte and mode as it was
    m = json.loads((subs[0] / "manifest.json").read_text())
    assert m["status"] == "path-problem" and m["removed"] == []
    # the same --out again: the bundle of that run is never written into either
    again = subprocess.run(rig_cmd("run", "--out", str(subs[0]), "--no-configure"), capture_output=True, text=True)
    assert again.returncode == 2 and again.stderr.count("\n") == 1 and "earlier run" in again.stderr


def test_writer_on_a_full_disk_keeps_going_to_teardown_and_seals(tmp_path, monkeypatch):
    """The writer alone (the CLI test with a real full tmpfs is in test_bundle_errors):
    manifest updates that fail mid-run do not abort the stage that made them (teardown),
    the half-written temporary manifest is removed, and finish() seals from the space
    held back since the start."""
    import errno

    import rig.bundle.files as files
    from rig.bundle.writer import RESERVE

    b = tmp_path / "b"
    w = BundleWriter(b, {})
    assert (b / ".reserve").stat().st_size == RESERVE
    real_replace = os.replace
    full = {"on": True}

    def replace(src, dst):
        if full["on"]:
            raise OSError(errno.ENOSPC, "No space left on device", str(src))
        return real_replace(src, dst)

    monkeypatch.setattr(files.os, "replace", replace)
    with w.stage("teardown"):
        pass  # its manifest update fails: kept for later, not raised
    assert not (b / ".manifest.json.tmp").exists()
    assert json.loads((b / "manifest.json").read_text())["timings"] == []  # the old manifest stands
    full["on"] = False
    w.finish("failed", error="cannot write the bundle: No space left on device")
    m = json.loads((b / "manifest.json").read_text())
    assert m["status"] == "failed" and [t["stage"] for t in m["timings"]] == ["teardown"]
    assert not (b / ".reserve").exists()


@pytest.mark.root
@pytest.mark.lab
@pytest.mark.skipif(LAB_SKIP is not None, reason=str(LAB_SKIP))
def test_a_bundle_name_with_any_characters_still_probes(tmp_path):
    """The bundle's name tags the probes' nonces (the HTTP path among them): an @, a space or
    a non-ASCII letter in --out must not turn the responder's pages into 404s."""
    out = tmp_path / "healthy@home run é"
    p = subprocess.run(rig_cmd("run", "--out", str(out), "--no-configure", "--probes", "http",
                               "--timeout", "2", "--scenario", "healthy"), capture_output=True, text=True, timeout=240)
    assert p.returncode == 0, p.stderr
    v = json.loads((out / "verdict.json").read_text())
    assert {e["outcome"] for e in v["exchanges"] if e["protocol"] == "tcp"} == {"delivered"}
