"""The healthy lab, for real (root): the double NAT works end to end from the client."""

from __future__ import annotations

import base64
import os
import shutil
import signal
import socket
import subprocess

import paramiko
import pytest

from test_lab_support import SERVER, access_log, connect, http_get, lab, needs_lab, ping, udp_echo

pytestmark = needs_lab


HOST_IFACES: set[str] = set()


@pytest.fixture(scope="module")
def rig():
    HOST_IFACES.update(n for _, n in socket.if_nameindex())
    with lab("healthy") as r:
        yield r


def test_the_rig_record_is_complete(rig):
    assert rig.backend == "lab" and rig.server_addr == SERVER
    assert rig.client_netns == rig.facts["ns_client"] == rig.ssh.netns
    assert rig.ssh.host == SERVER and rig.ssh.port == 22
    assert rig.ssh.host_key.startswith("ssh-ed25519 AAAA")
    assert os.path.isfile(rig.ssh.key_file)
    assert not rig.install_packages
    points = {p.name: p for p in rig.capture_points}
    assert points["client"].netns == rig.client_netns and not points["client"].remote
    assert points["server"].remote and points["server"].iface == "eth0"
    assert "router" not in points  # only when asked for
    assert rig.facts["scenario"] == "healthy" and rig.facts["hgw_wan_addr"] == "203.0.113.2"


def test_nothing_was_added_to_the_host_namespace(rig):
    new = {n for _, n in socket.if_nameindex()} - HOST_IFACES
    assert not new & {"eth0", "lan", "wan", "cpe", "srv"}


def test_no_route_out_of_the_lab(rig):
    def routes(node: str) -> list[str]:
        out = subprocess.run(["ip", "-n", rig.facts[f"ns_{node}"], "-4", "route", "show"],
                             capture_output=True, text=True, check=True).stdout
        return [ln.split()[0] for ln in out.splitlines()]

    # inet, the "Internet", knows only the two lab networks; every default points into the lab
    assert sorted(routes("inet")) == ["198.51.100.0/24", "203.0.113.0/24"]
    assert "default" in routes("server") and "default" in routes("client")


def test_tcp_connect_and_http_get_with_no_store(rig):
    connect(rig.client_netns, 80).close()
    status, headers, body = http_get(rig.client_netns, "/rig/n/abc")
    assert status == 200
    assert headers["cache-control"] == "no-store"
    assert headers["x-rig-responder"] == "server"
    assert b"rig responder" in body


def test_large_object_arrives_whole(rig):
    status, headers, body = http_get(rig.client_netns, "/rig/large.bin", timeout=5)
    assert status == 200 and len(body) == 512 * 1024
    assert body[:32] == b"rig large object line 000000000\n"


def test_server_sees_the_hgw_wan_address_with_the_port_kept(rig):
    s = connect(rig.client_netns, 80)
    local_port = s.getsockname()[1]
    s.sendall(b"GET /rig/n/natcheck HTTP/1.0\r\n\r\n")
    while s.recv(4096):
        pass
    s.close()
    line = [ln for ln in access_log(rig).splitlines() if "/rig/n/natcheck" in ln][-1]
    addr, port = line.split()[:2]
    assert addr == "203.0.113.2"  # double NAT: the hgw's WAN address, not 192.168.x
    assert int(port) == local_port  # plain masquerade keeps the source port
    assert '"GET /rig/n/natcheck HTTP/1.0" 200' in line


def test_udp_echo(rig):
    assert udp_echo(rig.client_netns, b"rig udp probe 1") == b"rig udp probe 1"


def test_ping(rig):
    assert ping(rig.client_netns)


def _ssh(rig, host_key_line: str) -> paramiko.SSHClient:
    from rig.netns import connect_in

    sock = connect_in(rig.ssh.netns, (rig.ssh.host, rig.ssh.port), timeout=3)
    client = paramiko.SSHClient()
    ktype, kb64 = host_key_line.split()[:2]
    client.get_host_keys().add(rig.ssh.host, ktype, paramiko.Ed25519Key(data=base64.b64decode(kb64)))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(rig.ssh.host, port=rig.ssh.port, username=rig.ssh.user, key_filename=rig.ssh.key_file,
                   sock=sock, look_for_keys=False, allow_agent=False, timeout=5)
    return client


def test_ssh_with_the_pinned_host_key_runs_in_the_server_namespace(rig):
    client = _ssh(rig, rig.ssh.host_key)
    try:
        _, out, _ = client.exec_command("ip -o -4 addr show dev eth0")
        assert "198.51.100.10/24" in out.read().decode()
    finally:
        client.close()


def test_ssh_refuses_another_host_key(rig, tmp_path):
    other = tmp_path / "k"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    wrong = (tmp_path / "k.pub").read_text()
    with pytest.raises(paramiko.SSHException):
        _ssh(rig, wrong).close()


def test_router_capture_point_on_request():
    with lab("healthy", capture_at=("client", "server", "router")) as r:
        points = {p.name: p for p in r.capture_points}
        assert points["router"].netns == r.facts["ns_router"] and points["router"].iface == "wan"


def test_links_carry_wire_sized_packets(rig):
    from rig.lab.build import offloads
    from rig.lab.topology import seed_topology
    from rig.netns import in_netns

    for node in seed_topology().nodes:
        for end in seed_topology().ifaces(node):
            assert in_netns(rig.facts[f"ns_{node}"], offloads, end.iface) == {"tso": 0, "gso": 0, "gro": 0}


@pytest.mark.skipif(not shutil.which("tcpdump"), reason="tcpdump is not installed")
def test_a_starved_capture_loses_nothing(rig, tmp_path):
    """tcpdump stopped while the large object crosses, as on two busy cores: the ring
    (8 MB, wire-sized slots) holds it all, so the kernel drops nothing."""
    pcap = tmp_path / "c.pcap"
    dump = subprocess.Popen(["ip", "netns", "exec", rig.client_netns, "tcpdump", "-i", "eth0", "-U",
                             "--immediate-mode", "-n", "-B", "8192", "-w", str(pcap), "tcp port 80"],
                            stderr=subprocess.PIPE, text=True)
    try:
        assert "listening on" in dump.stderr.readline()
        os.kill(dump.pid, signal.SIGSTOP)
        assert len(http_get(rig.client_netns, "/rig/large.bin", timeout=5)[2]) == 512 * 1024
        os.kill(dump.pid, signal.SIGCONT)
        while True:  # SIGUSR1: tcpdump reports its counters; wait until it has read the ring
            dump.send_signal(signal.SIGUSR1)
            line = dump.stderr.readline()
            nums = [int(w) for w in line.replace(",", " ").split() if w.isdigit()]
            if len(nums) == 3 and nums[0] == nums[1]:
                break
    finally:
        os.kill(dump.pid, signal.SIGCONT)
        dump.send_signal(signal.SIGINT)
        dump.communicate(timeout=10)
    captured, received, dropped = nums
    assert dropped == 0
    assert captured == received > 360  # 512 KiB in 1448-byte segments, plus the handshake
