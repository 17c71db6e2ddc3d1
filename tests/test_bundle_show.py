"""rig show: run -> bundle -> re-analysis gives the same verdict; old formats upgraded,
newer refused; truncated or modified captures give one clear line."""

import json
import shutil
import subprocess
import sys
from pathlib import Path as FsPath

import pytest

from rig.analysis.api import analyse
from rig.analysis.unsent import not_sent_in_records, with_probes
from rig.bundle import BUNDLE_VERSION, BundleWriter, archive, redact
from rig.capture import read_capture
from rig.capture.synth import Path, Pkt

RIG = [sys.executable, "-m", "rig"]


def seed_captures(directory: FsPath) -> None:
    """The seed's fault on a synthetic path: SYN x3 reach the server, its SYN-ACKs never
    come back; ping passes both ways."""
    path = Path()
    for _ in range(3):
        s = path.out(path.syn(40312, 1000))
        path.back(path.synack(s, 9000), arrive=False)
    e = Pkt(path.client, path.server, 1, icmp_type=8, icmp_id=7, icmp_seq=1, payload=b"rig-nonce-icmp-1")
    q = path.out(e)
    path.back(Pkt(q.dst, q.src, 1, icmp_type=0, icmp_id=q.icmp_id, icmp_seq=1, payload=b"rig-nonce-icmp-1"))
    path.write(directory)


def make_seed_bundle(out: FsPath) -> dict:
    """A bundle the way `rig run` writes one, from synthetic seed captures. Returns the verdict."""
    w = BundleWriter(out, {"backend": "lab", "scenario": "seed"})
    with w.stage("capture"):
        seed_captures(out / "captures")
    w.add_probe({"format": "rig.probe/1", "kind": "tcp", "id": "tcp-1", "target": "198.51.100.10:80",
                 "nonce": "rig-x-tcp-1-00", "started": 0.0, "ended": 3.0, "ok": False, "error": "timed out",
                 "local": "192.168.1.10:40312", "tcp": {"state": "SYN_SENT", "total_retrans": 2}, "seen": {}})
    w.add_probe({"format": "rig.probe/1", "kind": "icmp", "id": "icmp-1", "target": "198.51.100.10",
                 "nonce": "rig-nonce-icmp-1", "started": 0.0, "ended": 0.1, "ok": True, "local": "192.168.1.10",
                 "seen": {"seq": 1, "reply_ttl": 61}})
    w.set_facts(backend={"server_addr": "198.51.100.10"}, kernel_drops={"client": 0, "server": 0}, clock_offset=None)
    with w.stage("analysis"):
        v = analyse(read_capture(str(out / "captures/client.pcap")), read_capture(str(out / "captures/server.pcap")),
                    server_addr="198.51.100.10")
    v = with_probes(v, not_sent_in_records(_read_probes(out)))  # as rig run: the probes no capture shows
    w.write_verdict(v)
    w.finish("path-problem")
    return v.to_dict()


def _read_probes(out: FsPath) -> list[dict]:
    return [json.loads(line) for line in (out / "probes.jsonl").read_text().splitlines() if line.strip()]


def show(*argv):
    return subprocess.run([*RIG, "show", *map(str, argv)], capture_output=True, text=True)


@pytest.fixture
def bundle(tmp_path):
    b = tmp_path / "20261126T000000Z-seed"
    make_seed_bundle(b)
    return b


def test_round_trip_same_verdict(bundle):
    stored = json.loads((bundle / "verdict.json").read_text())
    assert [e["outcome"] for e in stored["exchanges"]] == ["lost-return", "delivered"]
    m = json.loads((bundle / "manifest.json").read_text())
    assert m["clock_offset"] == {"seconds_ahead_of_client": {"server": 3.0}, "source": "analysis"}
    assert [t["stage"] for t in m["timings"]] == ["capture", "analysis"] and m["status"] == "path-problem"
    p = show(bundle, "--json")
    assert p.returncode == 1, p.stderr  # a path problem
    assert json.loads(p.stdout) == stored
    assert p.stderr == ""
    text = show(bundle)
    assert text.returncode == 1 and "lost" in text.stdout.lower()


def test_archive_and_html(bundle, tmp_path):
    tgz = archive(bundle)
    shutil.rmtree(bundle)
    html = tmp_path / "r.html"
    p = show(tgz, "--json", "--html", html)
    assert p.returncode == 1, p.stderr
    assert json.loads(p.stdout)["diagnosis"]["summary"].startswith("TCP replies are lost")
    assert "TCP replies are lost" in html.read_text()


def test_future_format_refused(bundle):
    m = json.loads((bundle / "manifest.json").read_text())
    m["format_version"] = BUNDLE_VERSION + 1
    (bundle / "manifest.json").write_text(json.dumps(m))
    p = show(bundle)
    assert p.returncode == 2
    assert p.stderr.count("\n") == 1 and "newer than this rig" in p.stderr and "Traceback" not in p.stderr


