"""BundleWriter: the directory contract, credentials kept out, archive, redaction."""

import ipaddress
import json
import struct
import tarfile

import pytest

from rig.bundle import (
    BUNDLE_VERSION,
    BundleWriter,
    SecretRefused,
    archive,
    redact,
    scrub_text,
    sha256_file,
)
from rig.checksum import internet_checksum
from rig.redact import AddressMap, rewrite_pcap

FAKE_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmU=\n-----END OPENSSH PRIVATE KEY-----\n"


def test_manifest_is_running_at_once_and_sealed_by_finish(tmp_path):
    out = tmp_path / "run1"
    w = BundleWriter(out, {"backend": "lab", "scenario": "seed", "options": {"client_secret": "s3cr3t!", "host": "h"}})
    m = json.loads((out / "manifest.json").read_text())
    assert m["status"] == "running" and m["format_version"] == BUNDLE_VERSION
    assert m["spec"]["options"]["client_secret"] == "[redacted]"
    with w.stage("provision"):
        pass
    with pytest.raises(RuntimeError):
        with w.stage("capture"):
            raise RuntimeError("tcpdump exited 1")
    w.capture_path("client").write_bytes(b"\xd4\xc3\xb2\xa1" + bytes(20))
    w.log_path("access.log").write_text("GET /?nonce=1 200\n")
    w.add_probe({"kind": "tcp", "connected": False})
    w.add_probe({"kind": "http", "status": 200})
    w.set_facts(backend={"server_addr": "198.51.100.10"}, kernel_drops={"client": 0}, clock_offset={"server": 0.25})
    w.finish("failed", error="capture failed: tcpdump exited 1")

    m = json.loads((out / "manifest.json").read_text())
    assert m["status"] == "failed" and m["error"].startswith("capture failed")
    assert [(t["stage"], t["ok"]) for t in m["timings"]] == [("provision", True), ("capture", False)]
    assert m["timings"][1]["error"] == "tcpdump exited 1"
    assert m["backend"]["server_addr"] == "198.51.100.10" and m["clock_offset"] == {"server": 0.25}
    assert m["kernel"]["system"] and m["tools"]["python"]
    assert set(m["files"]) == {"captures/client.pcap", "logs/access.log", "probes.jsonl"}
    for rel, info in m["files"].items():
        assert info["sha256"] == sha256_file(out / rel)
    lines = (out / "probes.jsonl").read_text().splitlines()
    assert [json.loads(x)["kind"] for x in lines] == ["tcp", "http"]
    assert "s3cr3t" not in (out / "manifest.json").read_text()


def test_a_stage_that_runs_behind_others_keeps_its_place_by_its_start(tmp_path):
    """rig run's configure in a fresh lab runs beside preflight and the probes: its
    record is in the manifest from its start, open, before theirs, and is completed
    later with the seconds it measured itself."""
    out = tmp_path / "run1"
    w = BundleWriter(out, {"backend": "lab"})
    with w.stage("provision"):
        pass
    end = w.begin_stage("configure")
    with w.stage("preflight"):
        pass
    m = json.loads((out / "manifest.json").read_text())
    assert [(t["stage"], t["seconds"] is None) for t in m["timings"]] == [
        ("provision", False), ("configure", True), ("preflight", False)]
    end(0.875)
    with w.stage("probes"):
        pass
    failing = w.begin_stage("other")
    failing(0.5, "configure (server.yml) failed: boom")
    w.finish("ok")
    m = json.loads((out / "manifest.json").read_text())
    assert [t["stage"] for t in m["timings"]] == ["provision", "configure", "preflight", "probes", "other"]
    assert (m["timings"][1]["seconds"], m["timings"][1]["ok"], m["timings"][1]["error"]) == (0.875, True, None)
    assert (m["timings"][4]["ok"], m["timings"][4]["error"]) == (False, "configure (server.yml) failed: boom")
    assert m["timings"][1]["start"] <= m["timings"][2]["start"]


