"""The diagnosis of a whole run: one sentence a person understands, and counts.

A free function of the exchanges' outcomes and facts (never of names or scenarios),
and of the probes that were never sent: they count among their protocol's probes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from rig.outcome import Outcome
from rig.verdict import CHANGE_FIELDS, Diagnosis, Exchange, ExchangeList, NotSentProbe, datagram_sums

NAMES = {"tcp": "TCP", "udp": "UDP", "icmp": "ICMP"}
ORDER = ("tcp", "udp", "icmp")

_CLAUSE = {
    Outcome.LOST_RETURN: "{p} replies are lost between the {a} and the {b}",
    Outcome.LOST_OUTBOUND: "{p} requests are lost between the {a} and the {b}",
    Outcome.UNANSWERED: "the server receives {p} requests but does not answer them",
    Outcome.REFUSED: "the server refuses {p}",
    Outcome.ANSWERED_BY_MIDDLEBOX: "something between the client and the server answers {p} in the server's place (a proxy or cache)",
    Outcome.RESET_BY_MIDDLEBOX: "something on the path sends {p} resets or errors the server never sent",
    Outcome.MTU_BLACKHOLE: "large {p} segments never arrive while the handshake and small ones do, and no ICMP frag-needed "
                           "reaches the sender (a path MTU black hole)",
    Outcome.INCOMPLETE: "the captures cannot decide {n} {p} exchanges",
}
# what a NAT (or the router before it) is expected to change: hop counts, IP and echo ids;
# an MSS clamp is common enough to be named beside "clean" rather than instead of it
EXPECTED_CHANGES = frozenset({"ip.ttl", "ip.id", "icmp.id", "tcp.mss"})
_CHANGED = {"ip.dscp": "DSCP", "ip.ecn": "ECN", "tcp.options": "TCP options", "tcp.wscale": "TCP window scale",
            "tcp.isn": "TCP sequence numbers", "payload": "payloads", "fragmented": "fragmentation"}
_WAY = {"out": "on the way out", "back": "on the way back"}
# one clause per outcome that is not clean, worst first: rig's one order (rig.outcome)
_SEVERITY = tuple(o for o in Outcome if not o.clean)


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _and(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


_UNSENT = {"icmp": ("ICMP echo", "ICMP echoes"), "tcp": ("TCP connection", "TCP connections"),
           "udp": ("UDP datagram", "UDP datagrams")}


def _rank(proto: str) -> int:
    return ORDER.index(proto) if proto in ORDER else len(ORDER)


def _sizes(sizes: list[int]) -> str:
    return f" ({', '.join(str(s) for s in sorted(sizes))} bytes)" if sizes else ""


def not_sent_clauses(not_sent: Sequence[NotSentProbe]) -> list[str]:
    """One clause per protocol and reason: "2 ICMP echoes (1460, 1500 bytes) were not
    sent: larger than the local interface MTU 1454"."""
    groups: dict[tuple[str, str], list[NotSentProbe]] = {}
    for p in not_sent:
        groups.setdefault((p.protocol, p.reason), []).append(p)
    out = []
    for (proto, reason), ps in sorted(groups.items(), key=lambda kv: (_rank(kv[0][0]), kv[0][1])):
        one, many = _UNSENT.get(proto, (f"{proto.upper()} probe", f"{proto.upper()} probes"))
        what = f"1 {one}" if len(ps) == 1 else f"{len(ps)} {many}"
        sizes = _sizes([p.size for p in ps if p.size is not None])
        out.append(f"{what}{sizes} {'was' if len(ps) == 1 else 'were'} not sent: {reason}")
    return out


def _datagram_loss(exchanges) -> str:
    """The clause for datagrams lost inside delivered UDP exchanges (flows, retried
    requests), from their ``datagrams`` counts; '' if none were lost."""
    # out sent, out lost, back sent, back lost (an ExchangeList's batches: from columns)
    n = exchanges.datagram_sums() if isinstance(exchanges, ExchangeList) else datagram_sums(exchanges)
    parts = []
    if n[1]:
        parts.append(f"{n[1]} of {n[0]} from the client on the way out")
    if n[3]:
        parts.append(f"{n[3]} of {n[2]} from the server on the way back")
    return f"UDP gets through but loses datagrams ({_and(parts)})" if parts else ""


