"""tcpdump at a capture point: local (optionally inside a namespace) or remote over SSH.

Both kinds run ``tcpdump -i IFACE -U --immediate-mode -n -s 65535 -B 32768 -w FILE FILTER``
(without --immediate-mode the last second of packets is lost at stop; in immediate
mode libpcap's ring holds fixed snaplen-sized slots, so the default 256 KB snaplen with
-B 8192 leaves ~32 slots, and a 512 KB burst on a loaded machine overflowed it: 64 KB
slots fit a GRO frame and 32 MB holds 512 of them), are ready only
once tcpdump prints "listening on" on stderr, stop with SIGINT so the file is flushed
(after SIGUSR1/SIGINFO statistics show every received packet was written), and report
tcpdump's own "packets captured" / "packets dropped by kernel" counts.
A remote tcpdump is started as ``echo PID $$; exec tcpdump ...`` on a channel without a
pty (it would survive the channel closing), stopped with ``kill -INT PID`` on a second
channel, and its file fetched with SFTP. It writes into a fresh ``rig-cap.<hex>``
directory under ``remote_tmp`` (the Rig's ``remote_tmp`` fact, else /tmp): the lab
puts it in the run's workdir (its "server" is a namespace that shares this machine's
/tmp), so ``rig clean`` removes it after a killed run. On a real host the directory is
removed by the fetch, or by ``abort()`` on every other way out of the run; if rig is
killed (SIGKILL) it stays there, and ``rig clean`` cannot reach it.
"""

from __future__ import annotations

import functools
import re
import secrets
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterable, Sequence

from rig.concurrency import run_all, start
from rig.errors import InfraError, MissingToolError

if TYPE_CHECKING:
    import paramiko

READY_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0

_STAT = re.compile(r"(\d+) packets? (captured|received by filter|dropped by kernel)")


@dataclass(frozen=True)
class CaptureResult:
    """What one capture point left behind."""

    point: str
    file: str  # local path of the pcap
    packets: int | None  # tcpdump's "packets captured" (None: tcpdump did not say)
    kernel_drops: int | None  # tcpdump's "packets dropped by kernel"
    stderr: str  # tcpdump's own words, for logs/
    # when tcpdump said "listening on" and when rig asked it to stop: ns since the epoch
    # on this machine's clock (the client capture's); everything in between was captured
    listening_ns: int | None = None
    stop_ns: int | None = None


def tcpdump_argv(iface: str, path: str, bpf: str) -> list[str]:
    argv = ["tcpdump", "-i", iface, "-U", "--immediate-mode", "-n", "-s", "65535", "-B", "32768", "-w", path]
    return argv + ([bpf] if bpf else [])


def parse_stats(stderr: str) -> dict[str, int]:
    """tcpdump's latest statistics: {"captured": n, "received by filter": n, "dropped by kernel": n}."""
    return {m.group(2): int(m.group(1)) for m in _STAT.finditer(stderr)}


def unwritten(stats: dict[str, int]) -> int:
    """Packets the kernel gave tcpdump that it has not written (yet): captured + dropped
    lags received while tcpdump still has packets in its ring buffer."""
    return max(0, stats.get("received by filter", 0) - stats.get("captured", 0) - stats.get("dropped by kernel", 0))


def drain(watch: "_StderrWatch", ask: Callable[[], None], timeout: float) -> bool:
    """Before SIGINT: ask tcpdump for its statistics (SIGUSR1 / SIGINFO) until it has
    written every packet it received. SIGINT stops its loop at once, and packets still
    in the ring buffer are lost (seen on a loaded machine: "0 captured, 28 received").
    True when drained; False if tcpdump did not catch up in time (counted as drops)."""
    deadline = time.monotonic() + timeout
    pause = 0.005
    last = None
    while True:
        seen = watch.stats_seen
        ask()
        if not watch.wait_stats(seen, max(0.0, deadline - time.monotonic())):
            return False
        if watch.done.is_set():
            return False
        stats = parse_stats(watch.all)
        # on lo (and "any") the kernel also counts our own outgoing copies, which
        # libpcap discards: there "received" never matches, so a count that stopped
        # moving between two answers means drained too
        if unwritten(stats) == 0 or stats.get("captured") == last:
            return True
        last = stats.get("captured")
        if time.monotonic() + pause > deadline:
            return False
        watch.done.wait(pause)  # give tcpdump's loop a moment to read its ring
        pause = min(pause * 2, 0.1)


