"""Backend facts are read typed: where the probes go follows the port the backend wrote."""

import pytest

from rig.backends.base import Rig, RunSpec, SSHEndpoint
from rig.backends.facts import BackendFacts, port_facts
from rig.errors import EXIT_USAGE, UsageError
from rig.lab import scenarios
from rig.backends.lab import UDP_PORT
from rig.run import Pipeline

EP = SSHEndpoint("127.0.0.1", 22, "root", "/nonexistent", "ssh-ed25519 AAAA")


class _Probed(Exception):
    pass


def _probe_ports(monkeypatch, tmp_path, facts) -> dict:
    """The ports the pipeline's probe stage hands to run_probes for a rig with ``facts``."""
    seen = {}

    def run_probes(*args, **kw):
        seen.update(tcp=kw["tcp_port"], udp=kw["udp_port"])
        raise _Probed

    monkeypatch.setattr("rig.probes.runner.run_probes", run_probes)
    monkeypatch.setattr("rig.preflight.preflight", lambda *a, **k: None)
    monkeypatch.setattr("rig.capture.tcpdump.start_all", lambda caps: None)
    p = Pipeline(RunSpec(backend="fake", configure=False), tmp_path / "out", backend=object())
    p.rig = Rig(run_id="f1", backend="fake", server_addr="127.0.0.1", ssh=EP, capture_points=(), facts=facts)
    with pytest.raises(_Probed):
        p.preflight_and_captures(ssh=None)
    return seen


def test_probes_go_to_the_port_apache_listens_on(monkeypatch, tmp_path):
    # what the ssh backend writes for --http-port 8080 (and the lab for an http_port=8080 scenario)
    assert _probe_ports(monkeypatch, tmp_path, {"http_port": "8080", "udp_port": "7007"}) == {"tcp": 8080, "udp": 7007}


@pytest.mark.parametrize("scenario", list(scenarios.SCENARIOS.values()), ids=list(scenarios.SCENARIOS))
def test_each_lab_scenario_probes_its_port(monkeypatch, tmp_path, scenario):
    facts = port_facts(scenario.http_port, UDP_PORT, scenario.probe_port)
    want = scenario.probe_port or scenario.http_port
    assert _probe_ports(monkeypatch, tmp_path, facts) == {"tcp": want, "udp": UDP_PORT}


def test_no_listener_still_probes_port_80_while_apache_is_on_8080():
    s = scenarios.get("no-listener")
    known = BackendFacts.from_facts(port_facts(s.http_port, UDP_PORT, s.probe_port))
    assert (known.http_port, known.probe_port) == (8080, 80)


def test_a_moved_http_port_moves_the_probes():
    known = BackendFacts.from_facts(port_facts(8080, UDP_PORT))
    assert known.probe_port == 8080 and "probe_port" not in port_facts(8080, UDP_PORT)


@pytest.mark.parametrize("bad", ["http", "0", "70000", "-1"])
def test_a_bad_port_is_a_usage_error(bad):
    with pytest.raises(UsageError) as err:
        BackendFacts.from_facts({"http_port": bad})
    assert err.value.exit_code == EXIT_USAGE and "http_port" in str(err.value)
