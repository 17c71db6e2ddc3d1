"""wait_for_ssh: the new VM's sshd with the pinned key — against a real sshd in a
namespace standing in for the VM."""

from __future__ import annotations

import os
from dataclasses import replace

import pytest

from _sshd import keygen, missing_tools, start_sshd
from rig.backends.azure.ready import wait_for_ssh
from rig.errors import InfraError

pytestmark = [pytest.mark.root, pytest.mark.skipif(
    os.geteuid() != 0 or bool(missing_tools("sshd", "ssh-keygen", "unshare")),
    reason="needs root and sshd/ssh-keygen/unshare")]


@pytest.fixture
def sshd(tmp_path):
    s = start_sshd(tmp_path / "sshd")
    yield s
    s.stop()


def test_ready_vm_answers_at_once(sshd):
    # no cloud-init here: 'cloud-init status --wait' fails to run, which is not an error
    assert wait_for_ssh(sshd.endpoint, timeout=30, cloud_init=True) == 1


def test_a_different_host_key_is_refused_not_retried(sshd, tmp_path):
    other = " ".join(keygen(tmp_path / "other").split()[:2])
    with pytest.raises(InfraError, match="host key"):
        wait_for_ssh(replace(sshd.endpoint, host_key=other), timeout=600)  # would hang if it retried


def test_nothing_listening_times_out_with_one_line(sshd):
    said = []
    with pytest.raises(InfraError, match="did not come up within 3s") as err:
        wait_for_ssh(replace(sshd.endpoint, port=2222), timeout=3, log=said.append)
    assert "\n" not in str(err.value) and said == [f"waiting for sshd on {sshd.endpoint.host}"]
