"""The words of a request/reply exchange (an echo, a UDP request) and of a UDP flow,
from the facts ``reqrep.py`` and ``udpflow.py`` found: they decide and call these; they
write no sentence themselves. ``req`` / ``rep`` name the packets ("echo request",
"datagram", ...; ``prose.DELIVERED_NOTES``' protocols).
"""

from __future__ import annotations

from rig.analysis.prose import ERROR_ARRIVED as ERROR_ARRIVED  # (shared notes, used as W.<name>)
from rig.analysis.prose import ERROR_FROM_PATH as ERROR_FROM_PATH
from rig.analysis.prose import ERROR_SENT as ERROR_SENT
from rig.analysis.prose import not_seen_at as not_seen_at
from rig.analysis.prose import plural, times
from rig.analysis.prose import seen_at as seen_at
from rig.analysis.prose import where_clause as where_clause

REQUEST_UNSEEN = "server capture holds the reply but not the request it answers"
SHARED = "the server's copies of these bytes cannot be told apart: other senders sent the same"
FIRST_FRAGMENT_ONLY = "first fragment arrived; the later fragments never reached the server"
LATER_FRAGMENT_SENT = "later fragment sent"
ERROR_NOT_FROM_SERVER = "ICMP error the server never sent"
NEVER_REACHED_SERVER_EACH = "never reached the server"
NEVER_REACHED_CLIENT_EACH = "never reached the client"
DATAGRAM_NOT_FROM_SERVER = "datagram the server never sent"


def not_from_server(rep: str) -> str:
    return f"{rep} the server never sent"


def saw_it(point: str) -> str:
    return f"{point} saw it"


def later_fragments_lost(req: str, where: str) -> str:
    return (f"only the first fragment of the {req} reached the server; its later fragments never did, "
            f"so the server could not reassemble it (a router that filters on ports, such as a MAP-E "
            f"border relay, drops the fragments that carry none)" + where)


def refused(req: str) -> str:
    return f"the server answered the {req} with an ICMP error, and the client got it"


def refusal_lost(req: str) -> str:
    return f"the server answered the {req} with an ICMP error; it never reached the client"


def answered_in_silence(req: str, rep: str, n_rep: int) -> str:
    return (f"the server received the {req} and never answered, yet the client got "
            f"{plural(n_rep, rep)}: something on the path answered in its place")


def error_in_silence(req: str) -> str:
    return f"the server received the {req} and sent nothing, yet the client got an ICMP error"


def unanswered(req: str, n_req: int) -> str:
    return f"the server received {times(n_req, 'the ' + req)} and sent nothing back"


def reply_to_unseen(req: str, rep: str, n_rep: int) -> str:
    return f"the server sent {plural(n_rep, rep)} to this {req}, but its capture does not show the {req} arriving"


def answered_unseen(req: str, rep: str, n_rep: int) -> str:
    return (f"the client got {plural(n_rep, rep)}, but the server never saw the {req}: "
            f"something on the path answered in its place")


def stopped_by(req: str, signal: str | None) -> str:
    return f"the {req} never reached the server: {signal}"


def error_about_unseen(req: str) -> str:
    return f"the client got an ICMP error about the {req}, which the server never saw"


# a UDP flow (udpflow.py): counts of datagrams each way, as each sender's point saw them
def flow_answered_unseen(n_out: int, c_back: int) -> str:
    return (f"the client got {plural(c_back, 'datagram')} on this flow, but none of its "
            f"{plural(n_out, 'datagram')} reached the server: something on the path answered in its place")


def flow_lost_outbound(n_out: int) -> str:
    return f"the client sent {plural(n_out, 'datagram')} on this flow; none reached the server"


def _flow_got(n_out: int, arrived: int) -> str:
    return f"the server received {arrived} of the client's {plural(n_out, 'datagram')}"


def flow_answered_in_silence(n_out: int, arrived: int, c_back: int) -> str:
    return (f"{_flow_got(n_out, arrived)} and sent nothing, yet the client got {plural(c_back, 'datagram')}: "
            "something on the path answered in its place")


def flow_refused(n_out: int, arrived: int, s_err: int) -> str:
    return f"{_flow_got(n_out, arrived)} and answered with {plural(s_err, 'ICMP error')}, which the client got"


def flow_refusal_lost(n_out: int, arrived: int, s_err: int) -> str:
    return f"{_flow_got(n_out, arrived)} and answered with {plural(s_err, 'ICMP error')}; none reached the client"


def flow_error_in_silence(n_out: int, arrived: int, c_err: int) -> str:
    return f"{_flow_got(n_out, arrived)} and sent nothing, yet the client got {plural(c_err, 'ICMP error')} about the flow"


def flow_unanswered(n_out: int, arrived: int) -> str:
    return f"{_flow_got(n_out, arrived)} and sent nothing back"


def flow_replies_lost(n_out: int, out_lost: int, n_back: int) -> str:
    return "; ".join([f"{_flow_got(n_out, n_out - out_lost)} and sent {plural(n_back, 'datagram')} back; "
                      "none reached the client", *_flow_losses(n_out, out_lost, 0, 0, 0)])


def flow_passed(n_out: int, out_lost: int, n_back: int, back_lost: int, stray: int) -> str:
    text = (f"the flow passed both ways: {n_out - out_lost} of the client's {plural(n_out, 'datagram')} reached the "
            f"server and {n_back - back_lost} of the server's {n_back} reached the client")
    return "; ".join([text, *_flow_losses(n_out, out_lost, n_back, back_lost, stray)])


def _flow_losses(n_out: int, out_lost: int, n_back: int, back_lost: int, stray: int) -> list[str]:
    loss = []
    if out_lost:
        loss.append(f"{out_lost} of {n_out} datagrams from the client were lost on the way out")
    if back_lost:
        loss.append(f"{back_lost} of {n_back} datagrams from the server were lost on the way back")
    if stray:
        loss.append(f"the client also got {plural(stray, 'datagram')} the server never sent")
    return loss
