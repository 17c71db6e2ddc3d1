"""rig.concurrency: run_all keeps order and joins all before raising; Background hands its error to result()."""

import threading

import pytest

from rig.concurrency import Background, Spare, run_all


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


def test_spare_work_done_once_by_whoever_is_free():
    """A task posted is done once: by a thread that drains, or by the one that asks for
    its result; the asker waits while another thread is doing it."""
    spare = Spare()
    ran: list[str] = []
    started, release = threading.Event(), threading.Event()

    def slow():
        ran.append(threading.current_thread().name)
        started.set()
        release.wait(5)
        return "slow done"

    spare.post("slow", slow)
    spare.post("quick", lambda: ran.append("quick") or 7)
    worker = threading.Thread(target=spare.drain, name="worker")
    worker.start()
    assert started.wait(5)
    got: list = []
    asker = threading.Thread(target=lambda: got.append(spare.result("slow")))
    asker.start()
    asker.join(0.2)
    assert asker.is_alive() and not got  # waiting for the worker's task, not doing it again
    release.set()
    asker.join(5)
    worker.join(5)
    assert got == ["slow done"] and ran == ["worker", "quick"]
    assert spare.result("quick") == 7


def test_spare_task_not_taken_is_done_by_the_asker_and_errors_reach_it():
    spare = Spare()
    spare.post("mine", lambda: threading.current_thread().name)
    assert spare.result("mine") == threading.current_thread().name
    spare.post("bad", lambda: 1 / 0)
    spare.drain()
    with pytest.raises(ZeroDivisionError):
        spare.result("bad")