def test_private_keys_never_enter_a_bundle(tmp_path):
    w = BundleWriter(tmp_path / "b", {})
    key = tmp_path / "run_key"
    key.write_text(FAKE_KEY)
    with pytest.raises(SecretRefused):
        w.add_file(key, "key.txt")
    with pytest.raises(SecretRefused):
        w.log_path("id_ed25519")
    # something slipped in behind the writer's back: finish() removes it and says so
    w.log_path("ansible-events.jsonl").write_text(
        json.dumps({"env": {"AZURE_CLIENT_SECRET": "abcd1234efgh"}, "stdout": FAKE_KEY}) + "\n"
    )
    w.log_path("curl.txt").write_text("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJlMTIz\n")
    w.finish("ok")
    m = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert {"path": "logs/ansible-events.jsonl", "reason": "looks like a private key"} in m["removed"]
    assert not (tmp_path / "b" / "logs" / "ansible-events.jsonl").exists()
    curl = (tmp_path / "b" / "logs" / "curl.txt").read_text()
    assert "eyJ" not in curl and "[redacted]" in curl
    everything = b"".join(p.read_bytes() for p in (tmp_path / "b").rglob("*") if p.is_file())
    assert b"PRIVATE KEY" not in everything and b"abcd1234efgh" not in everything


def test_scrub_text_keeps_ordinary_text():
    assert scrub_text("GET /index.html HTTP/1.1 200 token") == "GET /index.html HTTP/1.1 200 token"
    assert "hunter22" not in scrub_text('{"password": "hunter22"}')


def test_scrub_text_finds_tokens_in_any_case_and_any_script():
    # the patterns match case-insensitively with Unicode case folding ("ſ" is an "s");
    # the quick look for their words before running them must miss none of these
    for text in ("PASSWORD=hunter22", "x Api_Key=hunter22", "ACCESS_KEY=hunter22", "résumé: password=hunter22",
                 "paſsword=hunter22", "ümlaut SECRET=hunter22", '{"Token": "hunter22"}',
                 "AUTHORİZATION: Bearer hunter22hunter22"):
        assert "hunter22" not in scrub_text(text), text
    jwt = "eyJhbGciOiJIUzI1.eyJzdWIiOiIxMjM0.SflKxwRJSMeKKF2Q"
    assert jwt not in scrub_text(f"cookie {jwt} end")


def test_a_private_key_deep_in_a_large_binary_file_is_found():
    from rig.bundle.credentials import looks_like_private_key

    key = b"-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n"
    blob = bytes(range(256)) * 8000
    assert looks_like_private_key(blob + key + blob)
    assert looks_like_private_key(blob + b"PuTTY-User-Key-File-3: ssh-ed25519\n")
    assert not looks_like_private_key(blob + b"PRIVATE KEYS are not this")


def test_archive_round_trip(tmp_path):
    w = BundleWriter(tmp_path / "b", {"backend": "lab"})
    w.add_probe({"kind": "icmp"})
    w.finish("ok")
    tgz = archive(tmp_path / "b")
    assert tgz.name == "b.tar.gz"
    with tarfile.open(tgz) as t:
        names = set(t.getnames())
    assert {"b/manifest.json", "b/probes.jsonl"} <= names


# ---------------------------------------------------------------- redaction of pcaps


def _ipv4(src, dst, proto, l4, ident=1):
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), ident, 0x4000, 64, proto, 0,
                      ipaddress.ip_address(src).packed, ipaddress.ip_address(dst).packed)
    return hdr[:10] + struct.pack("!H", internet_checksum(hdr)) + hdr[12:] + l4


def _tcp(src, dst, sport, dport, seq, payload=b""):
    t = struct.pack("!HHIIBBHHH", sport, dport, seq, 0, 5 << 4, 0x02, 65535, 0, 0) + payload
    pseudo = ipaddress.ip_address(src).packed + ipaddress.ip_address(dst).packed + struct.pack("!BBH", 0, 6, len(t))
    return t[:16] + struct.pack("!H", internet_checksum(pseudo + t)) + t[18:]


def _icmp_unreach(quoted: bytes):
    body = struct.pack("!BBHI", 3, 3, 0, 0) + quoted
    return body[:2] + struct.pack("!H", internet_checksum(body)) + body[4:]


def _pcap(frames):
    out = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    for i, f in enumerate(frames):
        eth = b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00" + f
        out += struct.pack("<IIII", i, 0, len(eth), len(eth)) + eth
    return out


def _frames(data: bytes):
    p, out = 24, []
    while p < len(data):
        n = struct.unpack_from("<I", data, p + 8)[0]
        out.append(data[p + 16 + 14 : p + 16 + n])
        p += 16 + n
    return out


