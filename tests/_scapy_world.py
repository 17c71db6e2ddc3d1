"""An independent world of TCP connections through a double NAT, written with scapy.

rig's own generator (rig.capture.synth) shares its authors' ideas with the analysis; this
one does not import it. It plays connection attempts between clients behind a home
router (a FreeBSD pf box or a Linux masquerade) and a provider NAT, and servers that may
sit behind a cloud's 1:1 NAT, and writes what a client-side and a server-side tcpdump
would have recorded. For every connection it keeps its own record of what it did: which
packets it dropped and where, what a middlebox forged, and whether the two capture
windows saw enough to know. Nothing here asks rig anything.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from ipaddress import ip_address
from pathlib import Path

from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import CookedLinux, CookedLinuxV2, Ether
from scapy.packet import Packet
from scapy.utils import PcapNgWriter, PcapWriter

# PcapNgWriter warns of "inconsistent linktypes" when a file's first interface block is
# its default one; the file is sound (tshark reads every frame)
logging.getLogger("scapy.runtime").setLevel(logging.ERROR)

# what the generator did to one connection, and the outcome word that names it
FATES = {
    "ok": "delivered",
    "syn-lost-once": "delivered",
    "synack-lost-once": "delivered",
    "data-lost-once-out": "delivered",
    "data-lost-once-back": "delivered",
    "syn-lost": "lost-outbound",
    "synack-lost": "lost-return",
    "data-lost-out": "lost-outbound",
    "data-lost-back": "lost-return",
    "refused": "refused",
    "unanswered": "unanswered",
    "rst-mb-syn": "reset-by-middlebox",
    "rst-mb-data": "reset-by-middlebox",
    "mb-answer": "answered-by-middlebox",
}
DIRECTION = {"lost-outbound": "out", "lost-return": "return"}

LINKS = ("ether", "sll", "sll2-any", "raw")


@dataclass(frozen=True)
class Router:
    """The user's own NAT (or none): what it rewrites on the way out and back."""

    kind: str = "pf"  # pf | linux | none
    modulate: bool = True  # pf `modulate state`: the initiator's ISN shifted per connection
    ts_modulate: bool = False  # pf `scrub reassemble tcp`: TSval shifted per connection
    random_id: bool = False  # pf `scrub random-id`
    pf_ports: bool = True  # source ports rewritten into 50001-65535


@dataclass(frozen=True)
class Setup:
    """One world: the path, the captures, and how many of each fate."""

    seed: int
    family: int = 4
    router: Router = Router()
    cgn_ports: str = "keep"  # the provider NAT: keep | random source ports
    server_dnat: bool = False  # the server sees its own private address (a cloud's 1:1 NAT)
    mss_clamp: int | None = None  # MSS clamped on the path (both SYN and SYN-ACK)
    fates: tuple[str, ...] = tuple(FATES)
    per_fate: int = 2
    gap: float = 0.05  # seconds between connection starts
    clock_offset: float = 0.0  # server clock minus client clock
    server_starts_late: float | None = None  # true-time of the server capture start (None: from the beginning)
    client_stops_early: float | None = None  # true-time of the client capture stop
    client_link: str = "ether"
    server_link: str = "ether"
    client_ng: bool = False  # pcapng instead of pcap
    server_ng: bool = False
    clients: int = 3  # distinct client addresses
    servers: int = 2  # distinct server addresses


@dataclass
class Truth:
    """The generator's own record of one connection."""

    fate: str
    client: str  # "addr:port" as the client capture shows it
    server: str
    outcome: str
    direction: str | None
    dropped: list[tuple[str, str]] = field(default_factory=list)  # (what, "out"/"back")
    knowable: bool = True  # both windows saw all of it
    seen_anywhere: bool = True  # the client capture holds at least one of its packets
    partly: bool = False  # a window cut through it
    identifiable: bool = True  # a key survives the path for its packets at the server
    server_seen: bool = True  # the server capture holds a packet of this server address at all
    seen_as: str = ""  # the server's address as the server capture shows it

    def accepts(self, outcome: str) -> bool:
        if self.knowable and self.identifiable:
            return outcome == self.outcome
        if self.partly or not self.identifiable:
            return outcome in (self.outcome, "incomplete")
        return outcome == "incomplete"


