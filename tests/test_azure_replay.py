"""rig's real provisioning code against recorded ARM answers (tests/_azure_replay.py).

The clients are built with the options rig gives them live (polling interval 5 s, the
SDK's default retry policy); the replay records the sleeps the SDK asks for instead of
sleeping. What the recordings show, and the fake ARM now does too: 201 + a
Retry-After on PUT, compute operation URLs with a query string of their own, a JSON null
body on the effective-NSG 202, empty bodies and 202 polls on resource-group deletion.
"""

from __future__ import annotations

import pytest

from rig.backends.azure import AzureBackend
from rig.backends.azure.credentials import LIVE_CLIENT_OPTIONS, make_clients
from rig.backends.azure.fake import SUBSCRIPTION, FakeCredential, FakeARM
from rig.backends.base import RunSpec
from rig.errors import InfraError
from tests._azure_replay import ReplayTransport, load

CALLER = "198.51.100.7/32"
INTERVAL = LIVE_CLIENT_OPTIONS["polling_interval"]


def backend(transport, **kw) -> AzureBackend:
    clients = make_clients(FakeCredential(), SUBSCRIPTION, transport=transport, **LIVE_CLIENT_OPTIONS)
    logs: list[str] = []
    b = AzureBackend(clients=clients, caller_ip=lambda: CALLER, log=logs.append, wait_ssh=False, **kw)
    b.logs = logs  # type: ignore[attr-defined]
    return b


def spec(tmp_path) -> RunSpec:
    return RunSpec(backend="azure", options={"location": "japaneast", "workdir": str(tmp_path / "wd")})


def expected_sleeps(*scripts: str) -> list[float]:
    """What the SDK should sleep for these recorded operations: after each poll that is
    not the last, the poll's Retry-After, or the polling interval when it has none."""
    data = load()["scripts"]
    out: list[float] = []
    for name in scripts:
        for poll in data[name]["polls"][:-1]:
            out.append(float(poll["headers"].get("Retry-After", INTERVAL)))
    return sorted(out)


def test_a_whole_provisioning_replays_against_recorded_answers(tmp_path):
    replay = ReplayTransport(static_ip="203.0.113.80")
    b = backend(replay)
    rig = b.provision(spec(tmp_path))
    assert rig.server_addr == "203.0.113.80" and rig.facts["private_ip"] == "10.0.0.4"
    assert rig.facts["critical_path_waits"] == "5" and rig.facts["auto_shutdown"] == "true"
    methods = [(m, url.split("?")[0].rsplit("/", 2)[-2].lower()) for m, url, _ in replay.requests]
    assert ("PUT", "virtualmachines") in methods and ("PUT", "schedules") in methods
    assert all(status < 400 for _, _, status in replay.requests), replay.requests
    # the recorded Retry-After values (3, 10, 50 s) and the live polling interval, honoured as sleeps
    assert sorted(replay.sleeps) == expected_sleeps("PUT virtualnetworks", "PUT virtualnetworks",  # VNet and NSG
                                                    "PUT publicipaddresses", "PUT networkinterfaces",
                                                    "PUT virtualmachines")
    # compute's operation URL kept its own query string (?p=..&api-version=) when polled
    vm_polls = [url for m, url, _ in replay.requests if "/Microsoft.Compute/locations/" in url]
    assert vm_polls and all("?p=" in url and "&api-version=" in url for url in vm_polls)


def test_the_recorded_effective_nsg_answer_says_no_nsg_is_in_effect(tmp_path):
    """202 with a JSON null body + Location, then {"value": []}: the NIC had no NSG."""
    replay = ReplayTransport(static_ip="203.0.113.80")
    b = backend(replay)
    rig = b.provision(spec(tmp_path))
    [problem] = b.preflight(rig)
    assert "no NSG in effect" in problem and "not a path problem" in problem
    posts = [(url, status) for m, url, status in replay.requests if m == "POST"]
    assert [status for _, status in posts] == [202]


def test_the_rest_spec_effective_nsg_example_is_read_group_by_group(tmp_path):
    example = load()["effective_nsg_example"]["body"]
    replay = ReplayTransport(static_ip="203.0.113.80", effective=example)
    b = backend(replay)
    rig = b.provision(spec(tmp_path))
    problems = b.preflight(rig)
    # the example's NSG (on a subnet) allows TCP 6579 from 0.0.0.0/32 and RDP from 1.1.1.1/32: none of the probes
    assert len(problems) == 4 and all("in NSG test-nsg on the subnet" in p for p in problems)


def test_the_recorded_dynamic_ip_without_an_address_is_one_line(tmp_path):
    """The recorded public IP is Basic/Dynamic: no address until attached. rig asks for a
    Standard static one; if Azure ever answered like this, the run stops and cleans up."""
    replay = ReplayTransport()  # the recorded answers as they are
    b = backend(replay)
    with pytest.raises(InfraError, match="assigned no address to public IP rig-ip"):
        b.provision(spec(tmp_path))
    deletes = [(m, url, status) for m, url, status in replay.requests if m == "DELETE"]
    assert len(deletes) == 1 and deletes[0][2] == 202 and "/resourcegroups/" in deletes[0][1].lower()


def test_teardown_waits_through_the_recorded_202_polls(tmp_path):
    replay = ReplayTransport(static_ip="203.0.113.80")
    b = backend(replay, wait_delete=True)
    rig = b.provision(spec(tmp_path))
    before = len(replay.sleeps)
    b.teardown(rig)
    polls = [status for m, url, status in replay.requests if m == "GET" and "/operationresults/" in url]
    assert polls == [202, 200]  # empty bodies, as recorded
    assert replay.sleeps[before:] == expected_sleeps("DELETE resourcegroups")


def test_fake_and_replay_agree_on_the_shapes_rig_relies_on(tmp_path):
    """The fast fake answers like the recordings: status codes, headers, body kinds."""
    arm = FakeARM(retry_after=3, latency=0.1)  # operations run a while: the SDK polls and sleeps
    b = AzureBackend(clients=arm.clients(live=True), caller_ip=lambda: CALLER, log=lambda s: None, wait_ssh=False,
                     wait_delete=True)
    rig = b.provision(spec(tmp_path))
    b.preflight(rig)
    b.teardown(rig)
    statuses = {(r.method, _kind(r.path)): r.status for r in arm.requests if r.method != "GET"}
    assert statuses[("PUT", "virtualmachines")] == 201 and statuses[("PUT", "networkinterfaces")] == 201
    assert statuses[("POST", "effectivenetworksecuritygroups")] == 202
    assert statuses[("DELETE", "resourcegroups")] == 202
    assert 3 in arm.sleeps  # its Retry-After was honoured like the recorded ones
    compute_polls = [r for r in arm.requests if r.method == "GET" and "/microsoft.compute/locations/" in r.path.lower()]
    assert compute_polls and all("p" in r.query and "api-version" in r.query for r in compute_polls)


def _kind(path: str) -> str:
    from tests._azure_replay import _rtype

    return _rtype(path)
