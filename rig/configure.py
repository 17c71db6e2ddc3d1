"""Configure the responder with the shipped playbook, through ansible-runner, over SSH.

ansible-runner turns host-key checking off by default; here it is on: the Rig's pinned
host key goes into a per-run known_hosts file, ``StrictHostKeyChecking=yes``, and no
other known_hosts or key is consulted. In the lab the SSH connection must start in the
client's namespace, so OpenSSH reaches the server through
``ProxyCommand python -m rig.fdpass NS %h %p`` with ``ProxyUseFdpass``: the helper
connects from inside the namespace, hands the socket to ssh and exits. Each run has its
own ControlPath directory inside the run's workdir (so `rig clean` removes a killed
run's sockets with it); the ControlPersist masters are closed at the end (and waited
for) so none keeps a namespace busy. A signal stops the playbook within CANCEL_POLL:
ansible-runner kills its process group by PID when the cancel callback says so.

The playbook runs over one SSH connection: rig opens the ControlPersist master itself
(``open_master``) at the moment it starts ansible-runner, so the handshake happens while
ansible-playbook is still starting up (about 0.6 s of imports), and every task of the
play multiplexes over it. Should ansible get there first, it makes its own connection
and the loser of the race for the socket runs without one; nothing is left behind.

``start`` runs the playbook on a thread: the stages after configure need only the play
to have ended well (``Configuring.applied``, at ansible's closing stats), not
ansible-playbook's own exit behind it (``Configuring.result``, joined before the verdict).
"""

from __future__ import annotations

import hashlib
import os
import re
import select
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from rig.backends.base import Rig, known_hosts_name
from rig.backends.facts import DEFAULT_SERVER_DIR  # noqa: F401 - where the playbook puts it unless told
from rig.concurrency import Background
from rig.resources import playbooks_dir, templates_dir
from rig.errors import InfraError, MissingToolError

PLAYBOOK = "server.yml"
INSTALL_TAG = "install"  # the tag of server.yml's install include, skipped where nothing is installed
CANCEL_POLL = 0.1  # seconds between ansible-runner's looks at the cancel callback
CONNECT_TIMEOUT = 15  # seconds, for rig's master and ansible's own (ANSIBLE_TIMEOUT)
PERSIST = "60s"  # ControlPersist: the master outlives a task; close_masters ends it
PYTHON = {"debian": "/usr/bin/python3", "freebsd": "/usr/local/bin/python3"}


@dataclass(frozen=True)
class ConfigureResult:
    status: str  # ansible-runner's: successful | failed | timeout | canceled
    rc: int
    seconds: float
    log: str  # the playbook's output (for logs/ansible.log)
    changed: int  # tasks that changed something (0 on a second run: idempotent)


def shipped_files(templates: Path, server_dir: str) -> list[dict[str, str]]:
    """site/** and udp_echo.py with their sha1, so the play copies only what differs."""
    files = [(p, f"{server_dir}/site/{p.relative_to(templates / 'site').as_posix()}", "0644")
             for p in sorted((templates / "site").rglob("*")) if p.is_file()]
    files.append((templates / "udp_echo.py", f"{server_dir}/udp_echo.py", "0755"))
    return [{"src": str(src), "dest": dest, "mode": mode, "sha1": hashlib.sha1(src.read_bytes()).hexdigest()}
            for src, dest, mode in files]


def playbook_vars(rig: Rig) -> dict[str, Any]:
    """The playbook's variables for this rig (see playbooks/server.yml)."""
    facts = dict(rig.facts)
    templates = Path(facts.get("rig_templates_dir") or templates_dir())
    known = rig.known
    server_dir = known.server_dir
    return {
        "rig_templates_dir": str(templates),
        "rig_files": shipped_files(templates, server_dir),
        "rig_server_dir": server_dir,
        "rig_listen_addr": known.listen_addr or rig.server_addr,
        "rig_http_port": known.http_port,
        "rig_udp_port": known.udp_port,
        "rig_service_mode": facts.get("service_mode", "standalone" if rig.backend == "lab" else "system"),
        "rig_install_packages": bool(rig.install_packages),
        "rig_os_family": rig.os_family,
        # only where rig keeps a per-run directory on the server (the lab's workdir)
        "rig_remote_tmp": known.remote_tmp if known.remote_tmp != "/tmp" else "",
        **{k: v for k, v in facts.items() if k.startswith("rig_")},
    }


