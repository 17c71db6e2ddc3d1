"""Access profiles (rig.lab.access) and the user-space IPv4-in-IPv6 tunnel (rig.lab.tunnel):
the descriptions and plans are pure; the runs are real namespaces through `rig run`.

The truth comes from the descriptions: a profile's MTUs and port set, a scenario's
``expect`` / ``expect6`` (never restated here)."""

from __future__ import annotations

import ipaddress
import struct
import subprocess
from dataclasses import replace

import pytest

from _runhelp import LAB_SKIP, lab_leftovers, rig_cmd, rig_run
from rig.errors import UsageError
from rig.lab import scenarios
from rig.lab.access import (ACCESS, AFTR_SESSIONS, AFTR_UDP_TIMEOUT, CE6, PPPOE_MSS, PROVIDER6, V6PLUS, access_for,
                            access_rules, access_topology, nat_sets)
from rig.lab.build import plan
from rig.lab.routers import ROUTERS
from rig.lab.tunnel import FRAGMENT, OUTSIDE_SET, PASS, admit

DOC6 = ipaddress.ip_network("2001:db8::/32")
FAST = ("--no-configure", "--timeout", "1")


def _ipv4(proto: int, sport: int = 0, dport: int = 80, frag: int = 0) -> bytes:
    head = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 1, frag, 64, proto, 0, bytes(4), bytes(4))
    return head + struct.pack("!HH", sport, dport) + bytes(16)


# --------------------------------------------------------------------------- pure


def test_the_border_relay_admits_only_the_subscribers_ports():
    inside = V6PLUS.ranges()[3][0] + 5
    assert admit(_ipv4(6, inside), V6PLUS) == PASS
    assert admit(_ipv4(17, inside), V6PLUS) == PASS
    assert admit(_ipv4(6, 50001), V6PLUS) == OUTSIDE_SET  # pf's first port: not in the v6plus-like set
    assert admit(_ipv4(17, 61000), V6PLUS) == OUTSIDE_SET
    assert admit(_ipv4(1), V6PLUS) == PASS  # ICMP has no ports
    assert admit(_ipv4(17, inside, frag=0x2000), V6PLUS) == PASS  # the first fragment has its ports
    assert admit(_ipv4(17, inside, frag=185), V6PLUS) == FRAGMENT  # a later one has none
    assert admit(_ipv4(6, 50001, dport=22), V6PLUS) == PASS  # the lab's SSH control connection
    assert admit(_ipv4(6, 50001), None) == PASS  # not a BR: everything passes


@pytest.mark.parametrize("name", sorted(ACCESS))
def test_every_access_is_dual_stack_documentation_space(name):
    topo = access_topology(name)
    assert topo.access == name
    for link in topo.links:
        for end in (link.a, link.b):
            assert ipaddress.ip_interface(end.addr6).network.subnet_of(DOC6)
    for r in topo.routes:
        assert r.dest in ("default", "::/0") or ipaddress.ip_network(r.dest).is_private \
            or ipaddress.ip_network(r.dest).subnet_of(DOC6) or r.dest.startswith("203.0.113."), r


@pytest.mark.parametrize("name", ["map-e", "ds-lite"])
def test_the_ngn_is_ipv6_only_and_ipv4_crosses_it_in_a_tunnel(name):
    topo = access_topology(name)
    provider = ACCESS[name].provider
    ngn = topo.link_of(provider, "ngn")
    assert ngn.a.addr is None and ngn.b.addr is None  # no IPv4 on the NGN
    ends = {(t.node, t.local, t.remote) for t in topo.tunnels}
    assert ends == {("hgw", CE6, PROVIDER6), (provider, PROVIDER6, CE6)}
    p = plan(topo, "rig-abc123", scenarios.get("healthy"))
    for t in topo.tunnels:
        assert "tuntap add dev tun0 mode tun" in p.ns_batches[t.node]
        assert "link set tun0 mtu 1460 txqueuelen 10000 addrgenmode none" in p.ns_batches[t.node]
    assert "route add default dev tun0" in p.ns_batches["hgw"]


def test_the_ce_napts_into_its_port_set():
    healthy = scenarios.get("healthy")
    sets = nat_sets(ACCESS["map-e"], healthy)
    assert sets == {"hgw": V6PLUS}
    p = plan(access_topology("map-e"), "rig-abc123", healthy, sets)
    ce = p.rulesets["hgw"]
    assert f"meta mark set numgen random mod {len(V6PLUS.ranges())}" in ce
    for i, (lo, hi) in enumerate(V6PLUS.ranges()):
        assert f"meta mark {i} masquerade to :{lo}-{hi}" in ce
    # the scenarios that change the CE: one block only, or no port set at all
    first = nat_sets(ACCESS["map-e"], scenarios.get("map-e-exhaustion"))["hgw"]
    assert first.ranges() == V6PLUS.ranges()[:1]
    assert nat_sets(ACCESS["map-e"], scenarios.get("map-e-outside-set")) == {}


