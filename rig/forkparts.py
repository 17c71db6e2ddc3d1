"""Write a text made of consecutive parts, the later parts made by forked children.

A large verdict's JSON text is ~200k exchange records built and encoded in Python: one
core's work for seconds (1M-packet bench pair: 2.7 s of ``rig diff --json``'s 4.5 s),
while this machine has two cores and the records are independent. The parent forks one
child per later part before it starts on the first; each child writes its part's text
into its own memfd (anonymous memory) and exits; the parent writes the first part to
``out``, then each child's text in order (``sendfile``, no copy through Python). The
text is the same characters as the parts made one after the other: a part whose child
failed or could not be started is made by the parent itself, in its place. Where fork
or memfd is missing, ``out`` has no file descriptor, or there is one core, everything
is made here. Fork is taken after the work that made the data (the analysis) has
ended and its threads are joined: a child runs Python code only, on what it inherited.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Sequence, TextIO

Part = Callable[[], Iterable[str]]  # a part's text, a piece at a time (ASCII: see ``write_parts``)

MAX_PARTS = 4  # at most this many processes at once, whatever the number of cores
STUCK_MIN_S, STUCK_FACTOR = 10.0, 4.0  # a child not done after max(this, that x the first part's time) is stuck


def cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _fd(out: TextIO) -> int | None:
    try:
        return out.fileno()
    except (AttributeError, OSError, ValueError):  # io.StringIO, a wrapper without one
        return None


def usable(out: TextIO) -> bool:
    """Whether ``write_parts`` can hand parts to children for ``out``."""
    return hasattr(os, "fork") and hasattr(os, "memfd_create") and cores() > 1 and _fd(out) is not None


def write_parts(out: TextIO, parts: Sequence[Part]) -> None:
    """Write each part's pieces to ``out``, in order. Parts after the first are made by
    forked children where ``usable(out)``. A part's pieces must be ASCII (they are
    copied as bytes); JSON as ``rig.jsontext`` writes it is."""
    if len(parts) < 2 or not usable(out):
        for part in parts:
            for piece in part():
                out.write(piece)
        return
    out.flush()  # nothing of ours left in the buffer a child inherits
    children: list[_Child | None] = []
    try:
        for part in parts[1:]:
            children.append(_start(part))
        began = time.monotonic()
        for piece in parts[0]():
            out.write(piece)
        # a child has as long as the first part took, several times over: one that has not
        # finished by then is stuck (a lock another thread held when it was forked) and
        # its part is made here
        deadline = time.monotonic() + max(STUCK_MIN_S, STUCK_FACTOR * (time.monotonic() - began))
        fd = _fd(out)
        for part, child in zip(parts[1:], children):
            if child is not None and child.finished(deadline):
                out.flush()
                _copy(child.fd, fd)  # type: ignore[arg-type]
            else:  # the child failed: its part made here
                for piece in part():
                    out.write(piece)
    finally:
        for child in children:
            if child is not None:
                child.end()


@dataclass
class _Child:
    """A forked child making one part into its memfd."""

    pid: int
    fd: int
    reaped: bool = False

    def finished(self, deadline: float) -> bool:
        """Wait for it until ``deadline`` (``time.monotonic``); whether it made its whole
        part by then (if not, it is left to ``end``)."""
        pause = 0.001
        while True:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.reaped = True
                return os.waitstatus_to_exitcode(status) == 0
            if time.monotonic() >= deadline:
                return False
            time.sleep(pause)
            pause = min(pause * 2, 0.02)

    def end(self) -> None:
        """Ended (killed if still running) and reaped, its memfd closed."""
        if not self.reaped:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.waitpid(self.pid, 0)
            self.reaped = True
        os.close(self.fd)


def _start(part: Part) -> _Child | None:
    """A child making ``part``; None if it could not be started."""
    try:
        fd = os.memfd_create("rig-part", os.MFD_CLOEXEC)
    except OSError:
        return None
    try:
        pid = os.fork()
    except OSError:
        os.close(fd)
        return None
    if pid == 0:  # the child: never returns
        _child(part, fd)
    return _Child(pid, fd)


def _child(part: Part, fd: int) -> None:
    code = 1
    try:
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # Ctrl-C ends it at once; the parent says why
        buf: list[bytes] = []
        size = 0
        for piece in part():
            buf.append(piece.encode("ascii"))
            size += len(buf[-1])
            if size >= 1 << 20:
                _write_all(fd, b"".join(buf))
                buf, size = [], 0
        _write_all(fd, b"".join(buf))
        code = 0
    except BaseException:  # the parent makes the part itself
        code = 1
    finally:
        os._exit(code)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _copy(src: int, dst: int) -> None:
    size = os.fstat(src).st_size
    off = 0
    while off < size:
        try:
            n = os.sendfile(dst, src, off, size - off)
        except OSError as exc:  # an out that sendfile cannot write to: through a buffer
            if exc.errno not in (22, 38, 95):  # EINVAL, ENOSYS, EOPNOTSUPP
                raise
            _copy_slowly(src, dst, off, size)
            return
        if n == 0:
            break
        off += n


def _copy_slowly(src: int, dst: int, off: int, size: int) -> None:
    while off < size:
        data = os.pread(src, min(size - off, 1 << 20), off)
        if not data:
            break
        _write_all(dst, data)
        off += len(data)


def split(n: int, k: int) -> Iterator[tuple[int, int]]:
    """``k`` consecutive ranges covering ``range(n)``, as equal as can be."""
    for i in range(k):
        yield n * i // k, n * (i + 1) // k
