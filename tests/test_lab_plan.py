"""The lab's description, plan, scenarios, templates and errors: pure, no root needed."""

from __future__ import annotations

import argparse
import ipaddress
import os
import socket
import subprocess
import sys

import pytest

from rig.errors import MissingToolError, NotRootError, UsageError
from rig.lab import build, scenarios
from rig.lab.access import access_topology
from rig.lab.build import plan, require_root_and_tools
from rig.lab.services import render, templates_dir
from rig.lab.topology import Endpoint, Link, Topology, new_prefix, seed_topology

PREFIX = "rig-abc123"
DOC6 = ipaddress.ip_network("2001:db8::/32")


def test_seed_topology_is_the_double_nat():
    topo = seed_topology()
    assert topo.nodes == ("client", "router", "hgw", "inet", "server")
    assert topo.endpoint("client", "eth0").ip == "192.168.1.10"
    assert topo.endpoint("hgw", "wan").ip == "203.0.113.2"
    assert topo.endpoint("server", "eth0").ip == "198.51.100.10"
    assert {(n.node, n.out_iface) for n in topo.nats} == {("router", "wan"), ("hgw", "wan")}
    # nothing routes out of the lab: inet knows its connected networks and, for IPv6
    # (routed, not NATed), the home's delegated prefix inside the documentation space
    inet = [r for r in topo.routes if r.node == "inet"]
    assert [(r.dest, r.via) for r in inet] == [("2001:db8:10::/48", "2001:db8:ff::2")]
    for r in topo.routes:
        assert r.dest in ("default", "::/0") or ipaddress.ip_network(r.dest).subnet_of(DOC6)
    # dual stack: every end of every link has an IPv6 address in 2001:db8::/32
    for link in topo.links:
        for end in (link.a, link.b):
            assert ipaddress.ip_interface(end.addr6).network.subnet_of(DOC6)


def test_validate_rejects_long_interface_names():
    topo = Topology(nodes=("a", "b"), links=(Link(Endpoint("a", "x" * 16, "10.0.0.1/24"),
                                                  Endpoint("b", "y", "10.0.0.2/24")),),
                    routes=(), nats=(), forwarding=())
    with pytest.raises(ValueError, match="longer than 15"):
        topo.validate()


def test_plan_creates_nothing_in_the_host_namespace():
    p = plan(seed_topology(), PREFIX, scenarios.get("healthy"))
    lines = p.host_batch.splitlines()
    assert [ln for ln in lines if ln.startswith("netns add")] == [
        f"netns add {PREFIX}-{n}" for n in ("client", "router", "hgw", "inet", "server")]
    links = [ln for ln in lines if ln.startswith("link add")]
    assert len(links) == 4
    for ln in links:  # both ends of every veth pair are created inside a namespace
        assert ln.count(" netns ") == 2
    assert "route add default via 192.168.1.1" in p.ns_batches["client"]
    assert [ln for ln in p.ns_batches["inet"].splitlines() if ln.startswith("route add")] == [
        "route add 2001:db8:10::/48 via 2001:db8:ff::2"]
    assert "route add ::/0 via 2001:db8:10:1::1" in p.ns_batches["client"]
    assert p.sysctls["client"]["net/ipv6/conf/all/disable_ipv6"] == "0"
    assert p.sysctls["inet"]["net/ipv6/conf/all/forwarding"] == "1"
    assert p.sysctls["inet"]["net/ipv4/ip_forward"] == "1"
    assert "net/ipv4/ip_forward" not in p.sysctls["client"]


def test_plan_masquerades_on_both_nats():
    p = plan(seed_topology(), PREFIX, scenarios.get("healthy"))
    assert set(p.rulesets) == {"router", "hgw"}
    for node in ("router", "hgw"):
        assert 'oifname "wan" masquerade' in p.rulesets[node]
        assert "type nat hook postrouting" in p.rulesets[node]


def test_fully_random_and_port_set_change_the_nat():
    p = plan(seed_topology(), PREFIX, scenarios.get("fully-random"))
    assert 'oifname "wan" masquerade fully-random' in p.rulesets["router"]
    assert 'oifname "wan" masquerade fully-random' in p.rulesets["hgw"]
    p = plan(seed_topology(), PREFIX, scenarios.get("port-set"))
    assert "masquerade to :40000-40015" in p.rulesets["hgw"]
    assert "masquerade to" not in p.rulesets["router"]


def test_mtu_blackhole_sets_both_ends_of_the_link():
    p = plan(seed_topology(), PREFIX, scenarios.get("mtu-blackhole"))
    assert "link set wan mtu 1454" in p.ns_batches["hgw"]
    assert "link set cpe mtu 1454" in p.ns_batches["inet"]
    assert "link set lan mtu 1500" in p.ns_batches["hgw"]
    assert "frag-needed drop" in p.rulesets["inet"]


@pytest.mark.parametrize("name", list(scenarios.SCENARIOS))
def test_every_scenario_plans_and_places_its_rules(name):
    s = scenarios.get(name)
    p = plan(access_topology(s.access), PREFIX, s)  # on the access line it needs
    for rule in s.rules:
        assert rule.rule in p.rulesets[rule.node]
        if rule.chain != scenarios.OBJECTS:  # an object (a ct timeout) is the table's, in no chain
            assert f"chain {rule.chain} {{" in p.rulesets[rule.node]
    assert s.description and s.expect


