"""The packet table: what the capture reader produces and the analysis consumes.

One row per record of the capture file, in file order, as a numpy structured array of
``PACKET_DTYPE``. Both decoders (the vectorised fast path and the per-packet reference
decoder) fill exactly these fields, so the analysis never sees which one ran.

Conventions
- ``frame`` is 1-based, the record's position in the file: Wireshark's ``frame.number``.
- Addresses are 16 bytes; IPv4 is stored IPv4-mapped (``::ffff:a.b.c.d``). Use
  ``format_addr`` to print one. (Never use numpy ``S16``: it strips trailing zero bytes.)
  ``src_i`` / ``dst_i`` number them: ``Capture.addrs[src_i]`` is ``src`` (index 0 is the
  all-zero address of rows without IP; see ``addresses.py``). The analysis reads the
  indexes only: the lean table has no 16-byte ``src`` / ``dst``.
- When an IPv4 packet travels inside IPv6 (MAP-E / DS-Lite), the fields describe the
  *inner* IPv4 packet and ``tunnel`` is 1.
- A field that does not apply to a row is 0 unless stated otherwise (-1 for
  ``icmp_type`` / ``wscale``, meaning absent).
- ``status`` is 0 for a decoded row; otherwise a ``Undecoded`` reason. A row that could
  be decoded only partly (e.g. IP ok, TCP header cut by snaplen) keeps what it decoded
  and sets ``status`` to the reason; the analysis only trusts rows with status 0 or
  ``TRUNCATED_PAYLOAD`` (headers complete, payload cut by snaplen).
- What an ICMP error is about (the packet it quotes, and the next-hop MTU of
  frag-needed / packet-too-big) is not in the packet table: those fields are 0 on every
  other row. ``Capture.quoted`` holds them, one ``QUOTED_DTYPE`` record per ICMP error
  row, sorted by ``row`` (the row's index in ``packets``); ``Capture.quoted_at(rows)``
  gives them aligned with any rows, zeros for a row that has none. (This took the
  table from 189 to 142 bytes a row: 90 MB less for two 1M-packet captures.)
"""

from __future__ import annotations

import enum
import functools
import ipaddress
import mmap
from dataclasses import dataclass, field

import numpy as np


class Undecoded(enum.IntEnum):
    """Why a record was not (fully) decoded. Counted per reason, never guessed."""

    OK = 0
    TRUNCATED_PAYLOAD = 1  # headers complete; payload cut by snaplen (still usable)
    UNKNOWN_LINKTYPE = 2  # the interface's link type is not one rig decodes
    NOT_IP = 3  # ARP, STP, LLDP, ... (not an error: just not IP)
    TRUNCATED_HEADER = 4  # a header (link, IP, TCP, ...) is cut by snaplen
    MALFORMED = 5  # bad version, header length, option length, ...
    FRAGMENT = 6  # a non-first IP fragment (no L4 header in it)
    UNSUPPORTED_L4 = 7  # IP, but neither TCP, UDP, ICMP nor ICMPv6 (GRE, ESP, OSPF, ...)


# TCP flag bits as in the header
FIN, SYN, RST, PSH, ACK, URG, ECE, CWR = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80

# bits of ``frag``
FRAG_MF = 0x1  # more fragments follow
FRAG_LATER = 0x2  # fragment offset > 0 (not the first fragment)

PACKET_DTYPE = np.dtype(
    [
        ("frame", "u4"),  # 1-based record number in the file
        ("iface", "u2"),  # pcapng interface id (0 for pcap)
        ("ts_ns", "i8"),  # capture time, ns since the epoch, in the capturing clock
        ("caplen", "u4"),
        ("wirelen", "u4"),
        ("status", "u1"),  # Undecoded
        ("linktype", "u2"),  # LINKTYPE_* of the record's interface
        ("vlan", "u2"),  # outermost 802.1Q VLAN id, 0 if none
        ("tunnel", "u1"),  # 1: inner IPv4 of an IPv4-in-IPv6 tunnel
        ("ipver", "u1"),  # 4, 6, or 0 (not IP)
        ("src", "u1", (16,)),
        ("dst", "u1", (16,)),
        ("src_i", "u4"),  # index of src in Capture.addrs (0: no IP)
        ("dst_i", "u4"),  # index of dst in Capture.addrs
        ("ttl", "u1"),  # IPv4 TTL / IPv6 hop limit
        ("tos", "u1"),  # IPv4 TOS / IPv6 traffic class: DSCP << 2 | ECN
        ("ip_id", "u4"),  # IPv4 identification; IPv6 fragment-header identification
        ("ip_len", "u4"),  # IP total length (IPv6: 40 + payload length); if the header said 0 (TSO), wirelen - link header
        ("df", "u1"),  # IPv4 don't-fragment bit
        ("frag", "u1"),  # FRAG_* bits
        ("proto", "u1"),  # final L4 protocol number (6, 17, 1, 58, ...)
        ("sport", "u2"),
        ("dport", "u2"),
        ("seq", "u4"),
        ("ack", "u4"),
        ("flags", "u2"),  # TCP flags (incl. NS as 0x100)
        ("win", "u2"),
        ("mss", "u2"),  # TCP MSS option, 0 if absent
        ("wscale", "i1"),  # TCP window scale option, -1 if absent
        ("sackok", "u1"),  # TCP SACK-permitted option present
        ("has_ts", "u1"),  # TCP timestamp option present
        ("tsval", "u4"),
        ("tsecr", "u4"),
        ("optsig", "u8"),  # signature of the TCP option kinds in order (0: no options)
        ("icmp_type", "i2"),  # ICMP / ICMPv6 type, -1 if not ICMP
        ("icmp_code", "u1"),
        ("icmp_id", "u2"),  # echo identifier
        ("icmp_seq", "u2"),  # echo sequence number
        ("plen", "u4"),  # L4 payload length from the IP header (what was sent)
        ("pcaplen", "u4"),  # L4 payload bytes present in the capture (<= plen)
        ("poff", "u8"),  # byte offset of the L4 payload in the file
        ("phash", "u8"),  # payload_hash() of the captured payload bytes; 0 if none
    ]
)