class _StderrWatch:
    """Collects a stream's lines on a thread; signals "listening on" or the end."""

    def __init__(self, lines: Iterable[str]):
        self.text: list[str] = []
        self.ready = threading.Event()
        self.done = threading.Event()
        self.stats_seen = 0  # statistics blocks printed so far (SIGUSR1/SIGINFO, exit)
        self.listening_ns: int | None = None  # when "listening on" was read (this machine's clock)
        self.cond = threading.Condition()
        self._thread = threading.Thread(target=self._pump, args=(lines,), daemon=True)
        start(self._thread)

    def _pump(self, lines: Iterable[str]) -> None:
        try:
            for line in lines:
                self.text.append(line)
                if "listening on" in line:
                    if self.listening_ns is None:
                        self.listening_ns = time.time_ns()
                    self.ready.set()
                if "dropped by kernel" in line:  # the last line of a statistics block
                    with self.cond:
                        self.stats_seen += 1
                        self.cond.notify_all()
        finally:
            self.done.set()
            self.ready.set()  # wake the waiter; it checks which it was
            with self.cond:
                self.cond.notify_all()

    def wait_stats(self, after: int, timeout: float) -> bool:
        """Wait until more than ``after`` statistics blocks were printed."""
        with self.cond:
            return self.cond.wait_for(lambda: self.stats_seen > after or self.done.is_set(), timeout)

    def wait_ready(self, timeout: float) -> bool:
        """True once tcpdump is listening; False if it ended or did not say so in time."""
        self.ready.wait(timeout)
        return any("listening on" in line for line in self.text)

    def wait_done(self, timeout: float) -> None:
        self._thread.join(timeout)

    @property
    def all(self) -> str:
        return "".join(self.text)


def _last_line(text: str) -> str:
    """The line that says what went wrong: tcpdump's own "tcpdump: ..." error if any."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("tcpdump:") and "listening on" not in line]
    return (errors or lines or ["no output"])[-1]


def _result(point: str, path: str, stderr: str, drained: bool = True, listening_ns: int | None = None,
            stop_ns: int | None = None) -> CaptureResult:
    """The final statistics. If tcpdump could not be drained before SIGINT, packets it
    received but never wrote count as kernel drops (lost at this capture point)."""
    stats = parse_stats(stderr)
    drops = stats.get("dropped by kernel")
    if drops is not None and not drained:
        drops += unwritten(stats)
    return CaptureResult(point, path, stats.get("captured"), drops, stderr, listening_ns, stop_ns)


class LocalCapture:
    """tcpdump on this machine, inside ``netns`` when given."""

    def __init__(self, point: str, iface: str, path: str, bpf: str = "", netns: str | None = None):
        self.point, self.iface, self.path, self.bpf, self.netns = point, iface, path, bpf, netns
        self.proc: subprocess.Popen[str] | None = None
        self._watch: _StderrWatch | None = None
        self.result: CaptureResult | None = None
        self.drained = True

    def start(self, ready_timeout: float = READY_TIMEOUT) -> None:
        argv = tcpdump_argv(self.iface, self.path, self.bpf)
        if self.netns:
            argv = ["ip", "netns", "exec", self.netns, *argv]
        try:
            # own session: a Ctrl-C at the terminal must not stop it before we flush it
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.PIPE, text=True, start_new_session=True)
        except FileNotFoundError as exc:
            raise MissingToolError(f"{exc.filename} is not installed (apt install tcpdump iproute2)") from exc
        self._watch = _StderrWatch(self.proc.stderr)  # type: ignore[arg-type]
        if not self._watch.wait_ready(ready_timeout):
            self.abort()
            raise InfraError(f"capture at {self.point} did not start: {_last_line(self._watch.all)}")

    def stop(self, timeout: float = STOP_TIMEOUT) -> CaptureResult:
        """SIGINT, wait for tcpdump to flush and exit, read its counters."""
        if self.result is not None:
            return self.result
        assert self.proc is not None and self._watch is not None, "stop() before start()"
        proc = self.proc
        stop_ns = time.time_ns()
        if self.proc.poll() is None:
            self.drained = drain(self._watch, lambda: proc.send_signal(signal.SIGUSR1), timeout / 2)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.abort()
            raise InfraError(f"capture at {self.point} did not stop within {timeout:g}s") from None
        self._watch.wait_done(timeout)
        self.result = _result(self.point, self.path, self._watch.all, self.drained, self._watch.listening_ns, stop_ns)
        if self.result.packets is None:
            raise InfraError(f"capture at {self.point} ended badly: {_last_line(self._watch.all)}")
        return self.result

    def abort(self) -> None:
        """Make sure the process is gone (error and teardown paths)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class RemoteCapture:
    """tcpdump on the server over an ``rig.sshclient.SSHClient``; the pcap is fetched to ``path``."""

    def __init__(self, point: str, iface: str, path: str, ssh, bpf: str = "", os_family: str = "debian",
                 remote_tmp: str = "/tmp"):
        self.point, self.iface, self.path, self.ssh, self.bpf = point, iface, path, ssh, bpf
        self.remote_tmp = remote_tmp  # where the capture's directory is made on the server
        # tcpdump prints its statistics on SIGINFO where it exists (BSD), else SIGUSR1
        self.info_signal = "INFO" if os_family == "freebsd" else "USR1"
        self.remote_dir: str | None = None
        self.pid: int | None = None
        self._chan: paramiko.Channel | None = None
        self._signals: paramiko.Channel | None = None
        self._watch: _StderrWatch | None = None
        self.result: CaptureResult | None = None
        self.drained = True

    @property
    def remote_path(self) -> str:
        return f"{self.remote_dir}/{self.point}.pcap"

    def start(self, ready_timeout: float = READY_TIMEOUT) -> None:
        # a fresh directory of the login user, made by the same command that starts
        # tcpdump (one round trip): tcpdump (root) opens the file before it drops
        # privileges, and the login user can fetch and remove it afterwards
        self.remote_dir = f"{self.remote_tmp}/rig-cap.{secrets.token_hex(6)}"
        tcpdump = self.ssh.privileged(tcpdump_argv(self.iface, self.remote_path, self.bpf))
        script = 'mkdir -m 0700 "$0" || exit 1; echo "PID $$"; exec "$@"'
        self._chan, first = self.ssh.open_announced(["sh", "-c", script, self.remote_dir, *tcpdump], ready_timeout)
        chan = self._chan
        m = re.match(rb"PID (\d+)", first)
        self._watch = _StderrWatch(_lines(chan.recv_stderr, chan))
        if m is None:
            self._watch.wait_done(ready_timeout)
            raise InfraError(f"remote capture at {self.point} did not start: {_last_line(self._watch.all)}")
        self.pid = int(m.group(1))
        # a second channel that delivers signals to tcpdump: each stop request is then a
        # line on an open channel, not a new remote command (~100 ms each over SSH)
        self._signals = self.ssh.open_channel(self.ssh.privileged(["sh", "-c", _SIGNALLER, str(self.pid)]))
        if not self._watch.wait_ready(ready_timeout):
            self.abort()
            raise InfraError(f"remote capture at {self.point} did not start: {_last_line(self._watch.all)}")

    def stop(self, timeout: float = STOP_TIMEOUT) -> CaptureResult:
        if self.result is not None:
            return self.result
        assert self._chan is not None and self._watch is not None, "stop() before start()"
        stop_ns = time.time_ns()
        if not self._chan.exit_status_ready():
            self.drained = drain(self._watch, lambda: self._signal(self.info_signal), timeout / 2)
        if not self._chan.exit_status_ready():
            self._signal("INT")
        if not self._chan.status_event.wait(timeout):
            self.abort()
            raise InfraError(f"remote capture at {self.point} did not stop within {timeout:g}s")
        self._watch.wait_done(timeout)
        stderr = self._watch.all
        self._chan.close()
        self._close_signals()
        if not parse_stats(stderr):
            raise InfraError(f"remote capture at {self.point} ended badly: {_last_line(stderr)}")
        self.ssh.fetch(self.remote_path, self.path, remove=True)  # and its directory
        self.result = _result(self.point, self.path, stderr, self.drained, self._watch.listening_ns, stop_ns)
        return self.result

    def _signal(self, name: str) -> None:
        assert self._signals is not None, "signal before start()"
        self._signals.sendall(f"{name}\n".encode())

    def _close_signals(self) -> None:
        if self._signals is not None:
            self._signals.shutdown_write()  # its loop ends
            self._signals.close()
            self._signals = None

    def abort(self) -> None:
        """Best effort: stop the remote tcpdump (the lab's teardown also kills it by PID)."""
        try:
            if self._chan is not None and not self._chan.exit_status_ready() and self.pid:
                self.ssh.run(self.ssh.privileged(["kill", "-KILL", str(self.pid)]), check=False, timeout=5)
            if self.remote_dir:
                self.ssh.run(["rm", "-rf", self.remote_dir], check=False, timeout=5)
        except (InfraError, OSError):
            pass
        finally:
            if self._chan is not None:
                self._chan.close()
            try:
                self._close_signals()
            except OSError:
                pass


