"""How long the traces wait (rig.trace.wait): from the round trips the run's probes measured."""

from __future__ import annotations

import pytest

from rig.probes.records import ProbeResult, TcpState
from rig.trace.forward import WAIT
from rig.trace.wait import FACTOR, FLOOR, LAB_FLOOR, round_trips, trace_wait

SERVER = "198.51.100.10"


def _echo(rtt_ms: float, target: str = SERVER, ok: bool = True) -> ProbeResult:
    return ProbeResult("icmp", "icmp-1", target, "n", 1.0, 1.1, ok, seen={"rtt_ms": rtt_ms})


def _connect(elapsed: float, srtt_us: int = 0, connected: bool = True) -> ProbeResult:
    tcp = TcpState("ESTABLISHED" if connected else "SYN_SENT", 0, 0, srtt_us, 1448, 1448, 1500)
    return ProbeResult("tcp", "tcp-1", f"{SERVER}:80", "n", 1.0, 1.0 + elapsed, connected,
                       None if connected else "timed out", tcp=tcp,
                       seen={"connected": connected, "elapsed": elapsed})


def test_the_round_trips_are_the_echoes_the_handshakes_and_the_kernels_rtt():
    probes = [_echo(3.5), _connect(0.002, srtt_us=120), _connect(3.0, connected=False),
              _echo(80.0, target="2001:db8:5::10"), _echo(90.0, ok=False),
              ProbeResult("http", "http-1", "[2001:db8:5::10]:80", "n", 1.0, 1.2, True,
                          tcp=TcpState("ESTABLISHED", 0, 0, 70_000, 1448, 1448, 1500))]
    # the time-out of a handshake that never completed is no round trip; neither is an
    # echo that failed, nor anything measured toward another address (the IPv6 one)
    assert sorted(round_trips(probes, SERVER)) == [0.00012, 0.002, 0.0035]


def test_the_wait_is_ten_round_trips_floored_and_capped():
    assert trace_wait([_echo(3.5)], SERVER) == FLOOR  # 35 ms: less than the floor
    assert trace_wait([_echo(70.0), _echo(3.0)], SERVER) == pytest.approx(FACTOR * 0.070)  # the slowest counts
    assert trace_wait([_echo(250.0)], SERVER) == WAIT  # a long path: never past today's 1 s
    assert LAB_FLOOR < FLOOR < WAIT


def test_the_labs_hops_answer_at_once_so_its_floor_is_lower():
    """The lab's hops are namespaces of this machine: their errors come back within the
    sender's own system call, and a trace there waits the lab's floor."""
    assert trace_wait([_echo(3.5)], SERVER, backend="lab") == LAB_FLOOR
    assert trace_wait([_echo(3.5)], SERVER, backend="ssh") == FLOOR
    assert trace_wait([_echo(70.0)], SERVER, backend="lab") == pytest.approx(0.7)  # its round trips still count
    assert trace_wait([], SERVER, backend="lab") == WAIT


def test_without_a_round_trip_on_that_path_the_wait_is_the_full_one():
    assert trace_wait([], SERVER) == WAIT
    assert trace_wait([_connect(3.0, connected=False), _echo(1.0, target="203.0.113.9")], SERVER) == WAIT
