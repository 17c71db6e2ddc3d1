"""Probes the client's kernel refused to send (issue 16 item 10): typed on the probe record,
carried by the verdict's ``not_sent``, counted by the diagnosis, shown by the table and
the report; and the path MTU a frag-needed reports, typed on the exchange."""

from __future__ import annotations

import io
import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest
from rich.console import Console

from rig.analysis.diagnosis import diagnose
from rig.analysis.unsent import not_sent_in_records, not_sent_of, reason, with_probes
from rig.errors import InputError
from rig.netns import in_netns
from rig.probes.icmp import interface_mtu, probe_icmp
from rig.probes.records import FORMAT as PROBE_FORMAT
from rig.probes.records import MSG_TOO_LONG, NET_UNREACHABLE, NotSent, ProbeResult
from rig.probes.tcp import probe_tcp
from rig.probes.udp import probe_udp
from rig.render import print_verdict
from rig.report.html import render_report
from rig.verdict import CapturePointInfo, Exchange, NotSentProbe, Verdict

SERVER = "198.51.100.10"
BIG = NotSentProbe("icmp-6", "icmp", SERVER, 1500, MSG_TOO_LONG, 1454, "larger than the local interface MTU 1454")


def _x(i: int, outcome: str = "delivered", proto: str = "icmp", path_mtu: int | None = None) -> Exchange:
    return Exchange(f"{proto}-{i}", proto, "192.168.1.10", SERVER, None, outcome, "words", path_mtu=path_mtu)


def _verdict(xs, not_sent=None) -> Verdict:
    return Verdict((CapturePointInfo("client", "client.pcap", 10, 0, 0),), tuple(xs), diagnose(xs, not_sent or ()),
                   not_sent)


def _probe(pid: str, size: int, not_sent: NotSent | None = None) -> ProbeResult:
    return ProbeResult("icmp", pid, SERVER, f"rig-{pid}", 1.0, 2.0, not_sent is None,
                       None if not_sent is None else not_sent.error, "192.168.1.10",
                       seen={"size": size, "df": True, "sent": not_sent is None}, not_sent=not_sent)


# -- the probe record


def test_the_record_keeps_not_sent_through_json():
    p = _probe("icmp-6", 1500, NotSent(MSG_TOO_LONG, 1500, 1454))
    d = json.loads(json.dumps(p.to_dict()))
    assert d["not_sent"] == {"error": MSG_TOO_LONG, "size": 1500, "local_mtu": 1454}
    assert ProbeResult.from_dict(d) == p
    assert ProbeResult.from_dict(_probe("icmp-1", 84).to_dict()).not_sent is None


def test_a_record_written_before_not_sent_existed_still_says_so():
    d = _probe("icmp-6", 1500, NotSent(MSG_TOO_LONG, 1500, 1454)).to_dict()
    del d["not_sent"]
    d["seen"] = {"size": 1500, "df": True, "sent": False, "route_mtu": 1454}  # the cached path MTU, not the interface's
    assert ProbeResult.from_dict(d).not_sent == NotSent(MSG_TOO_LONG, 1500, None)


# -- the verdict entry, from the records


def test_reasons_are_short_facts():
    assert reason(NotSent(MSG_TOO_LONG, 1500, 1454)) == "larger than the local interface MTU 1454"
    assert reason(NotSent(MSG_TOO_LONG, 1500)) == "larger than the client's kernel would send (message too long)"
    assert reason(NotSent(NET_UNREACHABLE)) == "the client's kernel refused to send it (network unreachable)"


