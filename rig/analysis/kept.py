"""What the path is measured to keep of a SYN, learnt from the connections joined on keys.

A path either rewrites a field for every connection of a kind or for none: pf's
``modulate state`` shifts each ISN its rule covers, ``scrub random-id`` replaces every
IP ID, timestamp modulation shifts every TSval; Linux NATs keep all three. So when every
joined connection shows a field unchanged, a server connection in which that field
differs from a client attempt's is not that attempt (``match_syn.match_by_pattern``),
even though no key joined them.

Safety, since a wrong "kept" turns into a confident wrong verdict:

- one joined connection showing the field changed, anywhere in the captures, and the
  field is kept nowhere (two rules, or a path that rewrites some connections only);
- an attempt uses a field only if a joined connection of its own kind (same client
  address, server address and service port: what a pf rule is written on) showed it kept;
- a field compared on one SYN copy (IP ID, TSval: ``match.same_copy`` may have picked the
  copy by that very value among several) needs two joined connections showing it kept,
  so one chance agreement of 16 bits does not decide; the ISN (32 bits, one per
  connection) needs one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rig.unique import isin

MIN_COPY_EVIDENCE = 2  # joined connections that must show a per-copy field kept


@dataclass(frozen=True, slots=True)
class Kept:
    """Per client connection: the path is measured to keep its SYN's ISN, TCP timestamp
    value, IPv4 ID (bool arrays, one entry per client connection)."""

    isn: np.ndarray
    tsval: np.ndarray
    ip_id: np.ndarray

    @staticmethod
    def nothing(n: int) -> Kept:
        z = np.zeros(n, bool)
        return Kept(z, z, z)


@dataclass(frozen=True, slots=True)
class Evidence:
    """One field compared on joined connections: which of them could compare it
    (``seen``) and, of those, which kept it (``same``); bool arrays over the joined pairs."""

    seen: np.ndarray
    same: np.ndarray


def _kept_where(kind: np.ndarray, joined: np.ndarray, ev: Evidence, need: int) -> np.ndarray:
    """Per client connection (``kind``: its kind's key): whether its kind showed the field
    kept, on ``joined`` client connections (``ev`` in their order), and none changed it."""
    out = np.zeros(len(kind), bool)
    seen = ev.seen
    if not seen.any() or (seen & ~ev.same).any() or int(seen.sum()) < need:
        return out
    return isin(kind, kind[joined[seen]])


def learn(kind: np.ndarray, joined: np.ndarray, isn: Evidence, tsval: Evidence, ip_id: Evidence) -> Kept:
    """``Kept`` from the evidence of the ``joined`` client connections; ``kind``: per client
    connection, a key of its client address, server address and service port."""
    return Kept(isn=_kept_where(kind, joined, isn, 1),
                tsval=_kept_where(kind, joined, tsval, MIN_COPY_EVIDENCE),
                ip_id=_kept_where(kind, joined, ip_id, MIN_COPY_EVIDENCE))
