"""A tiny UDP echo server for rig's UDP probe: python3 udp_echo.py ADDR PORT.

Sends every datagram back to where it came from, unchanged. Prints "READY ADDR PORT"
on stdout once bound, so whoever starts it can wait for that line. Standard library
only: it runs with the system python3 on the server (lab, Azure or ssh).
"""

import socket
import sys


def main() -> None:
    addr, port = sys.argv[1], int(sys.argv[2])
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((addr, port))
    print(f"READY {addr} {port}", flush=True)
    while True:
        data, peer = sock.recvfrom(65535)
        sock.sendto(data, peer)


if __name__ == "__main__":
    main()
