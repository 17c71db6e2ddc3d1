"""What a person waiting for a long `rig diff` sees: the stage it is in, on stderr.

Nothing is shown for a command that ends within ``DELAY_S`` (most do), nothing ever
goes to stdout (``--json`` stays one clean object for the program reading it), and
nothing is shown when stderr is not a terminal unless asked (``--progress``): then one
plain line per stage instead of a spinner. The spinner is a rich Live line (stdout not
redirected), stopped before the command writes its result to a terminal it shares with
stderr.

    with stages(force=args.progress) as stage:
        stage("reading the captures")
        ...
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TextIO

DELAY_S = 2.0  # shown only for a command still running after this long


class _Elapsed:
    def __init__(self, shown: _Shown):
        self.shown = shown

    def __rich__(self) -> str:
        return self.shown._text()


class _Shown:
    def __init__(self, stream: TextIO, tty: bool, delay: float):
        self.stream, self.tty, self.delay = stream, tty, delay
        self.t0 = time.monotonic()
        self.name = ""
        self.live: Any = None  # rich's Live showing ``spinner``, once shown on a terminal
        self.spinner: Any = None
        self.shown = False
        self.done = False
        self.lock = threading.Lock()

    def _text(self) -> str:
        return f"rig: {self.name} ({time.monotonic() - self.t0:.0f} s)"

    def show(self) -> None:
        with self.lock:
            if self.done or self.shown:
                return
            self.shown = True
            self._render()

    def _render(self) -> None:
        if not self.name:
            return
        if not self.tty:
            print(f"rig: {self.name}", file=self.stream, flush=True)
        elif self.live is None:
            from rich.console import Console
            from rich.live import Live
            from rich.spinner import Spinner

            self.spinner = Spinner("dots", _Elapsed(self))  # the seconds count on every refresh
            # stdout is never redirected (rich's status would send it to this console);
            # stderr is, so rig's warnings print above the spinner line, not through it
            self.live = Live(self.spinner, console=Console(file=self.stream, highlight=False), transient=True,
                             refresh_per_second=4, redirect_stdout=False, redirect_stderr=True)
            self.live.start()
        # (the spinner reads the stage's name from here on its next refresh)

    def stage(self, name: str) -> None:
        with self.lock:
            if self.done:
                return
            self.name = name
            if not self.shown and time.monotonic() - self.t0 >= self.delay:
                self.shown = True
            if self.shown:
                self._render()

    def stop(self) -> None:
        with self.lock:
            self.done = True
            if self.live is not None:
                self.live.stop()
                self.live = None


@contextmanager
def stages(force: bool = False, stream: TextIO | None = None,
           delay: float | None = None) -> Iterator[Callable[[str], None]]:
    """A function to name the stage the command is in (see the module docstring). The
    display ends when the block does; ``stage("writing")`` on a terminal stdout also
    shares: the spinner is stopped before the result is written."""
    stream = stream if stream is not None else sys.stderr
    tty = bool(getattr(stream, "isatty", lambda: False)())
    if not (tty or force):
        yield lambda name: None
        return
    shown = _Shown(stream, tty, DELAY_S if delay is None else delay)
    timer = threading.Timer(shown.delay, shown.show)
    timer.daemon = True
    timer.start()

    def stage(name: str) -> None:
        if name == "writing" and tty and sys.stdout.isatty():
            shown.stop()  # the result goes to the same terminal: no spinner through it
            return
        shown.stage(name)

    try:
        yield stage
    finally:
        timer.cancel()
        shown.stop()
