"""The report: self-contained HTML rendered in headless Chromium; the lost SYN-ACK of the
seed is drawn as lost; the ladder follows packets across points."""

import json
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests._runhelp import lab_skip_reason
from rig.capture import read_capture
from rig.capture.synth import ACK, SYN, Path as SynthPath, Pkt
from rig.report.html import render_report
from rig.report.ladder import build_ladder
from test_bundle_show import make_seed_bundle

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class Packets(HTMLParser):
    """Collects the ladder's packet groups (<g class="pkt ...">) and the diagnosis text."""

    def __init__(self):
        super().__init__()
        self.pkts: list[dict] = []
        self.diagnosis = ""
        self._in_diag = False
        self._stack: list[dict | None] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        cls = (a.get("class") or "").split()
        if tag == "g" and "pkt" in cls:
            rec = {"classes": set(cls), "label": a.get("data-label", ""), "marks": 0}
            self.pkts.append(rec)
            self._stack.append(rec)
        elif tag == "g":
            if "lost-mark" in cls and self._stack and self._stack[-1] is not None:
                self._stack[-1]["marks"] += 1
            self._stack.append(None)
        if a.get("id") == "diagnosis":
            self._in_diag = True

    def handle_endtag(self, tag):
        if tag == "g" and self._stack:
            self._stack.pop()
        if tag == "p":
            self._in_diag = False

    def handle_data(self, data):
        if self._in_diag:
            self.diagnosis += data


def render_in_chromium(html_file: Path, png: Path, tmp: Path, width: int = 900) -> str:
    """Load the file in headless Chromium (no network), screenshot it, return the DOM."""
    argv = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
        f"--user-data-dir={tmp / 'chromium-profile'}", f"--window-size={width},1800", f"--screenshot={png}",
        "--dump-dom", html_file.resolve().as_uri(),
    ]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=tmp)
    assert p.returncode == 0, p.stderr[-2000:]
    assert png.exists() and png.read_bytes()[:4] == b"\x89PNG"
    return p.stdout


def assert_seed_drawn(dom: str, ipv6_passes: bool = False) -> None:
    """The seed's ladder: SYN-ACKs lost on the way back; with ``ipv6_passes`` (the lab's
    dual-stack server) only IPv4's, and the IPv6 SYN-ACKs are drawn delivered."""
    parsed = Packets()
    parsed.feed(dom)
    # (in the lab, whose server is dual-stack, the diagnosis says first that IPv6 passes)
    assert "TCP replies are lost between the server and the client" in parsed.diagnosis
    synacks = [p for p in parsed.pkts if p["label"].startswith("SYN-ACK")]
    assert synacks, "no SYN-ACK in the ladder"
    lost = [p for p in synacks if "lost" in p["classes"]]
    assert all("back" in p["classes"] and p["marks"] == 1 for p in lost)
    assert lost == synacks if not ipv6_passes else 0 < len(lost) < len(synacks)
    syns = [p for p in parsed.pkts if p["label"] == "SYN"]
    assert syns and all("lost" not in p["classes"] and "out" in p["classes"] for p in syns)


def assert_self_contained(html: str) -> None:
    assert not re.search(r"https?://", html), "a URL in the report"
    assert not re.search(r"<(script|link|img|iframe|object)\b", html, re.I)
    assert not re.search(r"url\((?!#)", html) and "@import" not in html


# --------------------------------------------------------------------------- unit


def _caps(tmp_path, build):
    path = SynthPath()
    build(path)
    c, s = path.write(tmp_path)
    return {"client": read_capture(str(c)).packets, "server": read_capture(str(s)).packets}


def test_ladder_of_the_seed(tmp_path):
    v = make_seed_bundle(tmp_path / "b")
    tables = {p: read_capture(str(tmp_path / "b/captures" / f"{p}.pcap")).packets for p in ("client", "server")}
    tcp = next(x for x in v["exchanges"] if x["id"] == "tcp-1")
    lad = build_ladder(tcp, tables, {"server": 3.0})
    assert lad.points == ("client", "server")
    labels = [(a.label, a.direction, a.lost_after, a.from_middlebox) for a in lad.arrows]
    assert labels.count(("SYN", "out", None, False)) == 3
    assert labels.count(("SYN-ACK", "back", "server", False)) == 3
    assert len(labels) == 6
    # replies never come before their request in the drawing (clock offset applied)
    assert lad.arrows[0].label == "SYN"


