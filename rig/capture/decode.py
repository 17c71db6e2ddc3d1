"""The reference decoder: one packet at a time, every layout rig understands.

Plain Python over the packet's bytes, written to be read and checked rather than to be
fast. The vectorised fast path (``fast.py``) claims only the common fixed layouts and
must give exactly the rows this decoder gives (a test proves it); every other row is
decoded here. Nothing here raises on packet contents: what cannot be decoded becomes a
``status`` (``Undecoded``) and the fields decoded so far are kept.
"""

from __future__ import annotations

import struct

import numpy as np

from rig.capture.table import (FRAG_LATER, FRAG_MF, PAYLOAD_HASH_BYTES, QUOTED_DTYPE, QUOTED_FIELDS, Undecoded,
                               field_names, payload_hash)

# link types (LINKTYPE_* values as stored in pcap / pcapng)
LT_NULL, LT_ETHERNET, LT_RAW_BSD12, LT_RAW_OPENBSD14 = 0, 1, 12, 14
LT_RAW, LT_LOOP, LT_SLL, LT_IPV4, LT_IPV6, LT_SLL2 = 101, 108, 113, 228, 229, 276
LINKTYPES = {LT_NULL, LT_ETHERNET, LT_RAW_BSD12, LT_RAW_OPENBSD14, LT_RAW, LT_LOOP, LT_SLL, LT_IPV4, LT_IPV6, LT_SLL2}

ET_IPV4, ET_IPV6, ET_VLAN, ET_QINQ, ET_QINQ_OLD, ET_PPPOE = 0x0800, 0x86DD, 0x8100, 0x88A8, 0x9100, 0x8864
VLAN_TAGS = (ET_VLAN, ET_QINQ, ET_QINQ_OLD)
AF_INET, AF_INET6_BSD = 2, (24, 28, 30)
V6_EXT = {0, 43, 60, 51}  # hop-by-hop, routing, destination options, AH (44 handled apart)

V4_MAPPED = b"\x00" * 10 + b"\xff\xff"
_QUOTED = frozenset(QUOTED_FIELDS)
_ADDRS = ("src", "dst", "q_src", "q_dst")


def optsig_add(sig: int, kind: int) -> int:
    """Fold one TCP option kind into the options signature (0 means: no options)."""
    return (sig * 257 + kind + 1) & 0xFFFFFFFFFFFFFFFF


def new_row() -> dict:
    return {"icmp_type": -1, "wscale": -1}


def decode_packet(buf, off: int, caplen: int, wirelen: int, linktype: int) -> dict:
    """Decode one packet whose ``caplen`` bytes start at ``off`` in ``buf``.

    Returns the fields that are not at their defaults (see ``table.empty_table``), the
    ICMP error fields of ``table.QUOTED_DTYPE`` among them.
    """
    r = new_row()
    p = bytes(buf[off : off + caplen])
    _link(p, off, wirelen, linktype, r)
    if "status" not in r:
        r["status"] = Undecoded.OK
    return r


# ----------------------------------------------------------------------------- link