# ICMP errors only (rare rows): the fields that say what an error is about, kept apart
# from PACKET_DTYPE so that every other row does not carry 47 zero bytes for them
QUOTED_DTYPE = np.dtype(
    [
        ("row", "u4"),  # the ICMP error's index in the packet table (frame - 1)
        ("icmp_mtu", "u2"),  # next-hop MTU of frag-needed / packet-too-big
        # the packet quoted inside the error (dest unreachable, time exceeded, ...)
        ("q_proto", "u1"),
        ("q_src", "u1", (16,)),
        ("q_dst", "u1", (16,)),
        ("q_sport", "u2"),
        ("q_dport", "u2"),
        ("q_seq", "u4"),  # TCP seq, or echo (id << 16 | seq) of a quoted echo request
        ("q_ip_id", "u4"),
    ]
)


def field_names(dtype: np.dtype) -> tuple[str, ...]:
    """The field names of a structured dtype (a plain one has none: a caller's bug)."""
    if dtype.names is None:
        raise TypeError(f"{dtype} is not a structured dtype")
    return dtype.names


QUOTED_FIELDS = field_names(QUOTED_DTYPE)[1:]

# The lean table: ``PACKET_DTYPE`` without the columns that neither the analysis nor the
# reports built from a verdict read (the record's interface, link type, VLAN, lengths
# of the record and of the IP packet, tunnel flag, TCP window, echoed timestamp, option
# signature, payload offset) and without the 16-byte addresses (the analysis reads
# ``src_i`` / ``dst_i`` and ``Capture.addrs``). ``rig diff`` and ``rig run`` read
# captures lean (``read_capture(path, lean=True)``): 77 bytes a row instead of 150,
# 139 MB less for two 1M-packet captures, and fewer columns to fill. The full table stays
# the default (the decoders' agreement and tshark tests, ``Capture.payload``, the
# report's ladder). Field names, types and meanings are the same in both; the analysis
# reads fields by name, so it runs on either (tests/test_capture_lean.py proves the
# verdicts equal).
DETAIL_FIELDS = ("iface", "caplen", "wirelen", "linktype", "vlan", "tunnel", "src", "dst", "ip_len", "win", "tsecr",
                 "optsig", "poff")
LEAN_DTYPE = np.dtype([(n, PACKET_DTYPE[n]) for n in field_names(PACKET_DTYPE) if n not in DETAIL_FIELDS])


def table_dtype(lean: bool) -> np.dtype:
    return LEAN_DTYPE if lean else PACKET_DTYPE


def empty_table(n: int = 0, dtype: np.dtype = PACKET_DTYPE) -> np.ndarray:
    """A zeroed table of ``n`` rows with the 'absent' markers set."""
    t = np.zeros(n, dtype=dtype)
    t["icmp_type"] = -1
    t["wscale"] = -1
    return t


PAYLOAD_HASH_BYTES = 64  # phash covers the payload length and this many leading bytes


