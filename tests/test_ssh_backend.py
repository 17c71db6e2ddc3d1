"""The SSH backend: target parsing, host-key pinning (never first-use trust), and a
teardown that stops by PID what rig started and removes its directory — against a
real sshd in a namespace, and against the lab's server as "the VPS"."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path

import paramiko
import pytest

from _runhelp import lab_skip_reason
from _sshd import keygen, needs_sshd, sshd  # noqa: F401 (sshd is a fixture)
from rig.backends.base import RunSpec
from rig.backends.ssh import SSHBackend, parse_target, resolve_host_key, started_pids
from rig.errors import InfraError, UsageError
from rig.sshclient import SSHClient

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOzWLdejyAkPzYG3H9TAsmuFVs0qNnAHOYTfJssV+Rcb"


# -- pure parts ---------------------------------------------------------------------------

@pytest.mark.parametrize("target,expected", [
    ("me@vps.example.net", ("me", "vps.example.net", 22)),
    ("me@203.0.113.5:2222", ("me", "203.0.113.5", 2222)),
    ("root@[2001:db8::5]:22", ("root", "2001:db8::5", 22)),
])
def test_parse_target(target, expected):
    assert parse_target(target) == expected


def test_parse_target_defaults_to_local_user():
    import getpass

    assert parse_target("vps.example.net") == (getpass.getuser(), "vps.example.net", 22)


@pytest.mark.parametrize("bad", ["", "me@", "me@host:99999", "me@host:port", "a b@host"])
def test_parse_target_refuses(bad):
    with pytest.raises(UsageError):
        parse_target(bad)


def test_host_key_from_line_pub_file_and_known_hosts_line(tmp_path):
    assert resolve_host_key("h", 22, KEY + " comment", tmp_path / "none") == KEY
    pub = tmp_path / "host.pub"
    pub.write_text(KEY + " root@vps\n")
    assert resolve_host_key("h", 22, str(pub), tmp_path / "none") == KEY
    assert resolve_host_key("h", 22, "vps.example.net " + KEY, tmp_path / "none") == KEY
    with pytest.raises(UsageError, match="--host-key"):
        resolve_host_key("h", 22, "not a key", tmp_path / "none")


def test_host_key_from_hashed_known_hosts_with_port(tmp_path):
    kh = tmp_path / "known_hosts"
    kind, b64 = KEY.split()
    hashed = paramiko.HostKeys.hash_host("[203.0.113.5]:2222")
    kh.write_text(f"other.example {kind} {b64}\n{hashed} {kind} {b64}\n")
    assert resolve_host_key("203.0.113.5", 2222, None, kh) == KEY


def test_unknown_host_is_refused_not_trusted(tmp_path):
    with pytest.raises(UsageError, match="not in .*known_hosts.*--host-key.*never trusts"):
        resolve_host_key("203.0.113.5", 22, None, tmp_path / "known_hosts")


def test_provision_without_known_key_fails_before_connecting(tmp_path):
    (tmp_path / ".ssh").mkdir()
    (tmp_path / ".ssh" / "id_ed25519").write_text("x")
    spec = RunSpec(backend="ssh", options={"host": "me@192.0.2.1"})  # TEST-NET: never contacted
    with pytest.raises(UsageError, match="--host-key"):
        SSHBackend(home=tmp_path).provision(spec)


def test_provision_needs_host_and_identity(tmp_path):
    with pytest.raises(UsageError, match="--host"):
        SSHBackend(home=tmp_path).provision(RunSpec(backend="ssh"))
    with pytest.raises(UsageError, match="--identity"):
        SSHBackend(home=tmp_path).provision(RunSpec(backend="ssh", options={"host": "me@192.0.2.1", "host_key": KEY}))


def test_started_pids_picks_live_processes_naming_the_dir():
    ps = "  1 Ss /sbin/init\n 42 Ss /usr/sbin/apache2 -f /var/tmp/rig-x/apache-rig.conf -k start\n" \
         " 43 S python3 /var/tmp/rig-x/udp_echo.py --daemon\n 50 S sleep 99\n 77 Ss /usr/sbin/apache2 -k start\n" \
         " 60 Z python3 /var/tmp/rig-x/udp_echo.py <defunct>\n 61 S tcpdump -w /var/tmp/rig-xy/s.pcap\n"
    # not 77 (the system's Apache), not a zombie, not another run's directory
    assert started_pids(ps, "/var/tmp/rig-x/") == [42, 43]


# -- against a real sshd ----------------------------------------------------------------------

def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def ssh_spec(endpoint, server_dir: str, **extra) -> RunSpec:
    return RunSpec(backend="ssh", options={
        "host": f"{endpoint.user}@{endpoint.host}:{endpoint.port}", "host_key": endpoint.host_key,
        "identity": endpoint.key_file, "netns": endpoint.netns, "server_dir": server_dir, **extra})


def start_remote_leftovers(rig) -> tuple[list[int], int]:
    """What configure and captures leave on a host: a daemon started from the run's
    directory, a process writing into it — and, beside them, a process that is not
    rig's although a pid file in the directory names it."""
    d = rig.facts["server_dir"]
    daemon = 'exec python3 -c "import time; time.sleep(600)" "$1/$2" </dev/null >/dev/null 2>&1 &'
    with SSHClient(rig.ssh) as ssh:
        ssh.run(["mkdir", "-p", d])
        ssh.run(["sh", "-c", daemon, "sh", d, "udp_echo.py"])
        ssh.run(["sh", "-c", daemon, "sh", d, "server.pcap"])
        ssh.run(["sh", "-c", 'sleep 600 </dev/null >/dev/null 2>&1 & echo $! > "$1/foreign.pid"', "sh", d])
        foreign = int(ssh.run(["cat", f"{d}/foreign.pid"]).stdout)
        ps = ssh.run(["ps", "ax", "-o", "pid=", "-o", "args="]).stdout
    pids = [int(line.split()[0]) for line in ps.splitlines() if "python3" in line.split()[1] and d in line]
    assert len(pids) == 2 and all(alive(p) for p in pids) and alive(foreign)
    return pids, foreign


