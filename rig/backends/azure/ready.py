"""Wait until a new VM accepts SSH with the pinned host key, and cloud-init is done.

A VM reported ``Succeeded`` may still be booting: sshd not listening yet, cloud-init
still installing the host key or holding the apt lock. ``wait_for_ssh`` retries only
what readiness explains (refused, timed out, reset, no banner yet) until a deadline;
a host key that differs from the pinned one stops it at once — that is never "not
ready yet". Then ``cloud-init status --wait`` returns when cloud-init has finished.
"""

from __future__ import annotations

import time

from rig.backends.base import SSHEndpoint
from rig.errors import InfraError

RETRY_EVERY = 2.0


def wait_for_ssh(endpoint: SSHEndpoint, timeout: float = 300.0, cloud_init: bool = True,
                 log=lambda line: None) -> int:
    """Block until a login with the pinned key works; return the number of attempts."""
    from rig.sshclient import SSHClient

    deadline = time.monotonic() + timeout
    attempts = 0
    last = ""
    while True:
        attempts += 1
        try:
            with SSHClient(endpoint, timeout=min(10.0, max(1.0, deadline - time.monotonic()))) as ssh:
                if cloud_init:
                    ssh.run(["cloud-init", "status", "--wait"], check=False, timeout=max(30.0, deadline - time.monotonic()))
            return attempts
        except InfraError as exc:
            last = str(exc)
            if "host key" in last:  # a different key is an answer, not a delay
                raise
        if time.monotonic() >= deadline:
            raise InfraError(f"SSH to {endpoint.host} did not come up within {timeout:g}s ({last})")
        if attempts == 1:
            log(f"waiting for sshd on {endpoint.host}")
        time.sleep(min(RETRY_EVERY, max(0.0, deadline - time.monotonic())))
