"""The C heap under the analysis: one malloc arena for the threads it starts.

glibc gives each thread that allocates its own malloc arena, and memory freed in one
arena is reused only through that arena. The analysis builds its big numpy arrays on
threads (the two points at once, then TCP beside UDP), so what one thread freed sat idle
while the next one grew another arena. With one arena every freed block is there for
the next allocation, whichever thread makes it.

Measured on the 1M-packet bench pair (analysis peak RSS above the two packet tables,
best-of-5 analysis time, same run, 4 rounds each):
  default                                      +123..132 MB   0.77-0.92 s
  one arena                                    +75..87 MB     0.77-0.90 s
  one arena + malloc_trim(0) after grouping    +73..74 MB     0.77-0.85 s
  one arena + malloc_trim(0) after grouping
    and after the protocol steps               +72..78 MB     0.80-0.95 s
  M_MMAP_THRESHOLD 64-256 KB (no arena limit)  +130 MB        +50% time (a page fault per new page)
The trims saved 1-3 MB at the peak and are not done; the mmap threshold cost time.
"""

from __future__ import annotations

import ctypes
import platform
from functools import cache

_M_ARENA_MAX = -8  # mallopt parameter (malloc.h)


@cache
def _glibc():
    if platform.libc_ver()[0] != "glibc":
        return None
    try:
        lib = ctypes.CDLL(None)
        return lib if hasattr(lib, "mallopt") else None
    except OSError:
        return None


def one_arena() -> bool:
    """Ask glibc to give threads that need an arena from now on an existing one (the main
    arena, if no thread made another before). False where the C library is not glibc.
    Process-wide and harmless elsewhere: rig's other threads mostly wait on I/O and
    allocate under the GIL anyway."""
    lib = _glibc()
    return bool(lib is not None and lib.mallopt(_M_ARENA_MAX, 1))