def ssh_common_args(rig: Rig, known_hosts: Path) -> str:
    args = ["-o", f"UserKnownHostsFile={known_hosts}", "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", "StrictHostKeyChecking=yes", "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes"]
    if rig.ssh.netns:
        # the connection starts in the client's namespace; the helper hands the socket to
        # ssh and exits, so no proxy process outlives it there (rig.fdpass)
        helper = shlex.join([sys.executable, "-m", "rig.fdpass", rig.ssh.netns])
        args += ["-o", "ProxyUseFdpass=yes", "-o", f"ProxyCommand={helper} %h %p"]
    return shlex.join(args)


def inventory(rig: Rig, known_hosts: Path) -> dict[str, Any]:
    ssh = rig.ssh
    host = {
        "ansible_host": ssh.host,
        "ansible_port": ssh.port,
        "ansible_user": ssh.user,
        "ansible_ssh_private_key_file": ssh.key_file,
        "ansible_ssh_common_args": ssh_common_args(rig, known_hosts),
        "ansible_ssh_transfer_method": "piped",
        "ansible_python_interpreter": rig.facts.get("python", PYTHON[rig.os_family]),
    }
    return {"all": {"hosts": {"server": host}}}


def control_path(control_dir: Path) -> Path:
    """The one ControlPath of a configure call: rig's master and ansible's tasks share it."""
    return control_dir / "m"


def master_argv(rig: Rig, known_hosts: Path, control: Path) -> list[str]:
    """The ssh command that opens the ControlPersist master the playbook's tasks will
    multiplex over: the options ansible's ssh plugin would give its first connection
    (same host, user, key, pinned host key, ProxyCommand), then ``true`` as the one
    command, so that ssh exits (the master stays) and a master that lost the race for
    the socket ends too."""
    ssh = rig.ssh
    argv = ["ssh", "-o", "ControlMaster=auto", "-o", f"ControlPersist={PERSIST}", "-o", f"ControlPath={control}",
            "-o", f"Port={ssh.port}", "-o", f"User={ssh.user}", "-o", f"ConnectTimeout={CONNECT_TIMEOUT}",
            "-o", "KbdInteractiveAuthentication=no", "-o", "PasswordAuthentication=no"]
    if ssh.key_file:
        argv += ["-o", f"IdentityFile={ssh.key_file}"]
    return [*argv, *shlex.split(ssh_common_args(rig, known_hosts)), "--", ssh.host, "true"]