# runs as root on the server with tcpdump's PID as $0; reads signal names, one a line
_SIGNALLER = 'while read s; do case "$s" in USR1|INFO|INT|KILL) kill -"$s" "$0";; esac; done'


def _lines(recv: Callable[[int], bytes], chan) -> Iterable[str]:
    """A channel's stderr as text lines, until EOF or the channel closes."""
    chan.settimeout(None)
    buf = b""
    while True:
        try:
            data = recv(4096)
        except OSError:
            data = b""
        if not data:
            if buf:
                yield buf.decode(errors="replace")
            return
        buf += data
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            yield line.decode(errors="replace") + "\n"


def start_all(captures: Sequence[LocalCapture | RemoteCapture], ready_timeout: float = READY_TIMEOUT) -> None:
    """Start every capture concurrently; return once all listen. On failure, abort all."""
    try:
        run_all([functools.partial(c.start, ready_timeout) for c in captures])
    except BaseException:
        for c in captures:
            c.abort()
        raise


def stop_all(captures: Sequence[LocalCapture | RemoteCapture], timeout: float = STOP_TIMEOUT) -> list[CaptureResult]:
    """Stop every capture concurrently (each flushes); results in the captures' order."""
    return run_all([functools.partial(c.stop, timeout) for c in captures])


def ssh_exclusion(port: int) -> str:
    """The BPF that keeps rig's own SSH control connection out of the captures."""
    return f"not tcp port {int(port)}"


__all__ = ["CaptureResult", "LocalCapture", "RemoteCapture", "start_all", "stop_all",
           "parse_stats", "tcpdump_argv", "ssh_exclusion"]
