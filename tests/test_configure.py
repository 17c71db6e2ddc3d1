"""configure: the real playbook through ansible-runner over SSH with the host key pinned.

A fresh server (sshd alone in a namespace) is configured from nothing: Apache from
templates/apache-rig.conf.j2, the site, the UDP echo. A second run changes nothing.
A wrong pinned key stops it. No ControlPersist master or ProxyCommand is left behind.
"""

import os
import shutil
import socket
import subprocess
import tempfile
import urllib.request
from pathlib import Path

import pytest

from _sshd import missing_tools, start_sshd
from rig.backends.base import Rig, SSHEndpoint
from rig.configure import configure, control_path, envvars, inventory, master_argv, playbook_vars, ssh_common_args
from rig.errors import InfraError
from rig.netns import in_netns


def _rig(endpoint: SSHEndpoint, workdir: Path, server_dir: Path) -> Rig:
    return Rig(run_id="t", backend="lab", server_addr="127.0.0.1", ssh=endpoint, capture_points=(),
               client_netns=endpoint.netns, install_packages=False, workdir=str(workdir),
               facts={"server_dir": str(server_dir), "listen_addr": "127.0.0.1", "http_port": "80",
                      "udp_port": "7", "service_mode": "standalone", "python": "/usr/bin/python3"})


def test_inventory_pins_the_key_and_uses_the_client_namespace(tmp_path):
    ep = SSHEndpoint("198.51.100.10", 22, "root", "/k", "ssh-ed25519 AAAA", netns="rig-abc-client")
    rig = _rig(ep, tmp_path, tmp_path / "srv")
    args = ssh_common_args(rig, tmp_path / "kh")
    assert "StrictHostKeyChecking=yes" in args and f"UserKnownHostsFile={tmp_path / 'kh'}" in args
    assert "ProxyUseFdpass=yes" in args and "-m rig.fdpass rig-abc-client %h %p'" in args
    host = inventory(rig, tmp_path / "kh")["all"]["hosts"]["server"]
    assert host["ansible_host"] == "198.51.100.10" and host["ansible_ssh_private_key_file"] == "/k"
    v = playbook_vars(rig)
    assert v["rig_install_packages"] is False and v["rig_service_mode"] == "standalone"
    dests = {f["dest"] for f in v["rig_files"]}
    assert f"{tmp_path}/srv/udp_echo.py" in dests and f"{tmp_path}/srv/site/index.html" in dests


needs = pytest.mark.skipif(os.geteuid() != 0 or bool(missing_tools("sshd", "apache2", "unshare")),
                           reason="needs root, sshd, apache2, unshare")


@pytest.fixture
def server(tmp_path):
    s = start_sshd(tmp_path / "sshd")
    # Apache's workers (www-data) must reach the site: a world-readable server dir
    srv = Path(tempfile.mkdtemp(prefix="rig-srv-"))
    srv.chmod(0o755)
    yield s, srv
    s.stop()
    shutil.rmtree(srv, ignore_errors=True)


def _get(ns, url):
    def fetch():
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(url, timeout=5) as r:
            return r.status, r.headers.get("X-Rig-Responder"), r.headers.get("Cache-Control")
    return in_netns(ns, fetch)


def _echo(ns):
    def go():
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.settimeout(3)
        u.sendto(b"ping-rig", ("127.0.0.1", 7))
        return u.recvfrom(100)[0]
    return in_netns(ns, go)


def _procs(ns):
    pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split()
    return [Path(f"/proc/{p}/comm").read_text().strip() for p in pids if Path(f"/proc/{p}").exists()]


@pytest.mark.root
@pytest.mark.slow
@needs
def test_configures_a_fresh_server_then_changes_nothing(server, tmp_path):
    sshd, srv = server
    rig = _rig(sshd.endpoint, tmp_path / "work", srv)
    first = configure(rig, log_path=tmp_path / "ansible.log")
    assert first.status == "successful" and first.changed >= 3
    log = (tmp_path / "ansible.log").read_text()
    assert "PLAY RECAP" in log
    assert "Install what the responder needs" not in log  # skipped by its tag, not run to be skipped
    assert _get(sshd.ns, "http://127.0.0.1/rig/n/abc123") == (200, "server", "no-store")
    assert _echo(sshd.ns) == b"ping-rig"
    assert "GET /rig/n/abc123" in (srv / "logs" / "access.log").read_text()
    second = configure(rig)
    assert second.status == "successful" and second.changed == 0  # idempotent
    # no ControlPersist master and no ProxyCommand keeps the namespace busy
    procs = _procs(sshd.ns)
    assert "ssh" not in procs and not any(p.startswith("python") and p != "python3" for p in procs)
    assert set(procs) <= {"sshd", "apache2", "python3", "sh", "unshare"}
    # each run (the first runs every task of apply.yml) is one connection to the
    # server's sshd, rig's master, with every task multiplexed over it; where ansible's
    # first task reaches the socket before rig's master (a loaded machine), that run has
    # two (rig.configure: the race is allowed, the loser runs without the socket), never
    # one per task
    sshd.stop()
    log = sshd.proc.stderr.read()
    assert 2 <= log.count("Accepted publickey") <= 4, log


