"""The playbook on a fresh Azure Ubuntu VM: first-boot unattended-upgrades holds the dpkg
lock for minutes; rig waits for it in the open instead of failing after apt's 60 s."""

from __future__ import annotations

import inspect

import yaml

from rig.resources import playbooks_dir

FIRST_BOOT_LOCK_WAIT = 600  # seconds a fresh VM may hold the lock (1-5 min seen; margin)


def tasks() -> list[dict]:
    [play] = yaml.safe_load((playbooks_dir() / "server.yml").read_text())
    return play["tasks"]


def install_tasks() -> list[dict]:
    """install.yml, which server.yml includes where rig installs packages."""
    [include] = [t for t in tasks() if t.get("ansible.builtin.include_tasks") == "install.yml"]
    assert include["when"] == "rig_install_packages | bool"
    return yaml.safe_load((playbooks_dir() / "install.yml").read_text())


def test_apt_waits_for_the_first_boot_lock():
    ts = install_tasks()
    [i] = [n for n, t in enumerate(ts) if "ansible.builtin.apt" in t]
    assert ts[i]["ansible.builtin.apt"]["lock_timeout"] >= FIRST_BOOT_LOCK_WAIT
    wait = ts[i - 1]  # announced and bounded, before apt
    assert wait["name"].startswith("Wait ") and "unattended-upgrades" in wait["name"]
    assert wait["retries"] * wait["delay"] >= FIRST_BOOT_LOCK_WAIT
    assert wait["when"] == ts[i]["when"]  # only where apt runs


def test_the_whole_playbook_may_outlast_the_lock_wait():
    from rig.configure import configure

    timeout = inspect.signature(configure).parameters["timeout"].default
    assert timeout > 2 * FIRST_BOOT_LOCK_WAIT  # the wait, apt's own lock timeout, then the rest


def test_progress_says_what_is_waited_for_once(capsys):
    from rig.configure import _say_waits

    said: set[str] = set()
    name = "Wait for first-boot package updates (unattended-upgrades) to release the dpkg lock, up to 10 min"
    for attempt in (1, 2, 3):
        _say_waits({"event": "runner_retry", "event_data": {"task": name, "res": {"attempts": attempt}}}, said)
    _say_waits({"event": "playbook_on_task_start", "event_data": {"task": "Install Apache"}}, said)
    err = capsys.readouterr().err.splitlines()
    assert err == ["configure: wait for first-boot package updates (unattended-upgrades) to release the dpkg lock, "
                   "up to 10 min"]