def diagnose(exchanges: tuple[Exchange, ...] | list[Exchange] | ExchangeList,
             not_sent: Sequence[NotSentProbe] = ()) -> Diagnosis:
    # an ExchangeList answers the counts and the few facts read from delivered exchanges
    # from its columns; only the exchanges with a problem are records
    unsent = not_sent_clauses(not_sent)
    n_unsent = Counter(p.protocol for p in not_sent)
    lazy = exchanges if isinstance(exchanges, ExchangeList) else None
    pairs = lazy.counts() if lazy is not None else Counter((e.protocol, e.outcome) for e in exchanges)
    by: dict[str, Counter] = {}
    for (proto, outcome), n in pairs.items():
        by.setdefault(proto, Counter())[outcome] = n
    by_protocol = {p: dict(sorted(by[p].items())) for p in ORDER if p in by}
    if not exchanges:
        return Diagnosis("; ".join(["No exchange from the client toward the server was found in the client capture "
                                    "(no TCP SYN, ICMP echo request or UDP datagram)", *unsent]), {})
    lossy = _datagram_loss(exchanges)
    clean = [p for p in ORDER if p in by and all(Outcome(o).clean for o in by[p]) and not (p == "udp" and lossy)]
    problems = [e for e in (lazy.eager if lazy is not None else exchanges) if not Outcome(e.outcome).clean]
    clauses: list[str] = []
    for outcome in _SEVERITY:
        protos = [p for p in ORDER if p in by and by[p].get(outcome)]
        if not protos:
            continue
        parts = []
        for p in protos:
            total, n = sum(by[p].values()) + n_unsent[p], by[p][outcome]
            parts.append(NAMES[p] if n == total else f"{NAMES[p]} ({n} of {total})")
        if outcome is Outcome.INCOMPLETE:
            n = sum(by[p][outcome] for p in protos)
            why = Counter(e.undecided_because for e in problems if e.outcome == outcome and e.undecided_because)
            text = _CLAUSE[outcome].format(p="/".join(NAMES[p] for p in protos), n=n)
            clauses.append(f"{text} (the {why.most_common(1)[0][0]})" if why else text)
        else:
            a, b = ("server", "client") if outcome is Outcome.LOST_RETURN else ("client", "server")
            # with more capture points, the explanations name the hop; say it if they agree
            hops = {e.lost_between for e in problems if e.outcome == outcome}
            hop = hops.pop() if len(hops) == 1 else None
            if hop is not None:
                a, b = hop
            clauses.append(_CLAUSE[outcome].format(p=_and(parts), n=0, a=a, b=b))
    if lossy:
        clauses.append(lossy)
    if not clauses:
        total = sum(sum(c.values()) for c in by.values())
        changed = (lazy.change_fields() if lazy is not None else
                   {(ch.field, ch.direction) for e in exchanges for ch in e.changes})
        rewrites = sorted({(f, d) for f, d in changed if f not in EXPECTED_CHANGES},
                          key=lambda fd: (CHANGE_FIELDS.index(fd[0]) if fd[0] in CHANGE_FIELDS else 99, fd[1] != "out"))
        if rewrites:
            text = (f"Every exchange ({total}) was delivered both ways, but the path changes more than a NAT does: "
                    + ", ".join(f"{_CHANGED.get(f, f)} {_WAY[d]}" for f, d in rewrites))
        else:
            text = f"Every exchange ({total}) was delivered both ways: the path is clean"
        mss = (lazy.change_notes("tcp.mss") if lazy is not None else
               {ch.note for e in exchanges for ch in e.changes if ch.field == "tcp.mss" and ch.note})
        if mss:
            text += f"; the path clamps the TCP MSS ({', '.join(sorted(mss))})"
        return Diagnosis("; ".join([text, *unsent]), by_protocol)
    mtus = sorted({e.path_mtu for e in problems if e.path_mtu is not None})
    if mtus:
        clauses.append(f"a router reports a path MTU of {' / '.join(str(m) for m in mtus)} for larger packets")
    # a port-set NAT: connections fail on the way out while those that pass share few ports
    if by.get("tcp", Counter())[Outcome.LOST_OUTBOUND]:
        tcp_seen = (lazy.seen_at_server("tcp") if lazy is not None else
                    [e.seen_at_server_as for e in exchanges if e.protocol == "tcp" and e.seen_at_server_as])
    else:
        tcp_seen = []
    ports = {x.rsplit(":", 1)[1] for x in tcp_seen}
    if tcp_seen and len(ports) < len(tcp_seen):
        clauses.append(f"the TCP connections that reached the server came from only {plural(len(ports), 'public port')}")
    reused = sum(1 for e in problems if e.port_reused)
    if reused:
        clauses.append(f"the NAT reused a public port the server still held for {plural(reused, 'connection')} "
                       f"(too few ports, e.g. a MAP-E port set)")
    if clean:
        clauses.append(f"{_and([NAMES[p] for p in clean])} {'passes' if len(clean) == 1 else 'pass'} both ways")
    text = "; ".join(clauses)
    text = text[0].upper() + text[1:]
    failing = [p for p in ORDER if p in by and p not in clean]
    if clean and failing:
        only = {o for p in failing for o in by[p] if not Outcome(o).clean}
        if only == {Outcome.LOST_RETURN}:
            text += " — a protocol-selective filter on the return path"
        elif only == {Outcome.LOST_OUTBOUND}:
            text += " — a protocol-selective filter on the way out"
    return Diagnosis("; ".join([text, *unsent]), by_protocol)
