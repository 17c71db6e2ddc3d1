"""The SSH backend: a host the user already has (a VPS). Nothing is provisioned.

``provision`` parses ``--host user@host[:port]``, pins the host key — given with
``--host-key LINE|FILE`` or already in ~/.ssh/known_hosts, never trusted on first use —
logs in once with that key to check it and learn the OS, and describes the host as a
Rig. Configure, captures, probes and analysis are the pipeline's, as for every backend.
Everything rig puts on the host lives in one per-run directory (``server_dir``):
Apache's standalone config and pid file, the UDP echo, the site. ``teardown`` stops,
by PID, each process whose command line names that directory, and removes it.
"""

from __future__ import annotations

import getpass
import os
import re
import shlex
import socket
import tempfile
from pathlib import Path

from rig.backends.base import CapturePoint, Rig, RunSpec, SSHEndpoint, new_run_id
from rig.backends.facts import BackendFacts, port_facts
from rig.config import run_options
from rig.errors import InfraError, UsageError

PS = ["ps", "ax", "-o", "pid=", "-o", "stat=", "-o", "args="]  # the same on procps and FreeBSD
DEFAULT_IDENTITIES = ("id_ed25519", "id_ecdsa", "id_rsa")
_TARGET = re.compile(r"^(?:(?P<user>[^@\s]+)@)?(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[^:@\s\[\]]+))(?::(?P<port>\d+))?$")


def parse_target(target: str) -> tuple[str, str, int]:
    """``user@host[:port]`` (``[v6]:port`` for IPv6) -> (user, host, port)."""
    m = _TARGET.match((target or "").strip())
    if not m:
        raise UsageError(f"--host {target!r}: expected user@host or user@host:port")
    port = int(m.group("port") or 22)
    if not 0 < port < 65536:
        raise UsageError(f"--host {target!r}: port {port} is out of range")
    return m.group("user") or getpass.getuser(), m.group("v6") or m.group("host"), port


def _known_name(host: str, port: int) -> str:
    return host if port == 22 else f"[{host}]:{port}"


def resolve_host_key(host: str, port: int, given: str | None, known_hosts: str | os.PathLike) -> str:
    """The pinned host key "TYPE BASE64": from --host-key (a line or a file), else known_hosts.

    Prefers ed25519 when known_hosts holds several types. Never asks the host itself.
    """
    import paramiko

    if given:
        text = Path(given).read_text() if os.path.isfile(given) else given
        for line in text.splitlines():
            parts = line.split()
            # a known_hosts line "host type key" or a .pub line "type key [comment]"
            if len(parts) >= 2 and parts[0].startswith(("ssh-", "ecdsa-")):
                return f"{parts[0]} {parts[1]}"
            if len(parts) >= 3 and parts[1].startswith(("ssh-", "ecdsa-")):
                return f"{parts[1]} {parts[2]}"
        raise UsageError(f"--host-key: no 'ssh-ed25519 AAAA...' key in {given[:60]!r}")
    try:
        keys = paramiko.HostKeys(str(known_hosts)) if os.path.exists(known_hosts) else paramiko.HostKeys()
    except (OSError, paramiko.SSHException) as exc:
        raise InfraError(f"{known_hosts} cannot be read: {exc}") from exc
    entry = keys.lookup(_known_name(host, port))
    if not entry:
        raise UsageError(f"the host key of {_known_name(host, port)} is not in {known_hosts}: pass "
                         "--host-key 'ssh-ed25519 AAAA...' (from the host's /etc/ssh/ssh_host_ed25519_key.pub, "
                         "read through a channel you trust); rig never trusts a key on first use")
    for kind in ("ssh-ed25519", "ecdsa-sha2-nistp256", "rsa-sha2-512", "ssh-rsa"):
        if kind in entry:
            return f"{entry[kind].get_name()} {entry[kind].get_base64()}"
    kind, key = next(iter(entry.items()))
    return f"{key.get_name()} {key.get_base64()}"