@dataclass
class _Sent:
    t: float  # true time
    pkt: Packet


@dataclass
class World:
    setup: Setup
    client_pkts: list[_Sent] = field(default_factory=list)
    server_pkts: list[_Sent] = field(default_factory=list)
    truths: list[Truth] = field(default_factory=list)

    def write(self, client: Path, server: Path) -> None:
        s = self.setup
        c_start, c_stop = -1.0, s.client_stops_early if s.client_stops_early is not None else 1e9
        s_start = s.server_starts_late if s.server_starts_late is not None else -1.0
        _write(client, [p for p in self.client_pkts if c_start <= p.t <= c_stop], s.client_link, s.client_ng,
               base=1_765_000_000.0, rng=random.Random(s.seed * 7 + 1))
        _write(server, [p for p in self.server_pkts if p.t >= s_start], s.server_link, s.server_ng,
               base=1_765_000_000.0 + s.clock_offset, rng=random.Random(s.seed * 7 + 2))


def _write(path: Path, sent: list[_Sent], link: str, ng: bool, base: float, rng: random.Random) -> None:
    sent = sorted(sent, key=lambda p: p.t)
    frames: list[tuple[float, Packet, str]] = []
    mac_a, mac_b = "02:00:00:00:00:01", "02:00:00:00:00:02"
    for p in sent:
        ip = p.pkt
        t = base + p.t
        if link == "ether":
            frames.append((t, Ether(src=mac_a, dst=mac_b) / ip, "eth0"))
        elif link == "raw":
            frames.append((t, ip, "ppp0"))
        elif link == "sll":
            proto = 0x86DD if ip.version == 6 else 0x0800
            frames.append((t, CookedLinux(pkttype=rng.choice((0, 4)), lladdrtype=1, lladdrlen=6,
                                          src=b"\x02\x00\x00\x00\x00\x01\x00\x00", proto=proto) / ip, "any"))
        elif link == "sll2-any":  # tcpdump -i any: each packet on a bridge and its port
            proto = 0x86DD if ip.version == 6 else 0x0800
            for k, ifindex in enumerate((3, 4)):
                frames.append((t + k * 0.000013, CookedLinuxV2(proto=proto, ifindex=ifindex, lladdrtype=1,
                                                               pkttype=0, lladdrlen=6,
                                                               src=b"\x02\x00\x00\x00\x00\x01\x00\x00") / ip,
                               "any"))
        else:
            raise ValueError(link)
    frames.sort(key=lambda f: f[0])
    if ng:
        w = PcapNgWriter(str(path))
        for t, fr, ifname in frames:
            fr.time = t
            fr.sniffed_on = ifname
            w.write(fr)
        w.close()
    else:
        lt = {"ether": 1, "raw": 101, "sll": 113, "sll2-any": 276}[link]
        w = PcapWriter(str(path), linktype=lt, nano=rng.random() < 0.5)
        for t, fr, _ in frames:
            fr.time = t
            w.write(fr)
        w.close()


# ---------------------------------------------------------------------------------------
# the path


