"""Conversations for the analysis tests, built on rig.capture.synth.Path.

Each helper plays one exchange through the simulated NATs and says which packets
arrive; the tests then write the two captures, read them back with the real reader and
assert the verdict.
"""

from __future__ import annotations

from pathlib import Path as FsPath

from rig.analysis.api import analyse
from rig.capture import read_capture
from rig.capture.synth import ACK, FIN, PSH, RST, Path, Pkt, tcp_seg
from rig.capture.synth_capture import windows_of

REQUEST = b"GET /?nonce=%d HTTP/1.1\r\nHost: rig\r\n\r\n"


def handshake(w: Path, sport: int, isn_c: int, isn_s: int, *, syn_lost: int = 0, synack_arrives: bool = True,
              dport: int = 80, **syn_kw):
    """SYN (the first ``syn_lost`` copies lost), SYN-ACK; returns (syn at server, synack at client)."""
    syn = w.syn(sport, isn_c, dport=dport, **syn_kw)
    for _ in range(syn_lost):
        w.out(syn, arrive=False)
    ss = w.out(syn)
    sa = w.synack(ss, isn_s)
    ca = w.back(sa, arrive=synack_arrives)
    return ss, ca


def tcp_delivered(w: Path, sport: int, isn_c: int, isn_s: int, nonce: int = 1, response: bytes = b"HTTP/1.1 200 OK\r\n\r\nhi",
                  **kw) -> None:
    ss, ca = handshake(w, sport, isn_c, isn_s, **kw)
    req = REQUEST % nonce
    c1, s1 = isn_c + 1, isn_s + 1
    a1 = ss.seq + 1  # the client's sequence as the server sees it (a path may shift it: pf's modulate state)
    w.out(tcp_seg(w.client, w.server, sport, ss.dport, c1, s1, req, ACK | PSH))
    w.back(tcp_seg(ss.dst, ss.src, ss.dport, ss.sport, s1, a1 + len(req), response, ACK | PSH))
    w.out(tcp_seg(w.client, w.server, sport, ss.dport, c1 + len(req), s1 + len(response), b"", ACK | FIN))
    w.back(tcp_seg(ss.dst, ss.src, ss.dport, ss.sport, s1 + len(response), a1 + len(req) + 1, b"", ACK | FIN))
    w.out(tcp_seg(w.client, w.server, sport, ss.dport, c1 + len(req) + 1, s1 + len(response) + 1, b"", ACK))


def syn_only(w: Path, sport: int, isn_c: int, copies: int = 3, arrive: bool = True, dport: int = 80):
    syn = w.syn(sport, isn_c, dport=dport)
    return [w.out(syn, arrive=arrive) for _ in range(copies)]


def ping(w: Path, seq: int, *, arrive: bool = True, reply: bool = True, reply_arrives: bool = True, ident: int = 77):
    p = Pkt(w.client, w.server, 58 if ":" in w.client else 1, icmp_type=128 if ":" in w.client else 8,
            icmp_id=ident, icmp_seq=seq, payload=b"rig-nonce-%08d" % seq, ip_id=seq + 100)
    q = w.out(p, arrive=arrive)
    if arrive and reply:
        w.back(Pkt(q.dst, q.src, q.proto, icmp_type=129 if q.proto == 58 else 0, icmp_id=q.icmp_id, icmp_seq=seq,
                   payload=q.payload, ip_id=seq + 5000), arrive=reply_arrives)


def udp(w: Path, sport: int, nonce: int, *, arrive: bool = True, reply: bool = True, reply_arrives: bool = True,
        dport: int = 7):
    p = Pkt(w.client, w.server, 17, sport=sport, dport=dport, payload=b"rig-udp-%08d" % nonce, ip_id=nonce)
    q = w.out(p, arrive=arrive)
    if arrive and reply:
        w.back(Pkt(q.dst, q.src, 17, sport=q.dport, dport=q.sport, payload=b"echo:" + q.payload, ip_id=nonce + 1),
               arrive=reply_arrives)


def scanner_noise(w: Path, n: int = 40) -> None:
    """What a public VM sees from the Internet: SYN scans, answered or reset, and pings."""
    for i in range(n):
        src = f"45.{i % 200}.{(i * 7) % 250}.{(i * 13) % 250 + 1}"
        syn = Pkt(src, w.server_seen_as or w.server, 6, sport=50000 + i, dport=(22, 80, 443, 3389)[i % 4],
                  seq=(i * 2654435761) & 0xFFFFFFFF, flags=0x02, ttl=49, mss=1460)
        w.at_server(syn)
        if syn.dport in (22, 80):
            w.at_server(Pkt(syn.dst, src, 6, sport=syn.dport, dport=syn.sport, seq=i * 97, ack=syn.seq + 1,
                            flags=0x12, mss=1460))
        else:
            w.at_server(Pkt(syn.dst, src, 6, sport=syn.dport, dport=syn.sport, seq=0, ack=syn.seq + 1, flags=RST | ACK))
        if i % 5 == 0:
            w.at_server(Pkt(src, syn.dst, 1, icmp_type=8, icmp_id=i, icmp_seq=1, payload=b"scan"))


def run(w: Path, tmp: FsPath, files_only: bool = False, **kw):
    """The verdict on ``w``'s two captures, with the capture windows the path itself
    records (``windows_of``: as a bundle of ``rig run`` gives them), or ``files_only``:
    the files alone, as ``rig diff`` on captures taken by hand."""
    c, s = w.write(tmp)
    if not files_only:
        kw.setdefault("windows", windows_of(w))
    return analyse(read_capture(str(c)), read_capture(str(s)), **kw)


def by_id(verdict):
    return {e.id: e for e in verdict.exchanges}


def changes(e, field=None, direction=None):
    return [c for c in e.changes if (field is None or c.field == field) and (direction is None or c.direction == direction)]


__all__ = ["ACK", "FIN", "PSH", "RST", "Path", "Pkt", "tcp_seg", "handshake", "tcp_delivered", "syn_only", "ping",
           "udp", "scanner_noise", "run", "by_id", "changes"]