def test_the_aftr_caps_sessions_and_times_udp_out_its_own_way():
    s = scenarios.get("ds-lite-session-cap")
    rules = access_rules(ACCESS["ds-lite"], s)
    p = plan(access_topology("ds-lite"), "rig-abc123", replace(s, rules=s.rules + rules))
    aftr = p.rulesets["aftr"]
    assert f"ct count over {s.sessions} drop" in aftr
    assert f"ct timeout aftr-udp {{ protocol udp; l3proto ip; policy = {{ unreplied : {AFTR_UDP_TIMEOUT}" in aftr
    assert aftr.index("ct timeout aftr-udp") < aftr.index("chain forward")  # declared before it is named
    healthy = access_rules(ACCESS["ds-lite"], scenarios.get("healthy"))
    assert f"ct count over {AFTR_SESSIONS} drop" in healthy[0].rule


def test_an_access_scenario_refuses_another_access():
    assert access_for(scenarios.get("map-e-exhaustion"), None).name == "map-e"
    assert access_for(scenarios.get("healthy"), "ds-lite").name == "ds-lite"
    with pytest.raises(UsageError, match="needs --access map-e"):
        access_for(scenarios.get("map-e-exhaustion"), "pppoe")
    with pytest.raises(UsageError, match="unknown access"):
        access_for(scenarios.get("healthy"), "isdn")


def test_access_errors_are_usage_errors_on_the_command_line(tmp_path):
    for args, words in ((("--access", "isdn"), "unknown access"),
                        (("--scenario", "seed", "--access", "map-e"), "needs --access plain"),
                        (("--capture-at", "ngn"), "no NGN")):
        r = subprocess.run(rig_cmd("run", "--out", str(tmp_path / "x"), *args), capture_output=True, text=True)
        assert r.returncode == 2 and words in r.stderr and "Traceback" not in r.stderr, r.stderr
        assert not (tmp_path / "x").exists()


# --------------------------------------------------------------------------- lab

needs_lab = pytest.mark.skipif(LAB_SKIP is not None, reason=str(LAB_SKIP))


def _icmp_by_size(r, family: int) -> dict[int, dict]:
    import json

    probes = [json.loads(line) for line in (r.out / "probes.jsonl").read_text().splitlines()]
    sent = [p for p in probes if p["kind"] == "icmp" and p["family"] == family and p["not_sent"] is None]
    return dict(zip((p["seen"]["size"] for p in sent), r.exchanges("icmp", family)))


@pytest.mark.root
@pytest.mark.lab
@needs_lab
@pytest.mark.parametrize("name", sorted(ACCESS))
def test_healthy_on_every_access(name, tmp_path):
    """Every probe delivered on both families, but for DF echoes larger than the path MTU
    the access leaves that family: those learn it from the hop in front of the small link."""
    access = ACCESS[name]
    r = rig_run(tmp_path / "run", "--access", name, "--capture-at", "ngn" if access.provider else "router", *FAST)
    assert r.rc in (0, 1), r.stderr
    for family, mtu in ((4, access.mtu4), (6, access.mtu6)):
        for proto in ("tcp", "udp"):
            # (a MAP-E CE may reuse a port the server holds: AccessProfile.reuses_held_ports)
            assert set(r.outcomes(proto, family)) == {"delivered"}, (family, proto, r.verdict["diagnosis"])
            assert len(r.exchanges(proto, family)) > 0.9 * len(r.exchanges(proto, family, held_ports=True))
        for size, e in _icmp_by_size(r, family).items():
            want = ("delivered", None) if mtu is None or size <= mtu else ("lost-outbound", mtu)
            assert (e["outcome"], e.get("path_mtu")) == want, (family, size, e)
    assert r.rc == (0 if access.mtu4 is None and access.mtu6 is None else 1)
    backend = r.manifest["backend"]
    assert backend["access"] == name and backend["access_encapsulation"] == access.encapsulation
    if name == "map-e":
        # the server saw only ports of the CE's set
        ports = {int(e["seen_at_server_as"].rsplit(":", 1)[1]) for e in r.exchanges("tcp") + r.exchanges("udp")}
        assert ports and all(V6PLUS.contains(p) for p in ports), ports
        # and the verdict infers the CE's set from them
        ps = r.verdict["port_set"]
        assert (ps["kind"], ps["psid_offset"], ps["psid_length"], ps["psid"], ps["size"]) == (
            "port-set", V6PLUS.offset, V6PLUS.length, V6PLUS.psid, V6PLUS.size)
    if name == "pppoe":  # the BAS clamps the SYNs' MSS to the PPPoE link's
        tcp = r.exchanges("tcp")
        mss = [(c["client"], c["server"]) for e in tcp for c in e["changes"]
               if c["field"] == "tcp.mss" and c["direction"] == "out"]
        # at least the tcp, http and large probes' connections (the burst's, when the
        # analysis keeps them as a delivered batch, may list no changes)
        assert set(mss) == {(1460, PPPOE_MSS)} and len(mss) >= 3, (mss, len(tcp))
    if access.encapsulation == "ipv4-in-ipv6":
        # the NGN carries IPv4 inside real IPv6 packets, next header 4
        ngn = r.out / "captures" / "ngn.pcap"
        out = subprocess.run(["tcpdump", "-nr", str(ngn), "ip6 proto 4"], capture_output=True, text=True).stdout
        assert f"IP6 {CE6} > {PROVIDER6}: IP 203.0.113.2." in out or f"IP6 {CE6} > {PROVIDER6}: IP 192.168.0.2." in out
        assert f"IP6 {PROVIDER6} > {CE6}: IP 198.51.100.10." in out
        native = subprocess.run(["tcpdump", "-nr", str(ngn), "ip"], capture_output=True, text=True).stdout
        assert native == ""  # no bare IPv4 on the IPv6-only NGN
    assert lab_leftovers(r.prefix) == []


