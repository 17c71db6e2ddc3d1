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
