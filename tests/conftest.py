"""Suite-wide guard: no test reaches a service outside this machine.

rig asks two outside services when a real user runs it (the Azure Retail Prices API for
``--dry-run``'s regional price, an address-echo service for the caller's public IP). The
tests inject both; these defaults point at a closed loopback port for everything the
suite runs, subprocesses included, so a test that forgets to inject fails closed instead
of sending traffic off the machine. A test that serves a fake sets its own value.
"""

import os

_CLOSED = "http://127.0.0.1:9/"  # discard port: nothing listens, the connection is refused

for _name in ("RIG_AZURE_PRICES_URL", "RIG_MYIP_URL"):
    os.environ[_name] = _CLOSED