@dataclass
class _Path:
    """One connection's view of the path: addresses at both points and the rewrites."""

    family: int
    c_addr: str
    c_port: int
    s_addr: str  # as the client addressed it
    s_port: int
    pub_addr: str  # the client as the server sees it
    pub_port: int
    srv_addr: str  # the server as it sees itself
    isn_delta: int
    ts_delta: int
    random_id: bool
    mss_clamp: int | None
    hops_out: int
    hops_back: int
    owd: float
    rng: random.Random

    def ip_c2s_client(self, ttl: int = 64, ipid: int = 0):
        if self.family == 6:
            return IPv6(src=self.c_addr, dst=self.s_addr, hlim=ttl)
        return IP(src=self.c_addr, dst=self.s_addr, ttl=ttl, id=ipid, flags="DF")

    def ip_c2s_server(self, ttl: int = 64, ipid: int = 0):
        if self.family == 6:
            return IPv6(src=self.pub_addr, dst=self.srv_addr, hlim=ttl - self.hops_out)
        if self.random_id:
            ipid = self.rng.randrange(65536)
        return IP(src=self.pub_addr, dst=self.srv_addr, ttl=ttl - self.hops_out, id=ipid, flags="DF")

    def ip_s2c_server(self, ttl: int = 64, ipid: int = 0):
        if self.family == 6:
            return IPv6(src=self.srv_addr, dst=self.pub_addr, hlim=ttl)
        return IP(src=self.srv_addr, dst=self.pub_addr, ttl=ttl, id=ipid, flags="DF")

    def ip_s2c_client(self, ttl: int = 64, ipid: int = 0, hops: int | None = None):
        hops = self.hops_back if hops is None else hops
        if self.family == 6:
            return IPv6(src=self.s_addr, dst=self.c_addr, hlim=ttl - hops)
        return IP(src=self.s_addr, dst=self.c_addr, ttl=ttl - hops, id=ipid, flags="DF")


def _opts(mss: int | None, tsval: int | None, tsecr: int) -> list:
    o: list = []
    if mss is not None:
        o.append(("MSS", mss))
        o.append(("SAckOK", b""))
    if tsval is not None:
        o.append(("Timestamp", (tsval % 2**32, tsecr % 2**32)))
    if mss is not None:
        o.append(("NOP", None))
        o.append(("WScale", 7))
    return o


