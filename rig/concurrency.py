"""Run a few callables at once on threads, wait for all, and hand back results or the first error."""

from __future__ import annotations

import signal
import threading
from typing import Any, Callable, Sequence


def on_main_thread() -> bool:
    """Signal handlers can only be installed (and only fire) on the main thread."""
    return threading.current_thread() is threading.main_thread()


_STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


def start(thread: threading.Thread) -> None:
    """``thread.start()`` with SIGINT and SIGTERM blocked meanwhile, when called on the
    main thread. Thread.start() waits on a Condition; the KeyboardInterrupt that rig's
    handler (``rig.run.Signals``) raises from inside that wait broke the Condition's
    lock ('RuntimeError: release unlocked lock' and exit 1 instead of 3, seen in
    tests/test_run_signals.py). Blocked, the signal is handled right after, here. The
    new thread puts the caller's mask back before it runs: a blocked mask would pass on
    to every process it spawns (a tcpdump that ignores SIGINT never stops)."""
    if not (on_main_thread() and hasattr(signal, "pthread_sigmask")):
        thread.start()
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    run = thread.run

    def run_with_callers_mask() -> None:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
        run()

    thread.run = run_with_callers_mask  # type: ignore[method-assign]
    try:
        thread.start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def run_all(fns: Sequence[Callable[[], Any]], names: Sequence[str] | None = None) -> list[Any]:
    """Call every fn on its own thread and join them all; results in fns' order.

    If any raised, the first exception raised (in time) is re-raised here once every
    thread has finished, so no caller is left with work still running behind it.
    """
    results: list[Any] = [None] * len(fns)
    errors: list[BaseException] = []

    def body(i: int, fn: Callable[[], Any]) -> None:
        try:
            results[i] = fn()
        except BaseException as exc:  # handed to the calling thread below
            errors.append(exc)

    threads = [threading.Thread(target=body, args=(i, fn), daemon=True,
                                name=names[i] if names else None) for i, fn in enumerate(fns)]
    for t in threads:
        start(t)
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


class Background:
    """``fn`` on a daemon thread, started at once; ``result()`` waits and re-raises what it
    raised, ``wait()`` only waits (for clean-up paths that must not raise again)."""

    def __init__(self, fn: Callable[[], Any], name: str | None = None) -> None:
        self._value: Any = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._body, args=(fn,), name=name, daemon=True)
        start(self._thread)

    def _body(self, fn: Callable[[], Any]) -> None:
        try:
            self._value = fn()
        except BaseException as exc:  # handed to the thread that asks for the result
            self._error = exc

    def wait(self) -> None:
        self._thread.join()

    def result(self) -> Any:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value


class Spare:
    """Tasks that whichever of ``run_all``'s threads has finished its own work first takes
    (``drain``): a thread posts work another may do (``post``), and the thread that wants
    its result (``result``) waits for it, or does it itself if no thread has taken it. A
    task must not wait on another task; results and errors are handed to ``result``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._todo: dict[str, Callable[[], Any]] = {}
        self._done: dict[str, threading.Event] = {}
        self._value: dict[str, Any] = {}
        self._error: dict[str, BaseException] = {}

    def post(self, key: str, fn: Callable[[], Any]) -> None:
        with self._lock:
            self._todo[key] = fn
            self._done[key] = threading.Event()

    def _take(self, key: str | None = None) -> tuple[str, Callable[[], Any]] | None:
        with self._lock:
            if key is None:
                key = next(iter(self._todo), None)
            fn = self._todo.pop(key, None) if key is not None else None
        return (key, fn) if key is not None and fn is not None else None

    def _run(self, key: str, fn: Callable[[], Any]) -> None:
        try:
            self._value[key] = fn()
        except BaseException as exc:  # handed to the thread that asks for the result
            self._error[key] = exc
        finally:
            self._done[key].set()

    def drain(self) -> None:
        """Do the tasks posted and not yet taken."""
        while (got := self._take()) is not None:
            self._run(*got)

    def result(self, key: str) -> Any:
        """The task's result: done here if no thread has taken it, else waited for."""
        got = self._take(key)
        if got is not None:
            self._run(*got)
        self._done[key].wait()
        if key in self._error:
            raise self._error[key]
        return self._value.pop(key)


__all__ = ["Background", "Spare", "on_main_thread", "run_all", "start"]
