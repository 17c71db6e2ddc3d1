"""Each scenario's raw effect at socket level, from the client namespace (root).

These check the fault itself (ground truth for the verdict tests of the pipeline), and
that the SSH control connection still works in every scenario."""

from __future__ import annotations

import base64
import errno
import select
import socket
import struct
import time

import paramiko
import pytest

from rig.lab.routers import ROUTERS
from rig.lab.scenarios import SCENARIOS
from rig.netns import connect_in, socket_in
from test_lab_support import SERVER, SHORT, access_log, connect, http_get, lab, needs_lab, ping, ss, udp_echo

pytestmark = needs_lab
NGN = sorted(n for n, s in SCENARIOS.items() if s.access != "plain")
SERVER6 = "2001:db8:5::10"


def ssh_works(rig, fetch: str | None = None) -> bytes:
    """Log in over the pinned host key from the client side; optionally SFTP a file."""
    sock = connect_in(rig.ssh.netns, (rig.ssh.host, rig.ssh.port), timeout=3)
    client = paramiko.SSHClient()
    ktype, kb64 = rig.ssh.host_key.split()[:2]
    client.get_host_keys().add(rig.ssh.host, ktype, paramiko.Ed25519Key(data=base64.b64decode(kb64)))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(rig.ssh.host, port=rig.ssh.port, username=rig.ssh.user, key_filename=rig.ssh.key_file,
                   sock=sock, look_for_keys=False, allow_agent=False, timeout=5)
    try:
        if fetch:
            with client.open_sftp() as sftp, sftp.open(fetch) as fh:
                return fh.read()
        _, out, _ = client.exec_command("echo ok")
        return out.read()
    finally:
        client.close()


def mss_pair(rig) -> tuple[int, int]:
    """TCP_MAXSEG on both ends of a fresh connection (client, server) on a test port."""
    srv = socket_in(rig.facts["ns_server"])
    srv.bind((SERVER, 8081))
    srv.listen(1)
    c = connect(rig.client_netns, 8081)
    a, _ = srv.accept()
    try:
        return (c.getsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG),
                a.getsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG))
    finally:
        for s in (c, a, srv):
            s.close()


def seen_ports(rig, n: int = 4) -> list[tuple[int, int]]:
    """(client's local port, port the server saw) for ``n`` connections."""
    srv = socket_in(rig.facts["ns_server"])
    srv.bind((SERVER, 8081))
    srv.listen(n)
    pairs = []
    try:
        for _ in range(n):
            c = connect(rig.client_netns, 8081)
            a, peer = srv.accept()
            assert peer[0] == "203.0.113.2"
            pairs.append((c.getsockname()[1], peer[1]))
            c.close()
            a.close()
    finally:
        srv.close()
    return pairs


