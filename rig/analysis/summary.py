"""One-line, Wireshark-like summaries of packet-table rows (for evidence)."""

from __future__ import annotations

from functools import cached_property

import numpy as np

from rig.analysis.keys import take_fields
from rig.capture.table import Undecoded, format_addr

_FLAGS = ((0x02, "SYN"), (0x10, "ACK"), (0x01, "FIN"), (0x04, "RST"), (0x08, "PSH"))
_ICMP4 = {0: "echo reply", 8: "echo request", 3: "unreachable", 11: "time exceeded", 4: "source quench",
          5: "redirect", 12: "parameter problem"}
_ICMP6 = {128: "echo request", 129: "echo reply", 1: "unreachable", 2: "packet too big", 3: "time exceeded",
          4: "parameter problem"}
_UNREACH4 = {0: "net", 1: "host", 2: "protocol", 3: "port", 4: "frag-needed", 9: "net prohibited",
             10: "host prohibited", 13: "admin prohibited"}


_ADDR_CACHE: dict[bytes, str] = {}


def addr_text(addr) -> str:
    """``format_addr`` memoised: a run has few distinct addresses and many packets."""
    b = bytes(addr)
    a = _ADDR_CACHE.get(b)
    if a is None:
        if len(_ADDR_CACHE) > 100_000:
            _ADDR_CACHE.clear()
        a = _ADDR_CACHE[b] = format_addr(b)
    return a


def addr_texts(idx: np.ndarray, addrs: np.ndarray) -> list[str]:
    """``addr_text`` of the addresses ``idx`` names in ``addrs`` (a capture's
    ``Capture.addrs``; ``idx`` a ``src_i`` / ``dst_i`` column), each distinct one formatted once."""
    if len(idx) == 0:
        return []
    uniq, inv = np.unique(idx, return_inverse=True)
    texts = [addr_text(addrs[u]) for u in uniq.tolist()]
    return [texts[i] for i in inv.ravel().tolist()]


class AddrTexts:
    """``addr_texts`` of one capture's addresses, for its ``Side`` and every ``Part`` of
    it: where the table is not large (``KEEP_ALL``) or the rows asked are many against
    it, the text of every address is made at the first ask and kept with the table (the
    writers ask a few thousand rows at a time: on the mix pair's 6,000 addresses,
    formatting each chunk's distinct ones took 0.46 s of --json)."""

    KEEP_ALL = 1 << 16  # addresses a table may have for all their texts to be made at once (~60 ms)

    def __init__(self, addrs: np.ndarray) -> None:
        self.addrs = addrs
        self._all: list[str] | None = None

    def __call__(self, idx: np.ndarray) -> list[str]:
        if len(idx) and (self._all is not None or len(self.addrs) <= max(self.KEEP_ALL, 4 * len(idx))):
            if self._all is None:
                self._all = [addr_text(a) for a in self.addrs]
            texts = self._all
            return [texts[i] for i in idx.tolist()]
        return addr_texts(idx, self.addrs)


def endpoint(addr, port: int | None = None) -> str:
    a = addr_text(addr)
    if port is None:
        return a
    return endpoints([a], [port])[0]


def endpoints(addrs: list[str], ports: list[int], shared: bool = False) -> list[str]:
    """``endpoint`` of many rows from their address texts (``addr_texts``) and ports.
    ``shared``: few distinct values (the server's), so equal strings are one object."""
    # (the one spelling of an endpoint; written inline, not a call per row: 1M rows at 1M packets)
    out = [f"[{a}]:{p}" if ":" in a else f"{a}:{p}" for a, p in zip(addrs, ports)]
    if shared:
        one: dict[str, str] = {}
        out = [one.setdefault(x, x) for x in out]
    return out


class RowTexts:
    """Columns of some rows of a ``sides.Part`` as Python lists, one conversion per
    column, and their address texts: what the fast paths build record strings from."""

    def __init__(self, part, rows: np.ndarray, fields):
        cols = take_fields(part.t, fields, rows)
        self._part, self._rows = part, rows
        self.c = {f: cols[f].tolist() for f in fields}

    @cached_property
    def src(self) -> list[str]:
        """The source address texts (made when first read: many readers want one side only)."""
        return self._part.addr_texts("src", self._rows)

    @cached_property
    def dst(self) -> list[str]:
        return self._part.addr_texts("dst", self._rows)

    def endpoints(self, which: str = "src", shared: bool = False) -> list[str]:
        """``shared``: few distinct values (the server's), so equal strings are one object."""
        addrs = self.src if which == "src" else self.dst
        return endpoints(addrs, self.c["sport" if which == "src" else "dport"], shared)


_FLAG_TEXT: dict[int, str] = {}


def tcp_flags(flags: int) -> str:
    text = _FLAG_TEXT.get(flags)
    if text is None:
        names = [n for bit, n in _FLAGS if flags & bit]
        if names[:2] == ["SYN", "ACK"]:
            names = ["SYN-ACK"] + names[2:]
        text = _FLAG_TEXT[flags] = ",".join(names) or "none"
    return text


def icmp_name(r: np.void) -> str:
    it, code = int(r["icmp_type"]), int(r["icmp_code"])
    if int(r["proto"]) == 58:
        name = _ICMP6.get(it, f"type {it}")
    else:
        name = _ICMP4.get(it, f"type {it}")
        if it == 3:
            name = f"{_UNREACH4.get(code, 'code %d' % code)} unreachable" if code != 4 else "frag-needed"
    return name


