"""The probes against a real server in a network namespace of their own.

Each test builds its own namespaces (client, server, and optionally a router between
them) joined by veth pairs, starts a tiny server in the server namespace by PID (HTTP
on :80, a "proxy" on :8080, a listener with backlog 1 on :81, an SSH banner on :2222,
an endless trickle on :2223, UDP echo on :7; ICMP is
answered by the kernel), and removes everything afterwards, even on failure.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import uuid

import pytest

from rig.probes import PROBE_KINDS, ProbeResult, run_probes
from rig.probes.records import FRAG_NEEDED, MSG_TOO_LONG, REFUSED, STALLED, TIMED_OUT

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: network namespaces and raw ICMP sockets"),
    pytest.mark.skipif(shutil.which("ip") is None, reason="needs iproute2 (ip)"),
]

LARGE_LEN = 512 * 1024
SERVER = r'''
import http.server, socket, sys, threading
LARGE = bytes(i % 251 for i in range(__LARGE__))

class Site(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        path = self.path.split("?", 1)[0]
        if path.startswith("/rig/n/"):
            body = ("<html><body><p>rig responder</p><p>%s</p></body></html>\n" % path[7:]).encode()
        elif path == "/rig/large.bin":
            body = LARGE
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Rig-Responder", "server")
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass

class Proxy(Site):
    """Answers like a cache in the path: another page, and the headers that betray it."""
    def do_GET(self):
        body = b"<html><body>It works!</body></html>\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Via", "1.1 squid")
        self.send_header("Age", "42")
        self.send_header("X-Cache", "HIT from squid")
        self.end_headers()
        self.wfile.write(body)

def udp_echo():
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind(("0.0.0.0", 7))
    while True:
        data, addr = u.recvfrom(65535)
        u.sendto(data, addr)

http.server.ThreadingHTTPServer.request_queue_size = 128  # like Apache's ListenBacklog
def not_http():
    """Port 2222: whatever connects gets an SSH banner, like a middlebox that is no web server."""
    t = socket.socket()
    t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    t.bind(("0.0.0.0", 2222))
    t.listen(16)
    while True:
        c, _ = t.accept()
        c.sendall(b"SSH-2.0-OpenSSH_9.6\r\n")
        c.close()

def drip():
    """Port 2223: a response that never ends, one byte every 50 ms."""
    import time
    t = socket.socket()
    t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    t.bind(("0.0.0.0", 2223))
    t.listen(16)
    def serve(c):
        try:
            c.recv(4096)
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n")
            while True:
                c.sendall(b".")
                time.sleep(0.05)
        except OSError:
            c.close()
    while True:
        c, _ = t.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()

threading.Thread(target=not_http, daemon=True).start()
threading.Thread(target=drip, daemon=True).start()
site = http.server.ThreadingHTTPServer(("0.0.0.0", 80), Site)
proxy = http.server.ThreadingHTTPServer(("0.0.0.0", 8080), Proxy)
slow = socket.socket()
slow.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
slow.bind(("0.0.0.0", 81))
slow.listen(1)  # never accepted: the accept queue holds 2, then SYNs are dropped
threading.Thread(target=udp_echo, daemon=True).start()
threading.Thread(target=proxy.serve_forever, daemon=True).start()
print("ready", flush=True)
site.serve_forever()
'''.replace("__LARGE__", str(LARGE_LEN))


def sh(*argv: str) -> None:
    r = subprocess.run(argv, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {r.stderr.strip()}")


class Net:
    """Namespaces built for one test; ``close()`` removes them and the server it started."""

    def __init__(self) -> None:
        self.prefix = f"rigp{uuid.uuid4().hex[:6]}"
        self.namespaces: list[str] = []
        self.procs: list[subprocess.Popen] = []
        self.client = self.server = ""
        self.server_addr = ""
        self.routers: tuple[str, ...] = ()

    def ns(self, role: str) -> str:
        name = f"{self.prefix}{role}"
        sh("ip", "netns", "add", name)
        self.namespaces.append(name)
        sh("ip", "-n", name, "link", "set", "lo", "up")
        return name

    def link(self, a: str, a_addr: str, b: str, b_addr: str, mtu_a: int = 1500, mtu_b: int = 1500) -> None:
        n = len(self.namespaces)
        ia, ib = f"v{n}a", f"v{n}b"
        sh("ip", "-n", a, "link", "add", ia, "mtu", str(mtu_a), "type", "veth", "peer", "name", ib,
           "netns", b, "mtu", str(mtu_b))
        sh("ip", "-n", a, "addr", "add", a_addr, "dev", ia)
        sh("ip", "-n", b, "addr", "add", b_addr, "dev", ib)
        sh("ip", "-n", a, "link", "set", ia, "up")
        sh("ip", "-n", b, "link", "set", ib, "up")

    def start_server(self) -> None:
        p = subprocess.Popen(["ip", "netns", "exec", self.server, sys.executable, "-c", SERVER],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        self.procs.append(p)
        ready, _, _ = select.select([p.stdout], [], [], 20)
        line = p.stdout.readline() if ready else b""
        if line.strip() != b"ready":
            raise RuntimeError(f"test server did not start: {p.stderr.read1().decode(errors='replace')}")

    def nft(self, ns: str, script: str) -> None:
        r = subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=script, text=True,
                           capture_output=True)
        if r.returncode != 0:
            raise RuntimeError(f"nft in {ns}: {r.stderr.strip()}")

    def sysctl(self, ns: str, setting: str) -> None:
        sh("ip", "netns", "exec", ns, "sysctl", "-q", "-w", setting)

    def close(self) -> None:
        for p in self.procs:  # only the processes this test started, by PID
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
            for f in (p.stdout, p.stderr):
                f.close()
        for name in reversed(self.namespaces):
            subprocess.run(["ip", "netns", "del", name], capture_output=True)


@pytest.fixture
def net():
    """A factory: net(mtu=..., path_mtu=...) builds the topology and starts the server."""
    built: list[Net] = []

    def build(mtu: int = 1500, path_mtu: int | None = None) -> Net:
        n = Net()
        built.append(n)
        n.client = n.ns("c")
        n.server = n.ns("s")
        if path_mtu is None:
            n.link(n.client, "10.77.0.1/24", n.server, "10.77.0.2/24", mtu, mtu)
            n.server_addr = "10.77.0.2"
        else:
            # client -(1500)- r1 -(path_mtu)- r2 -(1500)- server: an inner link smaller
            # than both ends, as a PPPoE or tunnel hop is
            r1, r2 = n.ns("r1"), n.ns("r2")
            n.link(n.client, "10.77.1.1/24", r1, "10.77.1.254/24")
            n.link(r1, "10.77.2.1/24", r2, "10.77.2.2/24", path_mtu, path_mtu)
            n.link(r2, "10.77.3.254/24", n.server, "10.77.3.2/24")
            for r in (r1, r2):
                n.sysctl(r, "net.ipv4.ip_forward=1")
                n.sysctl(r, "net.ipv4.icmp_ratelimit=0")
            sh("ip", "-n", n.client, "route", "add", "default", "via", "10.77.1.254")
            sh("ip", "-n", r1, "route", "add", "10.77.3.0/24", "via", "10.77.2.2")
            sh("ip", "-n", r2, "route", "add", "10.77.1.0/24", "via", "10.77.2.1")
            sh("ip", "-n", n.server, "route", "add", "default", "via", "10.77.3.254")
            n.server_addr = "10.77.3.2"
            n.routers = (r1, r2)
        n.start_server()
        return n

    try:
        yield build
    finally:
        for n in built:
            n.close()


def by_id(results: list[ProbeResult]) -> dict[str, ProbeResult]:
    return {r.id: r for r in results}


def test_healthy_every_kind_succeeds(net):
    n = net()
    results = run_probes(n.client, n.server_addr, timeout=3.0, burst=8, run_tag="t1")
    r = by_id(results)
    assert [x.kind for x in results] == ["icmp"] * 6 + ["tcp", "http", "large", "udp", "burst"]
    failed = [(x.id, x.error) for x in results if not x.ok]
    assert failed == []
    assert [r[f"icmp-{i}"].seen["size"] for i in range(1, 7)] == [84, 1280, 1400, 1454, 1460, 1500]
    assert all(r[f"icmp-{i}"].seen["reply_from"] == n.server_addr for i in range(1, 7))
    assert len({x.nonce for x in results}) == len(results)
    assert all(x.nonce.startswith("rig-t1-") for x in results)
    # the sockets are tied to the client's address, the TCP state read before close
    assert r["tcp-1"].local.startswith("10.77.0.1:") and r["tcp-1"].tcp.state == "ESTABLISHED"
    assert r["tcp-1"].tcp.snd_mss == 1448 or r["tcp-1"].tcp.snd_mss == 1460
    http = r["http-1"]
    assert http.seen["status"] == 200 and http.seen["body_ok"] is True and http.seen["responder"] == "server"
    assert http.seen["proxy_headers"] == {} and http.seen["headers"]["cache-control"] == "no-store"
    assert http.nonce in http.seen["path"]
    large = r["large-1"]
    assert large.seen["body_bytes"] == large.seen["content_length"] == LARGE_LEN
    assert large.seen["stalled"] is False
    assert r["udp-1"].seen["echoed"] is True and r["udp-1"].local.startswith("10.77.0.1:")
    burst = r["burst-1"].seen
    assert burst["connected"] == 8 and len(set(burst["local_ports"])) == 8
    assert all(c["state"] == "ESTABLISHED" for c in burst["connections"])
    # every record survives probes.jsonl
    assert [ProbeResult.from_dict(json.loads(json.dumps(x.to_dict()))) for x in results] == results


def test_no_listener_is_refused(net):
    n = net()
    results = run_probes(n.client, n.server_addr, ["tcp", "http", "large", "udp", "burst"],
                         timeout=3.0, burst=4, tcp_port=9, udp_port=9)
    for x in results:
        assert not x.ok and x.error == REFUSED, x
    r = by_id(results)
    assert r["tcp-1"].tcp.state == "CLOSE" and r["tcp-1"].local.startswith("10.77.0.1:")
    assert r["burst-1"].seen["refused"] == 4
    assert r["http-1"].seen["connected"] is False


def test_dropped_traffic_times_out_within_one_time_out(net):
    n = net()
    # the seed: SYN-ACKs dropped on the way back; UDP and ICMP dropped on the way in
    n.nft(n.server, """
