"""OpenSSH ProxyCommand helper: connect from inside a network namespace, hand the socket to ssh.

    ssh -o ProxyUseFdpass=yes -o 'ProxyCommand=python3 -m rig.fdpass NS %h %p' ...

The TCP connection is opened inside namespace NS (rig.netns) and passed to ssh over its
stdout with SCM_RIGHTS; then this process exits. So nothing of ours keeps running in the
namespace once ssh has the socket (a socat ProxyCommand would live as long as the
ControlPersist master and keep the namespace busy).
"""

from __future__ import annotations

import socket
import sys

from rig.netns import connect_in


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: python3 -m rig.fdpass NETNS HOST PORT", file=sys.stderr)
        return 2
    netns, host, port = argv[0], argv[1], int(argv[2])
    try:
        conn = connect_in(netns, (host, port), timeout=10)
    except Exception as exc:  # ssh shows our stderr to the user
        print(f"rig.fdpass: cannot connect to {host}:{port} from {netns}: {exc}", file=sys.stderr)
        return 1
    out = socket.socket(fileno=sys.stdout.fileno())  # the unix socket ssh gave us
    try:
        socket.send_fds(out, [b"\0"], [conn.fileno()])
    finally:
        out.detach()
        conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