class _Conn:
    """Plays one connection; `out`/`back` put a packet on the wire at both points."""

    def __init__(self, world: World, path: _Path, t0: float, truth: Truth, rng: random.Random):
        self.w, self.p, self.t0, self.truth, self.rng = world, path, t0, truth, rng
        self.isn_c = rng.randrange(2**32)
        self.isn_s = rng.randrange(2**32)
        self.ts_c0 = rng.randrange(2**32)
        self.ts_s0 = rng.randrange(2**32)
        self.ipid_c = rng.randrange(65536)
        self.ipid_s = rng.randrange(65536)
        self.last_ts_c = 0
        self.last_ts_s = 0
        self.spans: dict[str, list[float]] = {"client": [], "server": []}

    def tsc(self, t: float) -> int:
        return (self.ts_c0 + int(t * 1000)) % 2**32

    def tss(self, t: float) -> int:
        return (self.ts_s0 + int(t * 1000)) % 2**32

    def out(self, dt: float, flags: str, seq: int, ack: int, data: bytes = b"", syn_opts: bool = False,
            lost: bool = False, what: str = "") -> None:
        """The client sends; seq/ack in the client's own numbers."""
        t = self.t0 + dt
        p = self.p
        self.ipid_c = (self.ipid_c + 1) % 65536
        tsval = self.tsc(t)
        mss = 1460 if p.family == 4 else 1440
        tcp_c = TCP(sport=p.c_port, dport=p.s_port, flags=flags, seq=seq % 2**32, ack=ack % 2**32 if "A" in flags else 0,
                    window=64240, options=_opts(mss if syn_opts else None, tsval, self.last_ts_s if "A" in flags else 0))
        self.w.client_pkts.append(_Sent(t, p.ip_c2s_client(ipid=self.ipid_c) / tcp_c / data))
        self.spans["client"].append(t)
        ts = t + p.owd
        self.spans["server"].append(ts)
        if lost:
            self.truth.dropped.append((what or flags, "out"))
            return
        mss_s = min(mss, p.mss_clamp) if p.mss_clamp else mss
        ecr = (self.last_ts_s + 0) if "A" in flags else 0
        tcp_s = TCP(sport=p.pub_port, dport=p.s_port, flags=flags, seq=(seq + p.isn_delta) % 2**32,
                    ack=ack % 2**32 if "A" in flags else 0, window=64240,
                    options=_opts(mss_s if syn_opts else None, (tsval + p.ts_delta) % 2**32, ecr))
        self.w.server_pkts.append(_Sent(ts, p.ip_c2s_server(ipid=self.ipid_c) / tcp_s / data))
        self.last_ts_c = tsval

    def back(self, dt: float, flags: str, seq: int, ack: int, data: bytes = b"", syn_opts: bool = False,
             lost: bool = False, what: str = "") -> None:
        """The server sends; seq in the server's numbers, ack in the client's own numbers."""
        t = self.t0 + dt
        p = self.p
        self.ipid_s = (self.ipid_s + 1) % 65536
        tsval = self.tss(t)
        mss = 1460 if p.family == 4 else 1440
        # the server echoes the client's TSval as it saw it (shifted by pf's modulation)
        ecr_s = (self.last_ts_c + p.ts_delta) % 2**32 if self.last_ts_c else 0
        tcp_s = TCP(sport=p.s_port, dport=p.pub_port, flags=flags, seq=seq % 2**32,
                    ack=(ack + p.isn_delta) % 2**32 if "A" in flags else 0, window=65160,
                    options=_opts(mss if syn_opts else None, tsval, ecr_s) if "R" not in flags else [])
        self.w.server_pkts.append(_Sent(t, p.ip_s2c_server(ipid=self.ipid_s if "R" not in flags else 0) / tcp_s / data))
        self.spans["server"].append(t)
        tc = t + p.owd
        self.spans["client"].append(tc)
        if lost:
            self.truth.dropped.append((what or flags, "back"))
            return
        mss_c = min(mss, p.mss_clamp) if p.mss_clamp else mss
        tcp_c = TCP(sport=p.s_port, dport=p.c_port, flags=flags, seq=seq % 2**32,
                    ack=ack % 2**32 if "A" in flags else 0, window=65160,
                    options=_opts(mss_c if syn_opts else None, tsval, self.last_ts_c) if "R" not in flags else [])
        self.w.client_pkts.append(_Sent(tc, p.ip_s2c_client(ipid=self.ipid_s if "R" not in flags else 0) / tcp_c / data))
        self.last_ts_s = tsval

    def forge_to_client(self, dt: float, flags: str, seq: int, ack: int, data: bytes = b"", syn_opts: bool = False) -> None:
        """A middlebox near the client answers in the server's name; the server sees nothing."""
        t = self.t0 + dt + self.p.owd / 6
        p = self.p
        tsval = (self.ts_s0 ^ 0x5A5A5A5A) + int(t * 1000)
        tcp_c = TCP(sport=p.s_port, dport=p.c_port, flags=flags, seq=seq % 2**32, ack=ack % 2**32 if "A" in flags else 0,
                    window=29200, options=_opts(1460 if syn_opts else None, tsval, self.last_ts_c) if "R" not in flags else [])
        self.w.client_pkts.append(_Sent(t, p.ip_s2c_client(ipid=0, hops=1) / tcp_c / data))
        self.spans["client"].append(t)
        self.truth.dropped.append(("forged " + flags, "back"))

    def forge_to_server(self, dt: float, flags: str, seq: int, ack: int) -> None:
        t = self.t0 + dt + self.p.owd * 5 / 6
        p = self.p
        tcp_s = TCP(sport=p.pub_port, dport=p.s_port, flags=flags, seq=(seq + p.isn_delta) % 2**32, ack=ack % 2**32,
                    window=0)
        self.w.server_pkts.append(_Sent(t, p.ip_c2s_server(ttl=64 - p.hops_out + 9, ipid=0) / tcp_s))
        self.spans["server"].append(t)

    # --- the fates -----------------------------------------------------------------------

    def play(self, fate: str, nonce: str) -> None:
        ic, is_ = self.isn_c, self.isn_s
        req = f"GET /{nonce} HTTP/1.1\r\nHost: rig\r\nCache-Control: no-cache\r\n\r\n".encode()
        body = f"HTTP/1.1 200 OK\r\nContent-Length: 24\r\n\r\n{nonce:<24}".encode()[:200]
        rtt = 2 * self.p.owd
        syn_times = (0.0, 1.0, 3.0, 7.0)
        if fate in ("syn-lost", "unanswered", "synack-lost"):
            for k, st in enumerate(syn_times):
                self.out(st, "S", ic, 0, syn_opts=True, lost=fate == "syn-lost", what=f"SYN #{k + 1}")
                if fate == "synack-lost":
                    self.back(st + self.p.owd + 0.0001, "SA", is_, ic + 1, syn_opts=True, lost=True,
                              what=f"SYN-ACK #{k + 1}")
            if fate == "synack-lost":  # the server's own SYN-ACK timer too
                self.back(self.p.owd + 1.0003, "SA", is_, ic + 1, syn_opts=True, lost=True, what="SYN-ACK timer")
            return
        if fate == "refused":
            self.out(0, "S", ic, 0, syn_opts=True)
            self.back(self.p.owd + 0.0001, "RA", 0, ic + 1)
            return
        if fate == "rst-mb-syn":
            self.out(0, "S", ic, 0, syn_opts=True, lost=True, what="SYN (firewall)")
            self.forge_to_client(0.0002, "RA", 0, ic + 1)
            return
        if fate == "mb-answer":
            self.out(0, "S", ic, 0, syn_opts=True, lost=True, what="SYN (proxy)")
            mb_isn = self.rng.randrange(2**32)
            self.forge_to_client(0.0002, "SA", mb_isn, ic + 1, syn_opts=True)
            self.out(0.001, "A", ic + 1, mb_isn + 1, lost=True, what="ACK (proxy)")
            self.out(0.0011, "PA", ic + 1, mb_isn + 1, req, lost=True, what="request (proxy)")
            self.forge_to_client(0.002, "PA", mb_isn + 1, ic + 1 + len(req), body)
            self.out(0.003, "FA", ic + 1 + len(req), mb_isn + 1 + len(body), lost=True, what="FIN (proxy)")
            self.forge_to_client(0.004, "FA", mb_isn + 1 + len(body), ic + 2 + len(req))
            self.out(0.005, "A", ic + 2 + len(req), mb_isn + 2 + len(body), lost=True, what="ACK (proxy)")
            return
        # a handshake that completes
        t = 0.0
        if fate == "syn-lost-once":
            self.out(0, "S", ic, 0, syn_opts=True, lost=True, what="SYN #1")
            t = 1.0
        self.out(t, "S", ic, 0, syn_opts=True)
        t += self.p.owd + 0.0001
        if fate == "synack-lost-once":
            self.back(t, "SA", is_, ic + 1, syn_opts=True, lost=True, what="SYN-ACK #1")
            t = 1.0
            self.out(t, "S", ic, 0, syn_opts=True)
            t += self.p.owd + 0.0001
        self.back(t, "SA", is_, ic + 1, syn_opts=True)
        t += self.p.owd + 0.0001
        self.out(t, "A", ic + 1, is_ + 1)
        t += 0.00005
        if fate == "data-lost-out":
            for k, rt in enumerate((0.0, 0.2, 0.6, 1.4, 3.0)):
                self.out(t + rt, "PA", ic + 1, is_ + 1, req, lost=True, what=f"request #{k + 1}")
            return
        if fate == "data-lost-once-out":
            self.out(t, "PA", ic + 1, is_ + 1, req, lost=True, what="request #1")
            t += 0.2
        self.out(t, "PA", ic + 1, is_ + 1, req)
        t += self.p.owd + 0.0002
        if fate == "rst-mb-data":  # an injector resets both ends after the request
            self.forge_to_client(t - self.p.owd, "RA", is_ + 1, ic + 1 + len(req))
            self.forge_to_server(t - self.p.owd, "R", ic + 1 + len(req), 0)
            return
        self.back(t, "A", is_ + 1, ic + 1 + len(req))
        t += 0.0005
        if fate == "data-lost-back":
            for k, rt in enumerate((0.0, 0.2, 0.6, 1.4, 3.0)):
                self.back(t + rt, "PA", is_ + 1, ic + 1 + len(req), body, lost=True, what=f"response #{k + 1}")
            return
        if fate == "data-lost-once-back":
            self.back(t, "PA", is_ + 1, ic + 1 + len(req), body, lost=True, what="response #1")
            t += 0.2
        self.back(t, "PA", is_ + 1, ic + 1 + len(req), body)
        t += self.p.owd + 0.0001
        self.out(t, "A", ic + 1 + len(req), is_ + 1 + len(body))
        t += 0.001
        self.out(t, "FA", ic + 1 + len(req), is_ + 1 + len(body))
        t += self.p.owd + 0.0001
        self.back(t, "FA", is_ + 1 + len(body), ic + 2 + len(req))
        t += self.p.owd + 0.0001
        self.out(t, "A", ic + 2 + len(req), is_ + 2 + len(body))
        del rtt


