"""Run a few callables at once on threads, wait for all, and hand back results or the first error."""

from __future__ import annotations

import threading
from typing import Any, Callable, Sequence


def on_main_thread() -> bool:
    """Signal handlers can only be installed (and only fire) on the main thread."""
    return threading.current_thread() is threading.main_thread()


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
        t.start()
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
        self._thread.start()

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


__all__ = ["Background", "on_main_thread", "run_all"]
