"""Bench `rig diff`: two generated 1M-packet captures, against libpcap and tshark, same run.

Generates a client capture and a server capture of the same traffic (TCP flows with
handshake/data/teardown, UDP request/response, ICMP echo; IPv4 and IPv6; the server
side sees the client NATed to 203.0.113.2 with TTL-3, MSS clamped to 1400 on a fifth of
the SYNs; causal timing with a 10 ms path; 1% loss each way: a lost request has no
server record and no reply, a lost reply is in the server capture only, a lost TCP
segment is retransmitted). Packets are written vectorised from numpy columns (no
per-packet Python objects); checksums are left 0 (no reader here checks them).

Then measures, in this run and on these files:
  rig        parse both files (best of --repeat; one after the other, and at once as
             `rig diff` does with rig.capture.pair) + analyse (rig.analysis.api.analyse,
             best of --repeat),
             in a child process; peak RSS of that child (its VmHWM) plus the parsing
             child's own (less the table it shares)
  libpcap    tcpdump -r F -w /dev/null on both files (the floor)
  tshark     tshark -T fields -e frame.number on one file (or its first --tshark-packets)
and prints the ratios against the goals: rig within 4x the floor, >= 20x faster than
tshark, peak RSS under 400 MB.

    .venv/bin/python bench/diff.py [--packets 1000000] [--tshark-packets 200000] [--keep DIR] [--pf] [--quic]
                                   [--mix] [--busy N] [--base TREE] [--detail]

``--pf`` puts the client behind FreeBSD pf (``pf_rewrite``): every TCP connection must
then be joined on the server's ISN, not the client's. ``--mix`` uses bench/mix.py's pair
instead (5,000+ addresses at each point, VLANs, IPv6, TCP, QUIC- and DNS-like UDP, NAT
pool with ports rewritten) and checks the verdict against the generator's own record.
``--busy N``: a small client capture (``--busy-client`` packets) against its server
capture with N unrelated packets merged in (rig.capture.synth_busy: other users,
scanners, some reusing the client's public address and ports); the verdict must be the
small pair's.

Every mode times the whole command as a user runs it (exec to exit, ``rig diff`` and
``rig diff --json``, output to /dev/null), with its peak RSS from ``/usr/bin/time``;
``--base TREE`` runs another checkout's rig alternately with this one (the same
interpreter, the same wrapper) and prints the ratios; ``--base pure`` runs this checkout
with the numpy capture reader (``RIG_PURE_READER=1``: rig/capture/_walk.c not used) as
the base. ``--detail`` adds the in-process
breakdown (parse, analyse, their peaks) measured in a child.

"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

from rig.capture.table import LEAN_DTYPE

PACKET_BYTES = LEAN_DTYPE.itemsize  # rig diff reads the lean table (rig/capture/table.py)

CLIENT4, SERVER4, NAT4 = 0xC0A8010A, 0xC6336410, 0xCB007102  # 192.168.1.10 198.51.100.16 203.0.113.2
CLIENT6 = (0x20010DB800000000, 0x10)
SERVER6 = (0x20010DB800010000, 0x80)
LINUX_SYN = 2  # option layouts: 0 none, 1 NOP NOP TS, 2 MSS SACKOK TS NOP WS
OPT_LEN = np.array([0, 12, 20])

# one TCP flow: (direction 0 client->server / 1 back, flags, options, payload length)
TCP_FLOW = [
    (0, 0x002, 2, 0), (1, 0x012, 2, 0), (0, 0x010, 1, 0), (0, 0x018, 1, 180),
    (1, 0x010, 1, 1448), (1, 0x018, 1, 400), (0, 0x010, 1, 0), (0, 0x011, 1, 0),
    (1, 0x011, 1, 0), (0, 0x010, 1, 0),
]


PATH_NS = 10_000_000  # one-way delay client <-> server
SERVER_CLOCK_NS = 500_000_000  # the server's clock runs this far ahead of the client's
LOSS = 0.01  # each way


QUIC_FLOW = [0] + [1] * 10  # one turn of a QUIC-like flow: a client datagram, ten from the server
QUIC_TURNS = 4


def traffic(n_packets: int, seed: int = 7, quic: bool = False) -> dict[str, np.ndarray]:
    """Columns of every packet sent, in time order (before NAT), ``t`` at its sender.

    Causal: a packet answers only what has arrived (each change of direction in a flow
    adds the path delay). Loss, 1% each way: a UDP/ICMP request lost on the way out has
    no server record and no reply; a reply lost on return is in the server capture only;
    a lost TCP segment is in the sender's capture twice (sent, then retransmitted) and
    in the receiver's once (a lost pure ACK is not resent). ``lost`` marks packets only
    their sender's capture holds. Flows start in port order, so a port comes back only
    after its previous flow is long over (as an ephemeral-port allocator cycles).
    ``quic``: the UDP share is QUIC-like flows instead of request/response pairs (4
    client datagrams to port 443, each followed by 10 from the server; a lost datagram
    is in its sender's capture only, and the server sends its 10 regardless).
    """
    rng = np.random.default_rng(seed)
    per_tcp, per_pair = len(TCP_FLOW), 2
    n_tcp = int(n_packets * 0.7) // per_tcp
    n_udp = int(n_packets * 0.2) // per_pair
    n_icmp = (n_packets - n_tcp * per_tcp - n_udp * per_pair) // per_pair
    span_ns = 60 * 10**9
    cols: dict[str, list[np.ndarray]] = {}

    def add(**kw):
        for k, v in kw.items():
            cols.setdefault(k, []).append(np.asarray(v))

    # TCP
    f = np.repeat(np.arange(n_tcp), per_tcp)
    k = np.tile(np.arange(per_tcp), n_tcp)
    tmpl = np.array(TCP_FLOW)
    d, flags, opt, plen = (tmpl[k, i] for i in range(4))
    turns = np.cumsum(np.r_[0, tmpl[1:, 0] != tmpl[:-1, 0]])  # changes of direction so far
    start = np.sort(rng.integers(0, span_ns, n_tcp))
    isn_c = rng.integers(0, 2**32, n_tcp, dtype=np.uint64)
    isn_s = rng.integers(0, 2**32, n_tcp, dtype=np.uint64)
    # sequence numbers: cumulative payload per direction inside the flow
    syn_fin = ((flags & 0x3) != 0).astype(np.int64)
    adv = plen + syn_fin
    c_adv = np.where(d == 0, adv, 0).reshape(n_tcp, per_tcp)
    s_adv = np.where(d == 1, adv, 0).reshape(n_tcp, per_tcp)
    c_before = (np.cumsum(c_adv, axis=1) - c_adv).ravel()
    s_before = (np.cumsum(s_adv, axis=1) - s_adv).ravel()
    seq_c = (isn_c[f] + c_before.astype(np.uint64)) & 0xFFFFFFFF
    seq_s = (isn_s[f] + s_before.astype(np.uint64)) & 0xFFFFFFFF
    seq = np.where(d == 0, seq_c, seq_s)
    ack = np.where(d == 0, seq_s, seq_c)
    ack = np.where(flags == 0x002, 0, ack)
    tcp = dict(t=start[f] + k * 200_000 + turns[k] * PATH_NS, dir=d, v6=(f % 5 == 0), proto=np.full(len(f), 6), flow=f,
               sport=1024 + f % 64000, dport=np.full(len(f), 80), seq=seq, ack=ack, flags=flags, opt=opt, plen=plen,
               clamp=(f % 5 == 1) & (opt == LINUX_SYN) & (d == 0), itype=np.zeros(len(f)), ident=np.zeros(len(f)),
               iseq=np.zeros(len(f)), ipid=rng.integers(0, 65536, len(f)), nonce=rng.integers(1, 2**62, len(f)))
    # a lost segment dies on the path; if it takes sequence space (SYN, FIN, data) the
    # sender retransmits it 100 us later (before its next packet) and that copy arrives
    lost = rng.random(len(f)) < LOSS
    again = lost & (adv > 0)
    re = {c: v[again] for c, v in tcp.items()}
    re["t"] = re["t"] + 100_000
    re["ipid"] = rng.integers(0, 65536, int(again.sum()))
    add(**tcp, lost=lost)
    add(**re, lost=np.zeros(int(again.sum()), bool))
    if quic:
        tmpl = np.array(QUIC_FLOW * QUIC_TURNS)
        per = len(tmpl)
        n_fl = n_udp * per_pair // per
        j = np.repeat(np.arange(n_fl), per)
        k = np.tile(np.arange(per), n_fl)
        d = tmpl[k]
        turns = np.cumsum(np.r_[0, tmpl[1:] != tmpl[:-1]])
        st = np.sort(rng.integers(0, span_ns, n_fl))
        z = np.zeros(len(j))
        add(t=st[j] + k * 100_000 + turns[k] * PATH_NS, dir=d, v6=(j % 4 == 0), proto=np.full(len(j), 17),
            flow=j + 10**8 * 17, sport=20000 + j % 40000, dport=np.full(len(j), 443), seq=z, ack=z, flags=z, opt=z,
            plen=np.where(d == 0, 300, 1200), clamp=np.zeros(len(j), bool), itype=z, ident=z, iseq=z,
            ipid=rng.integers(0, 65536, len(j)), nonce=rng.integers(1, 2**62, len(j)), lost=rng.random(len(j)) < LOSS)
    # UDP and ICMP echo request/response pairs
    for proto, n, qlen, rlen, port in ((17, 0 if quic else n_udp, 60, 120, 53), (1, n_icmp, 56, 56, 0)):
        j = np.repeat(np.arange(n), 2)
        d = np.tile([0, 1], n)
        st = np.sort(rng.integers(0, span_ns, n))
        v6 = j % 4 == 0
        lost_out = np.repeat(rng.random(n) < LOSS, 2)  # the request: no server record, no reply
        lost_back = (rng.random(2 * n) < LOSS) & (d == 1)  # the reply: in the server capture only
        keep = ~(lost_out & (d == 1))
        pair = dict(t=st[j] + d * (300_000 + PATH_NS), dir=d, v6=v6, proto=np.where(v6 & (proto == 1), 58, proto),
                    flow=j + 10**8 * proto, sport=np.where(proto == 17, 20000 + j % 40000, 0),
                    dport=np.full(2 * n, port), seq=np.zeros(2 * n), ack=np.zeros(2 * n), flags=np.zeros(2 * n),
                    opt=np.zeros(2 * n), plen=np.where(d == 0, qlen, rlen), clamp=np.zeros(2 * n, bool),
                    itype=np.where(v6, np.where(d == 0, 128, 129), np.where(d == 0, 8, 0)) if proto == 1 else np.zeros(2 * n),
                    ident=(j % 65536) if proto == 1 else np.zeros(2 * n),
                    iseq=(j // 7) % 65536 if proto == 1 else np.zeros(2 * n),
                    ipid=rng.integers(0, 65536, 2 * n), nonce=np.repeat(rng.integers(1, 2**62, n), 2),
                    lost=lost_out | lost_back)
        add(**{c: v[keep] for c, v in pair.items()})
    out = {k: np.concatenate(v) for k, v in cols.items()}
    order = np.argsort(out["t"], kind="stable")
    return {k: v[order] for k, v in out.items()}


def pf_rewrite(p: dict[str, np.ndarray]) -> None:
    """What FreeBSD pf (``modulate state``, ``scrub random-id``, its NAT port range
    50001-65535) does to the packets the server point sees, in place: per TCP flow, the
    client's sequence numbers shifted by an offset and the server's acks by the same;
    the client's IPv4 IDs random; the client's TCP/UDP ports mapped into 50001-65535.
    The offsets and ports are hashes of the flow number (no per-flow table)."""
    from_client = p["dir"] == 0
    tcp = p["proto"] == 6
    flow = p["flow"].astype(np.uint64)
    with np.errstate(over="ignore"):
        off = ((flow * np.uint64(2654435761) + np.uint64(0x9E3779B9)) & np.uint64(0xFFFFFFFF)) | np.uint64(1)
        rid = (flow * np.uint64(40503) + p["t"].astype(np.uint64) * np.uint64(2246822519)) >> np.uint64(16)
    mask32 = np.uint64(0xFFFFFFFF)
    seq, ack = p["seq"].astype(np.uint64), p["ack"].astype(np.uint64)
    p["seq"] = np.where(tcp & from_client, (seq + off) & mask32, seq)
    p["ack"] = np.where(tcp & ~from_client & (ack != 0), (ack + off) & mask32, ack)
    p["ipid"] = np.where(from_client & ~p["v6"].astype(bool), rid & np.uint64(0xFFFF), p["ipid"])
    ported = tcp | (p["proto"] == 17)
    pf_port = 50001 + (p["flow"].astype(np.int64) % 100_000_000) % 15535
    p["src_port"] = np.where(ported & from_client, pf_port, p["src_port"])
    p["dst_port"] = np.where(ported & ~from_client, pf_port, p["dst_port"])


def point(tr: dict[str, np.ndarray], side: str, pf: bool = False) -> dict[str, np.ndarray]:
    """What one capture point records: NAT, TTL-3, MSS clamp, path delay, clock offset;
    a packet lost on the path is seen only where it was sent. ``pf``: the client is
    behind pf (``pf_rewrite``), which the server point sees."""
    keep = ~tr["lost"] | (tr["dir"] == (0 if side == "client" else 1))
    p = {k: v[keep] for k, v in tr.items()}
    d, v6 = p["dir"], p["v6"].astype(bool)
    n = len(d)
    from_client = d == 0
    far = from_client if side == "server" else ~from_client  # crossed the path before this point
    p["ttl"] = np.where(far, 61, 64)
    p["mss"] = np.where((side == "server") & p["clamp"], 1400, 1460)
    c4 = CLIENT4 if side == "client" else NAT4
    p["src4"] = np.where(from_client, c4, SERVER4)
    p["dst4"] = np.where(from_client, SERVER4, c4)
    p["src6"] = [np.where(from_client, CLIENT6[i], SERVER6[i]) for i in (0, 1)]
    p["dst6"] = [np.where(from_client, SERVER6[i], CLIENT6[i]) for i in (0, 1)]
    sport, dport = p["sport"], p["dport"]
    p["src_port"] = np.where(from_client, sport, dport)
    p["dst_port"] = np.where(from_client, dport, sport)
    p["t"] = p["t"] + np.where(far, PATH_NS, 0) + (SERVER_CLOCK_NS if side == "server" else 0)
    p["v6"] = v6
    if pf and side == "server":
        pf_rewrite(p)
    order = np.argsort(p["t"], kind="stable")
    return {k: ([x[order] for x in v] if isinstance(v, list) else v[order]) for k, v in p.items()} | {"n": n}


def write_pcap(path: str, p: dict) -> int:
    """Write the packets of ``p`` as an Ethernet pcap (µs), vectorised. Returns bytes written."""
    v6 = p["v6"]
    proto = p["proto"].astype(np.int64)
    tcp, udp = proto == 6, proto == 17
    l3 = np.where(v6, 40, 20)
    l4 = np.where(tcp, 20 + OPT_LEN[p["opt"].astype(np.int64)], 8)
    plen = p["plen"].astype(np.int64)
    caplen = 14 + l3 + l4 + plen
    rec = 16 + caplen
    offs = 24 + np.cumsum(rec) - rec
    buf = np.zeros(24 + int(rec.sum()), np.uint8)
    buf[:24] = np.frombuffer(np.array([0xA1B2C3D4, 0x00040002, 0, 0, 262144, 1], "<u4").tobytes(), np.uint8)

    def put(pos, val, nbytes, little=False, mask=None):
        pos = pos if mask is None else pos[mask]
        val = np.asarray(val)
        if val.ndim:
            val = val if mask is None else val[mask]
        val = val.astype(np.uint64)
        for i in range(nbytes):
            sh = np.uint64(8 * (i if little else nbytes - 1 - i))
            buf[pos + i] = ((val >> sh) & np.uint64(0xFF)).astype(np.uint8)

    t = p["t"]
    put(offs, t // 10**9, 4, True)
    put(offs + 4, (t % 10**9) // 1000, 4, True)
    put(offs + 8, caplen, 4, True)
    put(offs + 12, caplen, 4, True)
    e = offs + 16
    buf[e[:, None] + np.arange(12)] = np.frombuffer(b"\x02\x00\x00\x00\x00\x01\x02\x00\x00\x00\x00\x02", np.uint8)
    put(e + 12, np.where(v6, 0x86DD, 0x0800), 2)
    ip = e + 14
    m4, m6 = ~v6, v6
    total = l3 + l4 + plen
    put(ip, 0x4500, 2, mask=m4)
    put(ip + 2, total, 2, mask=m4)
    put(ip + 4, p["ipid"], 2, mask=m4)
    put(ip + 6, 0x4000, 2, mask=m4)
    put(ip + 8, p["ttl"], 1, mask=m4)
    put(ip + 9, proto, 1, mask=m4)
    put(ip + 12, p["src4"], 4, mask=m4)
    put(ip + 16, p["dst4"], 4, mask=m4)
    put(ip, 0x60000000, 4, mask=m6)
    put(ip + 4, l4 + plen, 2, mask=m6)
    put(ip + 6, proto, 1, mask=m6)
    put(ip + 7, p["ttl"], 1, mask=m6)
    put(ip + 8, p["src6"][0], 8, mask=m6)
    put(ip + 16, p["src6"][1], 8, mask=m6)
    put(ip + 24, p["dst6"][0], 8, mask=m6)
    put(ip + 32, p["dst6"][1], 8, mask=m6)
    l4o = ip + l3
    put(l4o, p["src_port"], 2, mask=tcp | udp)
    put(l4o + 2, p["dst_port"], 2, mask=tcp | udp)
    put(l4o + 4, p["seq"], 4, mask=tcp)
    put(l4o + 8, p["ack"], 4, mask=tcp)
    put(l4o + 12, ((l4 // 4) << 12) | p["flags"].astype(np.int64), 2, mask=tcp)
    put(l4o + 14, 64240, 2, mask=tcp)
    opt = p["opt"].astype(np.int64)
    o = l4o + 20
    tsval = (p["t"] // 1_000_000) & 0xFFFFFFFF
    nnt, syn = tcp & (opt == 1), tcp & (opt == 2)
    put(o, 0x0101080A, 4, mask=nnt)
    put(o + 4, tsval, 4, mask=nnt)
    put(o + 8, tsval - 5, 4, mask=nnt)
    put(o, 0x0204 << 16 | 0, 4, mask=syn)
    put(o + 2, p["mss"], 2, mask=syn)
    put(o + 4, 0x0402080A, 4, mask=syn)
    put(o + 8, tsval, 4, mask=syn)
    put(o + 16, 0x01030307, 4, mask=syn)
    put(l4o + 4, l4 + plen, 2, mask=udp)
    icmp = ~(tcp | udp)
    put(l4o, p["itype"], 1, mask=icmp)
    put(l4o + 4, p["ident"], 2, mask=icmp)
    put(l4o + 6, p["iseq"], 2, mask=icmp)
    pay = l4o + l4
    put(pay, p["nonce"], 8, mask=plen >= 8)
    with open(path, "wb") as fh:
        buf.tofile(fh)
    return len(buf)


def prefix_pcap(src: str, dst: str, packets: int) -> None:
    """The first ``packets`` records of a µs pcap (for a shorter tshark run)."""
    data = np.fromfile(src, np.uint8)
    off, k = 24, 0
    while k < packets and off < len(data):
        off += 16 + int(data[off + 8 : off + 12].view("<u4")[0])
        k += 1
    data[:off].tofile(dst)


CHILD = r"""
import json, sys, time

def peak_mb():
    # VmHWM of this process's own memory; ru_maxrss would carry the parent's RSS over the fork
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")

def reset_peak():
    # "5" resets VmHWM to the current RSS (Linux >= 4.0)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")

t0 = time.perf_counter()
from rig.capture import read_capture
from rig.capture.pair import read_pair
t1 = time.perf_counter()
best = [float("inf")] * 3
c = s = None
stats = {}
for _ in range(int(sys.argv[4])):  # the best of a few: this machine is shared
    c = s = None
    t = time.perf_counter(); c = read_capture(sys.argv[1], lean=True); best[0] = min(best[0], time.perf_counter() - t)
    t = time.perf_counter(); s = read_capture(sys.argv[2], lean=True); best[1] = min(best[1], time.perf_counter() - t)
    c = s = None
    reset_peak()  # rig diff reads only this way: the peak starts here
    # what rig diff does: both at once, the server's in a forked child (rig.capture.pair)
    t = time.perf_counter(); c, s = read_pair(sys.argv[1], sys.argv[2], stats, lean=True); best[2] = min(best[2], time.perf_counter() - t)
res = {"import": t1 - t0, "parse_client": best[0], "parse_server": best[1], "parse_pair": best[2],
       "rows": [len(c.packets), len(s.packets)], "undecoded": [c.undecoded, s.undecoded],
       "rss_parse_mb": peak_mb(), "child_private_mb": stats["child_peak_private_mb"]}
try:
    from rig.analysis.api import analyse
except ImportError:
    analyse = None
if analyse is not None and sys.argv[3] == "1":
    res["analyse"] = float("inf")
    for i in range(int(sys.argv[4])):  # the best of a few, as for parsing
        v = None
        t4 = time.perf_counter()
        v = analyse(c, s, orient=True)  # as rig diff does: the captures' order checked
        res["analyse"] = min(res["analyse"], time.perf_counter() - t4)
        if i == 0:  # the peak of one rig diff: later runs start with the heap the first left
            res["rss_total_mb"] = peak_mb()
    res["exchanges"] = len(v.exchanges)
print(json.dumps(res))
"""


def run_rig(client: str, server: str, analysis: bool, repeat: int) -> dict:
    """rig in a child process, so its peak RSS (reported by the child itself) is rig's alone."""
    out = subprocess.run([sys.executable, "-c", CHILD, client, server, "1" if analysis else "0", str(repeat)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def timed(cmd: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t


# as the console script runs it (``rig.cli.entry``: out without the interpreter's teardown)
RIG = ("import sys; sys.meta_path = [f for f in sys.meta_path if 'editable' not in type(f).__module__]; "
       "sys.path.insert(0, sys.argv.pop(1)); sys.argv[0] = 'rig'; from rig import cli; "
       "sys.exit(cli.entry() if hasattr(cli, 'entry') else cli.main(sys.argv[1:]))")
HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PURE = "pure"  # --base pure: this checkout, RIG_PURE_READER=1


def whole(tree: str, args: list[str]) -> tuple[float, float, bytes, float]:
    """``rig ARGS`` from checkout ``tree``, exec to exit: (wall s, peak RSS MB, stdout, CPU
    s: user + system, the figure to compare when the machine is loaded).
    The wrapper takes rig from ``tree`` whatever this interpreter's install says."""
    # as an installed rig runs: its modules compiled once (PYTHONDONTWRITEBYTECODE in the
    # environment would compile all of them in every run)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    if tree == PURE:
        tree, env["RIG_PURE_READER"] = HERE, "1"
    with tempfile.TemporaryFile() as out, tempfile.NamedTemporaryFile("r") as tm:
        t = time.perf_counter()
        rc = subprocess.run(["/usr/bin/time", "-o", tm.name, "-f", "%M %U %S", sys.executable, "-c", RIG, tree, *args],
                            stdout=out, stderr=subprocess.DEVNULL, env=env).returncode
        wall = time.perf_counter() - t
        if rc not in (0, 1):
            raise SystemExit(f"rig {' '.join(args)} ({tree}) exited {rc}")
        out.seek(0)
        rss, user, system = tm.read().split()[-3:]
        return wall, int(rss) / 1024, out.read(), float(user) + float(system)


def whole_commands(cli: str, srv: str, trees: list[str], repeat: int) -> dict:
    """Best wall (and that run's peak RSS) of ``rig diff`` and ``rig diff --json`` per
    tree, the trees alternated run by run. Returns {(tree, json?): (wall, rss, out, cpu)}
    (the least CPU time too, which may be another run's)."""
    best: dict = {}
    for _ in range(repeat):
        for js in (False, True):
            for tree in trees:
                w, m, out, cpu = whole(tree, ["diff", cli, srv, *(["--json"] if js else [])])
                old = best.get((tree, js))
                if old is None or w < old[0]:
                    best[(tree, js)] = (w, max(m, old[1] if old else 0), out, min(cpu, old[3] if old else cpu))
                else:
                    best[(tree, js)] = (old[0], max(m, old[1]), old[2], min(cpu, old[3]))
    return best


def floor_of(files: list[str], repeat: int) -> float | None:
    """libpcap's floor: tcpdump -r F -w /dev/null on every file, best of ``repeat``."""
    if not shutil.which("tcpdump"):
        return None
    return min(sum(timed(["tcpdump", "-r", f, "-w", "/dev/null"]) for f in files) for _ in range(max(2, repeat)))


def outcome_counts(by_protocol: dict) -> dict:
    """``{protocol: {outcome: count}}`` in a fixed order (from a verdict's diagnosis, or
    from a generator's record)."""
    return {p: dict(sorted(c.items())) for p, c in sorted(by_protocol.items())}


def datagrams_lost(verdict: dict, port: str = ":443") -> dict:
    """Datagrams lost each way over the UDP exchanges to ``port`` (the QUIC-like flows)."""
    lost = {"out": 0, "back": 0}
    for x in verdict["exchanges"]:
        if x["protocol"] != "udp" or not x["server"].endswith(port):
            continue
        for way in lost:
            lost[way] += (x.get("datagrams") or {}).get(way, {}).get("lost", 0)
    return lost


def make_mix(tmp: str, n: int) -> tuple[str, str, dict]:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import mix

    from rig.capture.synth_columns import write_pcap as write_columns

    c, s, truth = mix.pair(n)
    cli, srv = os.path.join(tmp, "client.pcap"), os.path.join(tmp, "server.pcap")
    write_columns(cli, c)
    write_columns(srv, s, ns=True)
    return cli, srv, truth


def make_busy(tmp: str, n_client: int, n_busy: int, seed: int = 5) -> tuple[str, str, str]:
    """A small pair (``traffic``) and its server capture with ``n_busy`` unrelated packets:
    (client, server, busy server)."""
    from rig.capture.synth_busy import merge_pcap, noise_chunks

    tr = traffic(n_client)
    pc, ps = point(tr, "client"), point(tr, "server")
    cli, srv, busy = (os.path.join(tmp, f) for f in ("client.pcap", "server.pcap", "busy.pcap"))
    write_pcap(cli, pc)
    write_pcap(srv, ps)
    t = ps["t"]
    rng = np.random.default_rng(seed)
    merge_pcap(srv, busy, noise_chunks(rng, n_busy, int(t.min()) + 1, int(t.max()), (0, SERVER4), reuse_addr=NAT4,
                                       reuse_ports=np.unique(ps["src_port"][ps["dir"] == 0]), avoid_ports=(80, 53)))
    return cli, srv, busy


def report_whole(cli: str, srv: str, trees: list[str], repeat: int, floor: float | None, n_pkts: int,
                 label: str) -> dict:
    res = whole_commands(cli, srv, trees, repeat)
    for js in (False, True):
        w, m, _, cpu = res[(trees[0], js)]
        line = f"whole       rig diff{' --json' if js else '       '} {label}: {w:.2f} s ({cpu:.2f} s CPU), peak RSS {m:.0f} MB"
        if floor:
            line += f"  ({w / floor:.1f}x the floor)"
        if len(trees) > 1:
            wb, mb, _, cb = res[(trees[1], js)]
            line += (f"; base {wb:.2f} s ({cb:.2f} s CPU), {mb:.0f} MB: {wb / w:.2f}x faster ({cb / cpu:.2f}x in CPU), "
                     f"RSS {mb / m:.2f}x")
        print(line)
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--packets", type=int, default=1_000_000, help="packets sent (each capture has ~99%%)")
    ap.add_argument("--tshark-packets", type=int, default=200_000, help="tshark reads this many (0: the whole file)")
    ap.add_argument("--no-analysis", action="store_true", help="measure parsing only")
    ap.add_argument("--repeat", type=int, default=3, help="parse each file and analyse this many times, keep the best")
    ap.add_argument("--keep", default=None, help="write the captures here and keep them")
    ap.add_argument("--pf", action="store_true",
                    help="the client is behind pf: modulate state, scrub random-id, NAT ports 50001-65535")
    ap.add_argument("--quic", action="store_true", help="the UDP share as QUIC-like flows (4 client datagrams, "
                    "40 server datagrams each) instead of request/response pairs")
    ap.add_argument("--mix", action="store_true", help="bench/mix.py's pair (5,000+ addresses, IPv6, QUIC-like)")
    ap.add_argument("--busy", type=int, default=0, metavar="N",
                    help="a small client capture against its server capture with N unrelated packets merged in")
    ap.add_argument("--busy-client", type=int, default=5000, help="packets of the small pair (--busy)")
    ap.add_argument("--base", default=None, metavar="TREE", help="also time this checkout's rig, alternately "
                    "('pure': this checkout with RIG_PURE_READER=1)")
    ap.add_argument("--detail", action="store_true", help="also the in-process parse / analyse breakdown")
    a = ap.parse_args()
    tmp = a.keep or tempfile.mkdtemp(prefix="rig-bench-")
    os.makedirs(tmp, exist_ok=True)
    trees = [HERE] + ([a.base if a.base == PURE else os.path.abspath(a.base)] if a.base else [])
    print(f"load        average {os.getloadavg()[0]:.1f} at the start (this machine: {os.cpu_count()} cores)")
    try:
        if a.busy:
            t = time.perf_counter()
            cli, srv, busy = make_busy(tmp, a.busy_client, a.busy)
            print(f"generated a {a.busy_client}-packet pair and its server capture with {a.busy} unrelated packets "
                  f"({os.path.getsize(busy) / 1e6:.0f} MB) in {time.perf_counter() - t:.1f} s -> {tmp}")
            floor = floor_of([busy], a.repeat)
            if floor is not None:
                print(f"libpcap     tcpdump -r -w /dev/null, the busy file {floor:.2f} s")
            res = report_whole(cli, busy, trees, a.repeat, floor, a.busy, "small client vs busy server")
            small = json.loads(whole(HERE, ["diff", cli, srv, "--json"])[2])
            got = json.loads(res[(HERE, True)][2])
            same = outcome_counts(got["diagnosis"]["by_protocol"]) == outcome_counts(small["diagnosis"]["by_protocol"])
            print(f"verdict     the small pair's without the unrelated traffic: {'same' if same else 'DIFFERENT'} "
                  f"{outcome_counts(got['diagnosis']['by_protocol'])}")
            if floor is not None:
                w = res[(HERE, False)][0]
                print(f"ratio       rig diff / floor {w / floor:.2f}x (goal <= 2x: {'ok' if w / floor <= 2 else 'MISSED'}); "
                      f"peak RSS {res[(HERE, False)][1]:.0f} MB (goal < 250 MB: "
                      f"{'ok' if res[(HERE, False)][1] < 250 else 'MISSED'})")
            return 0 if same else 1
        if a.mix:
            t = time.perf_counter()
            cli, srv, truth = make_mix(tmp, a.packets)
            print(f"generated the mix pair ({os.path.getsize(cli) / 1e6:.0f} + {os.path.getsize(srv) / 1e6:.0f} MB) "
                  f"in {time.perf_counter() - t:.1f} s -> {tmp}")
            floor = floor_of([cli, srv], a.repeat)
            if floor is not None:
                print(f"libpcap     tcpdump -r -w /dev/null, both files {floor:.2f} s")
            res = report_whole(cli, srv, trees, a.repeat, floor, a.packets, "mix pair")
            got = json.loads(res[(HERE, True)][2])
            want = {p: c for p, c in truth.items() if p != "datagrams"}
            found = outcome_counts(got["diagnosis"]["by_protocol"])
            ok = found == outcome_counts(want)
            lost = datagrams_lost(got)
            dg = truth["datagrams"]
            ok_dg = lost == {"out": dg["out"]["lost"], "back": dg["back"]["lost"]}
            print(f"truth       outcomes {'as generated' if ok else 'DIFFER'}: {found}"
                  + ("" if ok else f" (generated {outcome_counts(want)})"))
            print(f"truth       QUIC-like datagrams lost {'as generated' if ok_dg else 'DIFFER'}: {lost}")
            if floor is not None:
                for js in (False, True):
                    r = res[(HERE, js)][0] / floor
                    print(f"ratio       rig diff{' --json' if js else ''} / floor {r:.2f}x "
                          f"(goal <= 4x: {'ok' if r <= 4 else 'MISSED'})")
            tshark_ratio(tmp, cli, a.tshark_packets, res[(HERE, False)][0], None)
            return 0 if ok and ok_dg else 1
        t = time.perf_counter()
        tr = traffic(a.packets, quic=a.quic)
        cli, srv = os.path.join(tmp, "client.pcap"), os.path.join(tmp, "server.pcap")
        pc, ps = point(tr, "client"), point(tr, "server", pf=a.pf)
        sizes = write_pcap(cli, pc), write_pcap(srv, ps)
        del tr
        print(f"generated {pc['n']} + {ps['n']} packets ({sizes[0] / 1e6:.0f} + {sizes[1] / 1e6:.0f} MB) "
              f"in {time.perf_counter() - t:.1f} s -> {tmp}")
        n_c, n_s = pc["n"], ps["n"]
        del pc, ps

        floor = floor_of([cli, srv], a.repeat)
        if floor is not None:
            print(f"libpcap     tcpdump -r -w /dev/null, both files {floor:.2f} s  "
                  f"({(n_c + n_s) / floor / 1e6:.2f} M pkt/s)")
        whole_res = report_whole(cli, srv, trees, a.repeat, floor, n_c + n_s, "this pair")
        if floor is not None:
            for js in (False, True):
                r = whole_res[(HERE, js)][0] / floor
                print(f"ratio       rig diff{' --json' if js else ''} / floor {r:.2f}x (goal <= 4x: {'ok' if r <= 4 else 'MISSED'})")
        if not a.detail:
            tshark_ratio(tmp, cli, a.tshark_packets, whole_res[(HERE, False)][0], n_c + n_s)
            return 0
        res = run_rig(cli, srv, not a.no_analysis, a.repeat)
        # the parsing child (gone before the analysis starts) ran beside the parent's own
        # parse: its peak, less the table it shares, adds to the parent's peak while parsing
        peak = max(res.get("rss_total_mb", 0.0), res["rss_parse_mb"] + res["child_private_mb"])
        parse = res["parse_pair"]
        total = parse + res.get("analyse", 0.0)
        print(f"rig parse   one after the other: client {res['parse_client']:.2f} s  server {res['parse_server']:.2f} s; "
              f"both at once (rig diff): {parse:.2f} s ({(n_c + n_s) / parse / 1e6:.2f} M pkt/s)  "
              f"undecoded {res['undecoded']}")
        if "analyse" in res:
            print(f"rig analyse {res['analyse']:.2f} s  ({res['exchanges']} exchanges)")
        else:
            print("rig analyse not measured (--no-analysis or rig.analysis.api.analyse missing): parse only")
        print(f"rig total   {total:.2f} s  (+ {res['import']:.2f} s import)   peak RSS {peak:.0f} MB "
              f"(goal < 400 MB: {'ok' if peak < 400 else 'MISSED'}); while parsing {res['rss_parse_mb']:.0f} MB "
              f"+ the parsing child's {res['child_private_mb']:.0f} MB, analysing {res.get('rss_total_mb', 0):.0f} MB "
              f"(the two packet tables alone: {(n_c + n_s) * PACKET_BYTES / 2**20:.0f} MB)")
        if floor is not None:
            r = total / floor
            print(f"ratio       in-process rig/libpcap-floor {r:.2f}x (goal <= 4x: {'ok' if r <= 4 else 'MISSED'}); "
                  f"parse only {parse / floor:.2f}x")
        if shutil.which("tshark"):
            tf, nt = cli, n_c
            if a.tshark_packets and a.tshark_packets < n_c:
                tf, nt = os.path.join(tmp, "tshark.pcap"), a.tshark_packets
                prefix_pcap(cli, tf, nt)
            ts = timed(["tshark", "-n", "-r", tf, "-T", "fields", "-e", "frame.number"])
            ts_rate = nt / ts
            r = (n_c + n_s) / total / ts_rate
            rp = (n_c + n_s) / parse / ts_rate
            print(f"tshark      -T fields on {nt} packets {ts:.2f} s ({ts_rate / 1e6:.3f} M pkt/s)")
            print(f"ratio       tshark/rig per packet: rig's whole diff {r:.1f}x, rig's parse {rp:.1f}x "
                  f"(goal >= 20x: {'ok' if r >= 20 else 'MISSED'})")
    finally:
        print(f"load        average {os.getloadavg()[0]:.1f} at the end")
        if not a.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


def tshark_ratio(tmp: str, cli: str, limit: int, rig_wall: float, n_both: int | None) -> None:
    """tshark -T fields on (the first ``limit`` records of) the client file, per packet,
    against the whole ``rig diff`` of both files (``n_both`` packets; None: count them)."""
    if not shutil.which("tshark"):
        return
    from rig.capture import container

    n_c = len(container.walk(container.open_capture(cli), cli).data_off)
    if n_both is None:
        n_both = n_c + len(container.walk(container.open_capture(os.path.join(tmp, "server.pcap")),
                                          "server.pcap").data_off)
    tf, nt = cli, n_c
    if limit and limit < n_c:
        tf, nt = os.path.join(tmp, "tshark.pcap"), limit
        prefix_pcap(cli, tf, nt)
    ts = timed(["tshark", "-n", "-r", tf, "-T", "fields", "-e", "frame.number"])
    r = n_both / rig_wall / (nt / ts)
    print(f"tshark      -T fields on {nt} packets {ts:.2f} s ({nt / ts / 1e6:.3f} M pkt/s); per packet, the whole "
          f"rig diff is {r:.1f}x faster (goal >= 20x: {'ok' if r >= 20 else 'MISSED'})")


if __name__ == "__main__":
    sys.exit(main())