def kill(pid: int) -> None:
    try:
        os.kill(pid, 9)
    except ProcessLookupError:
        pass


@pytest.mark.root
@needs_sshd
def test_provision_pins_key_and_teardown_stops_what_rig_started(sshd, tmp_path):  # noqa: F811 (fixture)
    server_dir = f"/tmp/rig-test-{uuid.uuid4().hex[:8]}"
    rig = SSHBackend(home=tmp_path).provision(ssh_spec(sshd.endpoint, server_dir, workdir=str(tmp_path / "wd")))
    assert rig.backend == "ssh" and rig.server_addr == "127.0.0.1"
    assert rig.ssh.host_key == sshd.endpoint.host_key and rig.ssh.netns == sshd.ns
    assert rig.os_family == "debian" and rig.facts["uname"].startswith("Linux")
    assert rig.facts["service_mode"] == "standalone" and rig.facts["server_dir"] == server_dir
    assert {p.name: p.remote for p in rig.capture_points} == {"client": False, "server": True}
    pids, foreign = start_remote_leftovers(rig)
    try:
        SSHBackend(home=tmp_path).teardown(rig)
        assert not any(alive(p) for p in pids)
        assert alive(foreign)  # a pid file is not proof of ownership
        assert not os.path.exists(server_dir)
    finally:
        kill(foreign)
    assert sshd.proc.poll() is None  # the host's own sshd is not ours to stop


@pytest.mark.root
@needs_sshd
def test_wrong_host_key_is_refused(sshd, tmp_path):  # noqa: F811 (fixture)
    other = keygen(tmp_path / "other_host")
    spec = ssh_spec(sshd.endpoint, "/tmp/rig-never")
    spec = RunSpec(backend="ssh", options={**spec.options, "host_key": other})
    with pytest.raises(InfraError, match="host key"):
        SSHBackend(home=tmp_path).provision(spec)


@pytest.mark.root
@needs_sshd
def test_known_hosts_entry_is_used(sshd, tmp_path):  # noqa: F811 (fixture)
    ssh_dir = tmp_path / ".ssh"
    ssh_dir.mkdir()
    (ssh_dir / "known_hosts").write_text(f"127.0.0.1 {sshd.endpoint.host_key}\n")
    opts = {k: v for k, v in ssh_spec(sshd.endpoint, "/tmp/rig-kh").options.items() if k != "host_key"}
    rig = SSHBackend(home=tmp_path).provision(RunSpec(backend="ssh", options=opts))
    assert rig.ssh.host_key == sshd.endpoint.host_key


# -- against the lab's server as "the VPS" ---------------------------------------------------

LAB_SKIP = lab_skip_reason()  # the lab needs root and its tools (tests/_runhelp.py says which)