def default_identity(ssh_dir: Path) -> str:
    for name in DEFAULT_IDENTITIES:
        if (ssh_dir / name).exists():
            return str(ssh_dir / name)
    raise UsageError(f"no SSH key found in {ssh_dir} ({', '.join(DEFAULT_IDENTITIES)}): pass --identity KEYFILE")


def default_route_iface(route_get: str) -> str:
    """The interface in FreeBSD's ``route -n get default`` output (InfraError if none)."""
    for line in route_get.splitlines():
        key, _, value = line.strip().partition(":")
        if key == "interface" and value.strip():
            return value.strip()
    raise InfraError("the FreeBSD host has no default route to capture on; pass server_iface in rig.toml [ssh]")


def _ipv4_of(host: str) -> str:
    """The address the probes go to (the captures and verdict name an address, not a name)."""
    try:
        socket.inet_pton(socket.AF_INET, host)
        return host
    except OSError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, socket.AF_INET, socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise UsageError(f"--host: cannot resolve {host!r} to an IPv4 address ({exc.strerror})") from None
    return str(infos[0][4][0])  # AF_INET: (address, port)


def global_ipv6(ip_addr_output: str) -> str | None:
    """The host's first global IPv6 address from ``ip -6 -o addr show scope global``
    (None without one; deprecated and tentative addresses are skipped): the probes go
    there too."""
    import ipaddress

    for line in ip_addr_output.splitlines():
        words = line.split()
        if "inet6" not in words or "deprecated" in words or "tentative" in words:
            continue
        addr = words[words.index("inet6") + 1].split("/", 1)[0]
        try:
            ip = ipaddress.IPv6Address(addr)
        except ValueError:
            continue
        if ip.is_global or ip in ipaddress.IPv6Network("2001:db8::/32"):  # documentation space: the lab as a host
            return str(ip)
    return None


class SSHBackend:
    name = "ssh"

    def __init__(self, home: str | os.PathLike | None = None):
        self.home = Path(home) if home else Path.home()

    def provision(self, spec: RunSpec) -> Rig:
        from rig.sshclient import SSHClient

        opts = dict(spec.options)
        if not opts.get("host"):
            raise UsageError("--backend ssh needs --host user@host[:port]")
        user, host, port = parse_target(opts["host"])
        # --http-port / --udp-port: a bad one is said before any login (exit 2)
        ports = BackendFacts.from_facts({k: opts[k] for k in ("http_port", "udp_port") if k in opts})
        host_key = resolve_host_key(host, port, opts.get("host_key"), self.home / ".ssh" / "known_hosts")
        identity = opts.get("identity") or default_identity(self.home / ".ssh")
        if not os.path.exists(identity):
            raise UsageError(f"--identity {identity}: no such file")
        addr = _ipv4_of(host)
        run_id = opts.get("run_id") or new_run_id()
        endpoint = SSHEndpoint(host=addr, port=port, user=user, key_file=identity, host_key=host_key,
                               netns=opts.get("netns") or None)
        # one login with the pinned key: a wrong key or a refused login stops here, in one line
        server_iface = opts.get("server_iface", "any")
        with SSHClient(endpoint) as ssh:
            uname = ssh.run(["uname", "-sm"]).stdout.strip()
            if uname.startswith("FreeBSD") and "server_iface" not in opts:  # no "any" in BSD tcpdump
                server_iface = default_route_iface(ssh.run(["route", "-n", "get", "default"], check=False).stdout)
            addr6 = opts.get("server_addr6") or None
            if addr6 is None and not uname.startswith("FreeBSD"):
                addr6 = global_ipv6(ssh.run(["ip", "-6", "-o", "addr", "show", "scope", "global"], check=False).stdout)
            if user != "root":
                sudo = ssh.run(["sudo", "-n", "true"], check=False)
                if sudo.rc != 0:
                    raise InfraError(f"{user}@{host} cannot run 'sudo -n' (needed for tcpdump and Apache on "
                                     "port 80): allow passwordless sudo or log in as root")
        freebsd = uname.startswith("FreeBSD")
        server_dir = opts.get("server_dir") or f"/var/tmp/{run_id}"
        workdir = opts.get("workdir") or tempfile.mkdtemp(prefix=f"{run_id}-")
        client_iface = "any"
        return Rig(
            run_id=run_id, backend=self.name, server_addr=addr, ssh=endpoint,
            capture_points=(CapturePoint("client", client_iface, netns=opts.get("client_netns") or None),
                            CapturePoint("server", server_iface, remote=True)),
            client_netns=opts.get("client_netns") or None,
            os_family="freebsd" if freebsd else "debian",
            install_packages=run_options(opts).install_packages,
            workdir=workdir,
            facts={"host": opts["host"], "uname": uname, "server_dir": server_dir, "service_mode": "standalone",
                   "listen_addr": opts.get("listen_addr", "0.0.0.0"),
                   **port_facts(ports.http_port, ports.udp_port),
                   # a global IPv6 address: Apache and the UDP echo listen there too, the probes go there
                   **({"server_addr6": addr6, "rig_listen_addr6": addr6} if addr6 else {}),
                   **({"python": "/usr/local/bin/python3"} if freebsd else {})},
        )

    def teardown(self, rig: Rig) -> None:
        """Stop what rig started on the host (by PID) and remove its directory."""
        from rig.sshclient import SSHClient

        server_dir = rig.facts.get("server_dir", "")
        try:
            if server_dir.startswith(("/var/tmp/rig-", "/tmp/rig-")):
                with SSHClient(rig.ssh) as ssh:
                    stop_started(ssh, server_dir)
        finally:
            if rig.workdir and os.path.isdir(rig.workdir) and Path(rig.workdir).name.startswith(rig.run_id):
                import shutil

                shutil.rmtree(rig.workdir, ignore_errors=True)


