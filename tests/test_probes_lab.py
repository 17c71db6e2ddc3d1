"""The probes against the real lab (root): what the client sees on the healthy path and in
the scenarios whose client-side view is unambiguous. The verdicts themselves come from
the captures (tests of rig run); these check the probes' own records."""

from __future__ import annotations

from rig.probes import PROBE_KINDS, run_probes
from rig.lab.scenarios import SCENARIOS
from rig.probes.records import FRAG_NEEDED, MSG_TOO_LONG, STALLED, TIMED_OUT, NotSent
from test_lab_support import SERVER, lab, needs_lab

pytestmark = needs_lab


def by_id(results):
    return {r.id: r for r in results}


def test_every_probe_succeeds_on_the_healthy_lab():
    with lab("healthy") as rig:
        results = run_probes(rig.client_netns, rig.server_addr, PROBE_KINDS, timeout=3.0, burst=32,
                             run_tag=rig.run_id)
    failed = [(r.id, r.error) for r in results if not r.ok]
    assert failed == []
    r = by_id(results)
    assert len(results) == 12 and rig.server_addr == SERVER
    assert all(x.local.startswith("192.168.1.10") for x in results if x.local)
    http = r["http-1"].seen
    assert http["status"] == 200 and http["body_ok"] and http["responder"] == "server"
    assert http["proxy_headers"] == {}
    assert r["large-1"].seen["body_bytes"] == 512 * 1024
    assert r["burst-1"].seen["connected"] == 32
    assert r["tcp-1"].tcp.state == "ESTABLISHED" and r["tcp-1"].tcp.snd_mss > 1000
    assert r["large-udp-1"].ok  # fragmented by the client's kernel, reassembled and echoed


def test_seed_tcp_times_out_ping_and_udp_pass():
    timeout = 1.5
    with lab("seed") as rig:
        results = run_probes(rig.client_netns, rig.server_addr, timeout=timeout, burst=8, run_tag=rig.run_id)
    r = by_id(results)
    for pid in ("tcp-1", "http-1", "large-1", "burst-1"):
        assert not r[pid].ok and r[pid].error == TIMED_OUT, r[pid]
    assert r["tcp-1"].tcp.state == "SYN_SENT"
    assert all(x.ok for x in results if x.kind in ("icmp", "udp"))
    # all at once: the failing probes overlap, so the run takes one time-out, not four
    failing = [x for x in results if not x.ok]
    assert max(x.started for x in failing) < min(x.ended for x in failing)


def test_mtu_blackhole_small_page_passes_large_object_stalls():
    with lab("mtu-blackhole") as rig:
        results = run_probes(rig.client_netns, rig.server_addr, ["icmp", "http", "large"], timeout=1.5)
    r = by_id(results)
    assert r["http-1"].ok
    assert not r["large-1"].ok and r["large-1"].error == STALLED and r["large-1"].seen["stalled"]
    truth = SCENARIOS["mtu-blackhole"]
    for x in (x for x in results if x.kind == "icmp"):
        want = truth.expect_ping(x.seen["size"])
        assert x.not_sent is None, x  # every echo left: DF set, the kernel's cached path MTU ignored
        if want.outcome == "delivered":
            assert x.ok, x
        else:  # the hgw's own frag-needed reaches the client, every time
            assert (x.error, x.seen["mtu"]) == (FRAG_NEEDED, want.path_mtu), x


def test_local_mtu_echoes_too_large_for_the_interface_are_not_sent():
    truth = SCENARIOS["local-mtu"]
    with lab("local-mtu") as rig:
        results = run_probes(rig.client_netns, rig.server_addr, ["icmp", "tcp"], timeout=1.5)
    assert by_id(results)["tcp-1"].ok
    for x in (x for x in results if x.kind == "icmp"):
        want = truth.expect_ping(x.seen["size"])
        if want.outcome is None:
            assert not x.ok and x.error == MSG_TOO_LONG and not x.seen["sent"], x
            assert x.not_sent == NotSent(MSG_TOO_LONG, x.seen["size"], want.local_mtu)
        else:
            assert x.ok and x.not_sent is None, x


def test_transparent_proxy_looks_like_success_to_the_client():
    with lab("transparent-proxy") as rig:
        (h,) = run_probes(rig.client_netns, rig.server_addr, ["http"], timeout=2.0)
    assert h.ok and h.seen["status"] == 200  # the confound: "it works"
    assert h.seen["responder"] == "hgw-proxy"


def test_port_set_burst_runs_out_of_ports():
    with lab("port-set") as rig:
        (b,) = run_probes(rig.client_netns, rig.server_addr, ["burst"], timeout=1.5, burst=32)
    assert not b.ok
    assert b.seen["connected"] <= 16 and b.seen["connected"] + b.seen["failed"] == 32
