"""Provision and teardown leave nothing behind; labs do not collide; ``rig clean``
removes a lab whose owner died (root).

``rig clean`` without --prefix would remove every lab on the machine, including other
runs in progress: these tests always pass a prefix."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from rig.backends.base import RunSpec
from rig.backends.lab import LabBackend, workdir_for
from rig.errors import InfraError
from rig.lab import clean
from test_lab_support import access_log, alive, http_get, lab, namespaces_of, needs_lab

pytestmark = needs_lab


def test_teardown_leaves_no_namespace_process_or_workdir():
    with lab("transparent-proxy") as rig:  # the scenario with the most processes
        prefix = rig.run_id
        pids = [int(p) for p in rig.facts["pids"].split(",")]
        assert len(namespaces_of(prefix)) == 5
        assert all(alive(p) for p in pids)
        workdir = Path(rig.workdir)
        assert workdir.is_dir()
    assert namespaces_of(prefix) == []
    assert not any(alive(p) for p in pids)
    assert not workdir.exists()


def test_teardown_also_kills_processes_others_started_inside():
    with lab() as rig:
        extra = subprocess.Popen(["ip", "netns", "exec", rig.client_netns, "/bin/sh", "-c",
                                  "echo in; exec sleep 300"], stdout=subprocess.PIPE, start_new_session=True)
        assert extra.stdout.readline() == b"in\n"  # inside the namespace now
        prefix = rig.run_id
    assert extra.wait(timeout=5) == -signal.SIGTERM
    assert namespaces_of(prefix) == []


def test_two_labs_at_once_do_not_collide():
    with lab() as a, lab("seed") as b:
        assert a.run_id != b.run_id
        assert set(namespaces_of(a.run_id)).isdisjoint(namespaces_of(b.run_id))
        assert http_get(a.client_netns, "/rig/n/only-a")[0] == 200
        assert "/rig/n/only-a" in access_log(a) and "/rig/n/only-a" not in access_log(b)
        assert a.ssh.host_key != b.ssh.host_key
    # after the inner lab went away, a fresh one still works beside a third
    with lab() as c:
        assert http_get(c.client_netns, "/rig/n/c")[0] == 200


def test_a_failed_provision_removes_what_it_built(monkeypatch):
    import rig.backends.lab as labmod

    def broken(*args, **kwargs):
        raise InfraError("Apache exploded")

    backend = LabBackend(prefix="rig-00f00d")
    monkeypatch.setattr(labmod, "start_apache", broken)
    with pytest.raises(InfraError, match="exploded"):
        backend.provision(RunSpec())
    assert namespaces_of("rig-00f00d") == []
    assert not workdir_for("rig-00f00d").exists()


def test_rig_clean_removes_a_lab_whose_owner_was_killed():
    code = textwrap.dedent("""
        import sys, time
        from rig.backends.lab import LabBackend
        from rig.backends.base import RunSpec
        rig = LabBackend().provision(RunSpec())
        print(rig.run_id, rig.facts["pids"], flush=True)
        time.sleep(300)
    """)
    owner = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    prefix, pids = owner.stdout.readline().split()
    owner.kill()  # SIGKILL: no teardown ran
    owner.wait()
    pids = [int(p) for p in pids.split(",")]
    try:
        assert len(namespaces_of(prefix)) == 5 and all(alive(p) for p in pids)
        with lab() as other:  # a live lab with another prefix is left alone
            assert clean.cli_clean(argparse.Namespace(prefix=prefix)) == 0
            assert namespaces_of(prefix) == []
            assert not any(alive(p) for p in pids)
            assert not workdir_for(prefix).exists()
            assert len(namespaces_of(other.run_id)) == 5
            assert http_get(other.client_netns, "/rig/n/still-here")[0] == 200
    finally:
        clean.clean(prefix)


def test_rig_clean_cli_with_nothing_to_do(capsys):
    assert clean.cli_clean(argparse.Namespace(prefix="rig-ffffff")) == 0
    assert "nothing to remove" in capsys.readouterr().out


def test_rig_clean_through_the_cli_rejects_a_bad_prefix():
    out = subprocess.run([sys.executable, "-m", "rig", "clean", "--prefix", "rig-1"], capture_output=True,
                         text=True, env={**os.environ, "PATH": os.environ["PATH"] + ":/usr/sbin:/sbin"})
    assert out.returncode == 2
    assert out.stderr.startswith("rig: not a lab prefix") and len(out.stderr.splitlines()) == 1


def test_a_prefix_in_use_is_refused_and_left_alone():
    with lab() as rig:
        with pytest.raises(InfraError, match="already exists"):
            LabBackend(prefix=rig.run_id).provision(RunSpec())
        assert len(namespaces_of(rig.run_id)) == 5
        assert http_get(rig.client_netns, "/rig/n/intact")[0] == 200


def test_leftover_namespaces_without_a_workdir_are_not_destroyed_by_a_new_build():
    from rig.lab.build import build
    from rig.lab.scenarios import get
    from rig.lab.topology import seed_topology

    with lab() as rig:
        with pytest.raises(InfraError, match="already exists"):
            build(seed_topology(), rig.run_id, get("healthy"))
        assert len(namespaces_of(rig.run_id)) == 5
        assert http_get(rig.client_netns, "/rig/n/intact")[0] == 200


def test_teardown_from_another_backend_object_and_twice():
    rig = LabBackend().provision(RunSpec())
    pids = [int(p) for p in rig.facts["pids"].split(",")]
    other = LabBackend()  # e.g. `rig down` in another process: only the Rig record is known
    other.teardown(rig)
    assert namespaces_of(rig.run_id) == [] and not any(alive(p) for p in pids)
    other.teardown(rig)  # nothing left to remove: not an error


def test_rig_clean_kills_the_run_s_processes_outside_its_namespaces():
    """After SIGKILL during configure, the playbook and its ssh master run in this
    machine's namespace, naming the run's workdir: `rig clean --prefix` kills them by
    PID; a process naming another run's workdir is left alone."""
    from rig.backends.lab import LAB_ROOT, _lab_root

    _lab_root()
    mine, other = workdir_for("rig-c1ea00"), workdir_for("rig-c1ea01")
    procs = {}
    try:
        for d in (mine, other):
            d.mkdir()
            code = "import sys, time; print('up', flush=True); time.sleep(300)"
            procs[d] = subprocess.Popen([sys.executable, "-c", code, f"{d}/ansible-x/inventory"],
                                        stdout=subprocess.PIPE, text=True)
            assert procs[d].stdout.readline() == "up\n"
        done = clean.clean("rig-c1ea00")
        assert done.workdirs == (str(mine),) and not mine.exists()
        assert procs[mine].wait(timeout=10) == -signal.SIGTERM
        assert procs[other].poll() is None and other.is_dir()
    finally:
        for p in procs.values():
            p.kill()
            p.wait()
        for d in (mine, other):
            if d.parent == LAB_ROOT:
                shutil.rmtree(d, ignore_errors=True)