def test_ladder_draws_a_middlebox_answer_from_the_path(tmp_path):
    def proxy(path):
        s = path.out(path.syn(40400, 5000), arrive=False)  # the SYN never reaches the server
        # ... yet the client gets a SYN-ACK: a transparent proxy answered
        path.at_client(Pkt(path.server, path.client, 6, sport=80, dport=40400, seq=777, ack=5001, flags=SYN | ACK,
                           ttl=63, mss=1460))
        del s

    tables = _caps(tmp_path, proxy)
    ex = {"id": "tcp-1", "protocol": "tcp", "client": "192.168.1.10:40400", "server": "198.51.100.10:80",
          "seen_at_server_as": None, "outcome": "answered-by-middlebox", "frames": {"client": [1, 2]}}
    lad = build_ladder(ex, tables)
    syn, synack = lad.arrows
    assert syn.label == "SYN" and syn.lost_after == "client"
    assert synack.label == "SYN-ACK" and synack.from_middlebox and not synack.lost
    html = render_report({"format": "rig.verdict/1", "capture_points": [], "exchanges": [ex],
                          "diagnosis": {"summary": "a middlebox answered", "by_protocol": {}}}, captures=tables)
    assert 'class="pkt back middlebox"' in html and 'class="pkt out lost"' in html


def test_report_without_captures_still_renders(tmp_path):
    v = make_seed_bundle(tmp_path / "b")
    html = render_report(v, manifest={"status": "path-problem", "id": "x"}, probes=[], captures=None)
    assert "evidence only" in html and v["diagnosis"]["summary"].split(" —")[0] in html
    assert_self_contained(html)
    failed = render_report({}, manifest={"status": "failed", "error": "provision: credentials expired"})
    assert "The run failed: provision: credentials expired" in failed


def test_exchanges_are_listed_worst_first():
    order = ["delivered", "a-new-outcome", "lost-outbound", "lost-return", "incomplete", "unanswered"]
    ex = [{"id": f"tcp-{i}", "protocol": "tcp", "client": f"192.168.1.10:{40310 + i}", "server": "198.51.100.10:80",
           "seen_at_server_as": None, "outcome": o, "explanation": "", "changes": [], "evidence": []}
          for i, o in enumerate(order)]
    html = render_report({"format": "rig.verdict/1", "capture_points": [], "exchanges": ex,
                          "diagnosis": {"summary": "s", "by_protocol": {}}}, captures=None)
    listed = re.findall(r'<section class="ex" id="ex-tcp-\d+" data-outcome="([^"]+)">', html)
    # an outcome this rig does not know goes after every known problem, before the delivered ones
    assert listed == ["lost-return", "lost-outbound", "unanswered", "incomplete", "a-new-outcome", "delivered"]


# --------------------------------------------------------------------------- chromium


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (make system installs it)")
def test_report_in_chromium_synthetic_seed(tmp_path):
    b = tmp_path / "20261126T000000Z-seed"
    make_seed_bundle(b)
    html = (b / "report.html").read_text()
    assert_self_contained(html)
    ARTIFACTS.mkdir(exist_ok=True)
    dom = render_in_chromium(b / "report.html", ARTIFACTS / "report-seed-synthetic.png", tmp_path)
    assert_seed_drawn(dom)
    render_in_chromium(b / "report.html", ARTIFACTS / "report-seed-synthetic-phone.png", tmp_path, width=390)


def _lab_ready() -> str | None:
    """The lab needs root and its tools (tests._runhelp); this check needs chromium too."""
    reason = lab_skip_reason()
    if reason is None and CHROMIUM is None:
        return "chromium not installed"
    return reason


@pytest.mark.root
@pytest.mark.lab
@pytest.mark.slow
@pytest.mark.skipif(_lab_ready() is not None, reason=str(_lab_ready()))
def test_lab_seed_run_report_and_round_trip(tmp_path):
    out = tmp_path / "seed-run"
    p = subprocess.run([sys.executable, "-m", "rig", "run", "--scenario", "seed", "--out", str(out), "--json"],
                       capture_output=True, text=True, timeout=240)
    assert p.returncode == 1, p.stderr[-2000:]  # the seed is a path problem
    run_verdict = json.loads(p.stdout)
    m = json.loads((out / "manifest.json").read_text())
    assert m["status"] == "path-problem" and m["report_error"] is None
    assert {"captures/client.pcap", "captures/server.pcap", "probes.jsonl", "verdict.json", "report.html"} <= set(m["files"])
    assert not any("key" in f and "known" not in f for f in m["files"]), m["files"]
    everything = b"".join(f.read_bytes() for f in out.rglob("*") if f.is_file())
    assert b"PRIVATE KEY" not in everything
    # the report in a real browser: the diagnosis, and the lost SYN-ACKs drawn as lost
    ARTIFACTS.mkdir(exist_ok=True)
    dom = render_in_chromium(out / "report.html", ARTIFACTS / "report-seed-lab.png", tmp_path)
    assert_seed_drawn(dom, ipv6_passes=True)
    assert_self_contained((out / "report.html").read_text())
    # round trip: rig show on the directory and on the archive gives the run's verdict
    from rig.bundle import archive

    for target in (out, archive(out)):
        s = subprocess.run([sys.executable, "-m", "rig", "show", str(target), "--json"], capture_output=True, text=True)
        assert s.returncode == 1, s.stderr
        assert json.loads(s.stdout) == run_verdict