def _check_ipv4(pkt: bytes):
    assert internet_checksum(pkt[:20]) == 0, "IPv4 header checksum"
    proto, l4 = pkt[9], pkt[20:]
    if proto == 6:
        pseudo = pkt[12:20] + struct.pack("!BBH", 0, 6, len(l4))
        assert internet_checksum(pseudo + l4) == 0, "TCP checksum"
    elif proto == 1:
        assert internet_checksum(l4) == 0, "ICMP checksum"
        _check_ipv4(l4[8:])


def test_redact_rewrites_addresses_and_keeps_checksums_valid():
    syn = _ipv4("192.168.1.10", "198.51.100.10", 6, _tcp("192.168.1.10", "198.51.100.10", 40312, 80, 12345, b"hi"))
    unreach = _ipv4("10.0.0.1", "192.168.1.10", 1, _icmp_unreach(syn))
    public = _ipv4("203.0.113.2", "198.51.100.10", 6, _tcp("203.0.113.2", "198.51.100.10", 40312, 80, 12345))
    for p in (syn, unreach, public):
        _check_ipv4(p)
    amap = AddressMap()
    new, stats = rewrite_pcap(_pcap([syn, unreach, public]), amap)
    assert stats == {"records": 3, "rewritten": 2, "skipped": 0}
    f = _frames(new)
    for p in f:
        _check_ipv4(p)
    stand_in = str(ipaddress.ip_address(f[0][12:16]))
    assert stand_in != "192.168.1.10" and ipaddress.ip_address(stand_in).is_private
    assert f[0][16:20] == ipaddress.ip_address("198.51.100.10").packed  # public kept
    assert f[1][16:20] == f[0][12:16]  # same stand-in everywhere
    assert f[1][28 + 12 : 28 + 16] == f[0][12:16]  # inside the ICMP quote too
    assert f[2] == public
    assert b"192.168.1.10" not in new and ipaddress.ip_address("192.168.1.10").packed not in new


def test_redact_bundle_text_and_hashes(tmp_path):
    w = BundleWriter(tmp_path / "b", {"backend": "lab"})
    syn = _ipv4("192.168.1.10", "198.51.100.10", 6, _tcp("192.168.1.10", "198.51.100.10", 40312, 80, 7))
    w.capture_path("client").write_bytes(_pcap([syn]))
    w.write_verdict({"format": "rig.verdict/1", "capture_points": [], "exchanges": [
        {"id": "tcp-1", "client": "192.168.1.10:40312", "server": "198.51.100.10:80"}],
        "diagnosis": {"summary": "client 192.168.1.10 and 192.168.1.100", "by_protocol": {}}})
    w.finish("ok")
    redact(tmp_path / "b")
    text = (tmp_path / "b" / "verdict.json").read_text()
    assert "192.168.1.10" not in text and "198.51.100.10:80" in text
    v = json.loads(text)
    stand_in = ipaddress.ip_address(_frames((tmp_path / "b" / "captures" / "client.pcap").read_bytes())[0][12:16])
    assert v["exchanges"][0]["client"] == f"{stand_in}:40312"
    m = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert m["redacted"]["stand_ins"] == 2
    for rel, info in m["files"].items():
        assert info["sha256"] == sha256_file(tmp_path / "b" / rel)


def test_spec_options_redact_and_archive_are_honoured_by_finish(tmp_path):
    from rig.backends.base import RunSpec

    spec = RunSpec(scenario="seed", options={"redact": "true", "archive": "true"})
    w = BundleWriter(tmp_path / "b", spec)
    syn = _ipv4("192.168.1.10", "198.51.100.10", 6, _tcp("192.168.1.10", "198.51.100.10", 40312, 80, 7))
    w.capture_path("client").write_bytes(_pcap([syn]))
    w.add_probe({"kind": "tcp", "local": "192.168.1.10:40312"})
    w.write_verdict({"format": "rig.verdict/1", "capture_points": [], "exchanges": [],
                     "diagnosis": {"summary": "from 192.168.1.10", "by_protocol": {}}})
    w.finish("ok")
    assert "private addresses redacted" in (tmp_path / "b" / "report.html").read_text()
    for rel, info in json.loads((tmp_path / "b" / "manifest.json").read_text())["files"].items():
        assert info["sha256"] == sha256_file(tmp_path / "b" / rel)
    assert w.archive_path == tmp_path / "b.tar.gz" and w.archive_path.exists()
    m = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert m["redacted"]["stand_ins"] == 1 and m["spec"]["scenario"] == "seed"
    with tarfile.open(w.archive_path) as t:
        data = b"".join(t.extractfile(x).read() for x in t.getmembers() if x.isfile())
    assert b"192.168.1.10" not in data and bytes([192, 168, 1, 10]) not in data
    before = (tmp_path / "b" / "probes.jsonl").read_text()
    redact(tmp_path / "b")  # idempotent
    assert (tmp_path / "b" / "probes.jsonl").read_text() == before