def test_rigs_master_and_the_playbooks_tasks_share_one_control_path(tmp_path):
    """rig opens the ControlPersist master itself; ansible's tasks find it only if both
    name the same socket, and the master pins the host key exactly as the tasks do."""
    import shlex

    ep = SSHEndpoint("198.51.100.10", 2222, "admin", "/k", "ssh-ed25519 AAAA", netns="rig-abc-client")
    rig = _rig(ep, tmp_path, tmp_path / "srv")
    sock = control_path(tmp_path / "cp")
    argv = master_argv(rig, tmp_path / "kh", sock)
    tasks = shlex.split(envvars(tmp_path / "cp", tmp_path / "home", tmp_path / "cfg")["ANSIBLE_SSH_ARGS"])
    assert f"ControlPath={sock}" in argv and f"ControlPath={sock}" in tasks
    assert "ControlMaster=auto" in argv and "ControlMaster=auto" in tasks
    for opt in ("Port=2222", "User=admin", "IdentityFile=/k", "StrictHostKeyChecking=yes",
                f"UserKnownHostsFile={tmp_path / 'kh'}", "ProxyUseFdpass=yes"):
        assert opt in argv
    assert argv[-3:] == ["--", "198.51.100.10", "true"]


@pytest.mark.root
@needs
def test_wrong_pinned_host_key_stops_configure(server, tmp_path):
    sshd, srv = server
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other")], check=True)
    other = " ".join((tmp_path / "other.pub").read_text().split()[:2])
    ep = SSHEndpoint(**{**sshd.endpoint.__dict__, "host_key": other})
    with pytest.raises(InfraError, match="configure .*unreachable|configure .*failed|configure .*Host key"):
        configure(_rig(ep, tmp_path / "work", srv))
    assert not (srv / "apache-rig.conf").exists()


def test_playbook_syntax(tmp_path):
    """The shipped playbook parses (every branch: Debian/FreeBSD, standalone/system)."""
    import sys

    from rig.configure import playbooks_dir

    play = playbooks_dir() / "server.yml"
    inv = tmp_path / "hosts"
    inv.write_text("server ansible_host=127.0.0.1\n")
    env = {**os.environ, "ANSIBLE_HOME": str(tmp_path / "home"), "ANSIBLE_LOCAL_TEMP": str(tmp_path / "tmp")}
    res = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "--syntax-check", "-i", str(inv),
                          str(play)], capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    assert (playbooks_dir() / "files" / "rig_state.py").is_file()


class _Ran:
    status, rc, stdout = "successful", 0, None


@pytest.fixture
def fake_runner(monkeypatch):
    """ansible_runner.run replaced: records its arguments and what its dirs hold."""
    import ansible_runner

    calls = []

    def run(**kwargs):
        control = Path(kwargs["envvars"]["ANSIBLE_SSH_CONTROL_PATH_DIR"])
        calls.append({**kwargs, "control_dir": control, "control_dir_existed": control.is_dir()})
        return _Ran()

    monkeypatch.setattr(ansible_runner, "run", run)
    return calls


def _local_rig(workdir: str) -> Rig:
    ep = SSHEndpoint("127.0.0.1", 22, "root", "/k", "ssh-ed25519 AAAA")
    return Rig(run_id="t", backend="ssh", server_addr="127.0.0.1", ssh=ep, capture_points=(), workdir=workdir,
               facts={"server_dir": "/var/tmp/rig-t"})


def test_a_cancel_is_seen_within_a_tenth_of_a_second(fake_runner, tmp_path):
    """ansible-runner asks the cancel callback only when pexpect's wait times out
    (5 s by default): rig passes a short one, so a signal stops the playbook at once."""
    from rig.configure import CANCEL_POLL

    cancel = lambda: False  # noqa: E731
    configure(_local_rig(str(tmp_path)), cancel=cancel)
    (call,) = fake_runner
    assert call["cancel_callback"] is cancel
    assert call["settings"]["pexpect_timeout"] == CANCEL_POLL <= 0.25


