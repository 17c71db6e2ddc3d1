"""IPv4 in IPv6 (RFC 2473, next header 4) on a TUN device, in user space: MAP-E's and
DS-Lite's tunnel for the lab.

Why not the kernel's ``ip6tnl``: these machines' kernel has no tunnel modules at all
(ip6tnl, sit, gre and ipip all fail to load), while TUN works. So one small process per
tunnel end reads the IPv4 packets the kernel routes into its TUN device, sends each one
inside IPv6 to the other end from a raw ``AF_INET6`` socket of protocol 4 (the kernel
writes the IPv6 header: next header 4, real hop limit, real routing), and writes the
IPv4 packets that arrive that way into the TUN device, where the kernel forwards them
on. A capture on the NGN link therefore holds real IPv4-in-IPv6 packets, as a real
tunnel's would.

The border relay's end (``--port-set``) also does what a MAP-E BR does on the way in:
it drops a decapsulated packet whose TCP/UDP source port is outside the subscriber's
port set (rig.portset.PortSet) and every non-first fragment (it carries no ports to
check); TCP to port 22, the lab's own SSH control connection, is let through.
``admit`` is that decision, a pure function of the packet's bytes.

    python -m rig.lab.tunnel --tun tun0 --local 2001:db8:ff::1 --remote 2001:db8:ff::2 \
        [--port-set OFFSET:LENGTH:PSID]

Prints ``READY`` once the TUN device is attached and the socket bound; stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import selectors
import signal
import socket
import struct
import sys

from rig.portset import PortSet

IPPROTO_IPIP = 4  # IPv4 as an IPv6 next header
TUNSETIFF = 0x400454CA
IFF_TUN, IFF_NO_PI = 0x0001, 0x1000
MAX_PACKET = 65535
CONTROL_PORT = 22  # every lab scenario keeps rig's SSH connection to the server working

# admit() verdicts
PASS, OUTSIDE_SET, FRAGMENT = "pass", "port outside the set", "non-first fragment"


def admit(packet: bytes, port_set: PortSet | None) -> str:
    """What a MAP-E border relay does with one decapsulated IPv4 packet: PASS, or why it
    drops it. Without a port set everything passes (DS-Lite's AFTR, the CE's end)."""
    if port_set is None:
        return PASS
    if len(packet) < 20 or packet[0] >> 4 != 4:
        return PASS
    frag = struct.unpack_from("!H", packet, 6)[0] & 0x1FFF
    if frag:
        return FRAGMENT
    proto = packet[9]
    ihl = (packet[0] & 0x0F) * 4
    if proto in (socket.IPPROTO_TCP, socket.IPPROTO_UDP) and len(packet) >= ihl + 4:
        sport, dport = struct.unpack_from("!HH", packet, ihl)
        if proto == socket.IPPROTO_TCP and dport == CONTROL_PORT:
            return PASS  # the lab's own SSH control connection (a real BR knows no such exception)
        if not port_set.contains(sport):
            return OUTSIDE_SET
    return PASS


def parse_port_set(text: str | None) -> PortSet | None:
    """``OFFSET:LENGTH:PSID`` -> PortSet (None for None)."""
    if not text:
        return None
    offset, length, psid = (int(x) for x in text.split(":"))
    return PortSet(offset, length, psid)


def open_tun(name: str) -> int:
    """Attach to the TUN device ``name`` (``ip tuntap add`` made it; this process's
    network namespace)."""
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    return fd


BATCH = 64  # packets read a wake-up, one queue then the other
SOCKET_BUFFER = 8 << 20  # bytes: a busy machine's scheduler pauses this process for tens of ms


def deepen(sock: socket.socket) -> None:
    """A receive buffer that holds what arrives while this process waits for a CPU.
    Measured: with the default (212 KB) a 512 KB download beside a burst of handshakes on
    a two-CPU machine under load overflowed it (up to 139 drops a run in /proc/net/raw6),
    and the SYN-ACKs and echo replies it dropped read as losses the lab never meant. A
    real tunnel end forwards in the kernel and loses none of them."""
    for opt, fallback in ((socket.SO_RCVBUF, 33), (socket.SO_SNDBUF, 32)):  # 33/32: SO_*BUFFORCE
        try:
            sock.setsockopt(socket.SOL_SOCKET, fallback, SOCKET_BUFFER)  # root: past rmem_max
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, opt, SOCKET_BUFFER)


def serve(tun: int, sock: socket.socket, remote: str, port_set: PortSet | None) -> None:
    sel = selectors.DefaultSelector()
    sel.register(tun, selectors.EVENT_READ, "tun")
    sel.register(sock, selectors.EVENT_READ, "sock")
    os.set_blocking(tun, False)
    sock.setblocking(False)
    dropped = {OUTSIDE_SET: 0, FRAGMENT: 0}
    while True:
        for key, _ in sel.select():
            for _ in range(BATCH):  # drain what queued while this process waited
                try:
                    if key.data == "tun":
                        packet = os.read(tun, MAX_PACKET)
                    else:
                        packet, _peer = sock.recvfrom(MAX_PACKET)
                except BlockingIOError:
                    break
                if key.data == "tun":  # IPv4 routed into the tunnel: out inside IPv6
                    if not packet or packet[0] >> 4 != 4:
                        continue  # an IPv4 tunnel
                    try:
                        sock.sendto(packet, (remote, 0))
                    except OSError:
                        pass  # lost, as a real link loses it
                    continue
                # IPv4 in IPv6 from the other end: the raw socket hands over the IPv4 packet
                why = admit(packet, port_set)
                if why != PASS:
                    dropped[why] += 1
                    print(f"dropped: {why} ({dropped[why]})", file=sys.stderr, flush=True)
                    continue
                try:
                    os.write(tun, packet)
                except OSError:
                    pass


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="rig's IPv4-in-IPv6 tunnel end on a TUN device")
    p.add_argument("--tun", required=True)
    p.add_argument("--local", required=True, help="this end's IPv6 address")
    p.add_argument("--remote", required=True, help="the other end's IPv6 address")
    p.add_argument("--port-set", default=None, help="OFFSET:LENGTH:PSID: drop as a MAP-E BR does")
    a = p.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    tun = open_tun(a.tun)
    sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, IPPROTO_IPIP)
    deepen(sock)
    sock.bind((a.local, 0))
    print("READY", flush=True)
    try:
        serve(tun, sock, a.remote, parse_port_set(a.port_set))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