def test_redact_ipv6_and_icmpv6_checksums():
    from rig.capture.synth import Pkt, _pseudo, checksum, encode

    ula, pub = "fd12:3456::10", "2001:db8::80"
    pkts = [
        Pkt(ula, pub, 17, sport=5000, dport=7, payload=b"rig-udp-nonce"),
        Pkt(ula, pub, 58, icmp_type=128, icmp_id=3, icmp_seq=1, payload=b"rig-echo"),
        Pkt(ula, pub, 6, sport=40000, dport=80, seq=1, flags=0x02, mss=1440),
    ]
    raw = [encode(p) for p in pkts]
    amap = AddressMap()
    new, stats = rewrite_pcap(_pcap6(raw), amap)
    assert stats["rewritten"] == 3
    p, out = 24, []
    while p < len(new):
        n = struct.unpack_from("<I", new, p + 8)[0]
        out.append(new[p + 16 + 14 : p + 16 + n])
        p += 16 + n
    for pkt in out:
        src = str(ipaddress.ip_address(pkt[8:24]))
        dst = str(ipaddress.ip_address(pkt[24:40]))
        assert src.startswith("fd00:0:0:ffff::") and dst == pub
        l4 = pkt[40:]
        assert checksum(_pseudo(src, dst, pkt[6], len(l4)) + l4) == 0, pkt[6]


def _pcap6(packets):
    out = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    for i, f in enumerate(packets):
        eth = b"\x02" * 6 + b"\x04" * 6 + b"\x86\xdd" + f
        out += struct.pack("<IIII", i, 0, len(eth), len(eth)) + eth
    return out


def test_redact_pcapng_two_interfaces_and_sll(tmp_path):
    """pcapng with an Ethernet and a Linux-cooked interface: both rewritten, and rig's
    own reader decodes the stand-ins with valid-looking headers."""
    from rig.capture import read_capture
    from rig.capture.synth import (
        LINKTYPE_ETHERNET,
        LINKTYPE_SLL,
        Pkt,
        encode,
        frame,
        write_pcapng,
    )
    from rig.capture.table import format_addr

    syn = encode(Pkt("192.168.1.10", "198.51.100.10", 6, sport=40312, dport=80, seq=5, flags=0x02, mss=1460))
    echo = encode(Pkt("10.0.0.2", "198.51.100.10", 1, icmp_type=8, icmp_id=9, icmp_seq=1, payload=b"nonce"))
    f = tmp_path / "c.pcapng"
    write_pcapng(f, [(LINKTYPE_ETHERNET, "eth0"), (LINKTYPE_SLL, "any")],
                 [(0, 1_000, frame(syn, LINKTYPE_ETHERNET)), (1, 2_000, frame(echo, LINKTYPE_SLL))])
    new, stats = rewrite_pcap(f.read_bytes(), AddressMap())
    assert stats == {"records": 2, "rewritten": 2, "skipped": 0}
    out = tmp_path / "r.pcapng"
    out.write_bytes(new)
    cap = read_capture(str(out))
    srcs = [format_addr(r["src"]) for r in cap.packets]
    assert srcs == ["10.0.0.1", "10.0.0.2"]  # stand-ins in order of first sight
    assert all(format_addr(r["dst"]) == "198.51.100.10" for r in cap.packets)
    assert int(cap.packets[0]["seq"]) == 5 and int(cap.packets[1]["icmp_seq"]) == 1
    assert b"\xc0\xa8\x01\x0a" not in new
