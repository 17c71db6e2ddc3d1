"""The pipeline's own behaviour: environment checks, errors are one line with the right
exit code, teardown on failure, the backend's preflight hook, --keep."""

import json
import os
import re
import subprocess

import pytest

from _runhelp import LAB_SKIP, lab_leftovers, rig_cmd
from _sshd import missing_tools, start_sshd
from rig.backends.base import CapturePoint, Rig, RunSpec, SSHEndpoint
from rig.errors import EXIT_INFRA, InfraError, MissingToolError, NotRootError
from rig.preflight import PreflightError, check
from rig.run import Pipeline, check_environment, default_out


class FakeBackend:
    """Provisions a Rig that points at ``endpoint``; counts teardowns."""

    name = "fake"

    def __init__(self, endpoint, problems=()):
        self.endpoint, self.problems, self.torn_down = endpoint, list(problems), 0

    def provision(self, spec):
        return Rig(run_id="fake1", backend="fake", server_addr="127.0.0.1", ssh=self.endpoint,
                   capture_points=(CapturePoint("client", "lo"),), facts={"listen_addr": "127.0.0.1"})

    def preflight(self, rig):
        return self.problems

    def teardown(self, rig):
        self.torn_down += 1


def test_not_root_and_missing_tools_are_one_line(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(NotRootError, match="needs root.*sudo"):
        check_environment(RunSpec(backend="lab"))
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr("rig.run.which", lambda tool: None if tool == "tcpdump" else "/bin/" + tool)
    with pytest.raises(MissingToolError, match="tcpdump not found: install tcpdump"):
        check_environment(RunSpec(backend="lab"))


def test_bad_config_exits_2_with_one_line(tmp_path):
    bad = tmp_path / "rig.toml"
    bad.write_text("timeout = 'soon'\n")
    res = subprocess.run(rig_cmd("run", "--config", str(bad)), capture_output=True, text=True, timeout=60)
    assert res.returncode == 2
    assert res.stderr.count("\n") == 1 and "timeout: expected float" in res.stderr


def test_default_out_dirs_are_unique(tmp_path):
    spec = RunSpec(scenario="seed")
    a, b = default_out(spec, str(tmp_path)), default_out(spec, str(tmp_path))
    assert a != b and a.name.endswith("-seed") and a.is_dir() and b.is_dir()


def test_unreachable_responder_is_exit_3_and_torn_down(tmp_path):
    ep = SSHEndpoint("127.0.0.1", 1, "root", str(tmp_path / "nokey"), "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG9u")
    backend = FakeBackend(ep)
    with pytest.raises(InfraError) as err:
        Pipeline(RunSpec(backend="fake", configure=False), tmp_path / "out", backend=backend).run()
    assert err.value.exit_code == EXIT_INFRA
    assert backend.torn_down == 1
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["status"] == "failed" and manifest["error"]
    assert [t["stage"] for t in manifest["timings"]] == ["provision", "teardown"]


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0 or bool(missing_tools("sshd", "unshare")), reason="needs root and sshd")
def test_preflight_reports_the_responder_and_the_backend_hook(tmp_path):
    from rig.sshclient import SSHClient

    s = start_sshd(tmp_path / "sshd")
    try:
        backend = FakeBackend(s.endpoint, problems=["NSG rule allow-http is not in effect"])
        rig = backend.provision(RunSpec())
        with SSHClient(s.endpoint) as ssh:
            report = check(rig, ssh, backend)
        # nothing listens: Apache and the UDP echo are reported, then the backend's own check
        assert any("Apache does not answer on the server itself" in p for p in report.problems)
        assert any("UDP echo does not answer" in p for p in report.problems)
        assert report.problems[-1] == "NSG rule allow-http is not in effect"
        with pytest.raises(PreflightError) as err:
            Pipeline(RunSpec(backend="fake", configure=False), tmp_path / "out", backend=backend).run()
        assert err.value.exit_code == EXIT_INFRA and "preflight: Apache" in str(err.value)
        assert backend.torn_down == 1
    finally:
        s.stop()