def _link(p: bytes, base: int, wirelen: int, lt: int, r: dict) -> None:
    n = len(p)
    if lt == LT_ETHERNET:
        if n < 14:
            r["status"] = Undecoded.TRUNCATED_HEADER
            return
        et = (p[12] << 8) | p[13]
        o = 14
        while et in VLAN_TAGS:
            if n < o + 4:
                r["status"] = Undecoded.TRUNCATED_HEADER
                return
            if "vlan" not in r:
                r["vlan"] = ((p[o] << 8) | p[o + 1]) & 0x0FFF
            et = (p[o + 2] << 8) | p[o + 3]
            o += 4
        if et == ET_PPPOE:
            if n < o + 8:
                r["status"] = Undecoded.TRUNCATED_HEADER
                return
            if p[o] != 0x11 or p[o + 1] != 0:  # version 1 type 1, code 0 (session data)
                r["status"] = Undecoded.MALFORMED
                return
            proto = (p[o + 6] << 8) | p[o + 7]
            o += 8
            if proto == 0x0021:
                _ip(p, o, base, wirelen, r, want=4)
            elif proto == 0x0057:
                _ip(p, o, base, wirelen, r, want=6)
            else:
                r["status"] = Undecoded.NOT_IP
            return
        _ethertype(p, o, base, wirelen, et, r)
    elif lt == LT_SLL:
        if n < 16:
            r["status"] = Undecoded.TRUNCATED_HEADER
            return
        _ethertype(p, 16, base, wirelen, (p[14] << 8) | p[15], r)
    elif lt == LT_SLL2:
        if n < 20:
            r["status"] = Undecoded.TRUNCATED_HEADER
            return
        _ethertype(p, 20, base, wirelen, (p[0] << 8) | p[1], r)
    elif lt in (LT_RAW, LT_RAW_BSD12, LT_RAW_OPENBSD14):
        _ip(p, 0, base, wirelen, r, want=0)
    elif lt == LT_IPV4:
        _ip(p, 0, base, wirelen, r, want=4)
    elif lt == LT_IPV6:
        _ip(p, 0, base, wirelen, r, want=6)
    elif lt in (LT_NULL, LT_LOOP):
        if n < 4:
            r["status"] = Undecoded.TRUNCATED_HEADER
            return
        fam = struct.unpack_from("<I", p)[0]
        if fam & 0xFFFF0000:  # written in the other byte order
            fam = struct.unpack_from(">I", p)[0]
        if fam == AF_INET:
            _ip(p, 4, base, wirelen, r, want=4)
        elif fam in AF_INET6_BSD:
            _ip(p, 4, base, wirelen, r, want=6)
        else:
            r["status"] = Undecoded.NOT_IP
    else:
        r["status"] = Undecoded.UNKNOWN_LINKTYPE


def _ethertype(p: bytes, o: int, base: int, wirelen: int, et: int, r: dict) -> None:
    if et == ET_IPV4:
        _ip(p, o, base, wirelen, r, want=4)
    elif et == ET_IPV6:
        _ip(p, o, base, wirelen, r, want=6)
    else:
        r["status"] = Undecoded.NOT_IP


# ------------------------------------------------------------------------------- IP


def _ip(p: bytes, o: int, base: int, wirelen: int, r: dict, want: int) -> None:
    """IPv4 or IPv6 at ``o``; ``want`` 4/6 is what the link layer announced (0: either)."""
    if len(p) < o + 1:
        r["status"] = Undecoded.TRUNCATED_HEADER
        return
    ver = p[o] >> 4
    if want and ver != want or ver not in (4, 6):
        r["status"] = Undecoded.MALFORMED
        return
    # bytes the IP packet may occupy on the wire after the link header (for TSO: len 0)
    wire_ip = max(wirelen - o, 0)
    if ver == 4:
        _ipv4(p, o, base, wire_ip, r)
    else:
        _ipv6(p, o, base, wire_ip, r)


def _ipv4(p: bytes, o: int, base: int, wire_ip: int, r: dict, tunnel: bool = False) -> None:
    if len(p) < o + 20:
        r["status"] = Undecoded.TRUNCATED_HEADER
        return
    ihl = (p[o] & 0x0F) * 4
    tl = (p[o + 2] << 8) | p[o + 3]
    fl = (p[o + 6] << 8) | p[o + 7]
    r["ipver"] = 4
    if tunnel:
        r["tunnel"] = 1
    r["tos"] = p[o + 1]
    r["ip_id"] = (p[o + 4] << 8) | p[o + 5]
    r["df"] = (fl >> 14) & 1
    r["ttl"] = p[o + 8]
    proto = p[o + 9]
    r["proto"] = proto
    r["src"] = V4_MAPPED + p[o + 12 : o + 16]
    r["dst"] = V4_MAPPED + p[o + 16 : o + 20]
    if ihl < 20:
        r["status"] = Undecoded.MALFORMED
        return
    if tl == 0:  # TSO: the NIC fills the length in later
        tl = wire_ip
    r["ip_len"] = tl
    if tl < ihl or tl > wire_ip:  # (longer than the packet on the wire: the header lies)
        r["status"] = Undecoded.MALFORMED
        return
    if len(p) < o + ihl:
        r["status"] = Undecoded.TRUNCATED_HEADER
        return
    frag = 0
    if fl & 0x2000:
        frag |= FRAG_MF
    if fl & 0x1FFF:
        frag |= FRAG_LATER
    r["frag"] = frag
    if frag & FRAG_LATER:
        r["status"] = Undecoded.FRAGMENT
        return
    _l4(p, o + ihl, o + tl, base, proto, 4, r)