table inet seed {
  chain out { type filter hook output priority 0; tcp flags & (syn|ack) == syn|ack drop; }
  chain in { type filter hook input priority 0; udp dport 7 drop; icmp type echo-request drop; }
}
""")
    timeout = 1.5
    results = run_probes(n.client, n.server_addr, timeout=timeout, burst=4, icmp_sizes=(84, 1280))
    for x in results:
        assert not x.ok and x.error == TIMED_OUT, x
        assert x.ended - x.started >= timeout * 0.99  # waited the whole time-out, no less
    r = by_id(results)
    assert r["tcp-1"].tcp.state == "SYN_SENT"  # what netstat would have shown: not TIME_WAIT
    assert all(c["state"] == "SYN_SENT" for c in r["burst-1"].seen["connections"])
    assert r["http-1"].seen == {"connected": False, "request_sent": False, "bytes_received": 0,
                                "path": r["http-1"].seen["path"]}
    # the kinds ran at the same time: every probe had started before any had ended
    assert max(x.started for x in results) < min(x.ended for x in results)


def test_df_pings_larger_than_the_local_mtu_cannot_leave(net):
    n = net(mtu=1400)
    results = run_probes(n.client, n.server_addr, ["icmp"], timeout=2.0)
    outcome = {x.seen["size"]: (x.ok, x.error) for x in results}
    assert outcome == {84: (True, None), 1280: (True, None), 1400: (True, None),
                       1454: (False, MSG_TOO_LONG), 1460: (False, MSG_TOO_LONG), 1500: (False, MSG_TOO_LONG)}
    too_big = [x for x in results if not x.ok]
    assert all(x.seen["sent"] is False and x.seen["route_mtu"] == 1400 for x in too_big)


def test_mtu_black_hole_frag_needed_and_large_stall(net):
    n = net(path_mtu=1400)
    # the router on the server's side cannot say "fragmentation needed": a black hole
    n.nft(n.routers[1], """
