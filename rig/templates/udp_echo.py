"""A tiny UDP echo server for rig's UDP probe (standard library only: it runs with the
system python3 on the server, in the lab, on Azure or on the user's own host).

    python3 udp_echo.py ADDR PORT                       foreground
    python3 udp_echo.py --addr ADDR --port PORT [--also ADDR6] [--daemon --pidfile FILE]

Sends every datagram back to where it came from, unchanged. Prints "READY ADDR PORT PID"
on stdout once the socket is bound (with --daemon, the parent prints it for the detached
child and exits 0), so whoever starts it waits for that line instead of sleeping.
"""

import argparse
import os
import socket
import sys


def serve(socks: list) -> None:
    import selectors

    sel = selectors.DefaultSelector()
    for sock in socks:
        sel.register(sock, selectors.EVENT_READ, sock)
    while True:
        for key, _ in sel.select():
            data, peer = key.data.recvfrom(65535)
            key.data.sendto(data, peer)


def bind(addr: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    sock.bind((addr, port))  # fails here, in the foreground, if the port is taken
    return sock


def main() -> None:
    p = argparse.ArgumentParser(description="UDP echo for rig")
    p.add_argument("pos", nargs="*", help="ADDR PORT")
    p.add_argument("--addr", default=None)
    p.add_argument("--also", action="append", default=[], help="another address to echo on (IPv6)")
    p.add_argument("--port", type=int, default=None)
    p.add_argument("--daemon", action="store_true", help="detach after binding")
    p.add_argument("--pidfile", default=None)
    a = p.parse_args()
    addr = a.addr or (a.pos[0] if a.pos else "0.0.0.0")
    port = a.port if a.port is not None else (int(a.pos[1]) if len(a.pos) > 1 else 7)

    sock = bind(addr, port)
    port = sock.getsockname()[1]  # the real one when asked for port 0
    socks = [sock] + [bind(extra, port) for extra in a.also]
    if a.daemon:
        pid = os.fork()
        if pid:
            if a.pidfile:
                with open(a.pidfile, "w") as fh:
                    fh.write(f"{pid}\n")
            print(f"READY {addr} {port} {pid}", flush=True)
            os._exit(0)
        os.setsid()
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
    else:
        if a.pidfile:
            with open(a.pidfile, "w") as fh:
                fh.write(f"{os.getpid()}\n")
        print(f"READY {addr} {port} {os.getpid()}", flush=True)
    try:
        serve(socks)
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