def test_ladder_with_a_router_column(tmp_path):
    """Three capture points: the SYN-ACK seen at the server and the router but not the
    client vanished between the router and the client."""
    v = make_seed_bundle(tmp_path / "b")
    caps = {p: read_capture(str(tmp_path / "b/captures" / f"{p}.pcap")).packets for p in ("client", "server")}
    tables = {**caps, "router": caps["server"]}
    tcp = dict(next(x for x in v["exchanges"] if x["id"] == "tcp-1"))
    tcp["frames"] = {**tcp["frames"], "router": tcp["frames"]["server"]}
    lad = build_ladder(tcp, tables)
    assert lad.points == ("client", "router", "server")
    synacks = [a for a in lad.arrows if a.label == "SYN-ACK"]
    assert len(synacks) == 3 and all(a.lost_after == "router" and not a.from_middlebox for a in synacks)
    assert all(not a.lost and dict(a.seen).keys() == {"client", "router", "server"} for a in lad.arrows if a.label == "SYN")


def test_each_exchange_gets_its_own_probe():
    from rig.report.html import _probe_for

    def icmp(i):  # the evidence's words are not read: the echo's id and seq are
        return {"id": f"icmp-{i}", "protocol": "icmp", "client": "192.168.1.10", "outcome": "delivered",
                "echo": {"id": 4689, "seq": i}, "evidence": [{"point": "client", "frame": i, "summary": ""}]}

    probes = [{"id": f"icmp-{i}", "kind": "icmp", "local": "192.168.1.10", "ok": True, "seen": {"ident": 4689, "seq": i}}
              for i in (1, 2, 10)]
    probes.append({"id": "tcp-1", "kind": "tcp", "local": "192.168.1.10:40312", "ok": False})
    probes.append({"id": "burst-1", "kind": "burst", "local": None, "ok": False,
                   "seen": {"connections": [{"local": "192.168.1.10:40026", "result": "timed out", "state": "SYN_SENT"}]}})
    assert [p["id"] for p in _probe_for(icmp(1), probes)] == ["icmp-1"]
    assert [p["id"] for p in _probe_for(icmp(10), probes)] == ["icmp-10"]
    tcp = {"id": "tcp-1", "protocol": "tcp", "client": "192.168.1.10:40312"}
    assert [p["id"] for p in _probe_for(tcp, probes)] == ["tcp-1"]
    [b] = _probe_for({"id": "tcp-9", "protocol": "tcp", "client": "192.168.1.10:40026"}, probes)
    assert b["id"] == "burst-1 (one of the burst)" and b["tcp"]["state"] == "SYN_SENT" and b["ok"] is False
    # a verdict from before ``echo``: which probe is unknown, never guessed from the words
    old = {k: v for k, v in icmp(2).items() if k != "echo"}
    old["evidence"] = [{"point": "client", "frame": 2, "summary": "192.168.1.10 > 198.51.100.10 ICMP echo request id 4689 seq 2 ttl 64"}]
    assert _probe_for(old, probes) == []
    assert [p["id"] for p in _probe_for({**icmp(2), "echo": {"id": 1, "seq": 2}}, probes)] == []  # another pinger's


def test_long_exchanges_are_condensed_keeping_every_loss():
    from rig.report.ladder import Arrow, condense

    arrows = tuple(Arrow("back", f"ACK len=1448 #{i}", (("server", i),), i / 1000,
                         "server" if i in (100, 101, 250) else None, False) for i in range(400))
    rows = condense(arrows, max_rows=40)
    drawn = [r for r in rows if isinstance(r, Arrow)]
    gaps = [r for r in rows if isinstance(r, tuple)]
    assert len(drawn) <= 40 and {a.label for a in drawn if a.lost} == {"ACK len=1448 #100", "ACK len=1448 #101",
                                                                         "ACK len=1448 #250"}
    assert len(drawn) + sum(n for n, _ in gaps) == 400 and sum(k for _, k in gaps) == 0
    assert drawn[0].label.endswith("#0") and drawn[-1].label.endswith("#399")
    assert condense(arrows[:10]) == list(arrows[:10])


