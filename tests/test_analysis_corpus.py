"""The analysis on every real capture of the shared corpus: no crash, and a capture
diffed against itself never shows a loss or a middlebox (what one point saw, the other
saw too)."""

from __future__ import annotations


import pytest

from rig.analysis.api import analyse
from rig.capture import read_capture
from rig.errors import RigError

from tests._corpus import CORPUS
IMPOSSIBLE_IN_A_SELF_DIFF = {"lost-outbound", "lost-return", "mtu-blackhole", "answered-by-middlebox",
                             "reset-by-middlebox"}


@pytest.mark.skipif(not CORPUS.is_dir(), reason=f"no capture corpus at {CORPUS}")
def test_corpus_self_and_cross_diffs():
    caps = []
    for f in sorted(CORPUS.rglob("*.pcap*")):
        try:
            caps.append(read_capture(str(f)))
        except RigError:
            continue  # not a capture as a whole: the reader's tests cover that
    assert len(caps) > 500
    wrong = []
    for i, cap in enumerate(caps):
        v = analyse(cap, cap)
        v.to_json()
        wrong += [(cap.path, e.id, e.outcome) for e in v.exchanges if e.outcome in IMPOSSIBLE_IN_A_SELF_DIFF]
        other = caps[(i + 1) % len(caps)]
        analyse(cap, other).to_json()
    assert wrong == []
