"""The NAT profile's words from what the responder saw (rig.nat.classify): pure functions,
checked on observations written out here, RFC 4787 / 5780 test by test."""

import random

import pytest

from rig.nat.classify import allocation, filtering, mapping
from rig.nat.records import Allocation, Dependence, Undecided
from rig.portset import PortSet

EIM, ADM, APDM = (Dependence.ENDPOINT_INDEPENDENT, Dependence.ADDRESS_DEPENDENT,
                  Dependence.ADDRESS_AND_PORT_DEPENDENT)
PUB = "203.0.113.2:40001"


@pytest.mark.parametrize("other_address, other_port, expected", [
    (PUB, PUB, EIM),  # the same public endpoint towards all three
    ("203.0.113.2:40002", PUB, ADM),  # a new one for the other address only
    ("203.0.113.2:40002", "203.0.113.2:40003", APDM),  # a new one for the other port too
    (PUB, "203.0.113.2:40003", APDM),  # the port alone changes it
])
def test_mapping_from_the_three_public_endpoints(other_address, other_port, expected):
    assert mapping(PUB, other_address, other_port, addresses=2, ports=2) == expected


def test_mapping_says_what_a_one_address_responder_leaves_open():
    one_addr = mapping(PUB, None, PUB, addresses=1, ports=2)
    assert isinstance(one_addr, Undecided) and "one address" in one_addr.reason
    assert mapping(PUB, None, "203.0.113.2:9", addresses=1, ports=2) == APDM  # decided even so
    one_port = mapping(PUB, "203.0.113.2:9", None, addresses=2, ports=1)
    assert isinstance(one_port, Undecided) and "one port" in one_port.reason


def test_mapping_without_answers_is_undecided():
    assert isinstance(mapping(None, None, None, 2, 2), Undecided)
    # the responder has the endpoint but it never answered: no guess
    assert isinstance(mapping(PUB, None, PUB, addresses=2, ports=2), Undecided)


@pytest.mark.parametrize("other_address, other_port, expected", [
    (True, True, EIM),
    (False, True, ADM),
    (False, False, APDM),
])
def test_filtering_from_which_endpoint_got_back_in(other_address, other_port, expected):
    assert filtering(True, other_address, other_port) == expected


def test_filtering_undecided_without_the_endpoints_or_an_answer():
    assert isinstance(filtering(False, True, True), Undecided)
    assert isinstance(filtering(True, None, None), Undecided)
    assert isinstance(filtering(True, False, None), Undecided)
    assert isinstance(filtering(True, None, True), Undecided)  # one address: EIF or ADF
    assert filtering(True, None, False) == APDM  # even one address shows port-dependence


def test_allocation_preserved():
    pairs = [(p, p) for p in (40312, 40313, 51000, 33000)]
    alloc, _ = allocation(pairs)
    assert alloc.kind is Allocation.PRESERVED and alloc.samples == 4


def test_allocation_sequential():
    pairs = [(30000 + i * 7, 1024 + i) for i in range(8)]
    alloc, _ = allocation(pairs)
    assert alloc.kind is Allocation.SEQUENTIAL


def test_allocation_random_in_pf_range():
    rng = random.Random(5)
    pairs = [(40000 + i, rng.randint(50001, 65535)) for i in range(16)]
    alloc, est = allocation(pairs)
    assert alloc.kind is Allocation.RANDOM
    assert alloc.range == (50001, 65535)
    assert est.kind == "range"


def test_allocation_confined_to_one_block_is_that_block():
    rng = random.Random(7)
    pairs = [(30000 + i, p) for i, p in enumerate(rng.sample(range(40000, 40016), 12))]
    alloc, est = allocation(pairs)
    assert alloc.range == (40000, 40015)
    assert est.port_set is not None and est.port_set.size == 16


def test_allocation_from_a_map_e_set_reports_the_set():
    pset = PortSet(offset=4, length=8, psid=0x5A)  # v6plus: 15 blocks of 16
    ports = [p for lo, hi in pset.ranges() for p in range(lo, hi + 1)]
    rng = random.Random(3)
    pairs = [(30000 + i, p) for i, p in enumerate(rng.sample(ports, 16))]
    alloc, est = allocation(pairs)
    assert alloc.kind is Allocation.RANDOM and alloc.range is None  # the set says more than a range
    assert est.kind == "port-set" and est.port_set == pset and est.port_set.size == 240


def test_allocation_needs_three_ports():
    alloc, est = allocation([(1, 50001), (2, 50001)])
    assert isinstance(alloc, Undecided) and isinstance(est, Undecided)
    assert "1 distinct" in alloc.reason


def test_combine_takes_the_most_dependent_trial():
    from rig.nat.classify import combine

    u = Undecided("no answer from the responder")
    assert combine([EIM, EIM, ADM, EIM]) == ADM  # three trials drew the same port by chance
    assert combine([APDM, ADM, EIM]) == APDM
    assert combine([u, EIM]) == EIM
    assert combine([u, u]) == u


def test_a_few_ports_of_a_set_are_undecided_not_a_wrong_set():
    """8 ports of a v6plus set agree on the PSID and often on a bit beside it (then infer
    alone would name a 9-bit PSID); 16 are enough (a shared neighbour: about 6e-5)."""
    pset = PortSet(offset=4, length=8, psid=0x12)
    ports = [p for lo, hi in pset.ranges() for p in range(lo, hi + 1)]
    odd_blocks = [p for p in ports if p >> 12 & 1]  # all share bit 12, just above the PSID
    pairs = [(30000 + i, p) for i, p in enumerate(random.Random(1).sample(odd_blocks, 8))]
    from rig.portset import infer
    alone = infer([p for _, p in pairs])
    assert alone.kind == "port-set" and alone.port_set != pset  # the wrong set, confidently
    alloc, est = allocation(pairs)
    assert est.kind == "undecided" and est.port_set is None
    assert est.reason.startswith("8 ports share a PSID-like field, too few to fix its edges")
    assert alloc.kind is Allocation.RANDOM
    pairs = [(30000 + i, p) for i, p in enumerate(random.Random(1).sample(ports, 16))]
    assert allocation(pairs)[1].port_set == pset
