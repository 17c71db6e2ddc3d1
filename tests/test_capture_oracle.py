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
import re
import shutil
import struct
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from rig.capture import read_capture
from rig.capture.table import Undecoded, format_addr
from rig.errors import InputError

from tests._corpus import CORPUS
FIELDS = [
    "frame.number", "frame.protocols", "frame.time_epoch", "frame.len", "frame.cap_len", "frame.interface_id",
    "ip.src", "ip.dst", "ip.ttl", "ip.id", "ipv6.src", "ipv6.dst",
    "ipv6.hlim", "tcp.srcport", "tcp.dstport", "tcp.seq_raw", "tcp.ack_raw", "tcp.flags", "udp.srcport",
    "udp.dstport", "icmp.ident", "icmp.seq", "icmpv6.echo.identifier", "icmpv6.echo.sequence_number",
    "ip.dsfield", "ipv6.tclass", "ip.flags.df", "vlan.id", "tcp.window_size_value", "tcp.len",
    "tcp.options.mss_val", "tcp.options.wscale.shift", "tcp.options.sack_perm", "tcp.options.timestamp.tsval",
    "tcp.options.timestamp.tsecr", "icmp.type", "icmp.code", "icmp.mtu", "icmpv6.type", "icmpv6.code", "icmpv6.mtu",
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
    ts = tshark_rows(path)
    bad: list[str] = []
    compared = 0
    # every record: time, lengths, interface (the container layer). Not compared: times
    # whose sub-second field is out of range (tshark and rig read them differently), and
    # lengths of link types rig does not read (tshark strips pseudo-headers, e.g. SunATM)
    bad_ts = set(_bad_pcap_ts(path)) if cap.bad_timestamps else set()
    for r in pk:
        t = ts.get(int(r["frame"]))
        if t is None or not t["frame.time_epoch"]:
            continue
        if int(r["frame"]) in bad_ts:
            continue
        sec, _, frac = t["frame.time_epoch"][0].partition(".")
        want = {"ts_ns": int(sec) * 10**9 + int((frac + "000000000")[:9]) * (1 if not sec.startswith("-") else -1),
                "wirelen": int(t["frame.len"][0]), "caplen": int(t["frame.cap_len"][0])}
        got = {"ts_ns": int(r["ts_ns"]), "wirelen": int(r["wirelen"]), "caplen": int(r["caplen"])}
        if r["status"] == Undecoded.UNKNOWN_LINKTYPE:
            del want["wirelen"], want["caplen"]
        if t["frame.interface_id"]:
            want["iface"], got["iface"] = int(t["frame.interface_id"][0]), int(r["iface"])
        diff = {k: (got[k], want[k]) for k in want if got[k] != want[k]}
        if diff:
            bad.append(f"{path.name}#{int(r['frame'])}: rig!=tshark {diff}")
    ip_rows = [i for i in range(len(pk)) if pk["ipver"][i]]
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
            want["tos"], want["df"] = _num(t["ip.dsfield"][k]), _num(t["ip.flags.df"][k])
            got["df"] = int(r["df"])
        else:
            if not t["ipv6.src"]:
                bad.append(f"{where}: rig decoded IPv6, tshark has no ipv6 layer ({':'.join(protos)})")
                continue
            want["src"], want["dst"] = t["ipv6.src"][0], t["ipv6.dst"][0]
            want["ttl"] = _num(t["ipv6.hlim"][0])
            if t["ipv6.tclass"]:
                want["tos"] = _num(t["ipv6.tclass"][0])
        got["src"], got["dst"], got["ttl"] = format_addr(r["src"]), format_addr(r["dst"]), int(r["ttl"])
        got["tos"] = int(r["tos"])
        first_ip = next((i for i, x in enumerate(protos) if x in ("ip", "ipv6")), len(protos))
        if t["vlan.id"] and "vlan" in protos[:first_ip]:  # not a VLAN tag of an encapsulated frame
            want["vlan"], got["vlan"] = _num(t["vlan.id"][0]), int(r["vlan"])
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
            want["win"], got["win"] = _num(t["tcp.window_size_value"][0]), int(r["win"])
            if r["status"] == Undecoded.OK:  # tshark's tcp.len is what the capture holds
                want["plen"], got["plen"] = _num(t["tcp.len"][0]), int(r["plen"])
            _tcp_options(r, t, got, want)
        elif usable and proto == 17 and t["udp.srcport"] and not r["tunnel"]:
            want.update(sport=_num(t["udp.srcport"][0]), dport=_num(t["udp.dstport"][0]))
            got.update(sport=int(r["sport"]), dport=int(r["dport"]))
        elif usable and proto in (1, 58) and r["icmp_type"] >= 0 and not r["tunnel"]:
            v = "icmp" if proto == 1 else "icmpv6"
            q = cap.quoted_at(i)  # what an ICMP error is about
            if t[f"{v}.type"]:
                want.update(icmp_type=_num(t[f"{v}.type"][0]), icmp_code=_num(t[f"{v}.code"][0]))
                got.update(icmp_type=int(r["icmp_type"]), icmp_code=int(r["icmp_code"]))
            if t[f"{v}.mtu"]:
                want["icmp_mtu"], got["icmp_mtu"] = min(_num(t[f"{v}.mtu"][0]), 0xFFFF), int(q["icmp_mtu"])
            if r["icmp_type"] in ((0, 8) if proto == 1 else (128, 129)):
                ident = t["icmp.ident"] if proto == 1 else t["icmpv6.echo.identifier"]
                seqs = t["icmp.seq"] if proto == 1 else t["icmpv6.echo.sequence_number"]
                if ident:
                    want.update(icmp_id=_num(ident[0]), icmp_seq=_num(seqs[0]))
                    got.update(icmp_id=int(r["icmp_id"]), icmp_seq=int(r["icmp_seq"]))
            elif q["q_proto"]:
                _quoted(r, q, t, got, want)
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


def _bad_pcap_ts(path: Path):
    """Frame numbers of pcap records whose sub-second field is out of range."""
    data = path.read_bytes()
    bo = "<" if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    limit = 10**9 if data[:4] in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d") else 10**6
    off, frame = 24, 1
    while off + 16 <= len(data):
        _sec, frac, caplen, _wire = struct.unpack_from(bo + "IIII", data, off)
        if frac >= limit:
            yield frame
        off += 16 + caplen
        frame += 1


def _tcp_options(r, t, got, want) -> None:
    """MSS, window scale, SACK-permitted, timestamps: when tshark shows them."""
    if t["tcp.options.mss_val"]:
        want["mss"], got["mss"] = _num(t["tcp.options.mss_val"][0]), int(r["mss"])
    if t["tcp.options.wscale.shift"]:
        want["wscale"], got["wscale"] = min(_num(t["tcp.options.wscale.shift"][0]), 127), int(r["wscale"])
    want["sackok"], got["sackok"] = int(bool(t["tcp.options.sack_perm"])), int(r["sackok"])
    if t["tcp.options.timestamp.tsval"]:
        want["tsval"], got["tsval"] = _num(t["tcp.options.timestamp.tsval"][0]), int(r["tsval"])
        want["tsecr"], got["tsecr"] = _num(t["tcp.options.timestamp.tsecr"][0]), int(r["tsecr"])


def _quoted(r, qr, t, got, want) -> None:
    """The packet quoted in an ICMP error (``qr``, the ICMP row ``r``'s record in
    ``Capture.quoted``) is tshark's second IP layer."""
    layer = "ip" if qr["q_src"][10] == 0xFF and not qr["q_src"][:10].any() else "ipv6"
    if len(t[f"{layer}.src"]) >= 2 or (layer == "ipv6" and r["ipver"] == 4 and t["ipv6.src"]):
        k = 1 if (layer == "ip" and r["ipver"] == 4) or (layer == "ipv6" and r["ipver"] == 6) else 0
        want["q_src"], want["q_dst"] = t[f"{layer}.src"][k], t[f"{layer}.dst"][k]
        got["q_src"], got["q_dst"] = format_addr(qr["q_src"]), format_addr(qr["q_dst"])
    q = {6: "tcp", 17: "udp"}.get(int(qr["q_proto"]))
    if q and t[f"{q}.srcport"]:
        want["q_sport"], got["q_sport"] = _num(t[f"{q}.srcport"][0]), int(qr["q_sport"])
        want["q_dport"], got["q_dport"] = _num(t[f"{q}.dstport"][0]), int(qr["q_dport"])


def oracle_files(full: bool) -> list[Path]:
    files = sorted(p for p in CORPUS.glob("*.pcap*"))
    if full:
        return files
    # a fixed, spread-out subset (~140 files) plus every file named for a layout rig reads
    named = [f for f in files if LAYOUT_NAMES.search(f.name)]
    return sorted(set(files[::6]) | set(named))


LAYOUT_NAMES = re.compile(r"pppoe|vlan|qinq|sll|loopback|null|frag|icmp6|icmpv6|ipv6|ip6|tso|raw|nsec|nano|tcp", re.I)


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
