"""Redaction for sharing: replace private addresses in a bundle by stable stand-ins.

Which addresses: RFC 1918, RFC 6598 shared space (CGNAT), IPv4/IPv6 link-local and
IPv6 ULA — the client's side of a double NAT. Public addresses (the server, the
provider's shared public address) stay, since they are what the recipient needs.

How: each private address gets one stand-in for the whole bundle, in order of first
appearance (IPv4 -> 10.0.0.0/8 counting up from 10.0.0.1 in a range no original may
use twice; IPv6 -> fd00:0:0:ffff::N), so flows stay distinguishable and the analysis
still matches (it keys on ISNs, IP IDs and payloads, never on private addresses).

In the pcaps the address bytes are rewritten in place (IPv4/IPv6 headers, and the
packet quoted inside ICMP errors), and the checksums that cover them (IPv4 header,
TCP/UDP/ICMPv6 pseudo-header, ICMP over the quoted header) are fixed incrementally
(RFC 1624), which works on snaplen-truncated packets too. Records rig cannot decode
(unknown link types) are left as they are and counted. Text files (JSON, logs) get
the same substitution token by token. The mapping itself is not kept.

This module knows addresses and packets, not bundles: ``rig.bundle.redaction`` applies
it to a bundle's files.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import struct

from rig.checksum import internet_checksum

_V4_PRIVATE = [
    ipaddress.ip_network(n)
    for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "169.254.0.0/16")
]
_V6_PRIVATE = [ipaddress.ip_network(n) for n in ("fc00::/7", "fe80::/10")]

_V4_TOKEN = re.compile(r"(?<![0-9.])(?:\d{1,3}\.){3}\d{1,3}(?![0-9])(?!\.\d)")
_V6_TOKEN = re.compile(r"(?<![0-9A-Fa-f:])[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?![0-9A-Fa-f:])")


def add_private_network(cidr: str) -> None:
    """Treat ``cidr`` as private too (a user's own addressing outside the usual ranges)."""
    net = ipaddress.ip_network(cidr, strict=False)
    (_V4_PRIVATE if net.version == 4 else _V6_PRIVATE).append(net)


def is_private(addr: ipaddress._BaseAddress) -> bool:
    nets = _V4_PRIVATE if addr.version == 4 else _V6_PRIVATE
    return any(addr in n for n in nets)


class AddressMap:
    """Original private address -> stand-in, assigned on first sight."""

    def __init__(self) -> None:
        self.map: dict[bytes, bytes] = {}
        self._public: set[bytes] = set()  # seen, not private (cache: most packets repeat addresses)
        self._n4 = 0
        self._n6 = 0

    def sub(self, packed: bytes) -> bytes | None:
        """The stand-in for a packed address, or None if it is not private."""
        got = self.map.get(packed)
        if got is not None:
            return got
        if packed in self._public:
            return None
        addr = ipaddress.ip_address(packed)
        if not is_private(addr):
            self._public.add(packed)
            return None
        if addr.version == 4:
            self._n4 += 1
            new = ipaddress.IPv4Address(int(ipaddress.IPv4Address("10.0.0.0")) + self._n4).packed
        else:
            self._n6 += 1
            new = ipaddress.IPv6Address(int(ipaddress.IPv6Address("fd00:0:0:ffff::")) + self._n6).packed
        self.map[packed] = new
        return new

    def sub_text(self, text: str) -> str:
        def v4(m: re.Match) -> str:
            try:
                a = ipaddress.IPv4Address(m.group(0))
            except ValueError:
                return m.group(0)
            new = self.sub(a.packed)
            return str(ipaddress.IPv4Address(new)) if new else m.group(0)

        def v6(m: re.Match) -> str:
            try:
                a = ipaddress.IPv6Address(m.group(0))
            except ValueError:
                return m.group(0)
            if a.ipv4_mapped is not None:
                new = self.sub(a.ipv4_mapped.packed)
                return f"::ffff:{ipaddress.IPv4Address(new)}" if new else m.group(0)
            new = self.sub(a.packed)
            return str(ipaddress.IPv6Address(new)) if new else m.group(0)

        return _V6_TOKEN.sub(v6, _V4_TOKEN.sub(v4, text))


# --------------------------------------------------------------------------- checksums


def _ones_neg(x: int) -> int:
    # ones'-complement negation of a (possibly > 16 bit) sum, folded to 16 bits
    while x >> 16:
        x = (x & 0xFFFF) + (x >> 16)
    return ~x & 0xFFFF


@functools.lru_cache(maxsize=4096)
def _delta(old: bytes, new: bytes) -> int:
    """What replacing ``old`` by ``new`` adds to a ones'-complement sum (RFC 1624: ~m + m')."""
    return internet_checksum(old) + (~internet_checksum(new) & 0xFFFF)


def _fix(buf: bytearray, off: int, end: int, old: bytes, new: bytes, udp: bool = False) -> None:
    """Adjust the 16-bit checksum at ``off`` if it lies within the captured bytes."""
    if off + 2 > end:
        return
    c = (buf[off] << 8) | buf[off + 1]
    if udp and c == 0:  # IPv4 UDP without checksum
        return
    n = _ones_neg((~c & 0xFFFF) + _delta(old, new))  # RFC 1624: HC' = ~(~HC + ~m + m')
    if udp and n == 0:
        n = 0xFFFF
    buf[off] = n >> 8
    buf[off + 1] = n & 0xFF


# --------------------------------------------------------------------------- packets


def _rewrite_ip(buf: bytearray, off: int, end: int, amap: AddressMap, quoted: bool = False) -> bool:
    """Rewrite the private addresses of the IP packet at buf[off:end]. Returns True if
    something changed."""
    if off + 1 > end:
        return False
    ver = buf[off] >> 4
    if ver == 4:
        if off + 20 > end:
            return False
        ihl = (buf[off] & 0x0F) * 4
        proto = buf[off + 9]
        frag_off = struct.unpack_from("!H", buf, off + 6)[0] & 0x1FFF
        l4 = off + ihl
        old = bytes(buf[off + 12 : off + 20])
        s_new, d_new = amap.sub(old[:4]), amap.sub(old[4:])
        changed = s_new is not None or d_new is not None
        if changed:
            new = (s_new or old[:4]) + (d_new or old[4:])
            buf[off + 12 : off + 20] = new
            _fix(buf, off + 10, end, old, new)
            if frag_off == 0:
                _fix_l4(buf, l4, end, proto, old, new, v4=True, quoted=quoted)
        if frag_off == 0 and proto == 1 and not quoted:
            _rewrite_icmp_quote(buf, l4, end, amap, v6=False)
        return changed
    if ver == 6:
        if off + 40 > end:
            return False
        nxt = buf[off + 6]
        l4 = off + 40
        changed = False
        for a in (off + 8, off + 24):
            old = bytes(buf[a : a + 16])
            sub = amap.sub(old)
            if sub is None or sub == old:
                continue
            buf[a : a + 16] = sub
            changed = True
            if nxt in (6, 17, 58):
                _fix_l4(buf, l4, end, nxt, old, sub, v4=False, quoted=quoted)
        if nxt == 4:  # IPv4 in IPv6 (MAP-E / DS-Lite)
            changed |= _rewrite_ip(buf, l4, end, amap)
        elif nxt == 58 and not quoted:
            _rewrite_icmp_quote(buf, l4, end, amap, v6=True)
        return changed
    return False


def _fix_l4(buf, l4, end, proto, old, new, v4: bool, quoted: bool) -> None:
    # (in a quoted packet the L4 checksum covers data the quote lacks; adjusting it by
    # the same difference keeps it what the sender would have computed)
    if proto == 6:
        _fix(buf, l4 + 16, end, old, new)
    elif proto == 17:
        _fix(buf, l4 + 6, end, old, new, udp=v4)
    elif proto == 58:
        _fix(buf, l4 + 2, end, old, new)


def _rewrite_icmp_quote(buf: bytearray, l4: int, end: int, amap: AddressMap, v6: bool) -> None:
    """ICMP errors quote the offending packet; rewrite its addresses too and fix the ICMP
    checksum (which covers the quote) by the difference."""
    if l4 + 8 > end:
        return
    t = buf[l4]
    errors = (1, 2, 3, 4) if v6 else (3, 4, 5, 11, 12)
    if t not in errors:
        return
    q = l4 + 8
    before = bytes(buf[q:end])
    if _rewrite_ip(buf, q, end, amap, quoted=True):
        after = bytes(buf[q:end])
        _fix(buf, l4 + 2, end, before, after)


def _ip_offset(linktype: int, buf: bytearray, off: int, end: int) -> int | None:
    """Where the IP header starts in a record of this link type (None: not IP / unknown)."""
    if linktype == 1:  # Ethernet
        p = off + 12
        while p + 2 <= end:
            et = struct.unpack_from("!H", buf, p)[0]
            if et in (0x8100, 0x88A8, 0x9100):
                p += 4
                continue
            if et in (0x0800, 0x86DD):
                return p + 2
            if et == 0x8864:  # PPPoE session: 6 bytes PPPoE + 2 bytes PPP protocol
                if p + 10 > end:
                    return None
                ppp = struct.unpack_from("!H", buf, p + 8)[0]
                return p + 10 if ppp in (0x0021, 0x0057) else None
            return None
        return None
    if linktype == 113:  # Linux cooked SLL
        return off + 16 if off + 16 <= end and struct.unpack_from("!H", buf, off + 14)[0] in (0x0800, 0x86DD) else None
    if linktype == 276:  # SLL2
        return off + 20 if off + 20 <= end and struct.unpack_from("!H", buf, off)[0] in (0x0800, 0x86DD) else None
    if linktype in (101, 12, 14, 228, 229):  # raw IP
        return off
    if linktype == 0:  # BSD loopback (host-order AF)
        return off + 4
    return None


def rewrite_pcap(data: bytes, amap: AddressMap) -> tuple[bytes, dict[str, int]]:
    """The capture bytes (pcap or pcapng) with private addresses replaced."""
    buf = bytearray(data)
    stats = {"records": 0, "rewritten": 0, "skipped": 0}
    if len(buf) < 24:
        raise ValueError("not a capture (too short)")
    magic = bytes(buf[:4])
    if magic == b"\x0a\x0d\x0d\x0a":
        _pcapng(buf, amap, stats)
    else:
        if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
            e = "<"
        elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
            e = ">"
        else:
            raise ValueError("not a pcap or pcapng file")
        linktype = struct.unpack_from(e + "I", buf, 20)[0] & 0x0FFFFFFF
        p = 24
        while p + 16 <= len(buf):
            caplen = struct.unpack_from(e + "I", buf, p + 8)[0]
            start, end = p + 16, min(p + 16 + caplen, len(buf))
            _record(buf, linktype, start, end, amap, stats)
            p = start + caplen
    return bytes(buf), stats


def _record(buf, linktype, start, end, amap, stats) -> None:
    stats["records"] += 1
    ip = _ip_offset(linktype, buf, start, end)
    if ip is None:
        stats["skipped"] += 1
        return
    if _rewrite_ip(buf, ip, end, amap):
        stats["rewritten"] += 1


def _pcapng(buf: bytearray, amap: AddressMap, stats) -> None:
    p, e = 0, "<"
    links: list[int] = []
    while p + 12 <= len(buf):
        btype = struct.unpack_from(e + "I", buf, p)[0] if p else 0x0A0D0D0A
        if btype == 0x0A0D0D0A:
            bom = bytes(buf[p + 8 : p + 12])
            e = "<" if bom == b"\x4d\x3c\x2b\x1a" else ">"
            links = []
        blen = struct.unpack_from(e + "I", buf, p + 4)[0]
        if blen < 12 or p + blen > len(buf):
            break
        if btype == 1:
            links.append(struct.unpack_from(e + "H", buf, p + 8)[0])
        elif btype == 6:
            iface, _, _, caplen = struct.unpack_from(e + "IIII", buf, p + 8)
            lt = links[iface] if iface < len(links) else -1
            _record(buf, lt, p + 28, min(p + 28 + caplen, p + blen - 4), amap, stats)
        elif btype == 3:
            lt = links[0] if links else -1
            _record(buf, lt, p + 12, p + blen - 4, amap, stats)
        p += blen