@pytest.mark.root
@pytest.mark.lab
@needs_lab
def test_ports_outside_the_set_are_named_from_the_ngn_capture(tmp_path):
    """map-e-outside-set with a capture on the NGN: the public ports the failed connections
    left with (pf's, passed through by the CE) are in the verdict, and they are outside
    the CE's set, for TCP connections and UDP exchanges alike."""
    r = rig_run(tmp_path / "run", "--scenario", "map-e-outside-set", "--capture-at", "ngn", *FAST)
    assert r.rc == 1, r.stderr
    ps = r.verdict["port_set"]
    lo, hi = ROUTERS["pf"].nat_ports
    failed = ps["failed_ports"]
    assert failed and all(lo <= p <= hi for p in failed.values()), failed
    lost = {e["id"] for e in r.exchanges("tcp") + r.exchanges("udp") if e["outcome"] == "lost-outbound"}
    assert any(i.startswith("udp-") for i in lost)
    assert {i for i, p in failed.items() if not V6PLUS.contains(p)} == lost
    assert "a port filter, such as a MAP-E border relay's port set, fits" in r.verdict["diagnosis"]["summary"]
    assert lab_leftovers(r.prefix) == []


@pytest.mark.root
@pytest.mark.lab
@needs_lab
def test_exhaustion_of_the_ces_first_block(tmp_path):
    r = rig_run(tmp_path / "run", "--scenario", "map-e-exhaustion", *FAST)
    assert r.rc == 1, r.stderr
    assert "port_set" in r.verdict, (r.verdict["diagnosis"], [(e["id"], e["outcome"], e.get("undecided_because"))
                                                              for e in r.verdict["exchanges"]])
    ps = r.verdict["port_set"]
    lo, hi = V6PLUS.ranges()[0]
    assert ps["exhausted"] is True and ps["size"] == hi - lo + 1 and (ps["low"], ps["high"]) == (lo, hi)
    # the analysis' last clause (the trace stage's places may follow it)
    assert f"all {hi - lo + 1} public ports of the set were in use: the port set is exhausted" in \
        r.verdict["diagnosis"]["summary"]


@pytest.mark.root
@pytest.mark.lab
@needs_lab
def test_the_tunnel_blackhole_survives_the_playbook(tmp_path):
    """tunnel-mtu-blackhole as a user runs it, the playbook applied over SSH through the
    tunnel: SSH's segments fit the tunnel both ways (the SYN-ACK's MSS is clamped too), so
    the client's kernel learns no path MTU from the CE and the probes' SYNs still offer
    the link's MSS (1460): the large reply stalls. Without the second clamp the upload drew
    the CE's frag-needed, every later SYN offered 1420, and every reply was delivered."""
    r = rig_run(tmp_path / "run", "--scenario", "tunnel-mtu-blackhole", "--timeout", "1")
    assert r.rc == 1, r.stderr
    tcp4 = [e for e in r.exchanges("tcp") if e["family"] == 4]
    assert [e["outcome"] for e in tcp4].count("mtu-blackhole") == 1, [(e["id"], e["outcome"]) for e in tcp4]
    assert lab_leftovers(r.prefix) == []
