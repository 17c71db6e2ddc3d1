"""Capturing at the user's own router over SSH: ``--capture-at router=user@host[:port]``.

The router is reached like the server: paramiko with the host key pinned, never trusted
on first use. The key comes from ``router_host_key`` (rig.toml's ``[<backend>]`` table
or the lab, a key line or a file holding one), else from the user's
``~/.ssh/known_hosts``; the login key from ``router_identity``, else the server's. The
capture runs on the interface named by ``router_iface``, else the one of the router's
default route (Linux ``ip route``, FreeBSD ``route -n get``), with the same
``RemoteCapture`` as the server's (FreeBSD's tcpdump writes what the reader already
knows: NULL/LOOP, PPP, PPPoE, Ethernet).

In the lab the router namespace runs its own sshd on its LAN address (``lab_sshd``), so
this path is tested for real, not only the namespace shortcut (``--capture-at router``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Mapping

from rig.backends.base import SSHEndpoint
from rig.errors import InfraError, UsageError

OPTION = "router_ssh"  # the options key that holds "user@host[:port]"


def split_point(item: str) -> tuple[str, str | None]:
    """'router=admin@192.168.1.1' -> ('router', 'admin@192.168.1.1'); 'router' -> ('router', None)."""
    name, sep, target = item.partition("=")
    if sep and (name != "router" or not target):
        raise UsageError(f"bad capture point {item!r}: only router=user@host[:port] takes a target")
    return name, (target or None)


def _pinned(value: str) -> str:
    """A key line ('ssh-ed25519 AAAA...'), or the file that holds one."""
    text = Path(value).read_text() if os.path.isfile(value) else value
    parts = text.split()
    if len(parts) < 2 or not parts[0].startswith(("ssh-", "ecdsa-")):
        raise UsageError(f"router_host_key: not a public host key: {value[:40]!r}")
    return " ".join(parts[:2])


def _known_host(host: str, port: int) -> str | None:
    import paramiko  # here, not at the top: `rig run` reads OPTION and split_point before its lab exists

    from rig.sshclient import known_hosts_name

    path = os.path.expanduser("~/.ssh/known_hosts")
    if not os.path.isfile(path):
        return None
    keys = paramiko.HostKeys(path).lookup(known_hosts_name(host, port))
    if not keys:
        return None
    kind = "ssh-ed25519" if "ssh-ed25519" in keys else next(iter(keys.keys()))
    return f"{kind} {keys[kind].get_base64()}"


def endpoint(options: Mapping[str, str], identity: str | None, netns: str | None,
             facts: Mapping[str, str] | None = None) -> SSHEndpoint | None:
    """The router's SSH endpoint from the run's options (None: no router over SSH); the
    lab's own router pins the key it made (``facts["router_host_key"]``). ``identity``:
    the login key when ``router_identity`` names none (the server's)."""
    target = options.get(OPTION)
    if not target:
        return None
    from rig.backends.ssh import parse_target

    user, host, port = parse_target(target)
    key = options.get("router_host_key")
    pinned = _pinned(key) if key else (facts or {}).get("router_host_key") or _known_host(host, port)
    if pinned is None:
        raise UsageError(f"--capture-at router={target}: no pinned host key (set router_host_key in rig.toml, "
                         "or add the router to ~/.ssh/known_hosts)")
    identity = options.get("router_identity") or identity
    if not identity:
        raise UsageError(f"--capture-at router={target}: no login key (set router_identity in rig.toml)")
    return SSHEndpoint(host=host, port=port, user=user, key_file=identity, host_key=pinned, netns=netns)


def wan_interface(ssh) -> tuple[str, str]:
    """(interface of the router's default route, os family) over ``ssh``."""
    uname = ssh.run(["uname", "-s"], timeout=15).stdout.strip()
    if uname == "FreeBSD":
        out = ssh.run(["route", "-n", "get", "default"], timeout=15, check=False).stdout
        m = re.search(r"^\s*interface:\s*(\S+)", out, re.M)
        family = "freebsd"
    else:
        out = ssh.run(["ip", "route", "show", "default"], timeout=15, check=False).stdout
        m = re.search(r"\bdev\s+(\S+)", out)
        family = "debian"
    if m is None:
        raise InfraError(f"cannot find the router's default route interface ({uname}); set router_iface")
    return m.group(1), family


def lab_sshd(netns: str, workdir: Path, addr: str, client_key: str, client_pub: str):
    """sshd in the lab's router namespace on ``addr``:22, with its own host key; returns
    (Service, the host key line to pin)."""
    from rig.lab.services import Keys, find_tool, run, start_sshd

    workdir.mkdir(mode=0o700, parents=True, exist_ok=True)
    host = workdir / "ssh_host_ed25519_key"
    run([find_tool("ssh-keygen"), "-q", "-t", "ed25519", "-N", "", "-C", "rig-lab-router", "-f", str(host)],
        what="ssh-keygen")
    host_pub = " ".join(Path(f"{host}.pub").read_text().split()[:2])
    return start_sshd(netns, workdir, addr, Keys(str(host), host_pub, client_key, client_pub)), host_pub


def open_capture(options: Mapping[str, str], rig, path: str, bpf: str):
    """(SSHClient, RemoteCapture) for the router of ``rig`` when the options ask for one
    over SSH, else None. The caller starts the capture and closes the client."""
    remote_tmp = rig.facts.get("remote_tmp", "/tmp") if rig.backend == "lab" else "/tmp"
    return open_at(options, path, bpf, rig.ssh.key_file, rig.client_netns, rig.facts, remote_tmp)


def open_at(options: Mapping[str, str], path: str, bpf: str, identity: str | None, netns: str | None,
            facts: Mapping[str, str] | None = None, remote_tmp: str = "/tmp"):
    """``open_capture`` without a rig (``rig probe``): the login key, the namespace to
    connect from and the facts given; None when the options name no router."""
    from rig.capture.tcpdump import RemoteCapture
    from rig.sshclient import SSHClient

    ep = endpoint(options, identity, netns, facts)
    if ep is None:
        return None
    ssh = SSHClient(ep).connect()
    try:
        found, family = wan_interface(ssh)
        iface = options.get("router_iface") or found
        return ssh, RemoteCapture("router", iface, path, ssh, bpf, family, remote_tmp)
    except BaseException:
        ssh.close()
        raise
