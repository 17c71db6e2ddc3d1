"""An independent generator of client/server capture pairs for UDP and ICMP, built with
scapy (it shares no code with ``rig.capture.synth``), and its own record of the truth.

The path it draws: client hosts on 192.168.1.0/24 (and 2001:db8:1::/64) behind a FreeBSD
pf router (NAT to 10.0.0.2, source ports 50001-65535, ``scrub random-id``), then a
provider NAT (MAP-E CE / DS-Lite AFTR) with a pool of public addresses and a port set of
15 blocks of 16 ports (PSID offset 4), then the Internet and the servers. IPv6 is not
translated (native IPoE). Every datagram is drawn once, with where it was dropped (out:
before the server, back: before the client, or nowhere), and written at each capture
point as that point would see it. ``Truth`` holds, per exchange, the outcomes that are
true of it and its datagram counts, computed from the drawing alone.
"""

from __future__ import annotations

import ipaddress
import os
import random
from dataclasses import dataclass, field, replace

from scapy.layers.inet import ICMP, IP, UDP, IPerror, UDPerror, ICMPerror, fragment
from scapy.layers.inet6 import (ICMPv6DestUnreach, ICMPv6EchoReply, ICMPv6EchoRequest, ICMPv6PacketTooBig, IPerror6,
                                IPv6)
from scapy.layers.l2 import CookedLinux, CookedLinuxV2, Ether
from scapy.packet import Raw
from scapy.utils import PcapNgWriter, PcapWriter


SERVER4 = "198.51.100.10"
SERVER6 = "2001:db8:ffff::10"
PF_WAN = "10.0.0.2"  # pf's outside address, inside the provider's NAT
CE_INSIDE = "10.0.0.1"  # the provider's CPE / CE, which sends frag-needed for its tunnel MTU
PATH_ROUTER = "192.0.2.1"  # a router on the Internet side, past both NATs
POOL = ["203.0.113.%d" % i for i in (5, 6, 7, 8)]
PSID = 0x5A  # port set: (A << 12) | (PSID << 4) | j, A in 1..15, j in 0..15
HOPS = 9  # TTL lost between client and server, each way

DNS, NTP, STUN, QUIC = 53, 123, 3478, 443


def map_e_ports() -> list[int]:
    return [(a << 12) | (PSID << 4) | j for a in range(1, 16) for j in range(16)]


@dataclass
class Dgram:
    """One datagram (or echo / ICMP error) as drawn: who sent it, and whether it arrived."""

    flow: "Flow"
    out: bool  # client to server
    t: float  # when its sender sent it (true time, seconds)
    payload: bytes
    lost: bool = False  # dropped on the way (out: before the server; back: before the client)
    kind: str = "data"  # data | echo | unreach-server | unreach-router | frag-needed
    df: bool = False
    later_frags_lost: bool = False  # IPv4 fragments after the first dropped on the way (MAP-E BR)
    later_frags_uncaptured: bool = False  # neither capture holds the later fragments (a port filter)
    icmp_seq: int = 0
    ip_ids: tuple[int, int] = (0, 0)  # IPv4 ID at the client, and past pf's random-id (the server's)
    from_port: int | None = None  # a server datagram sent from another port than the flow's


@dataclass
class Flow:
    """One exchange as the generator means it: a 4-tuple (UDP) or one echo (ICMP)."""

    proto: str  # udp | icmp
    family: int
    client: str
    cport: int  # UDP source port at the client, or the ICMP echo id
    server: str
    sport: int  # UDP server port (0 for ICMP)
    mid_port: int = 0  # after pf
    pub: str = ""  # after the provider NAT (the server's view)
    pub_port: int = 0
    dgrams: list[Dgram] = field(default_factory=list)
    name: str = ""
    knowable: bool = True  # the captures hold what it takes to decide it
    rng: random.Random = field(default_factory=random.Random, repr=False)
    rebind_at: float | None = None  # after this, the NATs map the flow to ``rebound_to``
    rebound_to: tuple[int, str, int] | None = None

    def add(self, out: bool, t: float, payload: bytes, **kw) -> Dgram:
        d = Dgram(self, out, t, payload, **kw)
        if self.family == 4:
            d.ip_ids = (self.rng.randrange(1, 65536), self.rng.randrange(1, 65536))
        self.dgrams.append(d)
        return d


