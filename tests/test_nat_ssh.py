"""`--probes nat` through the SSH backend, with the lab's server as "the VPS": a host rig
did not provision offers the responder its one address (as the client reaches it) and
two ports; the profile decides what that allows and says why it leaves the rest."""

from __future__ import annotations

import json
import subprocess
import uuid

import pytest

from _runhelp import LAB_SKIP
from rig.backends.base import RunSpec
from rig.backends.ssh import SSHBackend

pytestmark = [pytest.mark.root, pytest.mark.lab, pytest.mark.slow, pytest.mark.skipif(LAB_SKIP is not None, reason=str(LAB_SKIP))]


def test_nat_profile_on_an_ssh_host(tmp_path):
    from rig.run import Pipeline, Progress
    from test_lab_support import lab
    from test_ssh_backend import ssh_spec, stop_and_wait

    with lab() as labrig:
        _, *services = [int(p) for p in labrig.facts["pids"].split(",")]
        stop_and_wait(services)  # a bare VPS: configure starts rig's own Apache and echo there
        server_dir = f"/var/tmp/rig-vps-{uuid.uuid4().hex[:8]}"
        base = ssh_spec(labrig.ssh, server_dir, client_netns=labrig.client_netns, install_packages="false",
                        workdir=str(tmp_path / "wd"))
        spec = RunSpec(backend="ssh", probes=("nat",), options=base.options)
        outcome = Pipeline(spec, tmp_path / "bundle", Progress(quiet=True), backend=SSHBackend(home=tmp_path)).run()
        nat = json.loads((tmp_path / "bundle" / "verdict.json").read_text())["nat"]
        assert outcome.exit_code == 0, outcome.status
        assert nat["responder"] == {"addresses": 1, "ports": 2}
        for proto in ("udp", "tcp"):
            assert nat["public"][proto].startswith("203.0.113.2:")
            # one address: the other port shows no change, which cannot tell EIM from address-dependent
            assert nat["mapping"][proto] == {"undecided": "endpoint-independent or address-dependent: "
                                                          "the responder has one address"}
            assert nat["filtering"][proto] == "address-and-port-dependent"  # the other port is refused: decided
            assert nat["port_allocation"][proto]["kind"] == "preserved"
        ps = subprocess.run(["ps", "ax", "-o", "args="], capture_output=True, text=True).stdout
        assert "rig NAT responder" not in ps and "nat_responder" not in ps  # stopped with its channel
