"""Read pcap / pcapng captures into the packet table (``table.py`` is the contract).

Why rig has its own reader (DESIGN.md §5, measured on this machine, 1M packets):
tshark -T fields reads 0.035 M packets/s, dpkt 0.08 M/s (and mis-decodes multi-interface
pcapng), scapy 0.005 M/s, while libpcap itself reads 4.8 M/s. A struct/memoryview
decoder reaches 0.34 M/s; numpy over fixed header offsets 0.55 M/s. So: walk the
records (``container``), decode the common fixed layouts vectorised (``fast``), and
hand every row the fast path does not claim to the per-packet reference decoder
(``decode``), which understands every layout rig supports. Both fill the same fields;
a test proves they agree.

    from rig.capture import read_capture
    cap = read_capture("client.pcap")     # rig.capture.table.Capture
"""

from __future__ import annotations

import numpy as np

from rig.capture import container, decode
from rig.capture.table import Capture, Undecoded, empty_table

__all__ = ["read_capture", "read_capture_bytes"]


def read_capture(path: str, *, fast: bool = True) -> Capture:
    """Read a capture file. Raises ``InputError`` only for a file that is not usable as a
    whole; every per-record problem is counted in ``Capture.undecoded``."""
    buf = container.open_capture(str(path))
    return _read(buf, str(path), fast)


def read_capture_bytes(data: bytes, name: str = "<bytes>", *, fast: bool = True) -> Capture:
    """The same as ``read_capture`` for bytes already in memory (tests, fetched files)."""
    return _read(bytes(data), name, fast)


def _read(buf, name: str, fast: bool) -> Capture:
    recs = container.walk(buf, name)
    n = len(recs.data_off)
    table = empty_table(n)
    table["frame"] = np.arange(1, n + 1, dtype=np.uint32)
    table["iface"] = recs.iface
    table["ts_ns"] = recs.ts_ns
    table["caplen"] = recs.caplen
    table["wirelen"] = recs.wirelen
    table["linktype"] = np.where(recs.linktype < 0, 0, recs.linktype)
    table["status"] = recs.status
    todo = recs.status == 0
    if fast and n:
        from rig.capture import fast as fastpath

        claimed = fastpath.decode_into(table, buf, recs, todo)
        todo &= ~claimed
    decode.fill_rows(table, np.flatnonzero(todo), buf, recs.data_off, recs.caplen, recs.wirelen, recs.linktype)
    counts = np.bincount(table["status"], minlength=len(Undecoded))
    undecoded = {Undecoded(i).name: int(c) for i, c in enumerate(counts) if i and c}
    return Capture(
        path=name,
        format=recs.format,
        interfaces=recs.interfaces,
        packets=table,
        undecoded=undecoded,
        _data=buf,
        truncated_tail=recs.truncated_tail,
        tail_note=recs.tail_note,
    )
