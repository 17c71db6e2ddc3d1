"""Which sender at the server is which client's, where the bytes cannot say.

Several hosts behind one NAT may send byte-identical requests (Windows' ping: echo id 1,
the same payload and sequence numbers on every host). The NAT maps each host's flow to
one sender at the server (a public address and echo id), so a host's requests all
arrive from one sender, and the replies it got are replies the server sent that sender.
A sender can then be a host's only if every request it sent is one that host sent and
every reply the host got is one the server sent it. Every sender is one host's (a
sender none could be is a stranger: nothing is decided), and no two are the same
host's. ``candidates`` lists, per host, the senders it is in some assignment that
obeys all this; a request whose fate is the same whichever of them it is, is decided.
"""

from __future__ import annotations

from itertools import permutations
from typing import Hashable, TypeVar

import numpy as np

from rig.analysis.keys import combine, take
from rig.analysis.sides import Side
from rig.unique import isin, unique

G = TypeVar("G", bound=Hashable)
S = TypeVar("S", bound=Hashable)

MAX_HOSTS = 7  # assignments are looked at one by one (7! = 5040); more hosts stay undecided


def candidates(host_sent: dict[G, set[int]], host_got: dict[G, set[int]], sender_sent: dict[S, set[int]],
               sender_answered: dict[S, set[int]]) -> dict[G, set[S | None]] | None:
    """Per host (``host_sent``: the keys of the requests it sent; ``host_got``: of the
    replies it got), the senders at the server (``sender_sent``: the keys they sent;
    ``sender_answered``: the keys the server answered them) it is in some assignment
    (None: it is no sender's, none of its requests arrived); None if there is no
    assignment or too many hosts to look at."""
    hosts, senders = list(host_sent), list(sender_sent)
    if len(hosts) > MAX_HOSTS or len(senders) > len(hosts):
        return None
    fits = {(h, s) for h in hosts for s in senders
            if sender_sent[s] <= host_sent[h] and host_got.get(h, set()) <= sender_answered.get(s, set())}
    out: dict[G, set[S | None]] = {h: set() for h in hosts}
    found = False
    for chosen in permutations(hosts, len(senders)):
        if not all((h, s) in fits for h, s in zip(chosen, senders)):
            continue
        rest = set(hosts) - set(chosen)
        if any(host_got.get(h) for h in rest):  # a host that got a reply is some sender's
            continue
        found = True
        for h, s in zip(chosen, senders):
            out[h].add(s)
        for h in rest:
            out[h].add(None)
    return out if found else None


def decided_echoes(c: Side, s: Side, req: np.ndarray, xk: np.ndarray,
                   shared: np.ndarray) -> dict[int, tuple[list[int], list[int], bool]]:
    """The echo requests among ``req`` (rows of the client's, ``xk`` their echo keys) that
    ``shared`` marks as bytes other hosts sent too, whose fate ``candidates`` decides: row
    -> (the server's copies of it, the server's replies to them, both empty when it
    never arrived; whether they are one sender's: with several candidates the fate is
    the same whichever it was, but which copy, and so what the NAT made of it, is not
    known). A host's requests are those of one echo id to one address; the
    senders at the server, those of one echo id from one address to that same address
    (a server behind a DNAT is left as it was: which address it is, the keys cannot say).
    Only the rows toward an address of the server capture's that some shared request went
    to are looked at."""
    out: dict[int, tuple[list[int], list[int], bool]] = {}
    if not shared.any() or len(s.echo_req) == 0:
        return out
    ct, st = c.t, s.t
    dk = c.addr_keys("dst", req)
    # only an address the server capture holds: of another, what arrived it cannot show
    dsts = unique(dk[shared])
    dsts = dsts[isin(dsts, np.fromiter(s.all_addr_keys(), np.uint64))]
    if len(dsts) == 0:
        return out
    near = np.flatnonzero(isin(dk, dsts))  # the requests toward those addresses
    hg = combine(dk[near], c.addr_keys("src", req[near]), take(ct["icmp_id"], req[near]), n=len(near))
    hosts: dict[int, dict[int, set[int]]] = {}  # address -> host -> keys sent
    for d, h, k in zip(dk[near].tolist(), hg.tolist(), xk[near].tolist()):
        hosts.setdefault(d, {}).setdefault(h, set()).add(k)
    host_of = dict(zip(near.tolist(), hg.tolist()))
    # a reply is filed under the host (or sender) it went to: its source is the address asked
    cr = c.echo_rep
    cp_g = combine(c.addr_keys("src", cr), c.addr_keys("dst", cr), take(ct["icmp_id"], cr), n=len(cr))
    keep = isin(cp_g, hg)
    host_got: dict[int, set[int]] = {}
    for h, k in zip(cp_g[keep].tolist(), c.echo_key(cr[keep]).tolist()):
        host_got.setdefault(h, set()).add(k)
    sr = s.echo_req
    sr = sr[isin(s.addr_keys("dst", sr), dsts)]
    sdk = s.addr_keys("dst", sr)
    sg = combine(sdk, s.addr_keys("src", sr), take(st["icmp_id"], sr), n=len(sr))
    skq = s.echo_key(sr)
    senders: dict[int, dict[int, set[int]]] = {}
    copies: dict[tuple[int, int], list[int]] = {}
    for d, g, k, r in zip(sdk.tolist(), sg.tolist(), skq.tolist(), sr.tolist()):
        senders.setdefault(d, {}).setdefault(g, set()).add(k)
        copies.setdefault((g, k), []).append(r)
    sp = s.echo_rep
    sp_g = combine(s.addr_keys("src", sp), s.addr_keys("dst", sp), take(st["icmp_id"], sp), n=len(sp))
    keep = isin(sp_g, sg)
    answered: dict[int, set[int]] = {}
    replies: dict[tuple[int, int], list[int]] = {}
    for g, k, r in zip(sp_g[keep].tolist(), s.echo_key(sp[keep]).tolist(), sp[keep].tolist()):
        answered.setdefault(g, set()).add(k)
        replies.setdefault((g, k), []).append(r)
    at: dict[int, dict | None] = {}
    for i in np.flatnonzero(shared).tolist():
        if i not in host_of:
            continue
        d, h, k = int(dk[i]), host_of[i], int(xk[i])
        if d not in at:
            keys = set().union(*hosts[d].values())
            # senders of other bytes only are no host's concern (a stranger of the same bytes is)
            mine = {g: ks for g, ks in senders.get(d, {}).items() if ks & keys}
            # none at all: not even the address is known to be where the server capture looks
            at[d] = candidates(hosts[d], host_got, mine, answered) if mine else None
        cands = at[d]
        if cands is None:
            continue
        arrived = {g is not None and k in senders[d][g] for g in cands[h]}
        replied = {g is not None and k in answered.get(g, set()) for g in cands[h]}
        if len(arrived) != 1 or len(replied) != 1:
            continue
        who = sorted(g for g in cands[h] if g is not None)
        out[int(req[i])] = (sorted(r for g in who for r in copies.get((g, k), [])),
                            sorted(r for g in who for r in replies.get((g, k), [])), len(who) <= 1)
    return out