def test_nat_table_says_when_ports_are_rewritten():
    def ex(i, cport, sport, outcome="delivered"):
        return {"id": f"tcp-{i}", "protocol": "tcp", "client": f"192.168.1.10:{cport}", "server": "198.51.100.10:80",
                "seen_at_server_as": f"203.0.113.2:{sport}", "outcome": outcome, "explanation": "",
                "changes": [{"field": "ip.ttl", "direction": "out", "client": 64, "server": 61, "note": "3 hops"}]}

    v = {"format": "rig.verdict/1", "capture_points": [], "exchanges": [ex(1, 40000, 40000), ex(2, 40002, 1025)],
         "diagnosis": {"summary": "ok", "by_protocol": {"tcp": {"delivered": 2}}}}
    html = render_report(v)
    assert "rewritten in 1 of 2 (40002→1025)" in html
    changed = html[html.index('id="changed"'):]
    assert changed.count("<code>ip.ttl</code>") == 1 and "tcp-1, tcp-2" in changed  # one row for the same change


def test_ladder_matches_tso_frames_to_segments_and_follows_isn_rewrites(tmp_path):
    """The server sends one 4344-byte TSO frame, the client sees three 1448-byte segments;
    a pf-style NAT shifts the client's sequence numbers. Nothing is lost or injected."""
    from rig.capture.synth import tcp_seg

    def build(path):
        path.isn_delta_out = 12345
        syn = path.out(path.syn(40500, 1000))
        sa = path.synack(syn, 9000)
        path.back(sa)
        path.out(tcp_seg(path.client, path.server, 40500, 80, 1001, 9001, b"GET / HTTP/1.1\r\n\r\n"))
        body = bytes(range(256)) * 17  # 4352 bytes
        big = tcp_seg(path.server, path.public, 80, 40500, 9001, 1001 + 12345 + 18, body[:4344])
        segs = [tcp_seg(path.server, path.client, 80, 40500, 9001 + i * 1448, 1001 + 18, body[i * 1448:(i + 1) * 1448])
                for i in range(3)]
        path.back(big, client_sees=segs)

    tables = _caps(tmp_path, build)
    ex = {"id": "tcp-1", "protocol": "tcp", "client": "192.168.1.10:40500", "server": "198.51.100.10:80",
          "seen_at_server_as": "203.0.113.2:40500", "outcome": "delivered",
          "frames": {"client": list(range(1, len(tables["client"]) + 1)),
                     "server": list(range(1, len(tables["server"]) + 1))}}
    lad = build_ladder(ex, tables)
    assert [(a.label, a.direction, a.lost, a.from_middlebox) for a in lad.arrows] == [
        ("SYN", "out", False, False), ("SYN-ACK", "back", False, False), ("ACK len=18", "out", False, False),
        ("ACK len=4344", "back", False, False)]
    assert len(dict(lad.arrows[-1].seen)) == 2


def test_probe_view_shows_what_the_http_probe_records():
    """The report reads the names rig.probes writes (a proxy's answer must be visible)."""
    from rig.report.html import _probe_view

    record = {
        "format": "rig.probe/1", "kind": "http", "id": "http-1", "ok": True, "error": None,
        "tcp": {"state": "TIME_WAIT", "total_retrans": 0},
        "seen": {"status": 200, "server": "Apache", "proxy_headers": {"Via": "1.1 hgw", "Age": "0"},
                 "body_bytes": 311, "body_ok": False, "responder": "hgw-proxy", "request_sent": True},
    }
    html = _probe_view(record)
    assert "<dt>responder</dt><dd>hgw-proxy</dd>" in html
    assert "Via: 1.1 hgw; Age: 0" in html
    assert "<dt>body ok</dt><dd>no</dd>" in html
    assert "<dt>body bytes</dt><dd>311</dd>" in html
    assert "False" not in html and "True" not in html


def test_ladder_tells_icmp_errors_apart_by_the_packet_they_quote(tmp_path):
    """Two frag-needed about two segments; the first dies on the way back. The ladder pairs
    them by what they quote (Capture.quoted), not by order, and shows the next-hop MTU."""
    path = SynthPath()
    segs = [path.out(Pkt(path.client, path.server, 6, sport=50001, dport=80, seq=5 + i * 1400, ack=1, flags=ACK,
                         payload=b"y" * 1400)) for i in range(2)]
    for q, arrives in zip(segs, (False, True)):
        path.back(Pkt(path.server, q.src, 1, icmp_type=3, icmp_code=4, mtu=1400 - len(segs), quoted=q), arrive=arrives)
    c, s = path.write(tmp_path)
    caps = {"client": read_capture(str(c)), "server": read_capture(str(s))}
    ex = {"id": "tcp-1", "protocol": "tcp", "client": "192.168.1.10:50001", "server": "198.51.100.10:80",
          "seen_at_server_as": "203.0.113.2:50001", "outcome": "delivered",
          "frames": {p: list(range(1, len(caps[p].packets) + 1)) for p in caps}}
    lad = build_ladder(ex, caps)
    errors = [(a.label, a.lost, dict(a.seen)) for a in lad.arrows if a.direction == "back"]
    assert errors == [("frag needed mtu=1398", True, {"server": 3}),
                      ("frag needed mtu=1398", False, {"server": 4, "client": 3})]