table inet hole {
  chain out { type filter hook output priority 0; icmp type destination-unreachable icmp code frag-needed drop; }
}
""")
    results = run_probes(n.client, n.server_addr, ["icmp", "http", "large"], timeout=1.5)
    r = by_id(results)
    outcome = {x.seen["size"]: (x.ok, x.error) for x in results if x.kind == "icmp"}
    assert {k: outcome[k] for k in (84, 1280, 1400, 1454)} == {
        84: (True, None), 1280: (True, None), 1400: (True, None), 1454: (False, FRAG_NEEDED)}
    frag = [x for x in results if x.error == FRAG_NEEDED]
    assert all(x.seen["mtu"] == 1400 and x.seen["reply_from"] == "10.77.1.254" for x in frag)
    # once the first frag-needed is in, the kernel knows the path MTU: a later DF echo may
    # already fail at sendto, which says so with the MTU it learned
    for x in results:
        if x.kind == "icmp" and x.seen["size"] > 1454:
            assert x.error in (FRAG_NEEDED, MSG_TOO_LONG)
            if x.error == MSG_TOO_LONG:
                assert x.seen["route_mtu"] == 1400
    # the DF echoes went out after the TCP probes' SYNs, so the path MTU the client
    # learned from them could not shrink the MSS those SYNs announced
    assert min(x.started for x in results if x.kind == "icmp") >= r["large-1"].started
    # the small page passes; the large object's full-size segments vanish: a stall
    assert r["http-1"].ok and r["http-1"].seen["body_ok"]
    large = r["large-1"]
    assert not large.ok and large.error == STALLED and large.seen["stalled"] is True
    assert large.seen["status"] == 200  # the head came through...
    assert large.seen["body_bytes"] < large.seen["content_length"] == LARGE_LEN  # ...the body did not


def test_burst_against_a_small_backlog(net):
    n = net()
    n.sysctl(n.server, "net.ipv4.tcp_syncookies=0")  # a full queue drops SYNs instead of cookies
    results = run_probes(n.client, n.server_addr, ["burst"], timeout=1.5, burst=8, tcp_port=81)
    b = results[0]
    assert not b.ok and b.error == TIMED_OUT
    s = b.seen
    assert 1 <= s["connected"] <= 2  # listen(1): the accept queue holds two
    assert s["timed_out"] == 8 - s["connected"] and s["refused"] == 0
    assert len(set(s["local_ports"])) == 8
    assert sorted(c["state"] for c in s["connections"] if c["result"] == TIMED_OUT) == ["SYN_SENT"] * s["timed_out"]


def test_a_proxy_answering_is_visible_in_what_the_client_saw(net):
    n = net()
    (h,) = run_probes(n.client, n.server_addr, ["http"], timeout=2.0, tcp_port=8080)
    assert h.ok and h.seen["status"] == 200  # "it works" — the seed's confound
    assert h.seen["body_ok"] is False and h.seen["responder"] is None
    assert set(h.seen["proxy_headers"]) == {"via", "age", "x-cache"}


def test_missing_namespace_raises():
    from rig.errors import InfraError

    with pytest.raises(InfraError, match="does not exist"):
        run_probes("rigp-no-such-ns", "10.77.0.2", PROBE_KINDS)


def test_path_mtu_discovery_that_works_is_no_stall(net):
    n = net(path_mtu=1400)  # frag-needed reaches the server: it shrinks its segments
    (large,) = run_probes(n.client, n.server_addr, ["large"], timeout=3.0)
    assert large.ok and large.seen["body_bytes"] == LARGE_LEN


def test_burst_beyond_the_open_file_limit_is_recorded_not_raised(net):
    import resource

    n = net()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    used = len(os.listdir("/proc/self/fd"))
    resource.setrlimit(resource.RLIMIT_NOFILE, (used + 8, hard))
    try:
        (b,) = run_probes(n.client, n.server_addr, ["burst"], timeout=2.0, burst=16)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    s = b.seen
    assert not b.ok and 0 < s["connected"] < 16
    assert s["outcomes"].get("too many open files", 0) == 16 - s["connected"]


def test_unprivileged_ping_socket_sees_replies_and_frag_needed(net):
    from rig.netns import in_netns
    from rig.probes.icmp import probe_icmp
    from rig.probes.records import make_nonce

    n = net(path_mtu=1400)
    echoes = [(f"icmp-{i}", make_nonce("p", f"icmp-{i}"), size) for i, size in enumerate((84, 1400, 1454), 1)]
    # a fresh namespace allows no group to open ping sockets: recorded, nothing sent
    denied = in_netns(n.client, probe_icmp, echoes, n.server_addr, 1.0, "ping")
    assert [(x.ok, x.error, x.seen["sent"]) for x in denied] == [(False, "permission denied", False)] * 3
    n.sysctl(n.client, "net.ipv4.ping_group_range=0 0")
    got = in_netns(n.client, probe_icmp, echoes, n.server_addr, 2.0, "ping")
    assert [(x.ok, x.error) for x in got] == [(True, None), (True, None), (False, FRAG_NEEDED)]
    assert got[0].seen["reply_from"] == n.server_addr and got[0].seen["reply_ttl"] == 62
    assert got[2].seen["mtu"] == 1400 and got[2].seen["reply_from"] == "10.77.1.254"


def test_an_answer_that_is_not_http_is_a_bad_response(net):
    from rig.probes.records import BAD_RESPONSE

    n = net()
    (h,) = run_probes(n.client, n.server_addr, ["http"], timeout=2.0, tcp_port=2222)
    assert not h.ok and h.error == BAD_RESPONSE
    assert h.seen["connected"] and "SSH-2.0" in h.seen["malformed"]


def test_a_response_that_trickles_forever_is_cut_at_its_budget(net, monkeypatch):
    from rig.probes import http
    from rig.probes.records import TOO_SLOW

    monkeypatch.setattr(http, "BUDGET_TIMEOUTS", 2)
    n = net()
    (large,) = run_probes(n.client, n.server_addr, ["large"], timeout=0.5, tcp_port=2223)
    assert not large.ok and large.error == TOO_SLOW
    assert large.seen["stalled"] is False and 0 < large.seen["body_bytes"] < large.seen["content_length"]


def test_large_udp_is_fragmented_and_needs_every_fragment(net):
    """The large-udp probe leaves in fragments (no DF: a smaller link fragments it again)
    and is echoed whole; a router that drops non-first fragments (a MAP-E BR) loses it."""
    n = net(path_mtu=1400)
    r = by_id(run_probes(n.client, n.server_addr, ["udp", "large-udp"], timeout=1.5))
    big = r["large-udp-1"]
    assert big.kind == "large-udp" and big.ok and big.seen["echoed"] is True
    assert big.seen["bytes_sent"] == big.seen["bytes_received"] > 1500
    n.nft(n.routers[1], """
table ip frags {
  chain later { type filter hook forward priority 0; ip frag-off & 0x1fff != 0 drop; }
}
""")
    r = by_id(run_probes(n.client, n.server_addr, ["udp", "large-udp"], timeout=1.5))
    assert r["udp-1"].ok  # the small datagram still passes
    assert (r["large-udp-1"].ok, r["large-udp-1"].error) == (False, TIMED_OUT)
