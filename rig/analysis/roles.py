"""Who is who: the client hosts in the client capture, and which capture is whose.

Both are decided from behaviour, never from packet counts. An *initiation* is a TCP
connection's first SYN, an ICMP echo request, or the first datagram of a UDP 4-tuple
(either way round) in a capture, unless that datagram arrived from afar at an endpoint of
the capture's own (below) that sent to its source address before: the answer of a server
from a new port of its own (TFTP's data, STUN's change-port answer) initiates nothing.
A datagram that the capture's own host sent is its own initiative, even toward a port that
sent to it first (a stray datagram before the host's own flow to that service).

``client_hosts``: the client hosts are the addresses that initiate more than they are
initiated to. A capture taken on a router's LAN side holds several; a server that sends
ten times what the client sends is still the one answering.

``orientation``: which way round the two captures go. A capture's *own* addresses are
those whose packets carry an initial TTL (32, 64, 128, 255; hop limit alike): they left
from this host (or its LAN), where everything else arrived over at least one router.
A capture *starts* what its own addresses initiate toward others and *receives* what
others initiate toward them; it looks like a client's when it starts more than twice
what it receives, a server's the other way round. The given order stands unless the
client capture looks like a server's: then, if the server capture looks like a
client's, the two are analysed the other way round (``Orientation``); otherwise the
order cannot be told and ``UsageError`` says so. A busy public server's capture holds
many initiations from scanners, all received: given as the server, it confirms the
order. ``--server-addr`` settles it: the captures are swapped only if that address is
the client capture's own and not the server capture's, and are never refused.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from rig.analysis.keys import combine, take
from rig.analysis.reqrep import udp_tuples
from rig.analysis.sides import Side
from rig.errors import UsageError
from rig.unique import isin

INITIAL_TTLS = (32, 64, 128, 255)
_IS_INITIAL = isin(np.arange(256), INITIAL_TTLS)  # by TTL value: one gather a row
OWN_SHARE = 0.9  # of an address's packets carrying an initial TTL, for it to be the capture's own
CLEAR = 2  # one way must outnumber the other this many times to say which role a capture plays


def initiations(side: Side) -> tuple[np.ndarray, np.ndarray]:
    """The rows of every initiation in ``side`` (TCP first SYNs, echo requests, first
    datagrams of UDP 4-tuples), as (source, destination) address indices; made once a side."""
    got = side.memo.get("initiations")
    if got is None:
        got = side.memo["initiations"] = _initiations(side)
    return got


def _initiations(side: Side) -> tuple[np.ndarray, np.ndarray]:
    t = side.t
    cc = side.tcp  # its first SYN per connection (sides.TcpConns)
    syn = cc.order[cc.syn[cc.syn >= 0]] if cc is not None and len(cc) else np.zeros(0, np.int64)
    udp = side.rows_of(17)
    if len(udp):  # the 4-tuples reqrep uses too (memoised)
        f, r = udp_tuples(side)
        udp = udp[np.sort(np.unique(np.minimum(f, r), return_index=True)[1])]
        udp = udp[~_answers_from_another_port(side, udp)]
    rows = np.concatenate([syn, side.echo_req, udp]).astype(np.int64)
    return take(t["src_i"], rows).astype(np.int64), take(t["dst_i"], rows).astype(np.int64)


def _answers_from_another_port(side: Side, first: np.ndarray) -> np.ndarray:
    """Which of the 4-tuples' first datagrams ``first`` (rows, in file order) go from afar
    to an endpoint of the capture's own (``own_addresses``) that an earlier first datagram
    came from, toward this one's source address (a server answering from another port
    than the one asked; ``reqrep._FromOtherPort``)."""
    t = side.t
    own = own_addresses(side)
    src_i, dst_i = take(t["src_i"], first), take(t["dst_i"], first)
    arrived = own[dst_i] & ~own[src_i]
    if not arrived.any():
        return np.zeros(len(first), bool)
    src, dst = side.addr_keys("src", first), side.addr_keys("dst", first)
    sent = combine(src, take(t["sport"], first), dst, n=len(first))  # this endpoint sent to that address
    asks = combine(dst, take(t["dport"], first), src, n=len(first))  # an answer to such a sender
    keys, at = np.unique(sent, return_index=True)
    if len(keys) == 0:
        return np.zeros(len(first), bool)
    g = np.minimum(np.searchsorted(keys, asks), len(keys) - 1)
    return arrived & (keys[g] == asks) & (at[g] < np.arange(len(first)))


def client_hosts(side: Side) -> set[int]:
    """The address keys (``Side.addr_keys``) of the hosts that initiate more than they are
    initiated to in ``side``."""
    src, dst = initiations(side)
    if len(src) == 0:
        return set()
    n = len(side.addrs)
    starts, targeted = np.bincount(src, minlength=n), np.bincount(dst, minlength=n)
    ours = np.flatnonzero(starts > targeted)
    if len(ours) == 0:
        ours = np.flatnonzero(starts)
    return set(side.akeys[ours].tolist())


def own_addresses(side: Side) -> np.ndarray:
    """Which of the capture's addresses (by index) are its own: nearly all their packets
    carry an initial TTL (made once a side)."""
    got = side.memo.get("own-addresses")
    if got is None:
        got = side.memo["own-addresses"] = _own_addresses(side)
    return got


def _own_addresses(side: Side) -> np.ndarray:
    n = len(side.addrs)
    total, initial = np.zeros(n, np.int64), np.zeros(n, np.int64)
    for p in (6, 17, 1, 58):  # a protocol at a time: no copy of every row's index
        rows = side.rows_of(p)
        src = take(side.t["src_i"], rows)
        total += np.bincount(src, minlength=n)
        initial += np.bincount(src[_IS_INITIAL[take(side.t["ttl"], rows)]], minlength=n)
    return (total > 0) & (initial >= OWN_SHARE * np.maximum(total, 1))


@dataclass(frozen=True)
class Behaviour:
    """What a capture's own addresses did: initiations they started toward others and
    received from others."""

    starts: int
    receives: int

    @property
    def role(self) -> str:
        if self.starts > CLEAR * self.receives:
            return "client"
        if self.receives > CLEAR * self.starts:
            return "server"
        return "unclear"

    def words(self) -> str:
        return f"starts {self.starts} and receives {self.receives}"


def behaviour(side: Side) -> Behaviour:
    own = own_addresses(side)
    src, dst = initiations(side)
    so, do = own[src], own[dst]
    return Behaviour(int((so & ~do).sum()), int((do & ~so).sum()))


def _owns(side: Side, keys: set[int]) -> bool:
    own = own_addresses(side)
    return bool(isin(side.akeys[own], np.fromiter(keys, np.uint64, len(keys))).any())


@dataclass(frozen=True)
class Decision:
    swap: bool
    because: str
    given: tuple[Behaviour, Behaviour] | None = None


def orientation(c: Side, s: Side, server_keys: set[int] | None = None) -> Decision:
    """Whether to analyse the two captures the other way round (``c`` given first); raises
    ``UsageError`` when the given order is doubtful and the other one no better."""
    if server_keys:
        if _owns(c, server_keys) and not _owns(s, server_keys):
            return Decision(True, "the server address given is the first capture's own")
        return Decision(False, "")
    bc, bs = behaviour(c), behaviour(s)
    if bc.role != "server":
        return Decision(False, "", (bc, bs))
    what = "connections, echo requests and UDP flows"
    first, second = _name(c, "the first capture"), _name(s, "the second")
    if bs.role == "client":
        return Decision(True, f"{first} {bc.words()} {what}, as a server's capture does; {second} {bs.words()}",
                        (bc, bs))
    raise UsageError(f"cannot tell which capture is the client's: {first} {bc.words()} {what}, as a server's "
                     f"capture does, and {second} {bs.words()}; give the server's address with --server-addr")


def _name(side: Side, default: str) -> str:
    path = getattr(side.cap, "path", None)
    return os.path.basename(path) if path else default
