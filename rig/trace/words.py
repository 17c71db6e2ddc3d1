"""``lost_at`` in plain words, written once here from the typed facts.

"SYN-ACKs reach 203.0.113.2 (your home gateway, hop 2 back from the server) and go no
further."
"""

from __future__ import annotations

from rig.trace.records import LostAt

PACKETS = {("tcp", "out"): "SYNs", ("tcp", "return"): "SYN-ACKs", ("udp", "out"): "UDP datagrams",
           ("udp", "return"): "UDP replies", ("icmp", "out"): "echo requests", ("icmp", "return"): "echo replies"}
ROLES = {"client": "your machine", "router": "your router", "hgw": "your home gateway",
         "inet": "the network in front of the server", "server": "the server",
         "client-public": "your public address", "br": "the provider's MAP-E border relay",
         "aftr": "the provider's DS-Lite AFTR", "bas": "the provider's PPPoE BAS"}


def role(node: str | None) -> str | None:
    return None if node is None else ROLES.get(node, node)


def place(protocol: str, lost_at: LostAt) -> str:
    """One clause saying where ``protocol``'s packets died, or why the traces cannot say."""
    packets = PACKETS.get((protocol, lost_at.direction), f"{protocol.upper()} packets")
    hop = lost_at.after_hop
    if hop is None or hop.address is None:
        return f"where the {packets} are lost is not known ({lost_at.undecided_because or 'no trace'})"
    if lost_at.direction == "out" and hop.node == "server":
        at = f", hop {hop.index} from the client" if hop.index else ""
        return f"{packets} reach the server ({hop.address}{at}), which sends nothing back"
    whence = "back from the server" if lost_at.direction == "return" else "from the client"
    who = ", ".join(x for x in (role(hop.node), f"hop {hop.index} {whence}" if hop.index else None) if x)
    after = lost_at.before_hop
    silent = (f": nothing answers from hop {after.index} on ({role(after.node)})"
              if after is not None and after.node and after.index else "")
    return f"{packets} reach {hop.address}{f' ({who})' if who else ''} and go no further{silent}"


def with_places(summary: str, clauses: list[str]) -> str:
    """The diagnosis summary followed by where each group of exchanges died."""
    if not clauses:
        return summary
    text = "; ".join(clauses)
    return f"{summary}. {text[0].upper()}{text[1:]}"