@dataclass(frozen=True)
class Truth:
    """What is true of one exchange, from the drawing alone."""

    key: tuple  # (protocol, client endpoint, server endpoint, echo (id, seq) or None)
    outcomes: frozenset[str]  # the words that are true of it (more than one where both fit)
    datagrams: tuple[int, int, int, int] | None  # (out sent, out lost, back sent, back lost); None: not checked
    knowable: bool  # False: the captures cannot show it, `incomplete` is right too
    name: str
    frame: int | None  # the position in the client capture of its first datagram out (None: not there)


def endpoint(addr: str, port: int | None) -> str:
    if port is None:
        return addr
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


class Drawing:
    """A run drawn at random from ``seed``: flows, losses, NAT rewrites, capture windows."""

    def __init__(self, seed: int, *, offset_s: float = 0.0, server_start: float | None = None,
                 client_stop: float | None = None, noise_hosts: int = 0, noise_sntp: int = 0, refrag: bool = False):
        self.rng = random.Random(seed)
        self.flows: list[Flow] = []
        self.offset_s = offset_s  # the server's clock minus the client's
        self.server_start = server_start  # true time the server capture started (None: before all)
        self.client_stop = client_stop  # true time the client capture stopped (None: after all)
        self.noise_hosts = noise_hosts
        self.noise_sntp = noise_sntp
        self.refrag = refrag
        self._pf_used: set[int] = set()
        self._pub_used: set[tuple[str, int]] = set()
        self._mapped: dict[tuple, tuple[int, str, int]] = {}
        self._pub_ports = map_e_ports()
        self.t = 1_000.0  # true time of the next flow's start
        self.at_client: dict[int, int] = {}
        self.unseen: set[int] = set()
        self.id_ = self.rng.randrange(65536)

    # --- NAT ------------------------------------------------------------------------
    def _nat(self, f: Flow) -> None:
        """Endpoint-independent mapping: one (host, port) keeps its public endpoint for
        every peer (a DHT node's one socket)."""
        if f.family == 6:
            f.mid_port, f.pub, f.pub_port = f.cport, f.client, f.cport
            return
        held = self._mapped.get((f.proto, f.client, f.cport))
        if held:
            f.mid_port, f.pub, f.pub_port = held
            return
        if len(self._pub_used) >= len(POOL) * len(self._pub_ports):
            raise ValueError("the provider's port set is exhausted")
        while True:
            p = self.rng.randint(50001, 65535)
            if p not in self._pf_used:
                self._pf_used.add(p)
                break
        f.mid_port = p
        while True:
            pub = (self.rng.choice(POOL), self.rng.choice(self._pub_ports))
            if pub not in self._pub_used:
                self._pub_used.add(pub)
                break
        f.pub, f.pub_port = pub
        self._mapped[(f.proto, f.client, f.cport)] = (f.mid_port, f.pub, f.pub_port)

    def flow(self, proto: str, family: int, host: int, sport: int, name: str, cport: int | None = None) -> Flow:
        client = f"192.168.1.{host}" if family == 4 else f"2001:db8:1::{host:x}"
        server = SERVER4 if family == 4 else SERVER6
        if cport is None:
            cport = self.rng.randint(32768, 60999) if proto == "udp" else self.rng.randrange(1, 65536)
        f = Flow(proto, family, client, cport, server, sport, name=name, rng=self.rng)
        self._nat(f)
        self.flows.append(f)
        return f

    def step(self, dt: float = 0.5) -> float:
        self.t += dt
        return self.t

    # --- the truth ------------------------------------------------------------------
    def truths(self) -> list[Truth]:
        """The truth of every exchange whose first packet out is in the client's capture
        (call after ``packets``). One that a capture window cut into is not knowable."""
        out = []
        for f in self.flows:
            got = self._echo_truths(f) if f.proto == "icmp" else [self._udp_truth(f)]
            for t in got:
                if t.frame is None:
                    continue  # the client's capture never shows it: no exchange to give
                units = [d for d in f.dgrams if f.proto != "icmp" or d.icmp_seq == t.key[3][1]]
                if any(id(d) in self.unseen for d in units):
                    t = replace(t, knowable=False)
                if f.server not in (SERVER4, SERVER6):  # no capture at the far end: nothing is true of it
                    t = replace(t, outcomes=frozenset(), knowable=False)
                out.append(t)
        return out

    def _echo_truths(self, f: Flow) -> list[Truth]:
        res = []
        for d in (x for x in f.dgrams if x.out):
            key = ("icmp", f.client, f.server, (f.cport, d.icmp_seq))
            replies = [x for x in f.dgrams if not x.out and x.icmp_seq == d.icmp_seq]
            errs = [x for x in replies if x.kind != "echo"]
            if d.lost and errs and any(not e.lost for e in errs):
                words = {"lost-outbound", "reset-by-middlebox"}  # a router answered for a lost request
            elif d.lost:
                words = {"lost-outbound"}
            elif not replies:
                words = {"unanswered"}
            elif all(r.lost for r in replies):
                words = {"lost-return"}
            else:
                words = {"delivered"}
            res.append(Truth(key, frozenset(words), None, f.knowable, f.name, self.at_client.get(id(d))))
        return res

    def _udp_truth(self, f: Flow) -> Truth:
        outs = [d for d in f.dgrams if d.out]
        backs = [d for d in f.dgrams if not d.out]
        data_back = [d for d in backs if d.kind == "data"]
        errs = [d for d in backs if d.kind != "data"]
        arrived_out = [d for d in outs if not d.lost and not d.later_frags_lost]
        key = ("udp", endpoint(f.client, f.cport), endpoint(f.server, f.sport), None)
        router_err = [e for e in errs if e.kind == "unreach-router"]
        server_err = [e for e in errs if e.kind == "unreach-server"]
        if router_err:
            words = {"lost-outbound", "reset-by-middlebox"} if any(not e.lost for e in router_err) else {"lost-outbound"}
        elif not arrived_out and not data_back:
            words = {"lost-outbound"}
        elif server_err and not data_back:
            words = {"refused"} if any(not e.lost for e in server_err) else {"lost-return"}
        elif not data_back:
            words = {"unanswered"}
        elif all(d.lost or d.later_frags_lost for d in data_back):
            words = {"lost-return"}
        else:
            words = {"delivered"}
        counts = None
        if not errs and not any(d.later_frags_lost or d.later_frags_uncaptured for d in f.dgrams):
            counts = (len(outs), sum(d.lost for d in outs), len(data_back), sum(d.lost for d in data_back))
        return Truth(key, frozenset(words), counts, f.knowable, f.name,
                     self.at_client.get(id(outs[0])) if outs else None)

    # --- the captures ---------------------------------------------------------------
    def packets(self) -> tuple[list, list]:
        """(client packets, server packets): (time at that point, IP packet) in time order.
        Notes in ``at_client`` where each datagram's first packet is in the client's."""
        cpk, spk = [], []
        for f in self.flows:
            for d in f.dgrams:
                n, m = len(cpk), len(spk)
                self._emit(f, d, cpk, spk)
                cpk[n:] = [(t, p, d) for t, p in cpk[n:]]
                spk[m:] = [(t, p, d) for t, p in spk[m:]]
        spk += [(t, p, None) for t, p in self._noise()]
        cpk.sort(key=lambda x: x[0])
        spk.sort(key=lambda x: x[0])
        # what a capture window left out: the datagrams one of whose packets it lacks
        self.unseen = set()
        for f in self.flows:  # a lost datagram a window would have missed where it was to arrive
            for d in f.dgrams:
                at_recv = d.t + 0.02
                if d.out and self.server_start is not None and at_recv < self.server_start + 0.01:
                    self.unseen.add(id(d))
                if not d.out and self.client_stop is not None and at_recv > self.client_stop - 0.01:
                    self.unseen.add(id(d))
                if d.out and self.client_stop is not None and d.t >= self.client_stop:
                    self.unseen.add(id(d))
                if not d.out and self.server_start is not None and d.t < self.server_start:
                    self.unseen.add(id(d))
        if self.client_stop is not None:
            self.unseen |= {id(x[2]) for x in cpk if x[0] >= self.client_stop}
            cpk = [x for x in cpk if x[0] < self.client_stop]
        if self.server_start is not None:
            self.unseen |= {id(x[2]) for x in spk if x[0] < self.server_start and x[2] is not None}
            spk = [x for x in spk if x[0] >= self.server_start]
        # what each file shows of its window: no capture file records when tcpdump listened,
        # so a datagram neither file holds that would have reached the server before the
        # server file's first packet (or the client after the client file's last) cannot be
        # known from the two files, however early the real capture began
        s_first = spk[0][0] if spk else None
        c_last = cpk[-1][0] if cpk else None
        at_server = {id(x[2]) for x in spk}
        at_client = {id(x[2]) for x in cpk}
        for f in self.flows:
            for d in f.dgrams:
                at_recv = d.t + 0.02
                if d.out and id(d) not in at_server and s_first is not None and at_recv < s_first + 0.01:
                    self.unseen.add(id(d))
                if not d.out and id(d) not in at_client and c_last is not None and at_recv > c_last - 0.01:
                    self.unseen.add(id(d))
        self.at_client = {}
        for i, (_, _, d) in enumerate(cpk):
            self.at_client.setdefault(id(d), i)
        return [(t, p) for t, p, _ in cpk], [(t + self.offset_s, p) for t, p, _ in spk]

    def _ip(self, family: int, src: str, dst: str, ttl: int, df: bool = False, ident: int | None = None):
        if family == 6:
            return IPv6(src=src, dst=dst, hlim=ttl)
        return IP(src=src, dst=dst, ttl=ttl, flags="DF" if df else 0,
                  id=self.rng.randrange(65536) if ident is None else ident)

    def _l4(self, f: Flow, d: Dgram, sport: int, dport: int, ident: int):
        if f.proto == "icmp":
            if f.family == 6:
                cls = ICMPv6EchoRequest if d.out else ICMPv6EchoReply
                return cls(id=ident, seq=d.icmp_seq) / Raw(d.payload)
            return ICMP(type=8 if d.out else 0, id=ident, seq=d.icmp_seq) / Raw(d.payload)
        return UDP(sport=sport, dport=dport) / Raw(d.payload)

    def _frags(self, pkt, d: Dgram, keep_all: bool, received: bool = False):
        """IPv4 fragments of a datagram larger than 1500 bytes. ``received``: as the far
        point gets them; with ``refrag``, fragmented anew for the MAP-E tunnel (1460: pf
        reassembles, the CE fragments again) and arriving last fragment first."""
        if pkt.haslayer(IP) and len(pkt) > 1500:
            fr = fragment(pkt, fragsize=1432 if received and self.refrag else 1480)
            fr = fr if keep_all else fr[:1]
            return fr[::-1] if received and self.refrag else fr
        return [pkt]

    def _emit(self, f: Flow, d: Dgram, cpk: list, spk: list) -> None:
        if f.server not in (SERVER4, SERVER6):  # a peer elsewhere: the server's capture never sees it
            spk = []
        lat = 0.020 + self.rng.random() * 0.01
        if f.rebind_at is not None and d.t > f.rebind_at:
            if f.rebound_to is None:
                old = (f.mid_port, f.pub, f.pub_port)
                self._mapped.pop((f.proto, f.client, f.cport), None)
                self._nat(f)
                f.rebound_to = (f.mid_port, f.pub, f.pub_port)
                f.mid_port, f.pub, f.pub_port = old
            f = replace(f, mid_port=f.rebound_to[0], pub=f.rebound_to[1], pub_port=f.rebound_to[2], dgrams=[])
        ids = (f.cport, f.cport) if f.family == 6 else (f.cport, f.pub_port)  # echo id: the NATs rewrite it
        if d.kind in ("unreach-server", "unreach-router", "frag-needed"):
            self._emit_error(f, d, cpk, spk, lat)
            return
        if d.out:
            c = self._ip(f.family, f.client, f.server, 64, d.df, d.ip_ids[0]) / self._l4(f, d, f.cport, f.sport, ids[0])
            s = self._ip(f.family, f.pub, f.server, 64 - HOPS, d.df, d.ip_ids[1]) / \
                self._l4(f, d, f.pub_port, f.sport, ids[1])
            for p in self._frags(c, d, not d.later_frags_uncaptured):
                cpk.append((d.t, p))
            if not d.lost:
                for p in self._frags(s, d, not (d.later_frags_lost or d.later_frags_uncaptured), True):
                    spk.append((d.t + lat, p))
        else:
            sp = d.from_port or f.sport
            s = self._ip(f.family, f.server, f.pub, 64) / self._l4(f, d, sp, f.pub_port, ids[1])
            c = self._ip(f.family, f.server, f.client, 64 - HOPS) / self._l4(f, d, sp, f.cport, ids[0])
            for p in self._frags(s, d, not d.later_frags_uncaptured):
                spk.append((d.t, p))
            if not d.lost:
                for p in self._frags(c, d, not (d.later_frags_lost or d.later_frags_uncaptured), True):
                    cpk.append((d.t + lat, p))

    def _emit_error(self, f: Flow, d: Dgram, cpk: list, spk: list, lat: float) -> None:
        """An ICMP error about the flow's first datagram out, as each point sees it."""
        first = [x for x in f.dgrams if x.out and x.t <= d.t][-1]  # the datagram it is about
        if f.proto == "icmp":
            first = next(x for x in f.dgrams if x.out and x.icmp_seq == d.icmp_seq)
        if f.family == 6 and f.proto == "icmp":  # packet too big from the CE (MAP-E: 1460) or host unreachable
            inner_c = IPerror6(src=f.client, dst=f.server, hlim=63)
            q = ICMPv6EchoRequest(id=f.cport, seq=d.icmp_seq) / Raw(first.payload[:1232 - 48])
            src = "2001:db8:1::1" if d.kind == "frag-needed" else "2001:db8:ff00::1"
            err = ICMPv6PacketTooBig(mtu=1460) if d.kind == "frag-needed" else ICMPv6DestUnreach(code=3)
            if not d.lost:
                cpk.append((d.t + lat / 4, IPv6(src=src, dst=f.client, hlim=64) / err / inner_c / q))
            return
        if f.family == 6:
            inner_s = IPerror6(src=f.pub, dst=f.server, hlim=64 - HOPS)
            inner_c = IPerror6(src=f.client, dst=f.server, hlim=64 - 2)
            q = UDPerror(sport=f.cport, dport=f.sport, len=8 + len(first.payload)) / \
                Raw(first.payload if d.kind == "unreach-server" else first.payload[:8])
            src = f.server if d.kind == "unreach-server" else "2001:db8:ff00::1"
            code = 4 if d.kind == "unreach-server" else 1
            s = IPv6(src=src, dst=f.pub, hlim=64) / ICMPv6DestUnreach(code=code) / inner_s / q
            c = IPv6(src=src, dst=f.client, hlim=64 - HOPS) / ICMPv6DestUnreach(code=code) / inner_c / q
            if d.kind == "unreach-server":
                spk.append((d.t, s))
            if not d.lost:
                cpk.append((d.t + lat, c))
            return
        if f.proto == "icmp":  # frag-needed from the CE about a DF echo: pf translates the quote back
            ic = ICMPerror(type=8, id=f.cport, seq=d.icmp_seq) / Raw(first.payload[:8])
            inner_c = IPerror(src=f.client, dst=f.server, ttl=63, flags="DF", id=first.ip_ids[1],
                              proto=1, len=28 + len(first.payload))
            if d.kind == "frag-needed":
                c = IP(src=CE_INSIDE, dst=f.client, ttl=63) / ICMP(type=3, code=4, nexthopmtu=1460) / inner_c / ic
            else:  # host unreachable, from a router past both NATs
                c = IP(src=PATH_ROUTER, dst=f.client, ttl=60) / ICMP(type=3, code=1) / inner_c / ic
            if not d.lost:
                cpk.append((d.t + lat / 4, c))
            return
        # the quote is the datagram as the error's sender received it: past pf's random-id,
        # so the client sees the ID the server saw (no NAT restores a quoted IP ID); a Linux
        # server quotes the whole datagram, a router its first 8 bytes (RFC 792)
        whole = first.payload[:548] if d.kind == "unreach-server" else first.payload[:8]
        qid = first.ip_ids[1]
        if d.kind == "unreach-server":
            inner_s = IPerror(src=f.pub, dst=f.server, ttl=64 - HOPS, proto=17, id=qid, len=28 + len(first.payload))
            s = IP(src=f.server, dst=f.pub, ttl=64) / ICMP(type=3, code=3) / inner_s / \
                UDPerror(sport=f.pub_port, dport=f.sport, len=8 + len(first.payload)) / Raw(whole)
            spk.append((d.t, s))
            src, ttl, code, qttl = f.server, 64 - HOPS, 3, 64 - HOPS
        else:
            src, ttl, code, qttl = PATH_ROUTER, 60, 13, 64 - 5  # admin prohibited, from a router past both NATs
        inner_c = IPerror(src=f.client, dst=f.server, ttl=qttl, proto=17, id=qid, len=28 + len(first.payload))
        c = IP(src=src, dst=f.client, ttl=ttl) / ICMP(type=3, code=code) / inner_c / \
            UDPerror(sport=f.cport, dport=f.sport, len=8 + len(first.payload)) / Raw(whole)
        if not d.lost:
            cpk.append((d.t + lat, c))

    def _noise(self) -> list:
        """Other Internet hosts talking to the server: only the server's capture has them.
        ``noise_sntp``: some of them SNTP clients whose queries are all zeros."""
        out = []
        for i in range(self.noise_sntp):
            src = "100.127.%d.%d" % (i // 250, 1 + i % 250)
            t = 1_000.0 + self.rng.random() * max(1.0, self.t - 1_000.0)
            sp = self.rng.randint(1024, 65535)
            out.append((t, IP(src=src, dst=SERVER4, ttl=50) / UDP(sport=sp, dport=NTP) / Raw(b"\x23" + bytes(47))))
            out.append((t + 0.0003, IP(src=SERVER4, dst=src, ttl=64) / UDP(sport=NTP, dport=sp) /
                        Raw(b"\x24\x02" + os.urandom(46))))
        base = int(ipaddress.IPv4Address("100.64.0.0"))
        for i in range(self.noise_hosts):
            src = str(ipaddress.IPv4Address(base + i * 7 + 1))
            t = 1_000.0 + self.rng.random() * max(1.0, self.t - 1_000.0)
            sp = self.rng.randint(1024, 65535)
            q = os.urandom(2) + b"\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07example\x03com\x00\x00\x01\x00\x01"
            out.append((t, IP(src=src, dst=SERVER4, ttl=50) / UDP(sport=sp, dport=DNS) / Raw(q)))
            if self.rng.random() < 0.9:
                out.append((t + 0.0005, IP(src=SERVER4, dst=src, ttl=64) / UDP(sport=DNS, dport=sp) /
                            Raw(q[:2] + b"\x81\x80" + q[4:] + b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x01\x00\x00\x04"
                                + bytes([203, 0, 113, 99]))))
        return out


# --- what users' flows look like -------------------------------------------------------

def quic(w: Drawing, host: int, family: int = 4, n_out: int = 6, ratio: int = 10, loss: float = 0.0,
         drop_all: str = "", name: str = "quic") -> Flow:
    """A QUIC-like flow: a few client datagrams, ``ratio`` times as many from the server."""
    f = w.flow("udp", family, host, QUIC, name)
    t = w.step()
    f.add(True, t, b"\xc3\x00\x00\x00\x01" + os.urandom(1195), df=True, lost=drop_all == "out")
    t += 0.05  # after the first datagram reached the server
    for i in range(n_out * ratio):
        t += 0.002
        f.add(False, t, b"\x40" + os.urandom(1100 - (i % 7)),
              lost=drop_all == "back" or w.rng.random() < loss)
        if i % ratio == ratio - 1 and i // ratio < n_out - 1:
            f.add(True, t + 0.001, b"\x41" + os.urandom(40 + i % 5), lost=drop_all == "out" or w.rng.random() < loss)
    if drop_all == "out":
        f.dgrams = [d for d in f.dgrams if d.out]  # the server never heard of it: it sends nothing
    return f


def rebound(w: Drawing, host: int, *, idle_s: float = 75.0, loss: float = 0.0) -> Flow:
    """A QUIC-like flow idle longer than pf's UDP timeout (60 s): its state expired, so the
    NATs give the next datagrams a new public port (the server sees a second 4-tuple)."""
    f = w.flow("udp", 4, host, QUIC, "rebound")
    t = w.step()
    f.add(True, t, b"\xc3" + os.urandom(1199))
    for i in range(10):
        f.add(False, t + 0.05 + 0.002 * i, b"\x40" + os.urandom(900), lost=w.rng.random() < loss)
    f.rebind_at = t + idle_s / 2
    t += idle_s
    f.add(True, t, b"\x41" + os.urandom(60), lost=w.rng.random() < loss)
    for i in range(10):
        f.add(False, t + 0.05 + 0.002 * i, b"\x40" + os.urandom(900), lost=w.rng.random() < loss)
    w.step(idle_s)
    return f


def dns(w: Drawing, host: int, family: int = 4, *, lost_out: bool = False, lost_back: bool = False,
        retries: int = 0, answer: bool = True, big_reply: bool = False, name: str = "dns", cport: int | None = None,
        **frag) -> Flow:
    """A DNS query and its answer. ``cport``: a resolver that asks every query from one
    port (each query its own exchange on the one 4-tuple)."""
    f = w.flow("udp", family, host, DNS, name, cport=cport)
    t = w.step()
    q = os.urandom(2) + b"\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x03www\x07example\x03org\x00\x00\x1c\x00\x01"
    for i in range(retries + 1):
        f.add(True, t + i, q, lost=lost_out if i == retries or lost_out else True)
    if lost_out or not answer:
        return f
    body = os.urandom(3000) if big_reply else os.urandom(40)
    f.add(False, t + retries + 0.06, q[:2] + b"\x81\x80" + q[4:] + body, lost=lost_back, **frag)
    return f


def stun(w: Drawing, host: int, family: int = 4, *, lost_out=False, lost_back=False, answer=True) -> Flow:
    f = w.flow("udp", family, host, STUN, "stun")
    t = w.step()
    tid = os.urandom(12)
    f.add(True, t, b"\x00\x01\x00\x00\x21\x12\xa4\x42" + tid, lost=lost_out)
    if answer and not lost_out:
        f.add(False, t + 0.06, b"\x01\x01\x00\x0c\x21\x12\xa4\x42" + tid + os.urandom(12), lost=lost_back)
    return f


def ntp(w: Drawing, host: int, family: int = 4, *, lost_out=False, lost_back=False, zeros: bool = False,
        at: float | None = None) -> Flow:
    """An NTP query (ntpd keeps source port 123 on odd hosts). ``zeros``: an SNTP client
    that leaves every timestamp zero (many small devices): every such query is the same bytes."""
    f = w.flow("udp", family, host, NTP, "ntp", cport=NTP if host % 2 else None)
    t = w.step() if at is None else at
    req = b"\x23" + bytes(47) if zeros else b"\x23" + bytes(39) + os.urandom(8)
    f.add(True, t, req, lost=lost_out)
    if not lost_out:
        f.add(False, t + 0.06, b"\x24\x02" + os.urandom(38) + req[40:], lost=lost_back)
    return f


def refused(w: Drawing, host: int, family: int = 4, *, by_router: bool = False, lost_back: bool = False,
            tries: int = 1, port: int = 9999) -> Flow:
    """Datagrams to a closed port (``tries`` of them, each with its own payload, as an
    application that retries): the server (or a router on the path) answers each with
    ICMP unreachable."""
    f = w.flow("udp", family, host, port, "router-unreach" if by_router else "refused")
    t = w.step()
    for i in range(tries):
        f.add(True, t + i, b"probe" + os.urandom(20), lost=by_router)
        f.add(False, t + i + 0.06, b"", kind="unreach-router" if by_router else "unreach-server", lost=lost_back)
    return f


def tftp(w: Drawing, host: int, *, through: bool = False) -> Flow:
    """A TFTP read request to port 69; the server answers from a new port of its own (as
    TFTP does). A NAT that filters by endpoint (pf) drops that answer unless ``through``."""
    f = w.flow("udp", 4, host, 69, "tftp")
    t = w.step()
    f.add(True, t, b"\x00\x01boot-" + os.urandom(6).hex().encode() + b"\x00octet\x00")
    d = f.add(False, t + 0.06, b"\x00\x03\x00\x01" + os.urandom(512), lost=not through)
    d.from_port = 40000 + w.rng.randrange(20000)
    return f


def silent(w: Drawing, host: int, family: int = 4, n: int = 3) -> Flow:
    """A flow the server never answers (its application is not there, no ICMP either)."""
    f = w.flow("udp", family, host, 4500, "silent")
    t = w.step()
    for i in range(n):
        f.add(True, t + i, b"\x00\x00\x00\x00" + os.urandom(60))
    return f


WINDOWS_PING = b"abcdefghijklmnopqrstuvwabcdefghi"  # what Windows' ping sends, every time


def ping(w: Drawing, host: int, family: int = 4, seqs: int = 3, *, lost_out=(), lost_back=(), big_seq=None,
         payload: bytes | None = None, ident: int | None = None, at: float | None = None, answer: bool = True,
         to: str | None = None) -> Flow:
    """ICMP echoes; the NATs rewrite the echo id. ``big_seq``: a DF echo larger than the
    path MTU (1460), answered with frag-needed by the CE. ``payload``: the same bytes in
    every echo (Windows), else random. ``answer``: False, a server that drops echoes.
    ``to``: a host elsewhere (not the server) that a router past the NATs says is
    unreachable."""
    f = w.flow("icmp", family, host, 0, "ping", cport=ident)
    if to:
        f.server = to
    t = w.step() if at is None else at
    for s in range(1, seqs + 1):
        if to:
            f.add(True, t, payload or os.urandom(56), lost=True, kind="echo", icmp_seq=s)
            f.add(False, t + 0.04, b"", kind="unreach-router", icmp_seq=s)
        elif not answer:
            f.add(True, t, payload or os.urandom(56), lost=s in lost_out, kind="echo", icmp_seq=s)
        elif s == big_seq:
            f.add(True, t, os.urandom(1472), df=True, lost=True, kind="echo", icmp_seq=s)
            f.add(False, t + 0.005, b"", kind="frag-needed", icmp_seq=s)
        else:
            f.add(True, t, payload or os.urandom(56), lost=s in lost_out, kind="echo", icmp_seq=s)
            if s not in lost_out:
                f.add(False, t + 0.06, f.dgrams[-1].payload, lost=s in lost_back, kind="echo", icmp_seq=s)
        t += 1
    return f


def big_udp(w: Drawing, host: int, *, later_lost: bool = False, uncaptured: bool = False) -> Flow:
    """A 3000-byte datagram out (IPv4 fragments) answered by a small one."""
    f = w.flow("udp", 4, host, 5001, "big-udp")
    t = w.step()
    f.add(True, t, os.urandom(3000), later_frags_lost=later_lost, later_frags_uncaptured=uncaptured)
    if not later_lost:
        f.add(False, t + 0.08, os.urandom(64))
    return f


def peers(w: Drawing, host: int, n: int, answered: float = 0.75) -> list[Flow]:
    """A DHT node's one socket (port 6881) asking ``n`` peers elsewhere on the Internet,
    not the server: the server's capture sees none of it."""
    out = []
    for i in range(n):
        f = w.flow("udp", 4, host, w.rng.randint(1024, 65535), "peer", cport=6881)
        f.server = str(ipaddress.IPv4Address(int(ipaddress.IPv4Address("100.80.0.1")) + 3 * len(w.flows)))
        t = w.t + i * 0.004
        f.add(True, t, b"d1:ad2:id20:" + os.urandom(20) + b"e1:q4:pinge")
        if w.rng.random() < answered:
            f.add(False, t + 0.08, b"d1:rd2:id20:" + os.urandom(20) + b"ee")
        out.append(f)
    w.step(n * 0.004)
    return out


# --- writing ----------------------------------------------------------------------------

LINKS = ("ether", "sll", "sll2", "raw")


def _frame(link: str, pkt):
    v6 = pkt.haslayer(IPv6) and not pkt.haslayer(IP)
    proto = 0x86DD if v6 else 0x0800
    if link == "ether":
        return Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02", type=proto) / pkt
    if link == "sll":
        return CookedLinux(pkttype=0, lladdrtype=1, lladdrlen=6, src=b"\x02\x00\x00\x00\x00\x01\x00\x00",
                           proto=proto) / pkt
    if link == "sll2":
        return CookedLinuxV2(proto=proto, ifindex=2, lladdrtype=1, pkttype=0, lladdrlen=6,
                             src=b"\x02\x00\x00\x00\x00\x01\x00\x00") / pkt
    return pkt


LINKTYPE = {"ether": 1, "sll": 113, "sll2": 276, "raw": 101}


def write(path, pkts: list, link: str = "ether", ng: bool = False, twice: bool = False) -> None:
    """Write (time, IP packet) pairs; ``twice``: each packet captured twice (tcpdump -i any
    on a host whose packets cross a bridge and its port)."""
    writer = PcapNgWriter(str(path)) if ng else PcapWriter(str(path), linktype=LINKTYPE[link], sync=False)
    if ng:
        writer.linktype = LINKTYPE[link]  # scapy guesses none for raw IP
    try:
        for t, p in pkts:
            for k in range(2 if twice else 1):
                fr = _frame(link, p.copy())
                if link == "sll2" and k:
                    fr.ifindex = 3
                fr.time = t + k * 0.000002
                writer.write(fr)
    finally:
        writer.close()
