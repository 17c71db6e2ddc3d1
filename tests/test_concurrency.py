"""rig.concurrency: run_all keeps order and joins all before raising; Background hands its error to result()."""

import threading

import pytest

from rig.concurrency import Background, run_all


def test_results_in_order_and_names():
    names = []

    def job(i):
        names.append(threading.current_thread().name)
        return i * 10

    assert run_all([lambda i=i: job(i) for i in range(4)], names=[f"w{i}" for i in range(4)]) == [0, 10, 20, 30]
    assert sorted(names) == ["w0", "w1", "w2", "w3"]


def test_first_error_raised_after_all_finished():
    gate = threading.Event()
    finished = []

    def fails():
        gate.set()
        raise ValueError("boom")

    def slow():
        gate.wait(5)  # starts only once the failing one ran
        threading.Event().wait(0.2)  # outlives the failure: a run_all that raised at once would miss it
        finished.append(True)

    with pytest.raises(ValueError, match="boom"):
        run_all([fails, slow])
    assert finished == [True]


def test_background_result_and_error():
    assert Background(lambda: 42).result() == 42
    failing = Background(lambda: 1 / 0)
    failing.wait()  # only waits
    with pytest.raises(ZeroDivisionError):
        failing.result()


def test_start_defers_a_stop_signal_until_the_thread_has_started():
    """A SIGINT that arrives while a thread starts is handled just after start() (where
    the KeyboardInterrupt cannot break Thread.start()'s Condition), and the thread runs."""
    import signal

    from rig.concurrency import start

    ran = threading.Event()
    masks = []

    class Arriving(threading.Thread):
        def start(self):
            masks.append(signal.pthread_sigmask(signal.SIG_BLOCK, []))
            signal.raise_signal(signal.SIGINT)  # Ctrl-C lands while the thread starts
            super().start()

    def body():
        masks.append(signal.pthread_sigmask(signal.SIG_BLOCK, []))  # what it would spawn with
        ran.set()

    with pytest.raises(KeyboardInterrupt):
        start(Arriving(target=body, daemon=True))
    assert ran.wait(5)
    assert {signal.SIGINT, signal.SIGTERM} <= masks[0]  # while starting
    assert not {signal.SIGINT, signal.SIGTERM} & masks[1]  # while running: the caller's mask
    assert signal.SIGINT not in signal.pthread_sigmask(signal.SIG_BLOCK, [])
