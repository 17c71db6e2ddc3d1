"""The suite-wide guard of conftest.py holds, in this process and in a rig subprocess."""

import os
import subprocess
import sys

from rig.backends.azure import caller_ip, prices


def test_outside_services_point_at_loopback():
    assert prices.base_url().startswith("http://127.0.0.1:")
    assert os.environ["RIG_MYIP_URL"].startswith("http://127.0.0.1:")


def test_dry_run_subprocess_falls_back_without_leaving_the_machine(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "rig", "run", "--backend", "azure", "--dry-run",
                           "--location", "japaneast", "--allow-from", "198.51.100.7/32"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "127.0.0.1" in proc.stdout  # the price lookup went to the closed loopback port and says so


def test_caller_detection_fails_closed():
    import pytest

    from rig.errors import InfraError

    with pytest.raises(InfraError, match="127.0.0.1"):
        caller_ip.detect(timeout=2)