def payload_hash(data: bytes, length: int | None = None) -> int:
    """The 64-bit payload hash stored in ``phash`` (0 for empty payload).

    Covers the payload's length and its first ``PAYLOAD_HASH_BYTES`` bytes, mixed as
    eight little-endian 64-bit words (zero-padded). Probes put their nonce first, so this
    tells payloads apart; bytes past 64 are not covered. Why not all bytes: hashing
    every payload byte vectorised costs ~0.8 s per 1M packets (165 MB of payload) --
    four times the libpcap floor on its own; this costs ~0.1 s. Both decoders compute
    it identically (the fast path vectorised). ``length``: the length to cover instead
    of ``len(data)`` (a first fragment's: its whole datagram's, from the UDP header).
    """
    n = len(data) if length is None else length
    if not n:
        return 0
    head = bytes(data[:PAYLOAD_HASH_BYTES]).ljust(PAYLOAD_HASH_BYTES, b"\0")
    h = 0x9E3779B97F4A7C15 ^ n
    for i in range(0, PAYLOAD_HASH_BYTES, 8):
        h = ((h ^ int.from_bytes(head[i : i + 8], "little")) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
        h ^= h >> 31
    return h or 1


def format_addr(a: np.ndarray | bytes) -> str:
    """Print a 16-byte address column value: IPv4-mapped ones as dotted quad."""
    return _format_addr(bytes(a))


@functools.lru_cache(maxsize=4096)
def _format_addr(b: bytes) -> str:
    # a run has a handful of addresses, printed once per packet (the report's ladders
    # called this 2,000 times for a healthy run: 30 ms of ipaddress objects)
    ip = ipaddress.IPv6Address(b)
    return str(ip.ipv4_mapped) if ip.ipv4_mapped is not None else str(ip)


def addr_bytes(text: str) -> bytes:
    """The 16-byte column form of an address string (IPv4 becomes IPv4-mapped)."""
    ip = ipaddress.ip_address(text)
    if ip.version == 4:
        return b"\x00" * 10 + b"\xff\xff" + ip.packed
    return ip.packed


@dataclass(frozen=True)
class InterfaceInfo:
    iface: int
    linktype: int
    name: str = ""
    ts_resolution_ns: int = 1000
    snaplen: int = 0
    kernel_drops: int | None = None  # from a pcapng Interface Statistics Block, if any
    # when it started and stopped capturing (pcapng isb_starttime / isb_endtime, which
    # dumpcap writes; None where the file does not say), on the capture's own clock
    listened_ns: tuple[int | None, int | None] = (None, None)


@dataclass(frozen=True)
class Gap:
    """A damaged region of the file that the reader skipped: it held no record header
    that fits its neighbours, and the walk resumed at the next plausible one (see
    ``resync.py``). The packets whose records were in it are not in the table; the
    analysis does not take their absence for a loss (``rig.analysis.gaps``)."""

    offset: int  # file offset of the first byte skipped (where the damaged record starts)
    skipped: int  # bytes skipped
    frame_before: int  # frame of the last record before the gap (0: none)
    ts_before_ns: int | None  # capture time of the record before the gap (None: none)
    ts_after_ns: int | None  # capture time of the record after it (None: none)


@dataclass(frozen=True)
class Capture:
    """One capture file, decoded.

    ``packets`` is the packet table; ``quoted`` the ICMP errors' side table
    (``QUOTED_DTYPE``, sorted by row; read it through ``quoted_at``). ``undecoded``
    counts rows with status != 0 by reason name (``TRUNCATED_PAYLOAD`` included, since
    it is still reported). ``payload(row)`` returns the captured payload bytes of a row
    without keeping every payload in memory.
    """

    path: str
    format: str  # "pcap" | "pcap-ns" | "pcapng"
    interfaces: tuple[InterfaceInfo, ...]
    packets: np.ndarray
    quoted: np.ndarray = field(default_factory=lambda: np.zeros(0, QUOTED_DTYPE))
    # the distinct addresses, (count, 16) u1: row i is the address src_i / dst_i == i names
    addrs: np.ndarray = field(default_factory=lambda: np.zeros((1, 16), np.uint8))
    undecoded: dict[str, int] = field(default_factory=dict)
    # the file ended inside a record (or a block header was unusable): the complete
    # records before it were read; ``tail_note`` says where and why
    truncated_tail: bool = False
    tail_note: str = ""
    # pcap records whose sub-second timestamp field is out of range (>= 1 s); their
    # ts_ns is seconds + that field as written (tools disagree on these; rig does not guess)
    bad_timestamps: int = 0
    # damaged regions skipped mid-file, in file order (``Gap``)
    gaps: tuple[Gap, ...] = ()
    # records of the file read but not kept (``focus.read_focused``: unrelated to the other
    # capture of a diff); the file held ``len(packets) + skipped`` records
    skipped: int = 0
    _data: mmap.mmap | bytes | None = field(default=None, repr=False, compare=False)  # the file's bytes

    def quoted_at(self, rows) -> np.ndarray:
        """The ``QUOTED_DTYPE`` records of ``rows`` (indices into ``packets``), aligned
        with them: ``row`` is the row asked for, every other field 0 where that row has
        no record (it is not an ICMP error). For one int, one record."""
        idx = np.asarray(rows, dtype=np.int64)
        flat = idx.reshape(-1)
        out = np.zeros(len(flat), QUOTED_DTYPE)
        out["row"] = flat
        q = self.quoted
        if len(q) and len(flat):
            pos = np.minimum(np.searchsorted(q["row"], flat), len(q) - 1)
            hit = q["row"][pos] == flat
            out[hit] = q[pos[hit]]
        return out[0] if idx.ndim == 0 else out.reshape(idx.shape)

    def payload(self, row: int) -> bytes:
        if "poff" not in field_names(self.packets.dtype):
            raise ValueError(f"{self.path}: read lean, without payload offsets: read it with read_capture(path)")
        off, n = int(self.packets["poff"][row]), int(self.packets["pcaplen"][row])
        if n == 0 or self._data is None:
            return b""
        return bytes(self._data[off : off + n])

    @property
    def kernel_drops(self) -> int:
        return sum(i.kernel_drops or 0 for i in self.interfaces)
