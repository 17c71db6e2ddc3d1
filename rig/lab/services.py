"""The real programs the lab runs inside its namespaces, started here and stopped by PID.

- sshd in the server namespace: its own config and per-run ed25519 host key (the key
  the client pins), a per-run client key in authorized_keys, ``UsePAM no``,
  ``StrictModes no``, and a private tmpfs on /run for /run/sshd.
- Apache from templates/apache-rig.conf.j2 (nothing from /etc/apache2), serving the
  probe pages of templates/site/ and logging every request line.
- A UDP echo service (templates/udp_echo.py) run with the system python3.
- The transparent proxy of that scenario: a second Apache in the home gateway.

Each start returns only when the service answers (a TCP connect succeeds, or the echo
server prints READY); a service that exits first raises InfraError with its own log.
"""

from __future__ import annotations

import grp
import os
import pwd
import select
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from rig.errors import InfraError
from rig.lab.build import find_tool, run
from rig.lab.topology import Tunnel
from rig.netns import connect_in
from rig.resources import templates_dir

READY_TIMEOUT = 10.0


@dataclass(frozen=True)
class Service:
    name: str
    netns: str
    pid: int
    log: str
    proc: subprocess.Popen | None = field(default=None, compare=False, repr=False)  # to reap it


@dataclass(frozen=True)
class Keys:
    host_key: str  # sshd's private host key
    host_pub: str  # "ssh-ed25519 AAAA..." (pinned by the client)
    client_key: str  # private key the pipeline logs in with
    client_pub: str


def render(template: str, dest: Path, variables: dict[str, str]) -> Path:
    """Render like Ansible's template module does (trim_blocks on), so the lab and the
    playbook produce the same file from the same variables."""
    import jinja2  # comes with ansible-core

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(templates_dir())),
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True, trim_blocks=True)
    dest.write_text(env.get_template(template).render(**variables))
    return dest


def web_user() -> tuple[str, str]:
    """The unprivileged user Apache's workers run as."""
    for user, group in (("www-data", "www-data"), ("www", "www"), ("nobody", "nogroup"), ("nobody", "nobody")):
        try:
            pwd.getpwnam(user)
            grp.getgrnam(group)
            return user, group
        except KeyError:
            continue
    raise InfraError("no unprivileged user for Apache's workers (www-data or nobody)")