def open_master(argv: list[str]) -> subprocess.Popen:
    """Start ssh (``master_argv``) without waiting: it authenticates while ansible-playbook
    starts. Its errors are ansible's to report: a task that finds no master connects
    itself and says what went wrong."""
    return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def _reap(proc: subprocess.Popen | None) -> None:
    """The ssh that opened the master has normally exited by now (the master itself is
    detached and closed by close_masters); one still connecting is ended, by its PID."""
    if proc is None:
        return
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def envvars(control_dir: Path, home: Path, config: Path) -> dict[str, str]:
    venv_bin = str(Path(sys.executable).parent)
    return {
        "PATH": f"{venv_bin}:{os.environ.get('PATH', '/usr/bin:/bin')}:/usr/sbin:/sbin",
        "ANSIBLE_HOST_KEY_CHECKING": "True",
        "ANSIBLE_SSH_CONTROL_PATH_DIR": str(control_dir),
        "ANSIBLE_HOME": str(home),
        "ANSIBLE_LOCAL_TEMP": str(home / "tmp"),
        "ANSIBLE_CONFIG": str(config),  # never a stray ansible.cfg from the working directory
        "ANSIBLE_PIPELINING": "True",
        # an explicit ControlPath (ansible adds none of its own then): rig's master's
        "ANSIBLE_SSH_ARGS": shlex.join(["-o", "ControlMaster=auto", "-o", f"ControlPersist={PERSIST}",
                                        "-o", f"ControlPath={control_path(control_dir)}"]),
        # the inventory is rig's hosts.json: the one plugin that reads it, not six tried in turn
        "ANSIBLE_INVENTORY_ENABLED": "yaml",
        "ANSIBLE_INVENTORY_UNPARSED_FAILED": "True",
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "ANSIBLE_NOCOLOR": "True",
        "ANSIBLE_FORCE_COLOR": "False",
        "ANSIBLE_GATHERING": "explicit",
        "ANSIBLE_DEPRECATION_WARNINGS": "False",
        "ANSIBLE_TIMEOUT": str(CONNECT_TIMEOUT),
    }


def _master_pids(sock: Path) -> list[int]:
    """The ControlPersist master behind ``sock`` and its children (the ProxyCommand)."""
    res = subprocess.run(["ssh", "-o", f"ControlPath={sock}", "-O", "check", "rig-control"],
                         stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=10)
    m = re.search(r"pid=(\d+)", res.stderr + res.stdout)
    if not m:
        return []
    pid = int(m.group(1))
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    return [pid, *map(int, children)]


def _wait_gone(pids: list[int], timeout: float = 5.0) -> None:
    """Wait (on pidfds, no polling) until every process in ``pids`` has exited."""
    fds = []
    for pid in pids:
        try:
            fds.append(os.pidfd_open(pid))
        except OSError:  # already gone
            continue
    try:
        poller = select.poll()
        for fd in fds:
            poller.register(fd, select.POLLIN)
        deadline = time.monotonic() + timeout
        left = set(fds)
        while left and time.monotonic() < deadline:
            for fd, _ in poller.poll(max(1, int((deadline - time.monotonic()) * 1000))):
                left.discard(fd)
                poller.unregister(fd)
    finally:
        for fd in fds:
            os.close(fd)


