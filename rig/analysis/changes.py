"""What the path changed in a packet, beyond the expected NAT rewrite: ``Change`` records.

Each function compares the same packet as the two capture points saw it: ``at_client``
and ``at_server`` are rows of the two packet tables, ``direction`` is "out" when the
client sent it and "back" when the server did.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

from rig.analysis.keys import signature_groups, take, take_fields
from rig.verdict import Change
from rig.unique import isin

_OPTS = (("mss", "MSS"), ("sackok", "SACK-permitted"), ("has_ts", "timestamps"), ("wscale", "window scale"))


def _present(r: np.void, name: str) -> bool:
    v = int(r[name])
    return v >= 0 if name == "wscale" else v > 0


def ip_changes(at_client: np.void, at_server: np.void, direction: str) -> list[Change]:
    out: list[Change] = []
    c_ttl, s_ttl = int(at_client["ttl"]), int(at_server["ttl"])
    if c_ttl != s_ttl:
        hops = c_ttl - s_ttl if direction == "out" else s_ttl - c_ttl
        out.append(Change("ip.ttl", direction, c_ttl, s_ttl, f"{hops} hops" if hops > 0 else None))
    if int(at_client["ipver"]) == 4 and int(at_server["ipver"]) == 4:
        ci, si = int(at_client["ip_id"]), int(at_server["ip_id"])
        if ci != si:
            out.append(Change("ip.id", direction, ci, si))
    ct, st = int(at_client["tos"]), int(at_server["tos"])
    if ct >> 2 != st >> 2:
        out.append(Change("ip.dscp", direction, ct >> 2, st >> 2))
    if ct & 3 != st & 3:
        out.append(Change("ip.ecn", direction, ct & 3, st & 3))
    if (int(at_client["frag"]) != 0) != (int(at_server["frag"]) != 0):
        later = at_server if direction == "out" else at_client
        out.append(Change("fragmented", direction, bool(at_client["frag"]), bool(at_server["frag"]),
                          "fragmented on the way" if later["frag"] else "reassembled on the way"))
    return out


def tcp_syn_changes(at_client: np.void, at_server: np.void, direction: str) -> list[Change]:
    """SYN / SYN-ACK options: MSS clamps, stripped or added options, window scale."""
    out = ip_changes(at_client, at_server, direction)
    cm, sm = int(at_client["mss"]), int(at_server["mss"])
    if cm != sm:
        note = None
        if cm and sm:
            note = f"clamped {cm if direction == 'out' else sm}->{sm if direction == 'out' else cm}"
        out.append(Change("tcp.mss", direction, cm or None, sm or None, note))
    cw, sw = int(at_client["wscale"]), int(at_server["wscale"])
    if cw != sw and cw >= 0 and sw >= 0:
        out.append(Change("tcp.wscale", direction, cw, sw))
    sender, receiver = (at_client, at_server) if direction == "out" else (at_server, at_client)
    removed = [label for name, label in _OPTS if _present(sender, name) and not _present(receiver, name)]
    added = [label for name, label in _OPTS if not _present(sender, name) and _present(receiver, name)]
    if removed or added:
        cset = [label for name, label in _OPTS if _present(at_client, name)]
        sset = [label for name, label in _OPTS if _present(at_server, name)]
        note = "; ".join(x for x in (f"removed {', '.join(removed)}" if removed else "",
                                     f"added {', '.join(added)}" if added else "") if x)
        out.append(Change("tcp.options", direction, cset, sset, note))
    return out


def isn_change(client_isn: int, server_isn: int, direction: str) -> list[Change]:
    """The ISN as each point saw it, and the offset the path added (mod 2**32: pf's
    ``modulate state`` adds one per connection to the initiator's sequence numbers)."""
    if client_isn == server_isn or client_isn < 0 or server_isn < 0:
        return []
    sent, got = (client_isn, server_isn) if direction == "out" else (server_isn, client_isn)
    return [Change("tcp.isn", direction, client_isn, server_isn, "sequence numbers rewritten", (got - sent) % (1 << 32))]


def payload_change(at_client: np.void, at_server: np.void, direction: str) -> list[Change]:
    if int(at_client["phash"]) == int(at_server["phash"]) or int(at_client["pcaplen"]) != int(at_server["pcaplen"]):
        return []
    return [Change("payload", direction, f"{int(at_client['plen'])} bytes", f"{int(at_server['plen'])} bytes",
                   "payload altered on the way")]


class PerSignature(list):
    """What ``changes_by_signature`` returns: ``per[k]`` for k < len(per) is one
    signature's changes; k = len(per) + r is pair r's, whose IP IDs differ: its
    signature's changes with its own ``ip.id`` values, made when read. (Behind ``scrub
    random-id`` every pair differs, and a Change a pair made eagerly cost more than the
    rest of the fast path; most records of a large run are never read.)"""

    def __init__(self, per: Iterable[tuple[Change, ...]] = ()) -> None:
        super().__init__(per)
        self.group: np.ndarray | None = None
        self.id_c: np.ndarray | None = None
        self.id_s: np.ndarray | None = None
        self.at: dict[int, int] = {}

    def __getitem__(self, k):
        n = list.__len__(self)
        if isinstance(k, (int, np.integer)) and k >= n:
            r = int(k) - n
            g = int(self.group[r])
            ch, i = list.__getitem__(self, g), self.at[g]
            return ch[:i] + (Change("ip.id", ch[i].direction, int(self.id_c[r]), int(self.id_s[r])),) + ch[i + 1:]
        return list.__getitem__(self, k)

    def each(self, ks: list[int]) -> list[tuple[Change, ...]]:
        """``[self[k] for k in ks]``, each distinct ``k`` read once (a call per record cost
        ~0.4 s at 1M packets)."""
        got = {k: self[k] for k in set(ks)}
        return [got[k] for k in ks]

    def groups(self, ks: np.ndarray) -> np.ndarray:
        """The signature of each index ``ks`` (all the notes need: ``ip.id`` has none)."""
        ks = np.asarray(ks)
        if self.group is None:
            return ks
        own = ks >= list.__len__(self)
        out = ks.copy()
        out[own] = self.group[ks[own] - list.__len__(self)]
        return out


def signature_keys(out_inv: np.ndarray, back_inv: np.ndarray, own: np.ndarray) -> np.ndarray:
    """A batch's ``change_keys``: one key per pair of signatures (``PerSignature``
    indices, each direction's), a key of its own (negative) where ``own``."""
    o, b = out_inv.astype(np.int64), back_inv.astype(np.int64)
    keys = o * (int(b.max(initial=0)) + 1) + b
    own = np.asarray(own, bool)
    keys[own] = -1 - np.flatnonzero(own)
    return keys


DATA_FIELDS = ("seq", "plen", "pcaplen", "phash", "tos", "ip_id", "has_ts", "tsval")  # what data_changes reads


def same_copy(a, b) -> bool:
    """Whether rows ``a`` and ``b`` (of two points) are one copy of a segment, not a
    retransmission of it: the same TCP timestamp when both carry one, else the same IP ID.
    (A retransmission carries no ECT mark, RFC 3168 6.1.5: comparing the first copy sent
    with the retransmission that arrived would make up a bleaching.)"""
    if int(a["has_ts"]) and int(b["has_ts"]):
        return int(a["tsval"]) == int(b["tsval"])
    return int(a["ip_id"]) == int(b["ip_id"])


def data_changes(at_client, at_server, direction: str) -> list[Change]:
    """What the path changed in one data segment both points saw at the same sequence
    number: its payload, and (the same copy only) DSCP and ECN. The handshake carries no
    ECT marks, so ECN bleaching shows only here. The one rule for the close look
    (tcp._data_phase) and the bulk path (tcp_fast)."""
    out = payload_change(at_client, at_server, direction)
    if not same_copy(at_client, at_server):
        return out
    ct, st = int(at_client["tos"]), int(at_server["tos"])
    if ct >> 2 != st >> 2:
        out.append(Change("ip.dscp", direction, ct >> 2, st >> 2, "data segments"))
    if ct & 3 != st & 3:
        sent, got = (ct & 3, st & 3) if direction == "out" else (st & 3, ct & 3)
        out.append(Change("ip.ecn", direction, ct & 3, st & 3,
                          "ECN bleached on data segments" if sent and not got else "data segments"))
    return out


def changes_by_signature(c, s, rc: np.ndarray, rs: np.ndarray, direction: str, fields: tuple[str, ...],
                         compare) -> tuple[PerSignature, np.ndarray]:
    """``compare`` (``ip_changes``, ``tcp_syn_changes``) once per distinct signature of the
    pairs of rows ``rc`` at side ``c`` and ``rs`` at side ``s`` over ``fields``, and which
    signature each pair has (``PerSignature``).

    An IP ID is a value of its own packet: the signature holds only whether the two
    points saw the same one, and a pair whose IDs differ reads its signature's changes
    with its own ``ip.id`` values. Behind ``scrub random-id`` every pair differs: one
    ``compare`` per pair took 20 us each (1M pf bench pair: 1.4 s)."""
    if len(rc) == 0:
        return PerSignature(), np.zeros(0, np.int64)
    cols = []
    ca, sa = take_fields(c.t, fields, rc), take_fields(s.t, fields, rs)
    ids = None
    for f in fields:  # in their own widths (signature_groups widens one at a time)
        a, b = ca.pop(f), sa.pop(f)
        if f == "ip_id":  # equal IP IDs say nothing: let them share a signature
            ids = a, b
            cols.append(a != b)
            continue
        cols += [a, b]
    first, inv = signature_groups(cols)
    inv = inv.ravel()
    per = PerSignature()
    for k in first.tolist():
        row_c = {f: take(c.t[f], rc[k]) for f in fields}
        row_s = {f: take(s.t[f], rs[k]) for f in fields}
        per.append(tuple(compare(row_c, row_s, direction)))
    at = {k: i for k, ch in enumerate(per) for i, x in enumerate(ch) if x.field == "ip.id"}
    if ids is not None and at:
        own = isin(inv, np.fromiter(at, np.int64, len(at)))
        per.group, per.at, (per.id_c, per.id_s) = inv.copy(), at, ids
        inv[own] = len(per) + np.flatnonzero(own)
    return per, inv