def build(setup: Setup) -> World:
    """Play every connection of ``setup`` and keep both captures' packets and the truths."""
    rng = random.Random(setup.seed)
    w = World(setup)
    fam = setup.family
    if fam == 4:
        clients = [f"192.168.{rng.choice((1, 10))}.{10 + i}" for i in range(setup.clients)]
        servers = [f"198.51.100.{10 + i}" if i % 2 == 0 else f"203.0.113.{80 + i}" for i in range(setup.servers)]
        publics = ["192.0.2.7", "192.0.2.9"]
    else:
        clients = [f"2001:db8:1:{i}::{10 + i:x}" for i in range(setup.clients)]
        servers = [f"2001:db8:ff::{10 + i:x}" for i in range(setup.servers)]
        publics = []
    used_pub: set[tuple[str, int, str, int]] = set()
    used_cli: set[tuple[str, int]] = set()
    fates = [f for f in setup.fates for _ in range(setup.per_fate)]
    rng.shuffle(fates)
    t0 = 0.5
    spans: list[tuple[dict[str, list[float]], Truth]] = []
    r = setup.router
    for n, fate in enumerate(fates):
        c_addr = rng.choice(clients)
        s_i = rng.randrange(len(servers)) if rng.random() < 0.4 else 0  # most go to one server
        s_addr = servers[s_i]
        s_port = 80 if rng.random() < 0.8 else 443
        while True:
            c_port = rng.randrange(32768, 61000)
            if (c_addr, c_port) not in used_cli:
                used_cli.add((c_addr, c_port))
                break
        if fam == 6 or r.kind == "none":
            pub_addr, pub_port = c_addr, c_port
        else:
            pub_addr = publics[clients.index(c_addr) % len(publics)] if r.kind != "none" else c_addr
            while True:
                if r.kind == "pf" and r.pf_ports:
                    pub_port = rng.randrange(50001, 65536)
                else:
                    pub_port = c_port
                if setup.cgn_ports == "random":
                    pub_port = rng.randrange(1024, 65536)
                key = (pub_addr, pub_port, s_addr, s_port)
                if key not in used_pub:
                    used_pub.add(key)
                    break
                if r.kind == "linux" and setup.cgn_ports == "keep":
                    pub_port = rng.randrange(1024, 65536)  # masquerade avoids a clash
                    key = (pub_addr, pub_port, s_addr, s_port)
                    if key not in used_pub:
                        used_pub.add(key)
                        break
        srv_addr = s_addr
        if setup.server_dnat and fam == 4:
            srv_addr = f"10.0.0.{4 + servers.index(s_addr)}"
        pf = r.kind == "pf"
        path = _Path(family=fam, c_addr=c_addr, c_port=c_port, s_addr=s_addr, s_port=s_port,
                     pub_addr=pub_addr, pub_port=pub_port, srv_addr=srv_addr,
                     isn_delta=rng.randrange(1, 2**32) if pf and r.modulate else 0,
                     ts_delta=rng.randrange(1, 2**32) if pf and r.ts_modulate else 0,
                     random_id=pf and r.random_id and fam == 4,
                     mss_clamp=setup.mss_clamp, hops_out=rng.choice((11, 12)), hops_back=rng.choice((11, 12)),
                     owd=0.004 + 0.002 * rng.random(), rng=random.Random(rng.random()))
        outcome = FATES[fate]
        c_text = str(ip_address(c_addr))
        fam_addr = f"[{c_text}]" if fam == 6 else c_text
        truth = Truth(fate=fate, client=f"{fam_addr}:{c_port}", server=f"{s_addr}:{s_port}", outcome=outcome,
                      direction=DIRECTION.get(outcome))
        conn = _Conn(w, path, t0, truth, random.Random(rng.random()))
        conn.play(fate, f"n{setup.seed}x{n}")
        # does a key survive for this connection's packets at the server?  the ISN
        # (unless modulated), the IP ID (IPv4, unless random-id), the TSval (unless
        # modulated), or a request the server received
        keys = [path.isn_delta == 0, fam == 4 and not path.random_id, path.ts_delta == 0]
        truth.identifiable = any(keys) or fate in ("ok", "syn-lost-once", "synack-lost-once", "data-lost-once-out",
                                                   "data-lost-once-back", "data-lost-back", "refused-never")
        spans.append((conn.spans, truth))
        truth.seen_as = str(ip_address(srv_addr))
        w.truths.append(truth)
        t0 += setup.gap * (0.5 + rng.random())
    # what each file shows of its window: a capture was surely running only from its first
    # written packet to its last (no file records when tcpdump listened), so what would have
    # reached the server before the server file's first packet, or the client after the
    # client file's last, cannot be known from the two files
    s_start = setup.server_starts_late if setup.server_starts_late is not None else -1.0
    c_stop = setup.client_stops_early if setup.client_stops_early is not None else 1e9
    s_first = min((p.t for p in w.server_pkts if p.t >= s_start), default=s_start)
    c_last = max((p.t for p in w.client_pkts if p.t <= c_stop), default=c_stop)
    for sp, truth in spans:
        _windows(sp, truth, max(s_start, s_first), min(c_stop, c_last))
    # which server addresses the server capture shows at all: a client capture talks to
    # many hosts, and an address the server capture never holds is not known as the server's
    s_start = setup.server_starts_late if setup.server_starts_late is not None else -1.0
    shown = {str(ip_address(p.pkt.src)) for p in w.server_pkts if p.t >= s_start}
    shown |= {str(ip_address(p.pkt.dst)) for p in w.server_pkts if p.t >= s_start}
    inside = {t.server for t in w.truths if t.knowable}
    for t in w.truths:
        # behind a cloud's 1:1 NAT the address the client used shows only through a
        # connection both captures hold whole
        t.server_seen = t.seen_as in shown and (not setup.server_dnat or t.server in inside)
    return w


def _windows(spans: dict[str, list[float]], truth: Truth, s_start: float, c_stop: float) -> None:
    cs, ss = spans["client"], spans["server"]
    c_in = [t <= c_stop for t in cs]
    s_in = [t >= s_start for t in ss]
    truth.seen_anywhere = any(c_in)
    truth.knowable = all(c_in) and all(s_in)
    truth.partly = not truth.knowable and any(c_in) and any(s_in) and (not all(c_in) or not all(s_in))
    if not truth.knowable:
        truth.dropped.append(("outside a capture window", "-"))
