"""Read two capture files at once: the second in a forked child, the first meanwhile.

``rig diff`` reads a client and a server capture; parsing is one core's work per file
(the record walk is a Python loop), and this machine has two. The child decodes its file
with ``read_capture`` and writes the packet table into a memfd (anonymous shared
memory); the parent maps it without a copy and reopens the file for payloads. The rest
of the ``Capture`` (counts, interfaces and the small side table of ICMP errors,
``quoted``) comes back pickled over a pipe. Measured
with bench/diff.py (two 1M-packet files, 2 busy cores): both parsed in 0.9-1.3 s instead
of 1.7-2.0 s one after the other. (Copying the child's table into shared memory after
decoding cost most of the gain: the decoder fills the shared table in place.) Falls
back to reading one after the other where fork or memfd is missing, or a file is not a
regular file (a pipe can be read once only). A compressed second file is decompressed by
the child into an unlinked temporary file that the parent maps afterwards.
"""

from __future__ import annotations

import mmap
import os
import pickle
import stat
import struct
import tempfile
from dataclasses import replace

import numpy as np

from rig.capture import checks, compressed, container, read_capture
from rig.capture.table import Capture, table_dtype


def _regular(path: str) -> bool:
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def read_pair(first: str, second: str, stats: dict | None = None, *, lean: bool = False,
              distinct: bool = False) -> tuple[Capture, Capture]:
    """``(read_capture(first, lean=lean), read_capture(second, lean=lean))``, the two in
    parallel where possible. Errors are those of ``read_capture``, the first file's before
    the second's.
    ``stats``, if given, gets ``child_peak_private_mb``: the child's peak RSS less the
    shared table (0 when no child ran). ``distinct``: the two must be captures of two
    points (``checks.ensure_distinct``; the same file is refused before it is read)."""
    if stats is not None:
        stats["child_peak_private_mb"] = 0.0
    first, second = str(first), str(second)
    if distinct:
        checks.ensure_distinct_files(first, second)
        a, b = read_pair(first, second, stats, lean=lean)
        checks.ensure_distinct(a, b)
        return a, b
    if not (hasattr(os, "fork") and hasattr(os, "memfd_create") and _regular(first) and _regular(second)):
        return read_capture(first, lean=lean), read_capture(second, lean=lean)
    fd = os.memfd_create("rig-packets", os.MFD_CLOEXEC)
    # a compressed second file: the child decompresses it into this file, which the
    # parent then maps for payloads (instead of decompressing it a second time)
    spool = _spool() if compressed.file_kind(second) else None
    r, w = os.pipe()
    try:
        pid = os.fork()
    except OSError:
        for d in (fd, r, w):
            os.close(d)
        if spool is not None:
            os.close(spool)
        return read_capture(first, lean=lean), read_capture(second, lean=lean)
    if pid == 0:  # the child: never returns
        _child(second, fd, r, w, lean, spool)
    os.close(w)
    try:
        try:
            a = read_capture(first, lean=lean)
        except BaseException:
            _reap(pid, r, kill=True)
            raise
        return a, _collect(second, fd, pid, r, stats, lean, spool)
    finally:
        os.close(fd)
        if spool is not None:
            os.close(spool)


def _spool() -> int:
    with tempfile.TemporaryFile() as tmp:  # unlinked: gone with its last descriptor and mapping
        return os.dup(tmp.fileno())


def _mapped(spool: int):
    size = os.fstat(spool).st_size
    return mmap.mmap(spool, size, access=mmap.ACCESS_READ) if size else b""