def test_unknown_scenario_is_a_usage_error():
    with pytest.raises(UsageError, match="unknown scenario 'nope'.*healthy"):
        scenarios.get("nope")


def test_cli_scenarios_prints_one_line_each(capsys):
    assert scenarios.cli_scenarios(argparse.Namespace()) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [ln.split()[0] for ln in lines] == list(scenarios.SCENARIOS)


def test_rig_lab_scenarios_through_the_cli():
    out = subprocess.run([sys.executable, "-m", "rig", "lab", "scenarios"], capture_output=True, text=True)
    assert out.returncode == 0
    assert out.stdout.splitlines()[1].startswith("seed ")


def test_prefix_shape():
    a, b = new_prefix(), new_prefix()
    assert a != b and len(a) == 10 and a.startswith("rig-")
    assert len(f"{a}-server") < 32


def test_not_root_is_one_clear_line(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(NotRootError, match="sudo"):
        require_root_and_tools()


def test_missing_tool_names_the_package(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(build.shutil, "which", lambda name, path=None: None)
    with pytest.raises(MissingToolError, match="install iproute2"):
        require_root_and_tools()


def test_clean_refuses_a_malformed_prefix():
    from rig.lab.clean import clean

    with pytest.raises(UsageError, match="rig-<6 hex"):
        clean("rig-*")


def test_apache_template_defaults_for_freebsd(tmp_path):
    conf = render("apache-rig.conf.j2", tmp_path / "a.conf",
                  {"rig_server_dir": "/var/lib/rig", "rig_listen_addr": "10.0.0.4", "rig_http_port": "80",
                   "rig_os_family": "freebsd"}).read_text()
    assert "LoadModule rewrite_module /usr/local/libexec/apache24/mod_rewrite.so" in conf
    assert "User www\n" in conf and "Listen 10.0.0.4:80\n" in conf
    directives = "\n".join(ln for ln in conf.splitlines() if not ln.startswith("#"))
    assert "/etc/apache2" not in directives and "Include" not in directives
    assert 'LogFormat "%a %{remote}p' in conf and '\\"%r\\"' in conf
    assert 'X-Rig-Responder "server"' in conf


def test_site_has_the_probe_pages():
    site = templates_dir() / "site"
    assert (site / "rig" / "large.bin").stat().st_size == 512 * 1024
    assert (site / "rig" / "nonce.html").is_file()


def _start_echo(*args: str) -> subprocess.Popen:
    script = templates_dir() / "udp_echo.py"
    return subprocess.Popen([sys.executable, str(script), *args], stdout=subprocess.PIPE, text=True)


def test_udp_echo_on_loopback():
    proc = _start_echo("--addr", "127.0.0.1", "--port", "0")
    try:
        ready = proc.stdout.readline().split()
        assert ready[0] == "READY"
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(2)
        s.sendto(b"hello rig", ("127.0.0.1", int(ready[2])))
        assert s.recv(100) == b"hello rig"
        s.close()
    finally:
        proc.kill()
        proc.wait()


def test_udp_echo_daemon_writes_its_pidfile(tmp_path):
    pidfile = tmp_path / "echo.pid"
    proc = _start_echo("--addr", "127.0.0.1", "--port", "0", "--daemon", "--pidfile", str(pidfile))
    out, _ = proc.communicate(timeout=5)
    assert proc.returncode == 0
    pid = int(pidfile.read_text())
    assert out.split()[0] == "READY" and int(out.split()[3]) == pid
    try:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(2)
        s.sendto(b"x", ("127.0.0.1", int(out.split()[2])))
        assert s.recv(10) == b"x"
        s.close()
    finally:
        os.kill(pid, 9)


def test_clean_matches_only_rig_lab_namespaces(monkeypatch):
    from rig.lab import clean

    names = ["rig-abc123-client", "rig-abc123-server", "rig-00ff00-hgw", "rigt12345", "rig-abc1234-client",
             "rig-ABC123-client", "other", "rig-abc123"]
    monkeypatch.setattr(clean, "list_namespaces", lambda: names)
    assert clean.leftover_namespaces() == ["rig-abc123-client", "rig-abc123-server", "rig-00ff00-hgw"]
    assert clean.leftover_namespaces("rig-00ff00") == ["rig-00ff00-hgw"]


def test_clean_without_prefix_sweeps_every_lab_workdir_and_nothing_else(monkeypatch, tmp_path):
    import rig.backends.lab as labmod
    from rig.lab import clean

    removed: list[list[str]] = []
    monkeypatch.setattr(clean, "list_namespaces", lambda: ["rig-aaaaaa-client", "unrelated"])
    monkeypatch.setattr(clean, "destroy", lambda names: removed.append(list(names)) or list(names))
    monkeypatch.setattr(labmod, "LAB_ROOT", tmp_path)
    for d in ("rig-aaaaaa", "rig-bbbbbb", "keep-me", "rig-cccccc.txt"):
        (tmp_path / d).mkdir()
    done = clean.clean()
    assert removed == [["rig-aaaaaa-client"]]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep-me", "rig-cccccc.txt"]
    assert done.namespaces == ("rig-aaaaaa-client",)
