"""The cyclic garbage collector paused while a large run makes many acyclic objects.

An analysis, a verdict's JSON and its table make a few objects per exchange (records,
their dicts and tuples) and no reference cycles: reference counting frees them all, and
each pass of the cyclic collector only rescans what is alive. Measured at 200k
exchanges: half the analysis' time; on the 1M-packet bench pair (``bench/diff.py``,
220k exchanges), ~1 s of ``rig diff --json``'s writing and of the table's.
"""

from __future__ import annotations

import gc
from contextlib import contextmanager
from typing import Iterator


@contextmanager
def gc_paused() -> Iterator[None]:
    """The collector off inside the block, and back as it was after it."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()
