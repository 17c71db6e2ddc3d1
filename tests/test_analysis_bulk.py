"""The bulk-delivered exchanges kept as columns (ExchangeList): they read, index, compare
and serialise exactly like the tuple of records they stand for; and the exact grouping
of change signatures the fast paths use."""

from __future__ import annotations

from collections import Counter

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from rig.analysis.diagnosis import diagnose
from rig.analysis.keys import signature_groups
from rig.verdict import ExchangeList, Verdict

from tests._analysis_scenarios import Path, ping, run, syn_only, tcp_delivered, udp


def _verdict(tmp_path):
    w = Path(mss_clamp=1400, port_map=lambda p: p + 1000, echo_id_map=lambda i: i + 1)
    for k in range(40):  # enough of each for the fast paths, with a few problems among them
        tcp_delivered(w, 30000 + k, 1000 + 7919 * k, 5000 + 104729 * k, nonce=k)
        ping(w, k, reply_arrives=k % 9 != 4)
        udp(w, 40000 + k, k, arrive=k % 11 != 3)
    syn_only(w, 29999, 77, arrive=False)
    return run(w, tmp_path)


def test_lazy_exchanges_read_like_their_records(tmp_path):
    v = _verdict(tmp_path)
    ex = v.exchanges
    assert isinstance(ex, ExchangeList) and len(ex.batches) == 3  # tcp, echo and udp batches
    records = tuple(ex)
    assert len(records) == len(ex) == 121
    assert [ex[i] for i in range(len(ex))] == list(records)
    assert ex[-1] == records[-1] and ex[3:9] == records[3:9] and ex[::-7] == records[::-7]
    assert ex == records and ex == list(records) and ex != records[:-1]
    for proto in ("tcp", "udp", "icmp"):  # ids count per protocol in verdict order
        ids = [e.id for e in records if e.protocol == proto]
        assert ids == [f"{proto}-{i}" for i in range(1, len(ids) + 1)]
    firsts = [min(dict(e.frames)["client"]) for e in records]
    assert firsts == sorted(firsts)
    assert ex.counts() == Counter((e.protocol, e.outcome) for e in records)
    assert ex.change_notes("tcp.mss") == {c.note for e in records for c in e.changes if c.field == "tcp.mss"} != set()
    assert sorted(ex.seen_at_server("tcp")) == sorted(e.seen_at_server_as for e in records
                                                      if e.protocol == "tcp" and e.seen_at_server_as)
    # the diagnosis, exit code and JSON are those of the plain tuple of records
    plain = Verdict(v.capture_points, records, diagnose(records))
    assert v.diagnosis == plain.diagnosis and v.exit_code() == plain.exit_code() == 1
    assert v.to_json() == plain.to_json() and v.to_json(indent=None) == plain.to_json(indent=None)
    assert Verdict.from_json(v.to_json()) == v


def test_lazy_exchanges_in_a_long_json(tmp_path, monkeypatch):
    v = _verdict(tmp_path)
    monkeypatch.setattr(ExchangeList, "CHUNK", 7)  # chunks that split batches
    plain = Verdict(v.capture_points, tuple(v.exchanges), v.diagnosis)
    assert len(v.to_json().splitlines()) == len(plain.to_json().splitlines())
    assert v.to_json() == plain.to_json()


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 200), st.lists(st.sampled_from([1, 3, 70_000, 2**40, 2**62]), min_size=1, max_size=20),
       st.integers(0, 2**32 - 1))
def test_signature_groups_are_exact(n, ranges, seed):
    rng = np.random.default_rng(seed)
    cols = [rng.integers(-1, r, n).astype(np.int64) for r in ranges]
    first, inv = signature_groups(cols)
    sig = np.stack(cols, axis=1)
    assert (sig[first][inv] == sig).all()  # every row is its group's representative
    assert len(first) == len(np.unique(sig, axis=0))  # and equal rows share one group


@settings(max_examples=80, deadline=None)
@given(st.lists(st.lists(st.integers(1, 60), max_size=5, unique=True).map(sorted), max_size=8),
       st.dictionaries(st.integers(1, 60), st.lists(st.integers(61, 90), min_size=1, max_size=2), max_size=6))
def test_copies_in_bulk_are_the_rule_per_record(frames, copies):
    """``with_copies_each`` and tcp_fast's gathered ranges give, per record, what
    ``with_copies`` of its own slice gives (the fast paths' frames, written in bulk)."""
    from rig.analysis.context import with_copies, with_copies_each
    from rig.analysis.tcp_fast import _ranges

    flat = np.array([f for fs in frames for f in fs], np.uint32)
    hi = np.cumsum([len(fs) for fs in frames]).astype(np.int64)
    lo = hi - [len(fs) for fs in frames]
    order = np.arange(len(frames))[::-1]  # records asked out of the array's order
    got = with_copies_each(_ranges(flat, lo[order], hi[order]), copies)
    assert got == [with_copies(flat[lo[j]:hi[j]].tolist(), copies) for j in order.tolist()]