def close_masters(control_dir: Path) -> None:
    """Make every ControlPersist master in ``control_dir`` exit, wait until it and its
    ProxyCommand are gone (so no namespace stays busy), then remove the dir."""
    if control_dir.is_dir():
        for sock in control_dir.iterdir():
            pids = _master_pids(sock)
            subprocess.run(["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "rig-control"],
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=10)
            _wait_gone(pids)
    shutil.rmtree(control_dir, ignore_errors=True)


# ssh binds its ControlPersist socket at DIR/<name> plus a 17-byte temporary suffix, and
# a unix socket path must stay under 108 bytes; rig's name is "m" (control_path), room
# is kept for ssh's own 40-hex %C
_CONTROL_DIR_MAX = 107 - 1 - 40 - 17


def _control_dir(base: Path) -> Path:
    """The ControlPath directory: inside ``base`` (the run's workdir, so a killed run's
    sockets go with it) when its path is short enough for a socket, else under /tmp."""
    if len(str(base)) + len("/cp-12345678") <= _CONTROL_DIR_MAX:  # mkdtemp's 8 random characters
        return Path(tempfile.mkdtemp(prefix="cp-", dir=base))
    return Path(tempfile.mkdtemp(prefix="rigcp-", dir="/tmp"))


def _failure(events: list[Mapping[str, Any]]) -> str:
    for ev in events:
        if ev.get("event") in ("runner_on_failed", "runner_on_unreachable"):
            data = ev.get("event_data", {})
            res = data.get("res", {}) or {}
            msg = str(res.get("msg") or "")
            stderr = [line for line in str(res.get("stderr") or res.get("module_stderr") or "").splitlines() if line.strip()]
            if stderr:
                msg = f"{msg}: {stderr[-1]}" if msg else stderr[-1]
            msg = " ".join(msg.split())[:240]
            return f"task {data.get('task', '?')!r}: {msg}"
    return ""


def _say_waits(ev: Mapping[str, Any], said: set[str]) -> None:
    """Progress when a task starts retrying (``until:``, e.g. the wait for the dpkg lock a
    fresh VM's unattended-upgrades holds): the user sees what rig waits for, once per task,
    not a silent pause. Tasks that need no retry say nothing."""
    if ev.get("event") == "runner_retry":
        task = str((ev.get("event_data") or {}).get("task") or "")
        if task and task not in said:
            said.add(task)
            print(f"configure: {task[0].lower()}{task[1:]}", file=sys.stderr, flush=True)


def configure(rig: Rig, log_path: Path | None = None, timeout: int = 1500,
              cancel: Callable[[], bool] | None = None) -> ConfigureResult:
    """Run playbooks/server.yml against the rig. InfraError (exit 3) if it fails.

    ``cancel`` is polled while the playbook runs; when it says True the playbook is
    killed and the result's status is "canceled" (no exception: the caller decides).
    Without it ansible-runner would install its own SIGINT/SIGTERM handlers for good
    and swallow the signals meant for rig."""
    return start(rig, log_path, timeout, cancel).result()


@dataclass(frozen=True)
class Applied:
    """The play has ended on every host without a failure (ansible's closing stats):
    what it set up is in place, while ansible-playbook may still be exiting."""

    changed: int  # tasks that changed something


def _played_well(stats: Mapping[str, Any] | None) -> bool:
    """Whether ansible's closing stats (``playbook_on_stats``) say the play ran on a host
    and failed nowhere: no failed task, no unreachable host."""
    if not stats:
        return False
    data = stats.get("event_data") or {}
    return bool(data.get("processed")) and not data.get("failures") and not data.get("dark")


def _changed(events: list[Mapping[str, Any]]) -> int:
    return sum(1 for ev in events if ev.get("event") == "runner_on_ok"
               and (ev.get("event_data", {}).get("res") or {}).get("changed"))


class Configuring:
    """The playbook, running on a thread (``start``).

    ``applied()`` returns as soon as ansible's closing stats say the play ended without a
    failure: what the playbook sets up is in place then, and what is left is
    ansible-playbook's own exit and ansible-runner's wrap-up (about 0.3 s: interpreter
    shutdown, pexpect's pause after closing the pty), which the stages after configure
    need not wait for. ``result()`` waits for the whole run (the log written, the
    ControlPersist masters closed) and raises InfraError if it failed; a run whose play
    failed raises from ``applied()`` already."""

    def __init__(self, rig: Rig, log_path: Path | None, timeout: int, cancel: Callable[[], bool]) -> None:
        try:
            import ansible_runner
        except ImportError as exc:
            raise MissingToolError("ansible-runner is not installed (pip install ansible-runner ansible-core)") from exc
        if shutil.which("ansible-playbook", path=str(Path(sys.executable).parent)) is None \
                and shutil.which("ansible-playbook") is None:
            raise MissingToolError("ansible-playbook is not installed (pip install ansible-core)")
        self._runner = ansible_runner
        self.rig = rig
        self.log_path = log_path
        self.timeout = timeout
        self.cancel = cancel
        self.events: list[Mapping[str, Any]] = []
        self._said: set[str] = set()
        self._stats: Mapping[str, Any] | None = None
        self._played = threading.Event()  # the closing stats came, or the run ended without them
        self.t0 = time.monotonic()
        self.played_at: float | None = None  # time.monotonic() then
        self._run = Background(self._body, name="configure")

    def _on_event(self, ev: Mapping[str, Any]) -> bool:
        self.events.append(ev)
        _say_waits(ev, self._said)
        if ev.get("event") == "playbook_on_stats":
            self._stats = ev
            self.played_at = time.monotonic()
            self._played.set()
        return True  # keep the event (ansible-runner writes it to the artifacts)

    def _body(self) -> ConfigureResult:
        try:
            return self._play()
        finally:
            if self.played_at is None:
                self.played_at = time.monotonic()
            self._played.set()

    def _play(self) -> ConfigureResult:
        rig = self.rig
        # everything this call writes lives under the run's workdir (the lab's is known to
        # `rig clean` by the run's prefix); without one, a scratch dir removed at the end
        scratch = not rig.workdir
        base = Path(tempfile.mkdtemp(prefix="rig-configure-")) if scratch else Path(rig.workdir)
        base.mkdir(parents=True, exist_ok=True)
        # a fresh private dir per call: ansible-runner keeps env/ files between runs
        private = Path(tempfile.mkdtemp(prefix="ansible-", dir=base))
        known_hosts = private / "known_hosts"
        cfg = private / "ansible.cfg"
        cfg.write_text("[defaults]\n")
        key_type, key_b64 = rig.ssh.host_key.split()[:2]
        known_hosts.write_text(f"{known_hosts_name(rig.ssh.host, rig.ssh.port)} {key_type} {key_b64}\n")
        control_dir = _control_dir(base)
        master = None
        try:
            master = open_master(master_argv(rig, known_hosts, control_path(control_dir)))
            runner = self._runner.run(
                private_data_dir=str(private),
                project_dir=str(playbooks_dir()),
                playbook=PLAYBOOK,
                inventory=inventory(rig, known_hosts),
                extravars=playbook_vars(rig),
                envvars=envvars(control_dir, private / "home", cfg),
                quiet=True,
                timeout=self.timeout,
                rotate_artifacts=1,
                event_handler=self._on_event,
                # no install: the include is not even a skipped task (one worker, its events)
                skip_tags=None if rig.install_packages else INSTALL_TAG,
                cancel_callback=self.cancel,
                # ansible-runner asks cancel() each time pexpect's wait times out (5 s by
                # default): a short one stops the playbook (its process group, by PID)
                # within CANCEL_POLL of a signal
                settings={"pexpect_timeout": CANCEL_POLL},
            )
            log = runner.stdout.read() if runner.stdout else ""
        finally:
            _reap(master)
            close_masters(control_dir)
            if scratch:
                shutil.rmtree(base, ignore_errors=True)
        seconds = time.monotonic() - self.t0
        if self.log_path is not None:
            self.log_path.write_text(log)
        result = ConfigureResult(runner.status, int(runner.rc or 0), seconds, log, _changed(self.events))
        if runner.status == "canceled" and self.cancel():
            return result
        if runner.status != "successful":
            why = _failure(self.events) or (log.strip().splitlines() or ["no output"])[-1]
            raise InfraError(f"configure ({PLAYBOOK}) {runner.status}: {why}")
        return result

    def applied(self) -> Applied | ConfigureResult:
        """Once the play has ended: ``Applied`` if it ended well, else the whole run's
        result (InfraError if it failed; a canceled run's result)."""
        self._played.wait()
        if _played_well(self._stats):
            return Applied(_changed(self.events))
        return self.result()

    def result(self) -> ConfigureResult:
        """The whole run, once ansible-runner has returned. InfraError if it failed."""
        return self._run.result()

    def wait(self) -> None:
        """Until the run has ended, whatever its result (clean-up paths)."""
        self._run.wait()


def start(rig: Rig, log_path: Path | None = None, timeout: int = 1500,
          cancel: Callable[[], bool] | None = None) -> Configuring:
    """Start playbooks/server.yml against the rig, on a thread (``Configuring``).

    ``cancel`` is polled while the playbook runs; when it says True the playbook is
    killed and the result's status is "canceled". Given one, ansible-runner installs no
    signal handler of its own (it would, for good, and swallow the signals meant for rig)."""
    return Configuring(rig, log_path, timeout, cancel or (lambda: False))