@pytest.mark.root
@pytest.mark.lab
@pytest.mark.skipif(LAB_SKIP is not None, reason=str(LAB_SKIP))
def test_lab_server_as_the_vps(tmp_path):
    from test_lab_support import lab

    with lab() as labrig:
        server_dir = f"/var/tmp/rig-vps-{uuid.uuid4().hex[:8]}"
        spec = ssh_spec(labrig.ssh, server_dir, client_netns=labrig.client_netns, workdir=str(tmp_path / "wd"))
        b = SSHBackend(home=tmp_path)
        rig = b.provision(spec)
        assert rig.server_addr == labrig.server_addr and rig.ssh.host_key == labrig.ssh.host_key
        assert rig.client_netns == labrig.client_netns
        lab_pids = [int(p) for p in labrig.facts["pids"].split(",")]
        pids, foreign = start_remote_leftovers(rig)
        try:
            b.teardown(rig)
            assert not any(alive(p) for p in pids) and not os.path.exists(server_dir) and alive(foreign)
        finally:
            kill(foreign)
        assert all(alive(p) for p in lab_pids)  # the host's own sshd/Apache/echo: not started by this run
        with SSHClient(labrig.ssh) as ssh:  # and the host is still reachable with the pinned key
            assert ssh.run(["true"]).rc == 0


def stop_and_wait(pids: list[int]) -> None:
    import time

    for pid in pids:
        os.kill(pid, 15)  # TERM: Apache stops its children too
    deadline = time.monotonic() + 10
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(alive(p) for p in pids)


@pytest.mark.root
@pytest.mark.lab
@pytest.mark.slow
@pytest.mark.skipif(LAB_SKIP is not None, reason=str(LAB_SKIP))
def test_whole_pipeline_with_the_ssh_backend_on_the_lab_vps(tmp_path):
    """configure (ansible, host-key checking on) + preflight + captures + probes +
    verdict through the SSH backend, with the lab's server as a bare VPS; afterwards
    nothing rig started there still runs."""
    from rig.run import Pipeline
    from test_lab_support import lab

    with lab() as labrig:
        sshd_pid, *services = [int(p) for p in labrig.facts["pids"].split(",")]
        stop_and_wait(services)  # a bare VPS: only sshd runs (the lab's own Apache and echo are ours to stop)
        server_dir = f"/var/tmp/rig-vps-{uuid.uuid4().hex[:8]}"
        spec = ssh_spec(labrig.ssh, server_dir, client_netns=labrig.client_netns, install_packages="false",
                        workdir=str(tmp_path / "wd"))
        spec = RunSpec(backend="ssh", probes=("icmp", "tcp", "http", "udp"), options=spec.options)
        from rig.run import Progress

        outcome = Pipeline(spec, tmp_path / "bundle", Progress(quiet=False), backend=SSHBackend(home=tmp_path)).run()
        assert outcome.exit_code == 0, outcome.status
        verdict = json.loads((tmp_path / "bundle" / "verdict.json").read_text())
        outcomes = {e["protocol"]: e["outcome"] for e in verdict["exchanges"]}
        assert set(outcomes) >= {"icmp", "tcp", "udp"} and set(outcomes.values()) == {"delivered"}
        # the "VPS" has a global IPv6 address: Apache and the echo listened there too, and
        # every probe kind went to both families
        families = {(e["protocol"], e["family"]) for e in verdict["exchanges"]}
        assert families == {(p, f) for p in ("icmp", "tcp", "udp") for f in (4, 6)}, families
        assert not os.path.exists(server_dir)
        ps = subprocess.run(["ps", "ax", "-o", "args="], capture_output=True, text=True).stdout
        assert server_dir not in ps  # rig's Apache and UDP echo on the "VPS" are gone
        assert alive(sshd_pid)


def test_freebsd_default_route_interface():
    from rig.backends.ssh import default_route_iface

    out = "   route to: default\ndestination: default\n       mask: default\n    gateway: 10.0.0.1\n" \
          "        fib: 0\n  interface: vtnet0\n      flags: <UP,GATEWAY,DONE,STATIC>\n"
    assert default_route_iface(out) == "vtnet0"
    with pytest.raises(InfraError, match="no default route"):
        default_route_iface("route: route has not been found\n")


def test_global_ipv6_of_the_host():
    from rig.backends.ssh import global_ipv6

    out = ("1: lo    inet6 ::1/128 scope host \\       valid_lft forever preferred_lft forever\n"
           "2: eth0    inet6 2a01:4f8:1:2::3/64 scope global deprecated dynamic \\       valid_lft 1s preferred_lft 0sec\n"
           "2: eth0    inet6 2a01:4f8:1:2::10/64 scope global \\       valid_lft forever preferred_lft forever\n")
    assert global_ipv6(out) == "2a01:4f8:1:2::10"
    assert global_ipv6("2: eth0    inet6 fd00::1/64 scope global \\ valid_lft forever\n") is None  # ULA: not the Internet's
    assert global_ipv6("") is None
