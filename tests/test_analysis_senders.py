"""Which sender at the server is which host's (rig.analysis.senders.candidates): the
requests a sender brought must all be the host's, the replies the host got must all have
been sent to it, every sender is one host's and no two the same host's."""

from __future__ import annotations

from rig.analysis.senders import MAX_HOSTS, candidates


def test_the_replies_a_host_got_pin_its_sender():
    """Three hosts send the same three requests; A lacks request 1 and its answer; the
    two hosts that got reply 1 cannot be A, so the third is, and its request 1 was lost."""
    sent = {h: {1, 2, 3} for h in ("h10", "h11", "h12")}
    got = {"h10": {2, 3}, "h11": {1, 2, 3}, "h12": {1, 3}}
    senders = {"A": {2, 3}, "B": {1, 2, 3}, "C": {1, 2, 3}}
    assert candidates(sent, got, senders, dict(senders)) == {"h10": {"A"}, "h11": {"B", "C"}, "h12": {"B", "C"}}


def test_replies_that_do_not_pin_a_sender_leave_several():
    sent = {h: {1, 2, 3} for h in ("h10", "h11", "h12")}
    got = {"h10": {2, 3}, "h11": {2, 3}, "h12": {1, 2, 3}}
    senders = {"A": {2, 3}, "B": {1, 2, 3}, "C": {1, 2, 3}}
    got_c = candidates(sent, got, senders, dict(senders))
    assert got_c is not None and got_c["h10"] == {"A", "B", "C"} and got_c["h11"] == {"A", "B", "C"}


def test_a_host_whose_requests_all_died_may_be_no_sender():
    sent = {"h10": {1}, "h14": {1}, "h12": {1}}
    got = {"h12": {1}}
    senders = {"A": {1}, "B": {1}}
    answered = {"A": {1}, "B": set()}
    assert candidates(sent, got, senders, answered) == {"h10": {"B", None}, "h14": {"B", None}, "h12": {"A"}}


def test_strangers_and_crowds_decide_nothing():
    sent = {"h10": {1}}
    assert candidates(sent, {}, {"A": {1}, "X": {1}}, {}) is None  # more senders than hosts
    assert candidates(sent, {"h10": {1}}, {"A": {1}}, {"A": set()}) is None  # a reply the server never sent it
    many = {f"h{i}": {1} for i in range(MAX_HOSTS + 1)}
    assert candidates(many, {}, {"A": {1}}, {}) is None
