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

from dataclasses import replace

import numpy as np

from rig.capture import container, decode
from rig.capture.addresses import AddressBook
from rig.capture import fast as fastpath
from rig.capture.table import PACKET_DTYPE, Capture, Undecoded, table_dtype

__all__ = ["read_capture", "read_capture_bytes"]


def read_capture(path: str, *, fast: bool = True, alloc=None, lean: bool = False, spool: int | None = None) -> Capture:
    """Read a capture file, plain or compressed (gzip, zstd: ``compressed.py``). Raises
    ``InputError`` only for a file that is not usable as a whole; every per-record
    problem is counted in ``Capture.undecoded``. ``alloc(n, dtype)``, if given, returns
    the zeroed table of ``n`` rows to fill (e.g. in shared memory). ``lean``: the table
    without ``table.DETAIL_FIELDS`` (what ``rig diff`` reads). ``spool``: the file
    descriptor a compressed capture is decompressed into (default: a temporary file)."""
    buf, note = container.open_noted(str(path), spool)
    cap = _read(buf, str(path), fast, alloc, table_dtype(lean))
    if note:  # a compressed stream cut short: what it held was read
        tail = f"{note}; {cap.tail_note}" if cap.tail_note else note
        cap = replace(cap, truncated_tail=True, tail_note=tail)
    return cap


def read_capture_bytes(data: bytes, name: str = "<bytes>", *, fast: bool = True, lean: bool = False) -> Capture:
    """The same as ``read_capture`` for bytes already in memory (tests, fetched files)."""
    return _read(bytes(data), name, fast, None, table_dtype(lean))


def _read(buf, name: str, fast: bool, alloc, dtype: np.dtype) -> Capture:
    recs = container.walk(buf, name)
    n = len(recs.data_off)
    arr = np.frombuffer(buf, dtype=np.uint8) if len(buf) else np.zeros(0, np.uint8)
    # np.zeros maps zero pages lazily: each chunk of rows is first touched, filled and
    # decoded while it is in cache (one pass over the table instead of one per column)
    table = np.zeros(n, dtype) if alloc is None else alloc(n, dtype)
    full = dtype == PACKET_DTYPE  # else the lean table: none of table.DETAIL_FIELDS
    todo = np.zeros(n, bool)
    book = AddressBook()
    quotes = []  # the ICMP errors' records the fast path found
    released = 0
    step = fastpath.CHUNK
    for a in range(0, n, step):
        b = min(n, a + step)
        t = table[a:b]
        t["frame"] = np.arange(a + 1, b + 1, dtype=np.uint32)
        t["ts_ns"] = recs.ts_ns[a:b]
        if full:
            t["iface"] = recs.iface[a:b]
            t["caplen"] = recs.caplen[a:b]
            t["wirelen"] = recs.wirelen[a:b]
            lt = recs.linktype[a:b]
            t["linktype"] = np.where(lt < 0, 0, lt)
        t["status"] = recs.status[a:b]
        t["icmp_type"] = -1
        t["wscale"] = -1
        left = recs.status[a:b] == 0
        if fast:
            claimed, q = fastpath.decode_rows(t, arr, recs, a, b, book)
            left &= ~claimed
            quotes.append(q)
        todo[a:b] = left
        if b < n:  # the file's pages behind this chunk are not needed any more
            released = container.release(buf, released, int(recs.data_off[b]) - 65536)
    quotes.append(decode.fill_rows(table, np.flatnonzero(todo), buf, recs.data_off, recs.caplen, recs.wirelen,
                                   recs.linktype, book))
    quoted = fastpath.merge_quoted(quotes)
    counts = np.bincount(table["status"], minlength=len(Undecoded))
    undecoded = {Undecoded(i).name: int(c) for i, c in enumerate(counts) if i and c}
    return Capture(
        path=name,
        format=recs.format,
        interfaces=recs.interfaces,
        packets=table,
        quoted=quoted,
        addrs=book.addresses(),
        undecoded=undecoded,
        _data=buf,
        truncated_tail=recs.truncated_tail,
        tail_note=recs.tail_note,
        bad_timestamps=recs.bad_ts,
        gaps=recs.gaps,
    )
