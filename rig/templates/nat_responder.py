"""rig's NAT-behaviour responder (standard library only: it runs with the server's own
python3, in the lab's server namespace or over SSH on any host).

    python3 nat_responder.py --secret S --bind A1,A2 --ports P1,P2 [--max-seconds N]

Binds UDP and TCP on every (address, port) pair, in that order: endpoint 0 is
(A1, P1), 1 is (A1, P2), 2 is (A2, P1), ... Prints "READY <pid> <n endpoints>" once all
are bound, then answers until its stdin closes (the SSH channel that started it) or
N seconds pass.

Requests are one line, ``RIGNAT1 <secret> <id> [from=I ...] [to=PORT] [back=I] [hold=K]
[poke=K]``;
anything else is ignored. Every reply is ``RIGNAT1 <id> seen <ip>:<port> via <I>``:
the source address and port this responder saw, and which endpoint sent the reply.

- UDP: the reply goes back from the endpoint that received the request, or from each
  endpoint named by ``from=``; with ``to=PORT`` it goes to the requester's own address
  at that port instead (never to another address: nothing here can be aimed at a third
  party).
- TCP: the reply is written on the connection; with ``back=I`` the responder then opens
  a connection from endpoint I's address (any port) to the requester's address and
  port, and writes ``RIGNAT1 <id> back ok`` or ``back failed <reason>``. With ``hold=K``
  (a number) the connection stays open, silent, under the key K (at most MAX_HELD
  connections; the oldest goes first); a later request with ``poke=K``, on another
  connection, writes ``RIGNAT1 <id> seen ...`` (this request's id) on the held one and
  closes it, then ``back ok`` (or ``back failed <reason>``, ``back failed unknown`` for no
  such held connection) on its own: the TCP binding lifetime test (rig.nat.client).
"""

import argparse
import os
import select
import socket
import sys
import threading
import time

MAGIC = "RIGNAT1"
BACK_TIMEOUT = 2.0
MAX_HELD = 256
HELD: dict = {}  # hold key -> (connection, its peer, the endpoint it came to), oldest first
HELD_LOCK = threading.Lock()


def parse(line, secret):
    parts = line.split()
    if len(parts) < 3 or parts[0] != MAGIC or parts[1] != secret:
        return None
    req = {"id": parts[2], "from": [], "to": None, "back": None, "hold": None, "poke": None}
    for word in parts[3:]:
        key, _, value = word.partition("=")
        if not value.isdigit():
            return None
        if key == "from":
            req["from"].append(int(value))
        elif key == "to":
            req["to"] = int(value)
        elif key in ("back", "hold", "poke"):
            req[key] = int(value)
    return req


def seen(req, peer, via):
    return f"{MAGIC} {req['id']} seen {peer[0]}:{peer[1]} via {via}\n".encode()


def answer_udp(udp, index, secret):
    sock = udp[index]
    try:
        data, peer = sock.recvfrom(2048)
    except OSError:
        return
    req = parse(data.decode("ascii", "replace"), secret)
    if req is None:
        return
    dest = (peer[0], req["to"]) if req["to"] and 0 < req["to"] < 65536 else peer
    for via in req["from"] or [index]:
        if 0 <= via < len(udp):
            try:
                udp[via].sendto(seen(req, peer, via), dest)
            except OSError:
                pass


def hold(conn, peer, index, key):
    """Keep ``conn`` open under ``key``; the oldest held one goes past MAX_HELD."""
    with HELD_LOCK:
        old = HELD.pop(key, None)
        HELD[key] = (conn, peer, index)
        while len(HELD) > MAX_HELD:
            HELD.pop(next(iter(HELD)))[0].close()
    if old is not None:
        old[0].close()


def poke(req):
    """Write on the connection held under ``req["poke"]`` and close it: the back word."""
    with HELD_LOCK:
        held = HELD.pop(req["poke"], None)
    if held is None:
        return "failed unknown"
    conn, peer, index = held
    try:
        conn.sendall(seen(req, peer, index))
        return "ok"
    except OSError as exc:
        return f"failed {exc.strerror or exc}".replace("\n", " ")
    finally:
        conn.close()


def answer_tcp(conn, peer, index, addrs, secret):
    kept = False
    try:
        conn.settimeout(BACK_TIMEOUT)
        line = b""
        while not line.endswith(b"\n") and len(line) < 512:
            chunk = conn.recv(512)
            if not chunk:
                break
            line += chunk
        req = parse(line.decode("ascii", "replace"), secret)
        if req is None:
            return
        conn.sendall(seen(req, peer, index))
        if req["hold"] is not None:
            hold(conn, peer, index, req["hold"])
            kept = True
            return
        if req["poke"] is not None:
            conn.sendall(f"{MAGIC} {req['id']} back {poke(req)}\n".encode())
            return
        back = req["back"]
        if back is not None and 0 <= back < len(addrs):
            out = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            out.settimeout(BACK_TIMEOUT)
            try:
                out.bind((addrs[back], 0))
                out.connect(peer)
                word = "ok"
            except socket.timeout:
                word = "failed timeout"
            except OSError as exc:
                word = f"failed {exc.strerror or exc}".replace("\n", " ")
            finally:
                out.close()
            conn.sendall(f"{MAGIC} {req['id']} back {word}\n".encode())
    except OSError:
        pass
    finally:
        if not kept:
            conn.close()


def main():
    p = argparse.ArgumentParser(description="rig NAT responder")
    p.add_argument("--secret", required=True)
    p.add_argument("--bind", required=True, help="A1[,A2]")
    p.add_argument("--ports", required=True, help="P1[,P2]")
    p.add_argument("--max-seconds", type=float, default=900.0)
    a = p.parse_args()
    endpoints = [(addr, int(port)) for addr in a.bind.split(",") for port in a.ports.split(",")]
    udp, tcp = [], []
    for ep in endpoints:
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.bind(ep)
        udp.append(u)
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        t.bind(ep)
        t.listen(64)
        tcp.append(t)
    addrs = [ep[0] for ep in endpoints]
    print(f"READY {os.getpid()} {len(endpoints)}", flush=True)
    deadline = time.monotonic() + a.max_seconds
    watch = {u.fileno(): ("udp", i) for i, u in enumerate(udp)}
    watch.update({t.fileno(): ("tcp", i) for i, t in enumerate(tcp)})
    stdin = sys.stdin.fileno()
    while time.monotonic() < deadline:
        ready, _, _ = select.select(list(watch) + [stdin], [], [], max(0.0, deadline - time.monotonic()))
        for fd in ready:
            if fd == stdin:
                if not os.read(stdin, 4096):
                    return  # whoever started us is gone
                continue
            kind, i = watch[fd]
            if kind == "udp":
                answer_udp(udp, i, a.secret)
            else:
                try:
                    conn, peer = tcp[i].accept()
                except OSError:
                    continue
                threading.Thread(target=answer_tcp, args=(conn, peer, i, addrs, a.secret), daemon=True).start()


if __name__ == "__main__":
    main()