def test_with_probes_lists_the_unsent_and_counts_them():
    probes = [_probe("icmp-1", 84), _probe("icmp-2", 1460), _probe("icmp-6", 1500, NotSent(MSG_TOO_LONG, 1500, 1454)),
              ProbeResult("tcp", "tcp-1", f"{SERVER}:80", "n", 1.0, 1.0, False, NET_UNREACHABLE,
                          not_sent=NotSent(NET_UNREACHABLE))]
    xs = [_x(1), _x(2, "lost-outbound", path_mtu=1454)]
    v = with_probes(_verdict(xs), not_sent_of(probes))
    assert v.not_sent == (BIG, NotSentProbe("tcp-1", "tcp", f"{SERVER}:80", None, NET_UNREACHABLE, None,
                                            "the client's kernel refused to send it (network unreachable)"))
    assert v.diagnosis.summary == (
        "ICMP (1 of 3) requests are lost between the client and the server; "
        "a router reports a path MTU of 1454 for larger packets; "
        "1 TCP connection was not sent: the client's kernel refused to send it (network unreachable); "
        "1 ICMP echo (1500 bytes) was not sent: larger than the local interface MTU 1454")
    assert v.diagnosis.by_protocol == {"icmp": {"delivered": 1, "lost-outbound": 1}}  # outcomes of exchanges only
    # every probe sent: an empty list (a fact), and the diagnosis as the analysis wrote it
    clean = _verdict(xs)
    v2 = with_probes(clean, not_sent_of(probes[:2]))
    assert v2.not_sent == () and v2.diagnosis == clean.diagnosis
    assert v2.to_dict()["not_sent"] == []


def test_a_bundles_records_give_the_same_entries_reading_only_what_they_need():
    big = _probe("icmp-6", 1500, NotSent(MSG_TOO_LONG, 1500, 1454)).to_dict()
    partial = {**_probe("tcp-1", 0).to_dict(), "tcp": {"state": "SYN_SENT"}}  # a hand-made record: no full TcpState
    lines = [big, partial, {"kind": "note", "text": "not a probe record"}]
    assert not_sent_in_records(lines) == (BIG,) == not_sent_of([ProbeResult.from_dict(big)])
    assert big["format"] == PROBE_FORMAT
    with pytest.raises(InputError, match="icmp-6"):
        not_sent_in_records([{k: v for k, v in big.items() if k != "target"}])


# -- the verdict JSON (rig.verdict/1, additive keys)


def test_not_sent_and_path_mtu_round_trip_and_stay_out_when_unknown():
    v = _verdict([_x(1), _x(2, "lost-outbound", path_mtu=1454)], (BIG,))
    d = json.loads(v.to_json())
    assert d["not_sent"] == [{"id": "icmp-6", "protocol": "icmp", "target": SERVER, "size": 1500,
                              "error": MSG_TOO_LONG, "local_mtu": 1454, "reason": "larger than the local interface MTU 1454"}]
    assert [e.get("path_mtu") for e in d["exchanges"]] == [None, 1454]
    assert "path_mtu" not in d["exchanges"][0]  # only where a frag-needed reported one
    assert Verdict.from_json(v.to_json()) == v
    plain = _verdict([_x(1)])  # rig diff: no probe records, so nothing is known about unsent probes
    assert "not_sent" not in plain.to_dict() and Verdict.from_dict(plain.to_dict()).not_sent is None


def test_a_large_verdict_written_a_piece_at_a_time_keeps_not_sent():
    v = _verdict([_x(i) for i in range(1, 600)], (BIG,))
    out = io.StringIO()
    v.write_json(out)
    assert json.loads(out.getvalue())["not_sent"] == [BIG.to_dict()]


# -- the diagnosis


def test_the_path_mtu_is_a_typed_fact_not_words_found_in_an_explanation():
    d = diagnose([_x(1), _x(2, "lost-outbound", path_mtu=1454), _x(3, "lost-outbound", path_mtu=1454)])
    assert "a router reports a path MTU of 1454 for larger packets" in d.summary
    d = diagnose([_x(1), Exchange("icmp-2", "icmp", "c", "s", None, "lost-outbound", "next-hop MTU 1454")])
    assert "path MTU" not in d.summary


def test_a_clean_path_with_probes_that_could_not_leave():
    two = (BIG, NotSentProbe("icmp-5", "icmp", SERVER, 1460, MSG_TOO_LONG, 1454, BIG.reason))
    d = diagnose([_x(1), _x(2, proto="tcp")], two)
    assert d.summary == ("Every exchange (2) was delivered both ways: the path is clean; "
                         "2 ICMP echoes (1460, 1500 bytes) were not sent: larger than the local interface MTU 1454")
    assert diagnose([], (BIG,)).summary.endswith("; 1 ICMP echo (1500 bytes) was not sent: "
                                                 "larger than the local interface MTU 1454")