def test_older_format_is_upgraded(tmp_path):
    """Format 0: a hand-made directory of client.pcap + server.pcap, no manifest."""
    d = tmp_path / "handmade"
    seed_captures(d)
    p = show(d, "--json")
    assert p.returncode == 1, p.stderr
    assert "read bundle format 0, upgraded" in p.stderr
    assert [e["outcome"] for e in json.loads(p.stdout)["exchanges"]] == ["lost-return", "delivered"]


def test_modified_capture_is_one_line(bundle):
    cap = bundle / "captures/client.pcap"
    data = bytearray(cap.read_bytes())
    data[-1] ^= 0xFF
    cap.write_bytes(bytes(data))
    p = show(bundle)
    assert p.returncode == 2 and p.stderr.count("\n") == 1
    assert "captures/client.pcap does not match its sha256" in p.stderr


def test_truncated_capture_is_one_line(bundle):
    cap = bundle / "captures/server.pcap"
    cap.write_bytes(cap.read_bytes()[:-10])
    p = show(bundle)
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "Traceback" not in p.stderr
    assert "server.pcap" in p.stderr and "truncated" in p.stderr
    # and when the manifest was made to agree (re-hashed), the reader itself says so
    from rig.bundle import hash_files

    m = json.loads((bundle / "manifest.json").read_text())
    m["files"] = hash_files(bundle)
    (bundle / "manifest.json").write_text(json.dumps(m))
    p = show(bundle)
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "Traceback" not in p.stderr
    assert "captures/server.pcap is truncated" in p.stderr


def test_failed_run_without_captures(tmp_path):
    w = BundleWriter(tmp_path / "f", {"backend": "azure"})
    w.finish("failed", error="provision: credentials expired")
    p = show(tmp_path / "f")
    assert p.returncode == 2 and p.stderr.count("\n") == 1
    assert "credentials expired" in p.stderr


def test_not_a_bundle(tmp_path):
    (tmp_path / "x.txt").write_text("hello")
    for target in (tmp_path / "x.txt", tmp_path, tmp_path / "missing"):
        p = show(target)
        assert p.returncode == 2 and p.stderr.count("\n") == 1, (target, p.stderr)


def test_redacted_bundle_keeps_the_verdict(bundle):
    before = json.loads((bundle / "verdict.json").read_text())
    redact(bundle)
    p = show(bundle, "--json")
    assert p.returncode == 1, p.stderr
    after = json.loads(p.stdout)
    assert "192.168.1.10" not in p.stdout
    assert [e["outcome"] for e in after["exchanges"]] == [e["outcome"] for e in before["exchanges"]]
    assert after["exchanges"][0]["client"].endswith(":40312") and not after["exchanges"][0]["client"].startswith("192.")
    assert after["exchanges"][0]["seen_at_server_as"] == "203.0.113.2:40312"  # public: kept
    everything = b"".join(f.read_bytes() for f in bundle.rglob("*") if f.is_file())
    assert b"192.168.1.10" not in everything and bytes([192, 168, 1, 10]) not in everything


def test_a_changed_verdict_is_pointed_out(bundle):
    from rig.bundle import hash_files

    v = json.loads((bundle / "verdict.json").read_text())
    v["exchanges"][0]["outcome"] = "delivered"  # what an older rig might have said
    (bundle / "verdict.json").write_text(json.dumps(v))
    m = json.loads((bundle / "manifest.json").read_text())
    m["files"] = hash_files(bundle)
    m["rig_version"] = "0.0.9"
    (bundle / "manifest.json").write_text(json.dumps(m))
    p = show(bundle, "--json")
    assert p.returncode == 1
    assert "verdict differs from the one recorded by rig 0.0.9" in p.stderr
    assert json.loads(p.stdout)["exchanges"][0]["outcome"] == "lost-return"


def test_manifest_cannot_point_outside_the_bundle(bundle):
    m = json.loads((bundle / "manifest.json").read_text())
    m["files"]["../../etc/hostname"] = {"sha256": "0" * 64, "bytes": 1}
    (bundle / "manifest.json").write_text(json.dumps(m))
    p = show(bundle)
    assert p.returncode == 2 and "outside the bundle" in p.stderr


def test_a_re_rendered_report_is_a_warning_not_a_refusal(bundle):
    (bundle / "report.html").write_text("<!DOCTYPE html><p>someone's edit</p>")
    p = show(bundle, "--json")
    assert p.returncode == 1 and "report.html differs" in p.stderr
    assert json.loads(p.stdout)["exchanges"][0]["outcome"] == "lost-return"