def _ipv6(p: bytes, o: int, base: int, wire_ip: int, r: dict) -> None:
    if len(p) < o + 40:
        r["status"] = Undecoded.TRUNCATED_HEADER
        return
    vtf = struct.unpack_from(">I", p, o)[0]
    plen = (p[o + 4] << 8) | p[o + 5]
    nh = p[o + 6]
    r["ipver"] = 6
    r["tos"] = (vtf >> 20) & 0xFF
    r["ttl"] = p[o + 7]
    r["src"] = p[o + 8 : o + 24]
    r["dst"] = p[o + 24 : o + 40]
    r["proto"] = nh
    if plen == 0:  # jumbogram or TSO: take the length from the wire
        plen = max(wire_ip - 40, 0)
    tl = 40 + plen
    r["ip_len"] = tl
    if tl > wire_ip:  # longer than the packet on the wire: the header lies
        r["status"] = Undecoded.MALFORMED
        return
    end = o + tl
    h = o + 40
    while True:
        if nh in V6_EXT:
            if len(p) < h + 2:
                r["status"] = Undecoded.TRUNCATED_HEADER
                return
            hlen = (p[h + 1] + 2) * 4 if nh == 51 else (p[h + 1] + 1) * 8
            nh = p[h]
            h += hlen
            r["proto"] = nh
            if h > end:
                r["status"] = Undecoded.MALFORMED
                return
        elif nh == 44:  # fragment header
            if len(p) < h + 8:
                r["status"] = Undecoded.TRUNCATED_HEADER
                return
            nh = p[h]
            fo = (p[h + 2] << 8) | p[h + 3]
            r["ip_id"] = struct.unpack_from(">I", p, h + 4)[0]
            frag = (FRAG_MF if fo & 1 else 0) | (FRAG_LATER if fo & 0xFFF8 else 0)
            r["frag"] = frag
            r["proto"] = nh
            h += 8
            if frag & FRAG_LATER:
                r["status"] = Undecoded.FRAGMENT
                return
        else:
            break
    if h > end:
        r["status"] = Undecoded.MALFORMED
        return
    if nh == 4:  # IPv4 in IPv6 (MAP-E / DS-Lite): describe the inner packet
        for k in ("tos", "ttl", "src", "dst", "proto", "ip_len", "frag", "ip_id"):
            r.pop(k, None)
        outer_end = min(end, len(p))
        inner = p[:outer_end]
        if len(inner) < h + 1 or inner[h] >> 4 != 4:
            r["status"] = Undecoded.TRUNCATED_HEADER if len(inner) < h + 1 else Undecoded.MALFORMED
            r["tunnel"] = 1
            r["ipver"] = 4
            return
        _ipv4(inner, h, base, max(end - h, 0), r, tunnel=True)
        return
    _l4(p, h, end, base, nh, 6, r)


# ------------------------------------------------------------------------------- L4


def _payload(p: bytes, start: int, end: int, base: int, r: dict) -> None:
    """Payload from ``start`` to the IP end ``end``, of which the capture may hold less."""
    plen = end - start
    if plen < 0:
        r["status"] = Undecoded.MALFORMED
        return
    have = max(0, min(end, len(p)) - start)
    r["plen"] = plen
    r["pcaplen"] = have
    if have:
        r["poff"] = base + start
        r["phash"] = payload_hash(p[start : start + have])
    if have < plen:
        r["status"] = Undecoded.TRUNCATED_PAYLOAD


