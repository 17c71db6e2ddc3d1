"""The words of a TCP connection's outcome, from the facts ``tcp.py`` found (counts,
capture points, a port): ``tcp.py`` decides and calls these; it writes no sentence
itself. Evidence notes are here too, so that one packet reads the same whichever rule
named it.
"""

from __future__ import annotations

from rig.analysis.prose import ERROR_ARRIVED as ERROR_ARRIVED  # (shared notes, used as W.<name>)
from rig.analysis.prose import ERROR_FROM_PATH as ERROR_FROM_PATH
from rig.analysis.prose import ERROR_SENT as ERROR_SENT
from rig.analysis.prose import not_seen_at as not_seen_at
from rig.analysis.prose import plural, times
from rig.analysis.prose import seen_at as seen_at
from rig.analysis.prose import where_clause as where_clause

# evidence notes
SYN_SENT = "SYN sent"
SYN_SENT_AGAIN = "SYN sent (with retransmissions)"
SYN_ARRIVED = "SYN arrived"
SYNACK_SENT = "SYN-ACK sent"
SYNACK_ARRIVED = "SYN-ACK arrived"
SYNACK_NOT_FROM_SERVER = "SYN-ACK the server never sent"
RESET_NOT_FROM_SERVER = "reset the server never sent"
RST_NOT_FROM_SERVER = "RST the server never sent"
RST_SENT = "RST sent by the server"
RST_ARRIVED = "RST arrived"
SYNACK_ACKED = "the client's ACK of the SYN-ACK arrived"
OLDER_ACK = "ACK of the older connection"
OLDER_ACK_ARRIVED = "ACK arrived"
CLIENT_RESETS = "the client resets"
REPLY_DATA = "reply data"
FRAG_NEEDED = "frag-needed"
SACK_UNDECIDED = "the server saw the client acknowledge its SYN-ACK; the client capture holds none"


def syn_sent(n: int) -> str:
    return SYN_SENT if n == 1 else SYN_SENT_AGAIN


def never_reached(receiver: str) -> str:
    """A data segment lost on its way to ``receiver``, where it was last seen."""
    return f"never reached the {receiver} (last seen here)"


def lost_on_way(what: str, toward: str, last_here: bool) -> str:
    return f"{what}; never reached the {toward}" + (" (last seen here)" if last_here else "")


def where_seen(point: str, n_syn: int, n_synack: int) -> str:
    what = []
    if n_syn:
        what.append(times(n_syn, "SYN"))
    if n_synack:
        what.append(times(n_synack, "SYN-ACK"))
    return f"{point} saw {' and '.join(what) or 'the connection'}"


# outcomes, before the server's capture
def answered_unseen(n_synack: int) -> str:
    return (f"the client sent SYN and got {times(n_synack, 'SYN-ACK')}, but the server "
            f"never saw this connection: something on the path answered in its place")


def syn_stopped_by(signal: str | None) -> str:
    return f"the SYN never reached the server: {signal}"


def reset_unseen(n_rst: int) -> str:
    what = f"{times(n_rst, 'RST')}" if n_rst else "an ICMP error"
    return f"the client sent SYN and got {what}, but the server never saw this connection"


def syn_lost(n_syn: int, where: str) -> str:
    return f"the client sent {times(n_syn, 'SYN')}; none reached the server{where}"


# the server answered SYN
def reset_after_synack(n_rst: int) -> str:
    return (f"the server answered with SYN-ACK, but the client got "
            f"{times(n_rst, 'a RST')} that the server never sent")


def synack_acked_unseen(n_synack: int) -> str:
    return (f"the server answered SYN with {times(n_synack, 'SYN-ACK')} and the client "
            f"acknowledged one, yet the client capture shows none arriving")


def synack_lost(n_synack: int, where: str) -> str:
    return f"the server answered SYN with {times(n_synack, 'SYN-ACK')}; none reached the client{where}"


def refused_rst(port: int | None) -> str:
    return f"the server refused the connection with RST (port {port if port is not None else '?'} closed)"


def rst_lost(n_rst: int, where: str) -> str:
    return f"the server refused with {times(n_rst, 'RST')}; none reached the client{where}"


REFUSED_ICMP = "the server refused the connection with an ICMP error, and the client got it"
ICMP_REFUSAL_LOST = "the server refused with an ICMP error; it never reached the client"


def port_reused(seen_at_server_as: str | None, client_reset: bool | None) -> str:
    """A SYN the server answered with an ACK of the connection it still held;
    ``client_reset``: the client got that ACK (and reset it, or not); None: it never did."""
    why = (f"the server answered SYN with an ACK for an older connection on the same address and port "
           f"({seen_at_server_as}): the NAT reused a public port the server still held (TIME_WAIT)")
    if client_reset is None:
        return why + "; it never reached the client"
    return why + ("; the client reset it" if client_reset else "")


# the server saw the SYN and sent nothing
def answered_in_silence(n_syn: int) -> str:
    return (f"the server received {times(n_syn, 'SYN')} and never answered, yet the client "
            f"got SYN-ACK: something on the path answered in its place")


def reset_in_silence(n_syn: int, by_rst: bool) -> str:
    return (f"the server received {times(n_syn, 'SYN')} and sent nothing, yet the client "
            f"got {'RST' if by_rst else 'an ICMP error'}")


def unanswered(n_syn: int) -> str:
    return (f"the server received {times(n_syn, 'SYN')} and sent nothing back "
            f"(no listener behind a dropping firewall, or the server's own firewall)")


# after the handshake
def reset_midway(n_rst_client: int, n_rst_server: int) -> str:
    return (f"the connection was set up, then the client got {plural(n_rst_client, 'RST')} "
            f"while the server sent {n_rst_server}: something on the path reset it")


def reply_beyond(n_bytes: int) -> str:
    return (f"the client received {n_bytes} bytes of reply beyond what the server sent: "
            f"something on the path answered in its place")


def mtu_blackhole(n_passed: int, n_missing: int, largest: int, sender: str, receiver: str,
                  retransmissions: int) -> str:
    return (f"the handshake{' and ' + plural(n_passed, 'smaller segment') if n_passed else ''} "
            f"passed; {plural(n_missing, 'segment')} of up to {largest} bytes from the "
            f"{sender} never reached the {receiver} ({plural(retransmissions, 'retransmission')}), "
            f"and no ICMP frag-needed reached the {sender}")


def data_lost(n_missing: int, n_bytes: int, sender: str, receiver: str, frag_needed: bool) -> str:
    extra = f"; an ICMP frag-needed reached the {sender}, which did not resend smaller segments" if frag_needed else ""
    return (f"the handshake completed; {plural(n_missing, 'data segment')} "
            f"({n_bytes} bytes) from the {sender} never reached the {receiver}{extra}")
