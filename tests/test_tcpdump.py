"""tcpdump control: local in a namespace and remote over SSH, readiness, flush, counters."""

import os
import socket
import subprocess

import pytest

from _sshd import missing_tools, sshd  # noqa: F401 (sshd is a fixture)
from rig.capture.tcpdump import (LocalCapture, RemoteCapture, parse_stats, ssh_exclusion, start_all,
                                 stop_all, tcpdump_argv)
from rig.errors import InfraError
from rig.netns import in_netns
from rig.sshclient import SSHClient

RECORDED_STDERR = """tcpdump: listening on eth0, link-type EN10MB (Ethernet), snapshot length 262144 bytes
^C42 packets captured
45 packets received by filter
3 packets dropped by kernel
"""


def test_parse_stats_recorded():
    assert parse_stats(RECORDED_STDERR) == {"captured": 42, "received by filter": 45, "dropped by kernel": 3}
    assert parse_stats("tcpdump: eth9: No such device exists\n") == {}


def test_argv_has_the_measured_flags():
    argv = tcpdump_argv("eth0", "/tmp/x.pcap", "not tcp port 22")
    assert argv == ["tcpdump", "-i", "eth0", "-U", "--immediate-mode", "-n", "-s", "65535", "-B", "32768", "-w",
                    "/tmp/x.pcap", "not tcp port 22"]


pytestmark_root = pytest.mark.skipif(
    os.geteuid() != 0 or bool(missing_tools("tcpdump", "sshd", "unshare")),
    reason="needs root, tcpdump, sshd, unshare")


def _send_udp(n: int, port: int = 9) -> None:
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for i in range(n):
        u.sendto(b"rig%04d" % i, ("127.0.0.1", port))
    u.close()


def _count(path, bpf=""):
    out = subprocess.run(["tcpdump", "-n", "-r", str(path), *([bpf] if bpf else [])],
                         capture_output=True, text=True, check=True).stdout
    return len(out.splitlines())


@pytest.mark.root
@pytestmark_root
def test_local_and_remote_capture_everything_up_to_stop(sshd, tmp_path):
    with SSHClient(sshd.endpoint) as ssh:
        caps = [LocalCapture("client", "lo", str(tmp_path / "client.pcap"), ssh_exclusion(22), sshd.ns),
                RemoteCapture("server", "lo", str(tmp_path / "server.pcap"), ssh, ssh_exclusion(22))]
        start_all(caps)
        in_netns(sshd.ns, _send_udp, 7)  # the last datagram goes out right before stop
        results = stop_all(caps)
        leftovers = ssh.run(["sh", "-c", "ls -d /tmp/rig-cap.* 2>/dev/null || true"]).stdout
    for r in results:
        # 7 datagrams + 7 port-unreachables, none lost at stop (--immediate-mode, SIGINT flush)
        assert r.packets == 14, r.stderr
        assert r.kernel_drops == 0
        assert _count(r.file, "udp port 9") == 7
        # rig's own SSH control connection is excluded
        assert _count(r.file, "tcp port 22") == 0
        # the window rig records: every packet was captured between listening and the stop
        # request (one clock: the namespace shares this machine's)
        from rig.capture import read_capture

        ts = read_capture(r.file).packets["ts_ns"]
        assert r.listening_ns <= int(ts.min()) and int(ts.max()) <= r.stop_ns, (r.listening_ns, r.stop_ns)
    assert caps[1].remote_dir not in leftovers


@pytest.mark.root
@pytestmark_root
def test_bad_interface_is_one_clear_error(sshd, tmp_path):
    cap = LocalCapture("client", "nosuch0", str(tmp_path / "c.pcap"), netns=sshd.ns)
    with pytest.raises(InfraError, match="capture at client did not start.*nosuch0"):
        cap.start()
    assert cap.proc.poll() is not None
    with SSHClient(sshd.endpoint) as ssh:
        rcap = RemoteCapture("server", "nosuch0", str(tmp_path / "s.pcap"), ssh)
        with pytest.raises(InfraError, match="remote capture at server did not start.*nosuch0"):
            start_all([rcap])


def test_latest_statistics_and_unwritten():
    # SIGUSR1 answers while tcpdump still has packets in its ring, then the final block
    text = ("tcpdump: listening on eth0\n3 packets captured\n9 packets received by filter\n0 packets dropped by kernel\n"
            "9 packets captured\n9 packets received by filter\n0 packets dropped by kernel\n")
    from rig.capture.tcpdump import _result, unwritten
    assert parse_stats(text)["captured"] == 9
    assert unwritten(parse_stats(text.split("9 packets captured")[0])) == 6
    assert unwritten(parse_stats(text)) == 0
    # a capture stopped before it wrote everything: the rest counts as lost there
    early = "0 packets captured\n28 packets received by filter\n1 packet dropped by kernel\n"
    assert _result("client", "x", early, drained=False).kernel_drops == 28
    assert _result("client", "x", early, drained=True).kernel_drops == 1
