"""IPv4 fragments of UDP datagrams: whether a datagram arrived whole.

A datagram the client's kernel fragments shows at each point as its first fragment (a
trusted row with ``FRAG_MF``: it carries the ports) and its later fragments (rows with
status ``FRAGMENT``: no ports, only addresses, IP ID and protocol). The first fragment
pairs across points like any datagram; its continuation is found at each point on that
point's own (source, destination, IP ID, protocol), since a NAT may rewrite the IP ID.
A server holds the datagram when its last fragment (no more follow) arrived too (a
path may fragment again: the count of fragments may differ, the last one is there).
A server that got the first fragment and not all of the rest never got the datagram: its
kernel cannot reassemble it (a MAP-E border relay drops non-first fragments: they carry
no ports to check).
"""

from __future__ import annotations

import numpy as np

from rig.analysis.keys import combine, take
from rig.analysis.sides import Side
from rig.capture.table import FRAG_MF, Undecoded

UDP = 17


def _later(side: Side) -> tuple[np.ndarray, np.ndarray]:
    """The side's later UDP fragments (IPv4): their rows and (src, dst, IP ID) keys, sorted
    by key; memoised (one pass over the table, made only when a first fragment asks)."""
    got = side.memo.get("udp-later-fragments")
    if got is None:
        t = side.t
        rows = np.flatnonzero((t["status"] == Undecoded.FRAGMENT) & (t["ipver"] == 4) & (t["proto"] == UDP))
        keys = _keys(side, rows)
        o = np.argsort(keys, kind="stable")
        got = side.memo["udp-later-fragments"] = (rows[o], keys[o])
    return got


def _keys(side: Side, rows: np.ndarray) -> np.ndarray:
    return combine(side.addr_keys("src", rows), side.addr_keys("dst", rows), take(side.t["ip_id"], rows), UDP,
                   n=len(rows))


def first_fragments(side: Side, rows: np.ndarray) -> np.ndarray:
    """Which of a side's UDP ``rows`` are first fragments (more follow)."""
    t = side.t
    return ((take(t["frag"], rows) & FRAG_MF) != 0) & (take(t["ipver"], rows) == 4)


def later_fragments(side: Side, row: int) -> list[int]:
    """The rows of the later fragments of the datagram whose first fragment is ``row``."""
    rows, keys = _later(side)
    k = _keys(side, np.array([row], np.int64))[0]
    lo, hi = np.searchsorted(keys, k, "left"), np.searchsorted(keys, k, "right")
    return rows[lo:hi].tolist()


def _has_last(side: Side, firsts: np.ndarray) -> np.ndarray:
    """Whether the side holds the last fragment (no more follow) of each datagram whose
    first fragment is one of ``firsts``."""
    rows, keys = _later(side)
    last = keys[(take(side.t["frag"], rows) & FRAG_MF) == 0]  # sorted still
    if len(last) == 0:
        return np.zeros(len(firsts), bool)
    k = _keys(side, firsts)
    return last[np.minimum(np.searchsorted(last, k), len(last) - 1)] == k


def cut_short(c: Side, creq: np.ndarray, s: Side, sreq: np.ndarray) -> np.ndarray:
    """Which client datagrams ``creq`` reached the server (``sreq``, their server copies)
    as a first fragment whose last fragment never arrived. (The lean table the analysis
    reads has no IP lengths or fragment offsets: a lost middle fragment goes unseen.)"""
    out = np.zeros(len(creq), bool)
    ff = first_fragments(s, sreq)
    if ff.any():
        out[ff] = ~_has_last(s, sreq[ff])
        # what the client's own capture lacks too was not lost between the points: a
        # client that sent the datagram whole lost it on the way, one whose capture holds
        # only a first fragment too (a snapshot cut short, a capture of a capture) did not
        cff = first_fragments(c, creq[ff])
        if cff.any():
            sub = out[ff]
            sub[cff] &= _has_last(c, creq[ff][cff])
            out[ff] = sub
    return out
