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


# With pytest-xdist (``make test`` runs two workers), tests that time signals, build network namespaces,
# start daemons or bind ports run one at a time on one worker (an xdist group); the pure
# ones (captures, analysis, generators, records) spread over both.
_PURE = ("test_analysis_", "test_capture_", "test_scapy_", "test_verdict_json", "test_render", "test_jsontext",
         "test_outcome", "test_join_primitives", "test_portset", "test_history", "test_nat_records",
         "test_nat_classify", "test_probes_parse", "test_azure_plan", "test_azure_prices", "test_azure_replay",
         "test_cli_diff", "test_bundle_writer", "test_run_config", "test_trace_truth",
         "test_trace_locate")


def pytest_collection_modifyitems(config, items):
    import pytest

    for item in items:
        if not item.path.name.startswith(_PURE):
            item.add_marker(pytest.mark.xdist_group("system"))