def _short(p: bytes, o: int, end: int, need: int, r: dict) -> bool:
    """A transport header of ``need`` bytes at ``o`` does not fit: in the packet as sent
    (``end``, from the IP length: MALFORMED) or as captured (TRUNCATED_HEADER)."""
    if end - o < need:
        r["status"] = Undecoded.MALFORMED
        return True
    if len(p) < o + need:
        r["status"] = Undecoded.TRUNCATED_HEADER
        return True
    return False


def _l4(p: bytes, o: int, end: int, base: int, proto: int, ipver: int, r: dict) -> None:
    if proto == 6:
        _tcp(p, o, end, base, r)
    elif proto == 17:
        if _short(p, o, end, 8, r):
            return
        r["sport"], r["dport"] = struct.unpack_from(">HH", p, o)
        _payload(p, o + 8, end, base, r)
        if r.get("frag", 0) & FRAG_MF and r.get("pcaplen", 0) >= PAYLOAD_HASH_BYTES:
            # a first fragment hashes as the datagram it starts, whatever size the path
            # cut it to (a tunnel may fragment anew): its length from the UDP header
            ulen = struct.unpack_from(">H", p, o + 4)[0]
            if ulen > 8 + PAYLOAD_HASH_BYTES:
                r["phash"] = payload_hash(p[o + 8 : o + 8 + PAYLOAD_HASH_BYTES], ulen - 8)
    elif (proto == 1 and ipver == 4) or (proto == 58 and ipver == 6):
        _icmp(p, o, end, base, ipver, r)
    else:
        r["status"] = Undecoded.UNSUPPORTED_L4


def _tcp(p: bytes, o: int, end: int, base: int, r: dict) -> None:
    if _short(p, o, end, 20, r):
        return
    sport, dport, seq, ack, offfl, win = struct.unpack_from(">HHIIHH", p, o)
    r["sport"], r["dport"], r["seq"], r["ack"], r["win"] = sport, dport, seq, ack, win
    r["flags"] = offfl & 0x01FF
    doff = (offfl >> 12) * 4
    if doff < 20 or o + doff > end:
        r["status"] = Undecoded.MALFORMED
        return
    if len(p) < o + doff:
        r["status"] = Undecoded.TRUNCATED_HEADER
        return
    i, e = o + 20, o + doff
    sig = 0
    while i < e:
        kind = p[i]
        sig = optsig_add(sig, kind)
        if kind == 0:
            break
        if kind == 1:
            i += 1
            continue
        if i + 1 >= e:
            r["optsig"] = sig
            r["status"] = Undecoded.MALFORMED
            return
        ln = p[i + 1]
        if ln < 2 or i + ln > e:
            r["optsig"] = sig
            r["status"] = Undecoded.MALFORMED
            return
        if kind == 2 and ln == 4:
            r["mss"] = (p[i + 2] << 8) | p[i + 3]
        elif kind == 3 and ln == 3:
            r["wscale"] = min(p[i + 2], 127)
        elif kind == 4 and ln == 2:
            r["sackok"] = 1
        elif kind == 8 and ln == 10:
            r["has_ts"] = 1
            r["tsval"], r["tsecr"] = struct.unpack_from(">II", p, i + 2)
        i += ln
    if sig:
        r["optsig"] = sig
    _payload(p, e, end, base, r)


ICMP4_ERRORS = {3, 4, 5, 11, 12}
ICMP6_ERRORS = {1, 2, 3, 4}


def _icmp(p: bytes, o: int, end: int, base: int, ipver: int, r: dict) -> None:
    if _short(p, o, end, 8, r):
        return
    t, c = p[o], p[o + 1]
    r["icmp_type"], r["icmp_code"] = t, c
    echo = (0, 8) if ipver == 4 else (128, 129)
    errors = ICMP4_ERRORS if ipver == 4 else ICMP6_ERRORS
    if t in echo:
        r["icmp_id"], r["icmp_seq"] = struct.unpack_from(">HH", p, o + 4)
    elif t in errors:
        if ipver == 4 and t == 3 and c == 4:
            r["icmp_mtu"] = (p[o + 6] << 8) | p[o + 7]
        elif ipver == 6 and t == 2:
            r["icmp_mtu"] = min(struct.unpack_from(">I", p, o + 4)[0], 0xFFFF)
        _quoted(p[: min(end, len(p))], o + 8, r)
    _payload(p, o + 8, end, base, r)


