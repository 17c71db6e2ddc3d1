"""tshark as an oracle: on corpus files both decode, rig's fields equal tshark's.

Compared per frame, for the layer rig says it decoded: addresses, TTL / hop limit,
IP ID, ports, TCP seq/ack/flags, ICMP / ICMPv6 echo id and seq. tshark decodes more
than rig (tunnels over UDP, GRE, the packet quoted in an ICMP error); we always take
the layer that corresponds to rig's row (the inner IPv4 when rig says tunnel=1, the
outer one otherwise) and skip frames tshark marks malformed. tshark's tcp.flags has 12
bits (3 reserved); the contract keeps 9 (NS..FIN), so it is masked. A bounded subset of the
corpus runs by default (tshark starts at ~0.25 s a file); RIG_ORACLE_FULL=1 runs all.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from rig.capture import read_capture
from rig.capture.table import Undecoded, format_addr
from rig.errors import InputError

CORPUS = Path(os.environ.get("RIG_CORPUS", "/work/shared/corpus/tcpdump-tests"))
FIELDS = [
    "frame.number", "frame.protocols", "ip.src", "ip.dst", "ip.ttl", "ip.id", "ipv6.src", "ipv6.dst",
    "ipv6.hlim", "tcp.srcport", "tcp.dstport", "tcp.seq_raw", "tcp.ack_raw", "tcp.flags", "udp.srcport",
    "udp.dstport", "icmp.ident", "icmp.seq", "icmpv6.echo.identifier", "icmpv6.echo.sequence_number",
]
USABLE = (Undecoded.OK, Undecoded.TRUNCATED_PAYLOAD)


def tshark_rows(path: Path) -> dict[int, dict[str, list[str]]]:
    cmd = ["tshark", "-n", "-r", str(path), "-o", "tcp.relative_sequence_numbers:FALSE",
           "-o", "tcp.analyze_sequence_numbers:FALSE", "-T", "fields", "-E", "occurrence=a",
           "-E", "separator=|", "-E", "aggregator=,"]
    for f in FIELDS:
        cmd += ["-e", f]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout
    rows = {}
    for line in out.splitlines():
        parts = line.split("|")
        if len(parts) != len(FIELDS) or not parts[0].isdigit():
            continue
        rows[int(parts[0])] = {f: (v.split(",") if v else []) for f, v in zip(FIELDS, parts)}
    return rows


def _num(v: str) -> int:
    return int(v, 16) if v.startswith("0x") else int(v)


def compare_file(path: Path) -> tuple[int, list[str]]:
    """(rows compared, disagreements) for one corpus file; (0, []) if either can't read it."""
    try:
        cap = read_capture(path)
    except InputError:
        return 0, []
    pk = cap.packets
    ip_rows = [i for i in range(len(pk)) if pk["ipver"][i]]
    if not ip_rows:
        return 0, []
    ts = tshark_rows(path)
    bad: list[str] = []
    compared = 0
    for i in ip_rows:
        r = pk[i]
        t = ts.get(int(r["frame"]))
        if t is None:
            continue
        protos = t["frame.protocols"][0].split(":") if t["frame.protocols"] else []
        if "_ws.malformed" in protos or "_ws.short" in protos:
            continue
        where = f"{path.name}#{int(r['frame'])}"
        got, want = {}, {}
        # which ip layer of tshark's corresponds to rig's row
        if r["status"] == Undecoded.MALFORMED and not (t["ip.src"] or t["ipv6.src"]):
            continue  # both reject the IP header (rig keeps what it read, tshark nothing)
        if r["ipver"] == 4:
            k = len(t["ip.src"]) - 1 if r["tunnel"] else 0
            if k < 0 or not t["ip.src"]:
                bad.append(f"{where}: rig decoded IPv4, tshark has no ip layer ({':'.join(protos)})")
                continue
            want["src"], want["dst"] = t["ip.src"][k], t["ip.dst"][k]
            want["ttl"], want["ip_id"] = _num(t["ip.ttl"][k]), _num(t["ip.id"][k])
            got["ip_id"] = int(r["ip_id"])
        else:
            if not t["ipv6.src"]:
                bad.append(f"{where}: rig decoded IPv6, tshark has no ipv6 layer ({':'.join(protos)})")
                continue
            want["src"], want["dst"] = t["ipv6.src"][0], t["ipv6.dst"][0]
            want["ttl"] = _num(t["ipv6.hlim"][0])
        got["src"], got["dst"], got["ttl"] = format_addr(r["src"]), format_addr(r["dst"]), int(r["ttl"])
        # the layer index of rig's L4 among tshark's occurrences: the first after rig's IP
        nth = 0
        if r["tunnel"]:
            nth = len(t["ip.src"]) - 1
        # tshark reassembles fragments and shows the L4 only on the last one
        usable = r["status"] in USABLE and not r["frag"]
        proto = int(r["proto"])
        if usable and proto == 6 and t["tcp.srcport"] and not r["tunnel"]:
            want.update(sport=_num(t["tcp.srcport"][0]), dport=_num(t["tcp.dstport"][0]),
                        seq=_num(t["tcp.seq_raw"][0]), ack=_num(t["tcp.ack_raw"][0]), flags=_num(t["tcp.flags"][0]) & 0x1FF)
            got.update(sport=int(r["sport"]), dport=int(r["dport"]), seq=int(r["seq"]), ack=int(r["ack"]),
                       flags=int(r["flags"]))
        elif usable and proto == 17 and t["udp.srcport"] and not r["tunnel"]:
            want.update(sport=_num(t["udp.srcport"][0]), dport=_num(t["udp.dstport"][0]))
            got.update(sport=int(r["sport"]), dport=int(r["dport"]))
        elif usable and proto == 1 and r["icmp_type"] in (0, 8) and t["icmp.ident"]:
            # tshark prints ident in both byte orders on some versions: take the first
            want.update(icmp_id=_num(t["icmp.ident"][0]), icmp_seq=_num(t["icmp.seq"][0]))
            got.update(icmp_id=int(r["icmp_id"]), icmp_seq=int(r["icmp_seq"]))
        elif usable and proto == 58 and r["icmp_type"] in (128, 129) and t["icmpv6.echo.identifier"]:
            want.update(icmp_id=_num(t["icmpv6.echo.identifier"][0]),
                        icmp_seq=_num(t["icmpv6.echo.sequence_number"][0]))
            got.update(icmp_id=int(r["icmp_id"]), icmp_seq=int(r["icmp_seq"]))
        elif usable and proto in (6, 17) and not r["tunnel"] and nth == 0:
            layer = "tcp" if proto == 6 else "udp"
            if layer not in protos:
                bad.append(f"{where}: rig decoded {layer}, tshark did not ({':'.join(protos)})")
                continue
        compared += 1
        diff = {k: (got[k], want[k]) for k in want if got.get(k) != want[k]}
        if diff:
            bad.append(f"{where}: rig!=tshark {diff}")
    return compared, bad


def oracle_files(full: bool) -> list[Path]:
    files = sorted(p for p in CORPUS.glob("*.pcap*"))
    if full:
        return files
    return files[::6]  # a fixed, spread-out subset (~140 files)


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed (make system installs it)")
@pytest.mark.skipif(not CORPUS.is_dir(), reason=f"corpus {CORPUS} is not here")
def test_rig_agrees_with_tshark_on_corpus():
    files = oracle_files(os.environ.get("RIG_ORACLE_FULL") == "1")
    with ThreadPoolExecutor(max_workers=4) as ex:
        results = list(ex.map(compare_file, files))
    compared = sum(c for c, _ in results)
    bad = [b for _, bs in results for b in bs]
    assert compared > 500, f"only {compared} rows compared: the oracle test lost its teeth"
    assert not bad, f"{len(bad)} disagreements, first: " + "\n".join(bad[:20])