def test_every_file_of_configure_is_inside_the_workdir(fake_runner, tmp_path):
    """The ControlPath sockets live in the run's workdir (so `rig clean` removes a killed
    run's with it), and are gone afterwards; a workdir too long for a unix socket path
    falls back to /tmp/rigcp-*, removed too; without a workdir nothing stays."""
    work = Path(tempfile.mkdtemp(prefix="rig-t-"))  # short, like a lab's /tmp/rig-lab/rig-<6 hex>
    try:
        configure(_local_rig(str(work)))
    finally:
        shutil.rmtree(work)
    long = tmp_path / ("x" * 60)
    configure(_local_rig(str(long)))
    before = set(Path(tempfile.gettempdir()).glob("rig-configure-*"))
    configure(_local_rig(""))
    inside, fallback, scratch = fake_runner
    assert inside["control_dir"].parent == work and inside["control_dir_existed"]
    assert len(str(inside["control_dir"])) + 1 + 40 + 17 <= 107  # ssh's socket path, with its temporary suffix
    assert Path(inside["private_data_dir"]).parent == work
    assert fallback["control_dir"].parent == Path("/tmp") and fallback["control_dir"].name.startswith("rigcp-")
    for call in fake_runner:
        assert not call["control_dir"].exists()
    assert Path(scratch["private_data_dir"]).parent.name.startswith("rig-configure-")
    assert not Path(scratch["private_data_dir"]).parent.exists()
    assert set(Path(tempfile.gettempdir()).glob("rig-configure-*")) == before


def test_the_install_include_is_skipped_by_tag_where_nothing_is_installed(fake_runner, tmp_path):
    """The install include carries the tag rig skips when the rig installs nothing (the
    lab), and only then."""
    import dataclasses

    import yaml

    from rig.configure import INSTALL_TAG, playbooks_dir

    [play] = yaml.safe_load((playbooks_dir() / "server.yml").read_text())
    [include] = [t for t in play["tasks"] if t.get("ansible.builtin.include_tasks") == "install.yml"]
    assert INSTALL_TAG in include["tags"]
    rig = _local_rig(str(tmp_path))
    configure(dataclasses.replace(rig, install_packages=False))
    configure(dataclasses.replace(rig, install_packages=True))
    lab, vm = fake_runner
    assert lab["skip_tags"] == INSTALL_TAG and vm["skip_tags"] is None


def _stats(failures=None, dark=None):
    return {"event": "playbook_on_stats", "event_data": {"processed": {"server": 1}, "failures": failures or {},
                                                         "dark": dark or {}, "ok": {"server": 2}}}


@pytest.fixture
def slow_exit(monkeypatch):
    """ansible_runner.run that plays (its events), then exits only when ``exit`` is set,
    as ansible-playbook's own exit takes ~0.3 s after its closing stats."""
    import threading

    import ansible_runner

    state = {"exit": threading.Event(), "returned": threading.Event(), "events": [_stats()], "status": "successful"}

    def run(**kwargs):
        ok = {"event": "runner_on_ok", "event_data": {"res": {"changed": True}}}
        for ev in [ok, *state["events"]]:
            kwargs["event_handler"](ev)
        state["exit"].wait(30)
        ran = _Ran()
        ran.status, ran.rc = state["status"], 0 if state["status"] == "successful" else 2
        state["returned"].set()
        return ran

    monkeypatch.setattr(ansible_runner, "run", run)
    return state


def test_the_play_is_applied_before_ansible_playbook_has_exited(slow_exit, tmp_path):
    """``applied()`` answers at the closing stats of a play that failed nowhere; the
    whole run's result (and its clean-up) comes when ansible-runner returns."""
    from rig.configure import Applied, start

    running = start(_local_rig(str(tmp_path)))
    assert running.applied() == Applied(changed=1)
    assert not slow_exit["returned"].is_set()  # ansible-playbook is still exiting
    slow_exit["exit"].set()
    result = running.result()
    assert result.status == "successful" and result.changed == 1
    assert not list(tmp_path.glob("cp-*"))  # its ControlPath dir went with the run's end


@pytest.mark.parametrize("stats", [_stats(failures={"server": 1}), _stats(dark={"server": 1}), None])
def test_a_play_that_failed_is_known_only_from_the_whole_run(slow_exit, tmp_path, stats):
    """A failed task, an unreachable host, or no closing stats at all: ``applied()`` waits
    for the run's end and raises what ``configure`` raises."""
    from rig.configure import start

    slow_exit["events"] = [stats] if stats else []
    slow_exit["status"] = "failed"
    running = start(_local_rig(str(tmp_path)))
    slow_exit["exit"].set()
    with pytest.raises(InfraError, match=r"configure \(server.yml\) failed"):
        running.applied()
