"""Port sets: the MAP-E arithmetic the lab builds from, and the inference the analysis uses."""

import random

import pytest

from rig.portset import PortSet, infer


def test_v6plus_set_is_15_blocks_of_16():
    s = PortSet(offset=4, length=8, psid=0x5A)
    assert (s.blocks, s.block_size, s.size) == (15, 16, 240)
    ranges = s.ranges()
    assert len(ranges) == 15
    assert ranges[0] == (0x1000 | 0x5A << 4, (0x1000 | 0x5A << 4) + 15)
    ports = [p for lo, hi in ranges for p in range(lo, hi + 1)]
    assert len(set(ports)) == 240
    assert all(s.contains(p) for p in ports)
    # Every other port is outside, and the excluded A = 0 block too.
    assert sum(s.contains(p) for p in range(65536)) == 240
    assert not s.contains(0x5A << 4)


def test_bad_psid_shapes_are_refused():
    with pytest.raises(ValueError):
        PortSet(offset=10, length=8, psid=0)
    with pytest.raises(ValueError):
        PortSet(offset=4, length=8, psid=256)


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("offset,length", [(4, 8), (6, 6), (4, 6), (2, 10)])
def test_infers_the_set_a_burst_was_drawn_from(seed, offset, length):
    rng = random.Random(seed * 100 + offset * 10 + length)
    truth = PortSet(offset, length, rng.randrange(1 << length))
    ports = [p for lo, hi in truth.ranges() for p in range(lo, hi + 1)]
    sample = rng.sample(ports, min(40, len(ports)))
    est = infer(sample)
    assert est.kind == "port-set"
    assert est.port_set == truth
    assert est.chance < 0.01
    outsider = next(p for p in range(50001, 65536) if not truth.contains(p))
    assert est.outside(sample + [outsider]) == [outsider]


@pytest.mark.parametrize("seed", range(20))
def test_pf_range_is_not_a_set(seed):
    rng = random.Random(seed)
    est = infer(rng.sample(range(50001, 65536), 30))
    assert est.kind == "range"
    assert est.port_set is None
    assert est.low >= 50001


def test_sequential_ports_are_a_range_block():
    est = infer(range(40000, 40030))
    assert est.kind == "range"
    assert (est.low, est.high) == (40000, 40029)
    assert est.port_set is not None and est.port_set.offset == 0


def test_too_few_ports_are_undecided():
    assert infer([1234, 4567]).kind == "undecided"
    assert infer([]).kind == "undecided"
    with pytest.raises(ValueError):
        infer([70000, 1, 2])


def test_few_ports_give_no_confident_set():
    # Three ports agreeing on bits 4-7 only: random ports do that 1 time in 16.
    est = infer([0x3450, 0x8B5F, 0xC05A])
    assert est.kind == "range" and est.port_set is None
    assert est.reason is not None
    # The same agreement over eight bits is a set.
    assert infer([0x1050, 0x2053, 0x305C]).kind == "port-set"