def make_keys(keydir: Path) -> Keys:
    keydir.mkdir(mode=0o700, parents=True, exist_ok=True)
    keygen = find_tool("ssh-keygen")
    host, client = keydir / "ssh_host_ed25519_key", keydir / "client_ed25519_key"
    for path, comment in ((host, "rig-lab-host"), (client, "rig-lab-client")):
        run([keygen, "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)], what="ssh-keygen")
    host_pub = " ".join(Path(f"{host}.pub").read_text().split()[:2])
    client_pub = Path(f"{client}.pub").read_text().strip()
    return Keys(str(host), host_pub, str(client), client_pub)


def _log_tail(path: str, lines: int = 3) -> str:
    try:
        text = Path(path).read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(text[-lines:])


def _spawn(netns: str, argv: list[str], log: Path, stdout=None) -> subprocess.Popen:
    """Start ``argv`` inside ``netns`` (``ip netns exec``: own mount namespace too),
    in its own session so a Ctrl-C at the terminal reaches rig, not the service."""
    with open(log, "ab") as fh:
        return subprocess.Popen(["ip", "netns", "exec", netns, *argv], stdin=subprocess.DEVNULL,
                                stdout=stdout if stdout is not None else fh, stderr=fh,
                                start_new_session=True)


def wait_accepting(netns: str, addr: str, port: int, proc: subprocess.Popen, what: str, log: str,
                   timeout: float = READY_TIMEOUT) -> None:
    """Return once ``addr:port`` accepts a TCP connection from inside ``netns``.

    Between attempts it waits on the process itself, so a service that dies is
    reported at once with the end of its log."""
    import time

    deadline = time.monotonic() + timeout
    pause = 0.002
    while True:
        try:
            connect_in(netns, (addr, port), timeout=1.0).close()
            return
        except OSError:
            pass
        left = deadline - time.monotonic()
        if left <= 0:
            raise InfraError(f"{what} did not accept connections on {addr}:{port} within {timeout:g} s: "
                             f"{_log_tail(log)}")
        try:
            rc = proc.wait(timeout=min(pause, left))
        except subprocess.TimeoutExpired:
            pause = min(pause * 2, 0.05)
            continue
        raise InfraError(f"{what} exited with status {rc} before accepting connections: {_log_tail(log)}")


SSHD_CONFIG = """\
# rig lab sshd: nothing from /etc/ssh is used
ListenAddress {addr}:{port}
HostKey {host_key}
PidFile {workdir}/sshd.pid
AuthorizedKeysFile {authorized_keys}
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
UseDNS no
X11Forwarding no
PrintMotd no
Subsystem sftp internal-sftp
MaxStartups 64:30:128
MaxSessions 32
LogLevel VERBOSE
# A per-run home: the session's shell reads its rc files from here, not root's (on this
# kind of machine root's .bashrc runs pyenv init, ~0.1 s and dozens of processes per SSH
# command), and remote temp files (ansible's ~/.ansible/tmp) go away with the workdir.
SetEnv HOME={home}
"""

# /run/sshd must exist and belong to root: a private tmpfs on /run, inside the mount
# namespace `ip netns exec` already gave this process (mounts do not leak back out).
_SSHD_WRAP = 'mount -t tmpfs -o mode=0755,size=1m rig-run /run && mkdir -m 0755 /run/sshd && exec "$@"'


def start_sshd(netns: str, workdir: Path, addr: str, keys: Keys, port: int = 22) -> Service:
    sshd = find_tool("sshd")
    authorized = workdir / "authorized_keys"
    authorized.write_text(keys.client_pub + "\n")
    cfg = workdir / "sshd_config"
    home = workdir / "home"
    home.mkdir(mode=0o700, exist_ok=True)
    cfg.write_text(SSHD_CONFIG.format(addr=addr, port=port, host_key=keys.host_key, workdir=workdir,
                                      authorized_keys=authorized, home=home))
    log = workdir / "sshd.log"
    proc = _spawn(netns, ["/bin/sh", "-c", _SSHD_WRAP, "sh", sshd, "-D", "-e", "-f", str(cfg)], log)
    wait_accepting(netns, addr, port, proc, "sshd", str(log))
    return Service("sshd", netns, proc.pid, str(log), proc)


def apache_vars(server_dir: Path, listen_addr: str, port: int, responder: str,
                listen_addr6: str | None = None) -> dict[str, str]:
    """The template's variables (named as playbooks/server.yml names them)."""
    user, group = web_user()
    extra = {"rig_listen_addr6": listen_addr6} if listen_addr6 else {}
    return {
        "rig_server_dir": str(server_dir),
        "rig_listen_addr": listen_addr,
        **extra,
        "rig_http_port": str(port),
        "rig_os_family": "debian",
        "rig_modules_dir": os.environ.get("RIG_APACHE_MODULES", "/usr/lib/apache2/modules"),
        "rig_user": user,
        "rig_group": group,
        "rig_responder": responder,
    }


def start_apache(netns: str, variables: dict[str, str], probe_addr: str) -> Service:
    """Apache in ``netns`` from templates/apache-rig.conf.j2 rendered with ``variables``
    (see apache_vars), serving a copy of templates/site/; ``probe_addr`` is where to
    check readiness (the listen address may be 0.0.0.0)."""
    apache = find_tool("apache2")
    root = Path(variables["rig_server_dir"])
    (root / "logs").mkdir(mode=0o755, parents=True, exist_ok=True)
    shutil.copytree(templates_dir() / "site", root / "site", dirs_exist_ok=True)
    conf = render("apache-rig.conf.j2", root / "apache-rig.conf", variables)
    log = root / "logs" / "stderr.log"
    proc = _spawn(netns, [apache, "-f", str(conf), "-DFOREGROUND"], log)
    wait_accepting(netns, probe_addr, int(variables["rig_http_port"]), proc, "Apache", str(log))
    return Service("apache", netns, proc.pid, str(root / "logs" / "access.log"), proc)


def start_udp_echo(netns: str, server_dir: Path, addr: str, port: int = 7, also: tuple[str, ...] = ()) -> Service:
    (server_dir / "logs").mkdir(mode=0o755, parents=True, exist_ok=True)
    script = server_dir / "udp_echo.py"
    shutil.copyfile(templates_dir() / "udp_echo.py", script)
    script.chmod(0o755)  # as the playbook installs it, so configure changes nothing
    python = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
    log = server_dir / "logs" / "udp_echo.log"
    return _start_ready("udp-echo", "UDP echo server", netns,
                        [python, str(script), "--addr", addr, "--port", str(port),
                         *[arg for a in also for arg in ("--also", a)], "--pidfile", str(server_dir / "udp_echo.pid")],
                        log)


def _start_ready(name: str, what: str, netns: str, argv: list[str], log: Path) -> Service:
    """Start ``argv`` in ``netns`` and wait for the READY line it prints once it serves;
    InfraError with its log's tail if it never does (it is ended first)."""
    proc = _spawn(netns, argv, log, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], READY_TIMEOUT)  # READY, or EOF at exit
    line = proc.stdout.readline().decode(errors="replace") if ready else ""
    proc.stdout.close()
    if not line.startswith("READY"):
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        raise InfraError(f"{what} did not start: {_log_tail(str(log))}")
    return Service(name, netns, proc.pid, str(log), proc)


def start_tunnel(netns: str, logdir: Path, tunnel: Tunnel) -> Service:
    """One IPv4-in-IPv6 tunnel end (rig.lab.tunnel) in ``netns``, once it says READY."""
    logdir.mkdir(mode=0o755, parents=True, exist_ok=True)
    log = logdir / f"tunnel-{tunnel.node}.log"
    argv = [sys.executable, "-m", "rig.lab.tunnel", "--tun", tunnel.tun, "--local", tunnel.local,
            "--remote", tunnel.remote, *(["--port-set", tunnel.port_set] if tunnel.port_set else [])]
    return _start_ready(f"tunnel-{tunnel.node}", f"tunnel on {tunnel.node}", netns, argv, log)