def tcp_text(src: str, dst: str, flags: int, seq: int, ack: int, plen: int, mss: int, ttl: int) -> str:
    """A TCP segment's summary from its endpoints (``endpoint``): ``summarize`` and the fast paths."""
    text = f"{src} > {dst} {tcp_flags(flags)} seq {seq}"
    if flags & 0x10:
        text += f" ack {ack}"
    if plen:
        text += f" len {plen}"
    if mss:
        text += f" mss {mss}"
    return f"{text} ttl {ttl}"


def udp_text(src: str, dst: str, plen: int, ttl: int) -> str:
    """A UDP datagram's summary from its endpoints (``endpoint``): ``summarize`` and the fast paths."""
    return f"{src} > {dst} UDP len {plen} ttl {ttl}"


def echo_text(src: str, dst: str, name: str, icmp_id: int, seq: int, ttl: int) -> str:
    """An ICMP echo request's or reply's summary (``name``: ``icmp_name``): ``summarize`` and the fast paths."""
    return f"{src} > {dst} ICMP {name} id {icmp_id} seq {seq} ttl {ttl}"


FRAGMENT_OF = {6: "TCP", 17: "UDP", 1: "ICMP"}


def summarize(r: np.void, addrs: np.ndarray, q: np.void | None = None) -> str:
    """``r`` is one row of a packet table, ``addrs`` its capture's ``Capture.addrs``; ``q``
    its ``Capture.quoted_at`` record, which says what an ICMP error is about (without it,
    an error is named by its type only)."""
    proto = int(r["proto"])
    src, dst = addrs[r["src_i"]], addrs[r["dst_i"]]
    ttl = f"ttl {int(r['ttl'])}"
    if int(r["status"]) == Undecoded.FRAGMENT:  # a later fragment: no ports, only its IP ID and bytes
        size = f" len {max(int(r['ip_len']) - 20, 0)}" if "ip_len" in (r.dtype.names or ()) else ""  # lean: none
        return (f"{addr_text(src)} > {addr_text(dst)} IPv4 fragment of {FRAGMENT_OF.get(proto, f'protocol {proto}')} "
                f"id {int(r['ip_id'])}{size} {ttl}")
    if proto == 6:
        return tcp_text(endpoint(src, int(r["sport"])), endpoint(dst, int(r["dport"])), int(r["flags"]), int(r["seq"]),
                        int(r["ack"]), int(r["plen"]), int(r["mss"]), int(r["ttl"]))
    if proto == 17:
        return udp_text(endpoint(src, int(r["sport"])), endpoint(dst, int(r["dport"])), int(r["plen"]), int(r["ttl"]))
    if proto in (1, 58):
        it = int(r["icmp_type"])
        if it in (0, 8, 128, 129):
            return echo_text(addr_text(src), addr_text(dst), icmp_name(r), int(r["icmp_id"]), int(r["icmp_seq"]),
                             int(r["ttl"]))
        s = f"{addr_text(src)} > {addr_text(dst)} ICMP {icmp_name(r)}"
        if q is not None and int(q["q_proto"]):
            qp = int(q["q_proto"])
            about = endpoint(q["q_dst"], int(q["q_dport"]) if qp in (6, 17) else None)
            s += f" about {'TCP' if qp == 6 else 'UDP' if qp == 17 else 'ICMP'} to {about}"
            if int(q["icmp_mtu"]):
                s += f" mtu {int(q['icmp_mtu'])}"
        return f"{s} {ttl}"
    return f"{endpoint(src)} > {endpoint(dst)} proto {proto} {ttl}"


def frag_needed_mtu(r, q: np.void | None) -> int | None:
    """The next-hop MTU an ICMP frag-needed (IPv6: packet too big) reports; None for any
    other row, or one that reports none. ``q``: the row's ``Capture.quoted_at`` record."""
    proto, it, code = int(r["proto"]), int(r["icmp_type"]), int(r["icmp_code"])
    if not ((proto == 1 and it == 3 and code == 4) or (proto == 58 and it == 2)) or q is None:
        return None
    return int(q["icmp_mtu"]) or None


def path_signal(r, addrs: np.ndarray, q: np.void | None = None) -> str | None:
    """For an ICMP error that says a packet could not travel (too big, TTL expired), the
    words for it; None for the errors that reject (unreachable, prohibited). ``q``: the
    row's ``Capture.quoted_at`` record, for the next-hop MTU of frag-needed."""
    proto, it, code = int(r["proto"]), int(r["icmp_type"]), int(r["icmp_code"])
    who = addr_text(addrs[r["src_i"]])
    mtu = int(q["icmp_mtu"]) if q is not None else 0
    if (proto == 1 and it == 3 and code == 4) or (proto == 58 and it == 2):
        return (f"{who} answered that it is too big for the path (ICMP frag-needed, next-hop MTU {mtu})" if mtu
                else f"{who} answered that it is too big for the path (ICMP frag-needed)")
    if (proto == 1 and it == 11) or (proto == 58 and it == 3):
        return f"its TTL ran out at {who} (ICMP time exceeded)"
    return None
