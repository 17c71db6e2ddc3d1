"""The words of exchanges: every explanation and evidence note the analysis writes is
made here and in ``prose_tcp`` / ``prose_reqrep``, from facts (counts, packet names,
capture points), and nowhere else reads them back. The deciding modules (tcp, reqrep,
udpflow) and the fast paths (tcp_fast, reqrep_fast, reqrep_lost) pass facts and call the
same functions, so one fact reads the same whichever path decided it; diagnosis, report
and history read the typed facts beside the words.
"""

from __future__ import annotations

# what each protocol's delivered exchange shows as evidence: the request as it arrived
# at the server, the reply as it arrived at the client (one row each, every path)
DELIVERED_NOTES = {
    "tcp": ("SYN arrived", "SYN-ACK arrived"),
    "icmp": ("echo request arrived", "echo reply arrived"),
    "udp": ("datagram arrived", "reply arrived"),
}

# after the last place a lost request was seen; a lost reply, at the server
NEVER_REACHED_SERVER = "; last seen here, never reached the server"
NEVER_REACHED_CLIENT = "never reached the client (last seen here)"


# evidence notes and clauses every protocol's close look writes alike
ERROR_FROM_PATH = "ICMP error from the path"
ERROR_SENT = "ICMP error sent by the server"
ERROR_ARRIVED = "ICMP error arrived"


def seen_at(point: str, last_toward: str | None = None) -> str:
    """A packet seen at an extra point; ``last_toward``: the last point to see it, on its way there."""
    return f"seen at {point}" + (f"; last seen here, never reached the {last_toward}" if last_toward else "")


def not_seen_at(point: str) -> str:
    return f"not seen at {point}"


def where_clause(notes: list[str]) -> str:
    """What the extra points saw of an exchange, after its explanation."""
    return ("; " + "; ".join(notes)) if notes else ""


def times(n: int, what: str) -> str:
    return f"{what} once" if n == 1 else f"{what} {n} times"


def plural(n: int, word: str) -> str:
    if n == 1:
        return f"{n} {word}"
    if word.endswith("y") and word[-2:-1] not in "aeiou":
        return f"{n} {word[:-1]}ies"
    return f"{n} {word}s"


def sent_note(what: str) -> str:
    return f"{what} sent"


def arrived_note(what: str) -> str:
    return f"{what} arrived"


def copy_note(summary: str, frame: int, copies: dict[int, list[int]]) -> str:
    """The evidence words of a packet captured twice at its point (``frame``: the one kept)."""
    more = copies.get(int(frame)) if copies else None
    return f"{summary} (captured twice here: also frame {', '.join(map(str, more))})" if more else summary


def lost_outbound_words(req: str, n_sent: int) -> str:
    return f"the client sent {times(n_sent, 'the ' + req)}; none reached the server"


def lost_return_words(req: str, rep: str, n_replies: int) -> str:
    return f"the server answered the {req} with {plural(n_replies, rep)}; none reached the client"


def reqrep_delivered_words(req: str, rep: str) -> str:
    """A delivered echo or UDP request/reply."""
    return f"the {req} reached the server and its {rep} reached the client"


def tcp_delivered_words(to_server: int, to_client: int, lost_syn: int = 0, lost_synack: int = 0) -> str:
    """A delivered connection (bytes as the receivers show them)."""
    parts = ["handshake completed"]
    if lost_syn:
        parts[0] += f" after {lost_syn} lost SYN{'s' if lost_syn > 1 else ''}"
    if lost_synack:
        parts[0] += f"{' and' if lost_syn else ' after'} {lost_synack} lost SYN-ACK{'s' if lost_synack > 1 else ''}"
    if to_server > 0:
        parts.append(f"{to_server} bytes reached the server")
    if to_client > 0:
        parts.append(f"{to_client} bytes of reply reached the client")
    return "; ".join(parts)


def hop_clause(hop: tuple[str, str]) -> str:
    """Where the packets died, after the explanation's own words."""
    return f"; lost between the {hop[0]} and the {hop[1]}"


def undecided_words(unseen: str, outcome: str, explanation: str) -> str:
    """An exchange a capture point cannot vouch for (``unseen``: why, as a short fact)."""
    return f"the {unseen}, so this cannot be decided (the packets alone say: {outcome}, {explanation})"


def ambiguous_match_words(undecided: str) -> str:
    """A connection the server capture holds several candidates for."""
    return f"{undecided}, so which of them this is, and where it died, cannot be decided"