def _child(path: str, fd: int, r: int, w: int, lean: bool, spool: int | None) -> None:
    code = 0
    msg: tuple[str, object, Capture | None]
    try:
        os.close(r)
        try:
            cap = read_capture(path, alloc=lambda n, dtype: _shared_table(fd, n, dtype), lean=lean, spool=spool)
            peak = _hwm_kb() / 1024 - cap.packets.nbytes / 2**20
            # everything but the shared table and the file's mapping (``quoted`` included)
            msg = ("ok", (len(cap.packets), peak), replace(cap, packets=np.empty(0, cap.packets.dtype), _data=None))
        except BaseException as exc:  # the parent raises it as read_capture would have
            msg = ("error", exc, None)
        data = pickle.dumps(msg)
        os.write(w, struct.pack("<Q", len(data)))
        view = memoryview(data)
        while view:
            view = view[os.write(w, view):]
    except BaseException:
        code = 1
    finally:
        os._exit(code)


def _hwm_kb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return float(line.split()[1])
    return 0.0


def _shared_table(fd: int, n: int, dtype: np.dtype) -> np.ndarray:
    """A zeroed table of ``n`` rows in the memfd (the decoder fills it in place: no copy)."""
    if n == 0:
        return np.zeros(0, dtype)
    os.ftruncate(fd, n * dtype.itemsize)
    return np.frombuffer(mmap.mmap(fd, n * dtype.itemsize), dtype, count=n)


def _read_all(r: int, n: int) -> bytes:
    parts, got = [], 0
    while got < n:
        b = os.read(r, min(n - got, 1 << 20))
        if not b:
            break
        parts.append(b)
        got += len(b)
    return b"".join(parts)


def _reap(pid: int, r: int, kill: bool = False) -> None:
    if kill:
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
    os.close(r)
    os.waitpid(pid, 0)


def _collect(path: str, fd: int, pid: int, r: int, stats: dict | None, lean: bool, spool: int | None) -> Capture:
    try:
        head = _read_all(r, 8)
        data = _read_all(r, struct.unpack("<Q", head)[0]) if len(head) == 8 else b""
    except BaseException:  # e.g. Ctrl-C while waiting: the child goes too
        _reap(pid, r, kill=True)
        raise
    _reap(pid, r)
    if not data:  # the child died without a word: read the file here
        return read_capture(path, lean=lean)
    kind, value, cap = pickle.loads(data)
    if kind == "error":
        raise value
    n, peak = value
    if stats is not None:
        stats["child_peak_private_mb"] = peak
    dtype = table_dtype(lean)
    if n:
        mm = mmap.mmap(fd, n * dtype.itemsize)  # shared with the child's writes
        table = np.frombuffer(mm, dtype, count=n)
    else:
        table = np.zeros(0, dtype)
    return replace(cap, packets=table, _data=_mapped(spool) if spool is not None else container.open_capture(path))


FOCUS_RATIO = 8  # the server's file is this many times the client's at least ...
FOCUS_MIN_BYTES = 32 << 20  # ... and this large: then it is read focused (``focus``)


def read_for_diff(first: str, second: str) -> tuple[Capture, Capture]:
    """The two captures of ``rig diff``, lean, checked distinct (``read_pair``). When the
    second (the server's) is much larger than the first (a small client capture against
    a busy server's), the first is read first and the second keeping only the rows the
    first makes relevant (``focus.read_focused``): time and memory follow the question,
    not the unrelated traffic. Otherwise both at once (``read_pair``). A large *first*
    file is read whole: the client's capture decides what is asked (its exchanges lost on
    the way out have nothing in the other capture to be found by), so it is never cut."""
    first, second = str(first), str(second)
    checks.ensure_distinct_files(first, second)
    sizes = [os.stat(p).st_size if _regular(p) else 0 for p in (first, second)]
    if sizes[1] < max(FOCUS_MIN_BYTES, FOCUS_RATIO * sizes[0]) or compressed.file_kind(first) \
            or compressed.file_kind(second):
        return read_pair(first, second, lean=True, distinct=True)
    from rig.capture import focus

    small = read_capture(first, lean=True)
    large = focus.read_focused(second, focus.focus_of(small))
    if large is None:
        large = read_capture(second, lean=True)
    checks.ensure_distinct(small, large)
    return small, large
