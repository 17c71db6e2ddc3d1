"""The diagnosis of a whole run: one sentence a person understands, and counts.

A free function of the exchanges' outcomes (never of names or scenarios).
"""

from __future__ import annotations

import re
from collections import Counter

from rig.verdict import Diagnosis, Exchange, ExchangeList

_MTU = re.compile(r"next-hop MTU (\d+)")
_HOP = re.compile(r"lost between the (\S+) and the (\S+)$")
NAMES = {"tcp": "TCP", "udp": "UDP", "icmp": "ICMP"}
ORDER = ("tcp", "udp", "icmp")

_CLAUSE = {
    "lost-return": "{p} replies are lost between the {a} and the {b}",
    "lost-outbound": "{p} requests are lost between the {a} and the {b}",
    "unanswered": "the server receives {p} requests but does not answer them",
    "refused": "the server refuses {p}",
    "answered-by-middlebox": "something between the client and the server answers {p} in the server's place (a proxy or cache)",
    "reset-by-middlebox": "something on the path sends {p} resets or errors the server never sent",
    "mtu-blackhole": "large {p} segments never arrive while the handshake and small ones do, and no ICMP frag-needed reaches the sender (a path MTU black hole)",
    "incomplete": "the captures cannot decide {n} {p} exchanges",
}
_SEVERITY = ("answered-by-middlebox", "reset-by-middlebox", "mtu-blackhole", "lost-return", "lost-outbound",
             "unanswered", "refused", "incomplete")


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _and(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _datagram_loss(exchanges, batched: int = 0) -> str:
    """The clause for datagrams lost inside delivered UDP exchanges (flows, retried
    requests), from their ``datagrams`` counts; '' if none were lost. ``batched``: the
    delivered UDP exchanges not built as records (one datagram each way, none lost)."""
    n = [batched, 0, batched, 0]  # out sent, out lost, back sent, back lost
    for e in exchanges:
        g = e.datagrams
        if g is not None and e.outcome == "delivered":
            for i, x in enumerate((g.out_sent, g.out_lost, g.back_sent, g.back_lost)):
                n[i] += x
    parts = []
    if n[1]:
        parts.append(f"{n[1]} of {n[0]} from the client on the way out")
    if n[3]:
        parts.append(f"{n[3]} of {n[2]} from the server on the way back")
    return f"UDP gets through but loses datagrams ({_and(parts)})" if parts else ""


def diagnose(exchanges: tuple[Exchange, ...] | list[Exchange] | ExchangeList) -> Diagnosis:
    # an ExchangeList answers the counts and the few facts read from delivered exchanges
    # from its columns; only the exchanges with a problem are records
    lazy = isinstance(exchanges, ExchangeList)
    pairs = exchanges.counts() if lazy else Counter((e.protocol, e.outcome) for e in exchanges)
    by: dict[str, Counter] = {}
    for (proto, outcome), n in pairs.items():
        by.setdefault(proto, Counter())[outcome] = n
    by_protocol = {p: dict(sorted(by[p].items())) for p in ORDER if p in by}
    if not exchanges:
        return Diagnosis("No exchange from the client toward the server was found in the client capture "
                         "(no TCP SYN, ICMP echo request or UDP datagram)", {})
    if lazy:
        batched = pairs.get(("udp", "delivered"), 0) - sum(
            1 for e in exchanges.eager if e.protocol == "udp" and e.outcome == "delivered")
        lossy = _datagram_loss(exchanges.eager, batched)
    else:
        lossy = _datagram_loss(exchanges)
    clean = [p for p in ORDER if p in by and set(by[p]) == {"delivered"} and not (p == "udp" and lossy)]
    problems = [e for e in (exchanges.eager if lazy else exchanges) if e.outcome != "delivered"]
    clauses: list[str] = []
    for outcome in _SEVERITY:
        protos = [p for p in ORDER if p in by and by[p].get(outcome)]
        if not protos:
            continue
        parts = []
        for p in protos:
            total, n = sum(by[p].values()), by[p][outcome]
            parts.append(NAMES[p] if n == total else f"{NAMES[p]} ({n} of {total})")
        if outcome == "incomplete":
            n = sum(by[p][outcome] for p in protos)
            why = Counter(e.explanation.split(", so this cannot be decided")[0] for e in problems
                          if e.outcome == "incomplete" and ", so this cannot be decided" in e.explanation)
            text = _CLAUSE[outcome].format(p="/".join(NAMES[p] for p in protos), n=n)
            clauses.append(f"{text} ({why.most_common(1)[0][0]})" if why else text)
        else:
            a, b = ("server", "client") if outcome == "lost-return" else ("client", "server")
            # with more capture points, the explanations name the hop; say it if they agree
            hops = {m.groups() if m else None for e in problems if e.outcome == outcome
                    for m in [_HOP.search(e.explanation)]}
            if len(hops) == 1 and None not in hops:
                a, b = hops.pop()
            clauses.append(_CLAUSE[outcome].format(p=_and(parts), n=0, a=a, b=b))
    if lossy:
        clauses.append(lossy)
    if not clauses:
        total = sum(sum(c.values()) for c in by.values())
        text = f"Every exchange ({total}) was delivered both ways: the path is clean"
        mss = (exchanges.change_notes("tcp.mss") if lazy else
               {ch.note for e in exchanges for ch in e.changes if ch.field == "tcp.mss" and ch.note})
        if mss:
            text += f"; the path clamps the TCP MSS ({', '.join(sorted(mss))})"
        return Diagnosis(text, by_protocol)
    mtus = sorted({m.group(1) for e in problems for m in [_MTU.search(e.explanation)] if m})
    if mtus:
        clauses.append(f"a router reports a path MTU of {' / '.join(mtus)} for larger packets")
    # a port-set NAT: connections fail on the way out while those that pass share few ports
    if by.get("tcp", {}).get("lost-outbound"):
        tcp_seen = (exchanges.seen_at_server("tcp") if lazy else
                    [e.seen_at_server_as for e in exchanges if e.protocol == "tcp" and e.seen_at_server_as])
    else:
        tcp_seen = []
    ports = {x.rsplit(":", 1)[1] for x in tcp_seen}
    if tcp_seen and len(ports) < len(tcp_seen):
        clauses.append(f"the TCP connections that reached the server came from only {plural(len(ports), 'public port')}")
    reused = sum(1 for e in problems if "reused a public port" in e.explanation)
    if reused:
        clauses.append(f"the NAT reused a public port the server still held for {plural(reused, 'connection')} "
                       f"(too few ports, e.g. a MAP-E port set)")
    if clean:
        clauses.append(f"{_and([NAMES[p] for p in clean])} {'passes' if len(clean) == 1 else 'pass'} both ways")
    text = "; ".join(clauses)
    text = text[0].upper() + text[1:]
    failing = [p for p in ORDER if p in by and p not in clean]
    if clean and failing:
        only = {o for p in failing for o in by[p] if o != "delivered"}
        if only == {"lost-return"}:
            text += " — a protocol-selective filter on the return path"
        elif only == {"lost-outbound"}:
            text += " — a protocol-selective filter on the way out"
    return Diagnosis(text, by_protocol)