# -- the table view and the report


def test_the_table_shows_the_unsent_probes():
    buf = io.StringIO()
    print_verdict(_verdict([_x(1)], (BIG,)), Console(file=buf, width=200, color_system=None))
    out = buf.getvalue()
    assert "Not sent" in out
    row = next(line for line in out.splitlines() if "icmp-6" in line)
    for word in ("icmp", SERVER, "1500 bytes", "larger than the local interface MTU 1454"):
        assert word in row, word
    buf = io.StringIO()
    print_verdict(_verdict([_x(1)], ()), Console(file=buf, width=200, color_system=None))
    assert "Not sent" not in buf.getvalue()


def test_the_report_shows_the_unsent_probes():
    html = render_report(_verdict([_x(1)], (BIG,)).to_dict())
    assert ('<tr><td>icmp-6</td><td>icmp</td><td>198.51.100.10</td><td>1500 bytes</td>'
            '<td>larger than the local interface MTU 1454</td></tr>') in html
    assert 'id="not-sent"' not in render_report(_verdict([_x(1)], ()).to_dict())


# -- the probes, in a namespace of our own (nothing leaves it: every send is refused)

root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces")


@pytest.fixture
def small_ns():
    """A namespace whose only way out is a veth with MTU 1454 whose peer is in the same
    namespace, with no address (this machine's kernel has no dummy interfaces)."""
    name = f"rigt{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        for cmd in (["link", "add", "d0", "type", "veth", "peer", "name", "d1"], ["link", "set", "d1", "up"],
                    ["link", "set", "d0", "mtu", "1454", "up"],
                    ["addr", "add", "10.99.0.1/24", "dev", "d0"], ["route", "add", "default", "dev", "d0"]):
            subprocess.run(["ip", "-n", name, *cmd], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=True)


@pytest.fixture
def empty_ns():
    """A namespace with loopback alone: no route to anything."""
    name = f"rigt{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
    yield name
    subprocess.run(["ip", "netns", "del", name], check=True)


@root
def test_interface_mtu_is_the_mtu_of_the_interface_holding_the_source(small_ns):
    assert in_netns(small_ns, interface_mtu, "10.99.0.1") == 1454
    assert in_netns(small_ns, interface_mtu, "10.99.0.2") is None
    assert interface_mtu(None) is None
    assert interface_mtu("127.0.0.1") == int(Path("/sys/class/net/lo/mtu").read_text())


@root
def test_df_echoes_larger_than_the_interface_are_not_sent(small_ns):
    echoes = [("icmp-5", "rig-t-icmp-5", 1460), ("icmp-6", "rig-t-icmp-6", 1500)]
    results = in_netns(small_ns, probe_icmp, echoes, SERVER, 0.2)
    assert [r.not_sent for r in results] == [NotSent(MSG_TOO_LONG, 1460, 1454), NotSent(MSG_TOO_LONG, 1500, 1454)]
    assert all(not r.ok and r.error == MSG_TOO_LONG and r.seen["sent"] is False for r in results)


@root
def test_tcp_and_udp_with_no_route_are_not_sent(empty_ns):
    tcp = in_netns(empty_ns, probe_tcp, "tcp-1", "n", SERVER, 80, 0.5)
    udp = in_netns(empty_ns, probe_udp, "udp-1", "n", SERVER, 7, 0.5)
    assert tcp.not_sent == NotSent(NET_UNREACHABLE) and udp.not_sent == NotSent(NET_UNREACHABLE)
    assert not_sent_of([tcp, udp]) == (
        NotSentProbe("tcp-1", "tcp", f"{SERVER}:80", None, NET_UNREACHABLE, None, reason(NotSent(NET_UNREACHABLE))),
        NotSentProbe("udp-1", "udp", f"{SERVER}:7", None, NET_UNREACHABLE, None, reason(NotSent(NET_UNREACHABLE))))