def _quoted(p: bytes, o: int, r: dict) -> None:
    """The packet quoted in an ICMP error: whatever of its headers the error holds."""
    if len(p) < o + 1:
        return
    ver = p[o] >> 4
    if ver == 4:
        if len(p) < o + 20:
            return
        ihl = (p[o] & 0x0F) * 4
        if ihl < 20:
            return
        proto = p[o + 9]
        r["q_proto"] = proto
        r["q_ip_id"] = (p[o + 4] << 8) | p[o + 5]
        r["q_src"] = V4_MAPPED + p[o + 12 : o + 16]
        r["q_dst"] = V4_MAPPED + p[o + 16 : o + 20]
        if ((p[o + 6] << 8) | p[o + 7]) & 0x1FFF:
            return  # a later fragment: no L4 header quoted
        _quoted_l4(p, o + ihl, proto, 4, r)
    elif ver == 6:
        if len(p) < o + 40:
            return
        nh = p[o + 6]
        r["q_src"] = p[o + 8 : o + 24]
        r["q_dst"] = p[o + 24 : o + 40]
        h = o + 40
        while nh in V6_EXT or nh == 44:
            if len(p) < h + 8:
                r["q_proto"] = nh
                return
            if nh == 44:
                r["q_ip_id"] = struct.unpack_from(">I", p, h + 4)[0]
                if ((p[h + 2] << 8) | p[h + 3]) & 0xFFF8:
                    r["q_proto"] = p[h]
                    return
                nh, h = p[h], h + 8
            else:
                hlen = (p[h + 1] + 2) * 4 if nh == 51 else (p[h + 1] + 1) * 8
                nh, h = p[h], h + hlen
        r["q_proto"] = nh
        _quoted_l4(p, h, nh, 6, r)


def _quoted_l4(p: bytes, o: int, proto: int, ver: int, r: dict) -> None:
    if proto in (6, 17):
        if len(p) >= o + 4:
            r["q_sport"], r["q_dport"] = struct.unpack_from(">HH", p, o)
        if proto == 6 and len(p) >= o + 8:
            r["q_seq"] = struct.unpack_from(">I", p, o + 4)[0]
    elif (proto == 1 and ver == 4) or (proto == 58 and ver == 6):
        if len(p) >= o + 8 and p[o] in ((8, 0) if ver == 4 else (128, 129)):
            r["q_seq"] = struct.unpack_from(">I", p, o + 4)[0]  # id << 16 | seq


# ----------------------------------------------------------------------------- rows


def fill_rows(table: np.ndarray, rows: np.ndarray, buf, data_off, caplen, wirelen, linktype, book) -> np.ndarray:
    """Decode the records ``rows`` (ascending) with this decoder into ``table`` (in place),
    numbering addresses in ``book`` (``addresses.AddressBook``) for ``src_i`` / ``dst_i``.
    Returns the ``QUOTED_DTYPE`` records of the ICMP errors among them, sorted by row."""
    cols = {name: table[name] for name in field_names(table.dtype)}  # a lean table: fewer (table.DETAIL_FIELDS)
    quoted = []
    for i in rows.tolist():
        r = decode_packet(buf, int(data_off[i]), int(caplen[i]), int(wirelen[i]), int(linktype[i]))
        if not _QUOTED.isdisjoint(r):
            quoted.append((i, {k: r.pop(k) for k in _QUOTED if k in r}))
        if "src" in r:
            cols["src_i"][i] = book.index_bytes(r["src"])
            cols["dst_i"][i] = book.index_bytes(r["dst"])
        for k, v in r.items():
            col = cols.get(k)
            if col is None:
                continue
            if k in _ADDRS:
                col[i] = np.frombuffer(v, np.uint8)
            else:
                col[i] = v
    out = np.zeros(len(quoted), QUOTED_DTYPE)
    for j, (i, q) in enumerate(quoted):
        out["row"][j] = i
        for k, v in q.items():
            out[k][j] = np.frombuffer(v, np.uint8) if k in _ADDRS else v
    return out