def started_pids(ps_output: str, server_dir: str) -> list[int]:
    """PIDs to stop: live processes whose command line names the run's directory
    (Apache -f DIR/apache-rig.conf, DIR/udp_echo.py, a capture writing into DIR).
    A pid file alone is not proof: its number may belong to someone else by now."""
    pids = []
    for line in ps_output.splitlines():
        parts = line.strip().split(None, 2)
        # zombies are gone already: only their parent can reap them
        if len(parts) == 3 and parts[0].isdigit() and not parts[1].startswith("Z") and server_dir in parts[2]:
            pids.append(int(parts[0]))
    return sorted(pids)


def stop_started(ssh, server_dir: str, wait: float = 10.0) -> list[int]:
    """Kill (TERM, then KILL if still there) rig's processes on the host; rm -rf server_dir."""
    pids = started_pids(ssh.run(PS, check=False).stdout, server_dir)
    if pids:
        ssh.run(ssh.privileged(["kill", "-TERM", *map(str, pids)]), check=False)
        waiter = ("end=$(( $(date +%s) + $1 )); shift; for p in \"$@\"; do "
                  "while s=$(ps -o stat= -p \"$p\") && [ \"${s#Z}\" = \"$s\" ]; do "
                  "[ $(date +%s) -ge $end ] && exit 1; sleep 0.1; done; done")
        done = ssh.run(ssh.privileged(["sh", "-c", waiter, "sh", str(int(wait)), *map(str, pids)]),
                       check=False, timeout=wait + 10)
        if done.rc != 0:
            ssh.run(ssh.privileged(["kill", "-KILL", *map(str, pids)]), check=False)
    ssh.run(ssh.privileged(["rm", "-rf", "--", server_dir]), check=False)
    still = started_pids(ssh.run(PS, check=False).stdout, server_dir)
    if still:
        raise InfraError(f"processes {shlex.join(map(str, still))} started by rig still run on {ssh.endpoint.host}")
    return pids