def echo_ids(rig) -> tuple[int, int]:
    """(echo id the client sent, echo id the server received) for one ping."""
    raw = socket_in(rig.facts["ns_server"], socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    raw.settimeout(2)
    ping_sock = socket_in(rig.client_netns, socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)
    try:
        payload = b"rig-echo-id-check"
        ping_sock.sendto(struct.pack("!BBHHH", 8, 0, 0, 0, 1) + payload, (SERVER, 0))
        sent_id = ping_sock.getsockname()[1]  # the kernel uses the socket's "port" as the id
        while True:
            pkt = raw.recv(2048)
            ihl = (pkt[0] & 0x0F) * 4
            if pkt[ihl] == 8 and pkt[ihl + 8:] == payload:
                return sent_id, struct.unpack("!H", pkt[ihl + 4:ihl + 6])[0]
    finally:
        raw.close()
        ping_sock.close()


def burst(rig, n: int, timeout: float = SHORT) -> int:
    """Open ``n`` connections to :80 at once; how many completed the handshake."""
    socks = []
    for _ in range(n):
        s = socket_in(rig.client_netns)
        s.setblocking(False)
        s.connect_ex((SERVER, 80))
        socks.append(s)
    ok, pending = 0, set(socks)
    deadline = time.monotonic() + timeout
    try:
        while pending and (left := deadline - time.monotonic()) > 0:
            _, writable, _ = select.select([], list(pending), [], left)
            for s in writable:
                pending.discard(s)
                ok += s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
    finally:
        for s in socks:
            s.close()
    return ok


def test_seed_tcp_replies_die_on_the_way_back_but_ping_works():
    with lab("seed") as rig:
        with pytest.raises(TimeoutError):
            connect(rig.client_netns, 80, timeout=SHORT)
        # the SYN reached the server, which answered and waits for the ACK
        assert any("203.0.113.2" in ln for ln in ss(rig.facts["ns_server"], "state", "syn-recv"))
        assert ping(rig.client_netns)
        assert ssh_works(rig) == b"ok\n"


def test_outbound_drop_the_server_never_sees_the_syn():
    with lab("outbound-drop") as rig:
        with pytest.raises(TimeoutError):
            connect(rig.client_netns, 80, timeout=SHORT)
        assert ss(rig.facts["ns_server"], "state", "syn-recv") == []
        assert ping(rig.client_netns)
        assert ssh_works(rig) == b"ok\n"


def test_mtu_blackhole_small_pages_pass_large_object_stalls():
    with lab("mtu-blackhole") as rig:
        assert http_get(rig.client_netns, "/rig/n/small")[0] == 200
        with pytest.raises(socket.timeout) as exc:
            http_get(rig.client_netns, "/rig/large.bin", timeout=SHORT)
        assert len(exc.value.partial) < 512 * 1024
        assert ping(rig.client_netns)
        # SSH (clamped) still moves a large file: configure and capture fetches work
        big = ssh_works(rig, fetch=rig.facts["server_dir"] + "/site/rig/large.bin")
        assert len(big) == 512 * 1024


def df_ping(ns: str, size: int) -> str:
    """One DF echo of ``size`` bytes (total IP size) from ``ns``, DF set and the cached
    path MTU ignored: "reply", "frag-needed MTU n", "EMSGSIZE" or "nothing"."""
    s = socket_in(ns, socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)
    s.setsockopt(socket.IPPROTO_IP, 10, 3)  # IP_MTU_DISCOVER, IP_PMTUDISC_PROBE
    s.setsockopt(socket.IPPROTO_IP, 11, 1)  # IP_RECVERR: the frag-needed on the error queue
    s.setblocking(False)
    try:
        try:
            s.sendto(struct.pack("!BBHHH", 8, 0, 0, 0, 1) + bytes(size - 28), (SERVER, 0))
        except OSError as exc:
            return "EMSGSIZE" if exc.errno == errno.EMSGSIZE else str(exc)
        ready = select.select([s], [], [s], SHORT)
        if not any(ready):
            return "nothing"
        try:
            _, anc, _, _ = s.recvmsg(65535, 512, socket.MSG_ERRQUEUE)
            return f"frag-needed MTU {struct.unpack_from('=IBBBBII', anc[0][2])[5]}"
        except BlockingIOError:
            s.recv(65535)
            return "reply"
    finally:
        s.close()


def big_ping(rig, name: str) -> str:
    """What a DF echo just above the scenario's smallest MTU meets; the one at it is answered."""
    truth = SCENARIOS[name].big_pings
    assert df_ping(rig.client_netns, truth.above) == "reply"
    return df_ping(rig.client_netns, truth.above + 6)


def test_mtu_blackhole_big_pings_get_the_hgws_frag_needed():
    with lab("mtu-blackhole") as rig:
        assert big_ping(rig, "mtu-blackhole") == f"frag-needed MTU {SCENARIOS['mtu-blackhole'].big_pings.expected.path_mtu}"


def test_local_mtu_big_pings_cannot_leave_and_tcp_fits_the_link():
    with lab("local-mtu") as rig:
        assert big_ping(rig, "local-mtu") == "EMSGSIZE"
        mtu = SCENARIOS["local-mtu"].big_pings.expected.local_mtu
        assert mss_pair(rig) == (mtu - 52, mtu - 52)  # IP 20 + TCP 20 + timestamps 12
        status, _, body = http_get(rig.client_netns, "/rig/large.bin", timeout=5)
        assert status == 200 and len(body) == 512 * 1024
        assert ssh_works(rig) == b"ok\n"


def test_mss_clamp_rewrites_the_mss_both_ways():
    with lab("healthy") as rig:
        assert mss_pair(rig) == (1448, 1448)  # 1460 minus the timestamp option
    with lab("mss-clamp") as rig:
        assert mss_pair(rig) == (1402, 1402)  # 1414 minus the timestamp option
        status, _, _ = http_get(rig.client_netns, "/rig/large.bin", timeout=5)
        assert status == 200
        assert '"GET /rig/large.bin HTTP/1.1" 200 524288' in access_log(rig)


def test_transparent_proxy_answers_for_the_server():
    with lab("transparent-proxy") as rig:
        status, headers, _ = http_get(rig.client_netns, "/rig/n/proxied")
        assert status == 200 and headers["x-rig-responder"] == "hgw-proxy"
        assert "/rig/n/proxied" not in access_log(rig)  # the server saw nothing
        assert ssh_works(rig) == b"ok\n"


def test_rst_inject_refuses_before_the_server():
    with lab("rst-inject") as rig:
        with pytest.raises(ConnectionRefusedError):
            connect(rig.client_netns, 80, timeout=SHORT)
        assert ss(rig.facts["ns_server"], "state", "syn-recv") == []
        assert access_log(rig) == ""
        assert ssh_works(rig) == b"ok\n"


def test_edge_filter_icmp_drops_ping_but_not_tcp():
    with lab("edge-filter-icmp") as rig:
        assert not ping(rig.client_netns, timeout=SHORT)
        assert http_get(rig.client_netns, "/rig/n/edge")[0] == 200


def test_host_firewall_icmp_drops_ping_but_not_tcp():
    with lab("host-firewall-icmp") as rig:
        assert not ping(rig.client_netns, timeout=SHORT)
        assert http_get(rig.client_netns, "/rig/n/host")[0] == 200
        assert udp_echo(rig.client_netns, b"u") == b"u"


def test_no_listener_the_server_kernel_refuses():
    with lab("no-listener") as rig:
        with pytest.raises(ConnectionRefusedError):
            connect(rig.client_netns, 80, timeout=SHORT)
        assert http_get(rig.client_netns, "/rig/n/alt", port=8080)[0] == 200  # Apache moved
        assert ping(rig.client_netns)


def test_port_set_exhausts_at_16_connections():
    with lab("healthy") as rig:
        assert burst(rig, 20) == 20
    with lab("port-set") as rig:
        assert burst(rig, 20) == 16
        for _, seen in seen_ports(rig, 2):
            assert 40000 <= seen <= 40015
        assert ssh_works(rig) == b"ok\n"


def test_fully_random_rewrites_source_ports_and_echo_ids():
    with lab("healthy") as rig:
        assert all(local == seen for local, seen in seen_ports(rig))
        sent, seen = echo_ids(rig)
        assert sent == seen
    with lab("fully-random") as rig:
        pairs = seen_ports(rig)
        assert any(local != seen for local, seen in pairs)
        assert any(sent != seen for sent, seen in (echo_ids(rig) for _ in range(3)))
        assert ping(rig.client_netns) and udp_echo(rig.client_netns, b"r") == b"r"


def test_pf_router_maps_into_its_port_range_and_clamps_the_mss():
    pf = ROUTERS[SCENARIOS["pf-router"].router]
    lo, hi = pf.nat_ports
    with lab("pf-router") as rig:
        pairs = seen_ports(rig)
        assert all(lo <= seen <= hi for _, seen in pairs), pairs
        assert any(local != seen for local, seen in pairs)  # random ports, not the client's own
        assert mss_pair(rig) == (pf.max_mss - 12, pf.max_mss - 12)  # minus the timestamp option
        assert ping(rig.client_netns) and udp_echo(rig.client_netns, b"p") == b"p"
        assert ssh_works(rig) == b"ok\n"
        assert rig.facts["router"] == "pf"


@pytest.mark.parametrize("name", NGN)
def test_ngn_scenarios_keep_ssh_and_ipv6(name):
    """The NGN's scenarios (their outcomes: tests/test_run_lab.py): the SSH control
    connection works through every access, and IPv6 where the scenario says it does."""
    with lab(name) as rig:
        assert ssh_works(rig) == b"ok\n"
        if SCENARIOS[name].expect6.get("tcp") == "delivered":
            connect(rig.client_netns, 80, SERVER6).close()
        assert rig.facts["access"] == SCENARIOS[name].access


def test_every_scenario_has_a_test_here():
    tested = {"pf-router", "healthy", "seed", "outbound-drop", "mtu-blackhole", "local-mtu", "mss-clamp", "transparent-proxy", "rst-inject",
              "edge-filter-icmp", "host-firewall-icmp", "no-listener", "port-set", "fully-random", *NGN,
              "short-tcp-idle",  # in test_nat_lab.py: rig measures its TCP lifetime
              "router-drop-return"}  # in test_trace_run.py and test_trace_probe.py
    assert tested == set(SCENARIOS)
