"""Compressed captures (``.pcap.gz``, ``.pcapng.zst``, ...): told by their magic, read
by streaming them into an unlinked temporary file that the reader maps like any capture.

The record walk needs the capture's bytes at random offsets (``container``), so the
stream is decompressed once, a megabyte at a time, into a temporary file: neither the
compressed nor the whole decompressed file is ever held in the process's memory (the
pages are the file's, in the page cache; the walk releases them as it goes, as for a
plain file). gzip comes with Python; zstd needs the ``zstandard`` package (the extra
``rig[zstd]``), and without it such a file is refused in one line that says so. A stream
that ends early or is corrupt keeps what it decompressed up to there: the reader reads
those records and reports the rest as a truncated tail.
"""

from __future__ import annotations

import os
import tempfile
import zlib

from rig.errors import InputError

GZIP, ZSTD = "gzip", "zstd"
MAGIC = {b"\x1f\x8b": GZIP, b"\x28\xb5\x2f\xfd": ZSTD}
SUFFIXES = {".gz": GZIP, ".zst": ZSTD, ".zstd": ZSTD}
CAPTURE_SUFFIXES = (".pcap", ".pcapng")
STEP = 1 << 20  # bytes of output written at a time (gzip)
STEP_IN = 1 << 16  # bytes of input read at a time


def kind(head: bytes) -> str | None:
    """The compression a file's first bytes say (None: not compressed)."""
    for magic, name in MAGIC.items():
        if head.startswith(magic):
            return name
    return None


def file_kind(path: str) -> str | None:
    """``kind`` of the file at ``path`` (None also when it cannot be read: the reader says why)."""
    try:
        with open(path, "rb") as f:
            return kind(f.read(4))
    except OSError:
        return None


def capture_point(filename: str) -> str | None:
    """The capture point a bundle's file is named for: 'client' for client.pcap,
    client.pcapng.gz, client.pcap.zst; None if the name is not a capture's."""
    name = filename
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    for suffix in CAPTURE_SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return None


def _inflater(how: str, path: str):
    """A new decompressor for one gzip member / zstd frame: ``decompress(data)``, ``eof``,
    ``unused_data``."""
    if how == GZIP:
        return zlib.decompressobj(wbits=31)  # 31: a gzip header and trailer (CRC, length) are checked
    try:
        import zstandard
    except ImportError as exc:
        raise InputError(f"{path}: a zstd-compressed capture, and the zstandard package is not installed "
                         "(pip install 'rig[zstd]', or decompress it with zstd -d)") from exc
    return zstandard.ZstdDecompressor().decompressobj()


def _errors() -> tuple[type[BaseException], ...]:
    errs: tuple[type[BaseException], ...] = (zlib.error,)
    try:
        import zstandard

        errs += (zstandard.ZstdError,)
    except ImportError:
        pass
    return errs


def decompress(f, how: str, path: str, spool: int | None = None) -> tuple[int, int, str]:
    """Stream the compressed file ``f`` into ``spool`` (a file descriptor; default: a new
    unlinked temporary file). Returns (the descriptor, bytes written, a note if the
    stream ended early or is corrupt, else ""). The caller owns the descriptor."""
    if spool is None:
        with tempfile.TemporaryFile() as tmp:  # unlinked: gone once the last mapping of it is
            fd = os.dup(tmp.fileno())
    else:
        fd = spool
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    total, note = 0, ""
    errors = _errors()

    def put(data: bytes) -> None:
        nonlocal total
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        total += len(data)

    try:
        d = _inflater(how, path)
        started = False  # the current member / frame has had input
        while chunk := f.read(STEP_IN):
            while chunk:
                started = True
                if how == GZIP:  # output bounded per call (a capture of zeros inflates a thousandfold)
                    put(d.decompress(chunk, STEP))
                    while d.unconsumed_tail and not d.eof:
                        put(d.decompress(d.unconsumed_tail, STEP))
                else:
                    put(d.decompress(chunk))
                chunk = b""
                if d.eof:  # the next member / frame, if any (files may be concatenations)
                    chunk = d.unused_data
                    d, started = _inflater(how, path), False
        if started and not d.eof:
            note = f"the {how} stream is cut short after {total} decompressed bytes"
    except errors as exc:
        note = f"the {how} stream is corrupt after {total} decompressed bytes ({exc})"
    except OSError as exc:
        if spool is None:
            os.close(fd)
        raise InputError(f"{path}: cannot decompress the capture ({exc.strerror or exc})") from exc
    return fd, total, note