@pytest.mark.root
@pytest.mark.lab
@pytest.mark.skipif(LAB_SKIP is not None, reason=str(LAB_SKIP))
def test_keep_leaves_the_lab_and_says_how_to_enter_and_remove_it(tmp_path):
    res = subprocess.run(rig_cmd("run", "--out", str(tmp_path / "run"), "--keep", "--no-configure",
                                 "--probes", "icmp,tcp", "--timeout", "1"), capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    prefix = manifest["backend"]["prefix"]
    try:
        assert f"ip netns exec {prefix}-client bash" in res.stderr
        assert f"rig clean --prefix {prefix}" in res.stderr
        assert f"{prefix}-server" in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    finally:
        subprocess.run(rig_cmd("clean", "--prefix", prefix), capture_output=True, timeout=60)
    assert lab_leftovers(prefix) == []


@pytest.mark.root
@pytest.mark.lab
@pytest.mark.skipif(LAB_SKIP is not None, reason=str(LAB_SKIP))
def test_redact_and_archive(tmp_path):
    import tarfile

    out = tmp_path / "run"
    res = subprocess.run(rig_cmd("run", "--out", str(out), "--no-configure", "--probes", "icmp,tcp", "--timeout", "1",
                                 "--redact", "--archive", "--json"), capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert re.search(r"redacted [1-9]\d* private addresses", res.stderr), res.stderr  # not "redacted 0"
    assert "192.168.1.10" not in (out / "verdict.json").read_text()
    assert res.stdout == (out / "verdict.json").read_text()  # stdout is the redacted verdict, not the raw one
    assert b"\xc0\xa8\x01\x0a" not in (out / "captures" / "client.pcap").read_bytes()  # 192.168.1.10
    with tarfile.open(tmp_path / "run.tar.gz") as tar:
        assert "run/verdict.json" in tar.getnames()


def _manifest(out):
    return json.loads((out / "manifest.json").read_text())


def test_a_signal_before_the_run_begins_seals_the_bundle_interrupted(tmp_path):
    """rig run holds signals from before the bundle exists (the banner, the paramiko
    import): one that came then is raised inside the run, which seals the bundle."""
    import signal

    from rig.run import Signals

    backend = FakeBackend(SSHEndpoint("127.0.0.1", 1, "root", "/nokey", "ssh-ed25519 AAAA"))
    signals = Signals().install(hold=True)
    try:
        signals._handle(signal.SIGTERM, None)  # held: nothing raised yet
        pipeline = Pipeline(RunSpec(backend="fake", configure=False), tmp_path / "out", backend=backend,
                            signals=signals)
        assert _manifest(tmp_path / "out")["status"] == "running"
        with pytest.raises(KeyboardInterrupt, match="SIGTERM"):
            pipeline.run()
    finally:
        signals.restore()
    manifest = _manifest(tmp_path / "out")
    assert (manifest["status"], manifest["error"]) == ("interrupted", "terminated")
    assert backend.torn_down == 0 and manifest["timings"] == []  # nothing was provisioned


def test_a_stage_that_fails_because_of_a_signal_is_interrupted(tmp_path):
    """A library that turns the KeyboardInterrupt into its own error does not make the
    run 'failed': the signal was received, the bundle says interrupted, exit 3."""
    import signal

    class Wrapping(FakeBackend):
        def provision(self, spec):
            try:
                pipeline.signals._handle(signal.SIGINT, None)  # the signal, during provision
            except KeyboardInterrupt as exc:
                raise InfraError("provision failed: cancelled") from exc

    backend = Wrapping(SSHEndpoint("127.0.0.1", 1, "root", "/nokey", "ssh-ed25519 AAAA"))
    pipeline = Pipeline(RunSpec(backend="fake", configure=False), tmp_path / "out", backend=backend)
    with pytest.raises(KeyboardInterrupt):
        pipeline.run()
    manifest = _manifest(tmp_path / "out")
    assert (manifest["status"], manifest["error"]) == ("interrupted", "interrupted")


class _StillExiting:
    """A playbook whose play ended well and whose ansible-playbook is still exiting."""

    def __init__(self, backend, result=None):
        self.backend, self.late = backend, result
        self.cancel = None
        self.seen_at_wait = None

    def start(self, rig, log_path=None, timeout=1500, cancel=None):
        self.cancel = cancel
        return self

    def applied(self):
        from rig.configure import Applied

        return Applied(changed=0)

    def result(self):
        if isinstance(self.late, BaseException):
            raise self.late
        return self.late

    def wait(self):  # what the run's way out asked of it, and whether teardown had come yet
        self.seen_at_wait = (self.cancel(), self.backend.torn_down)


def test_a_playbook_still_exiting_is_cancelled_and_waited_for_before_teardown(tmp_path, monkeypatch):
    """The stages after configure go on while ansible-playbook exits; a run that fails
    meanwhile (here rig's own SSH connection) cancels it and waits for it before the
    teardown, so none of its SSH masters outlives the namespaces."""
    backend = FakeBackend(SSHEndpoint("127.0.0.1", 1, "root", str(tmp_path / "nokey"), "ssh-ed25519 AAAA"))
    playbook = _StillExiting(backend)
    monkeypatch.setattr("rig.configure.start", playbook.start)
    with pytest.raises(InfraError):
        Pipeline(RunSpec(backend="fake"), tmp_path / "out", backend=backend).run()
    assert playbook.cancel is not None
    assert playbook.seen_at_wait == (True, 0)
    assert backend.torn_down == 1


def test_a_playbook_run_that_fails_after_its_play_fails_the_run_before_its_verdict(tmp_path):
    backend = FakeBackend(SSHEndpoint("127.0.0.1", 1, "root", "/nokey", "ssh-ed25519 AAAA"))
    pipeline = Pipeline(RunSpec(backend="fake"), tmp_path / "out", backend=backend)
    pipeline._configuring = _StillExiting(backend, InfraError("configure (server.yml) failed: rc 250"))
    with pytest.raises(InfraError, match="rc 250"):
        pipeline.configured_fully()


def test_the_playbook_runs_beside_the_probes_only_on_a_lab_this_run_provisioned(tmp_path):
    """Only a lab rig run made itself started the responder from the playbook's own
    templates; a kept rig (--rig) may have drifted, and any other server is configured
    before anything is sent to it."""
    lab_rig = Rig(run_id="r", backend="lab", server_addr="198.51.100.10", ssh=SSHEndpoint("h", 22, "u", "/k", "x"),
                  capture_points=())

    def pipeline(spec, rig):
        p = Pipeline(spec, tmp_path / f"out-{len(list(tmp_path.iterdir()))}",
                     backend=FakeBackend(SSHEndpoint("h", 22, "u", "/k", "x")))
        p.rig = rig
        return p

    assert pipeline(RunSpec(backend="lab"), lab_rig).provisioned_as_configured()
    assert not pipeline(RunSpec(backend="lab", options={"rig_id": "kept"}), lab_rig).provisioned_as_configured()
    ssh_rig = Rig(run_id="r", backend="ssh", server_addr="203.0.113.7", ssh=lab_rig.ssh, capture_points=())
    assert not pipeline(RunSpec(backend="ssh"), ssh_rig).provisioned_as_configured()


def _beside(tmp_path, playbook):
    """A pipeline whose playbook (``playbook``, a stand-in) was started beside the probes."""
    backend = FakeBackend(SSHEndpoint("127.0.0.1", 1, "root", "/nokey", "ssh-ed25519 AAAA"))
    pipeline = Pipeline(RunSpec(backend="fake"), tmp_path / "out", backend=backend)
    pipeline._configuring = playbook
    pipeline._beside = (0.0, pipeline.bundle.begin_stage("configure"))
    return pipeline


class _Played(_StillExiting):
    played_at = 0.75

    def __init__(self, backend, changed=0, result=None):
        super().__init__(backend, result)
        self.changed = changed

    def applied(self):
        from rig.configure import Applied

        return Applied(changed=self.changed)


def test_a_playbook_beside_the_probes_that_changed_the_responder_voids_them(tmp_path):
    """In a fresh lab the playbook must find the responder as provision made it: had it
    changed anything, the probes (made meanwhile) met another responder: exit 3, and the
    configure stage says why."""
    from rig.configure import ConfigureResult

    done = ConfigureResult("successful", 0, 1.0, "", 0)
    ok = _beside(tmp_path / "a", _Played(None, changed=0, result=done))
    ok.configured_fully()
    [rec] = ok.bundle.manifest.timings
    assert (rec.stage, rec.seconds, rec.ok) == ("configure", 0.75, True)
    changed = _beside(tmp_path / "b", _Played(None, changed=2, result=done))
    with pytest.raises(InfraError, match="changed 2 things on the lab's responder"):
        changed.configured_fully()
    [rec] = changed.bundle.manifest.timings
    assert rec.ok is False and "changed 2 things" in rec.error


def test_a_run_that_ends_before_the_playbook_beside_it_closes_its_stage(tmp_path):
    from rig.configure import ConfigureResult

    running = _Played(FakeBackend(None), result=ConfigureResult("canceled", 254, 0.4, "", 0))
    running.cancel = lambda: True
    p = _beside(tmp_path, running)
    p._stop_configuring()
    [rec] = p.bundle.manifest.timings
    assert (rec.ok, rec.error) == (False, "canceled: the run ended first")
    assert running.seen_at_wait is not None  # waited for before anything else
