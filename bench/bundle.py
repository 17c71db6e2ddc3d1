"""Bench of the bundle side: redaction, hashing, history, report. Prints ratios against
references measured in the same run (libpcap reading the same file, `cat`), never
absolute goals.

    .venv/bin/python bench/bundle.py [--packets 200000] [--runs 500]
"""

from __future__ import annotations

import argparse
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rig.bundle import BundleWriter, sha256_file  # noqa: E402
from rig.capture.synth import ACK, SYN, Pkt, encode  # noqa: E402
from rig.history import runs_in  # noqa: E402
from rig.redact import AddressMap, rewrite_pcap  # noqa: E402


def timed(fn, *a):
    t = time.perf_counter()
    r = fn(*a)
    return time.perf_counter() - t, r


def make_pcap(path: Path, n: int) -> int:
    """About n Ethernet frames of a client flow (SYN, data, echo) from a private address;
    returns how many it wrote (a whole number of flows)."""
    tmpl = [
        encode(Pkt("192.168.1.10", "198.51.100.10", 6, sport=40000, dport=80, seq=1, flags=SYN, mss=1460)),
        encode(Pkt("198.51.100.10", "192.168.1.10", 6, sport=80, dport=40000, seq=9, ack=2, flags=SYN | ACK)),
        encode(Pkt("192.168.1.10", "198.51.100.10", 6, sport=40000, dport=80, seq=2, ack=10, flags=ACK,
                   payload=b"x" * 512)),
        encode(Pkt("192.168.1.10", "198.51.100.10", 1, icmp_type=8, icmp_id=1, icmp_seq=1, payload=b"rig" * 10)),
    ]
    recs = []
    for t in tmpl:
        eth = b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00" + t
        recs.append(struct.pack("<IIII", 0, 0, len(eth), len(eth)) + eth)
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        f.write(b"".join(recs) * (n // len(recs)))
    return n // len(recs) * len(recs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--packets", type=int, default=200_000)
    ap.add_argument("--runs", type=int, default=500)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="rig-bench-") as tmp:
        d = Path(tmp)
        cap = d / "client.pcap"
        n = make_pcap(cap, a.packets)  # the rates below are per packet actually in the file
        size = cap.stat().st_size
        t_cat, _ = timed(lambda: subprocess.run(["cat", str(cap)], stdout=subprocess.DEVNULL, check=True))
        tcpdump = shutil.which("tcpdump", path="/usr/sbin:/usr/bin:/sbin:/bin")
        t_pcap = None
        if tcpdump:
            t_pcap, _ = timed(lambda: subprocess.run([tcpdump, "-r", str(cap), "-w", "/dev/null"],
                                                     stderr=subprocess.DEVNULL, check=True))
        t_red, (_, stats) = timed(lambda: rewrite_pcap(cap.read_bytes(), AddressMap()))
        t_sha, _ = timed(sha256_file, cap)
        print(f"capture: {n} packets, {size / 1e6:.1f} MB")
        print(f"  cat                   {t_cat:7.3f} s")
        if t_pcap is not None:
            print(f"  tcpdump -r -w null    {t_pcap:7.3f} s   ({n / t_pcap / 1e6:.2f} M packets/s)")
        print(f"  redact (rewrite+csum) {t_red:7.3f} s   ({n / t_red / 1e6:.2f} M packets/s; "
              f"{t_red / t_pcap:.1f}x libpcap)" if t_pcap else "")
        print(f"  sha256 (manifest)     {t_sha:7.3f} s   ({t_sha / t_cat:.1f}x cat)")
        assert stats["rewritten"] == n

        runs = d / "runs"
        t_write = time.perf_counter()
        for i in range(a.runs):
            w = BundleWriter(runs / f"2026{i:08d}-b", {"backend": "lab"})
            w.add_probe({"kind": "tcp", "ok": i % 7 != 0})
            w.write_verdict({"format": "rig.verdict/1", "capture_points": [], "exchanges": [
                {"id": "tcp-1", "protocol": "tcp", "client": "192.168.1.10:1", "server": "198.51.100.10:80",
                 "seen_at_server_as": None, "outcome": "delivered" if i % 7 else "lost-return", "explanation": "",
                 "changes": [], "evidence": []}], "diagnosis": {"summary": "s", "by_protocol": {}}})
            w.finish("ok")
        t_write = time.perf_counter() - t_write
        t_hist, found = timed(runs_in, runs)
        print(f"bundles: {a.runs} small runs")
        print(f"  write (manifest+verdict+report+finish) {t_write / a.runs * 1e3:6.2f} ms per bundle")
        print(f"  rig history scan                        {t_hist / a.runs * 1e3:6.2f} ms per bundle "
              f"({t_write / t_hist:.0f}x faster than writing them)")
        assert len(found) == a.runs


if __name__ == "__main__":
    main()
