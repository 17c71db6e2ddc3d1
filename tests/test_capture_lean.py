"""The lean packet table (``table.LEAN_DTYPE``, what ``rig diff`` and ``rig run`` read):
the same rows and values as the full table, less ``table.DETAIL_FIELDS``, from both
decoders and through ``read_pair``; and the analysis gives the same verdict on it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rig.analysis.api import analyse
from rig.capture import read_capture
from rig.capture.pair import read_pair
from rig.capture.table import DETAIL_FIELDS, LEAN_DTYPE, PACKET_DTYPE
from tests._corpus import CORPUS

DATA = Path(__file__).parent / "data" / "analysis"


def _same_rows(full, lean) -> None:
    assert lean.packets.dtype == LEAN_DTYPE
    assert len(lean.packets) == len(full.packets)
    for name in LEAN_DTYPE.names:
        assert np.array_equal(full.packets[name], lean.packets[name]), name
    assert lean.quoted.tobytes() == full.quoted.tobytes()
    assert np.array_equal(lean.addrs, full.addrs)
    assert lean.undecoded == full.undecoded
    assert (lean.truncated_tail, lean.tail_note, lean.bad_timestamps) == (full.truncated_tail, full.tail_note,
                                                                            full.bad_timestamps)


def test_lean_is_the_full_table_less_the_detail_columns():
    assert set(PACKET_DTYPE.names) - set(LEAN_DTYPE.names) == set(DETAIL_FIELDS)
    assert all(LEAN_DTYPE.fields[n][0] == PACKET_DTYPE.fields[n][0] for n in LEAN_DTYPE.names)
    assert LEAN_DTYPE.itemsize == PACKET_DTYPE.itemsize - 73 == 77


@pytest.mark.skipif(not CORPUS.is_dir(), reason=f"corpus {CORPUS} is not here")
@pytest.mark.parametrize("fast", [True, False], ids=["fast-path", "reference-decoder"])
def test_corpus_lean_equals_full(fast):
    files = sorted(p for p in CORPUS.iterdir() if p.suffix in (".pcap", ".pcapng", ".cap"))
    compared = 0
    for f in files:
        try:
            full = read_capture(str(f), fast=fast)
        except Exception as exc:  # a file that is not a capture: lean must fail the same way
            with pytest.raises(type(exc)):
                read_capture(str(f), fast=fast, lean=True)
            continue
        _same_rows(full, read_capture(str(f), fast=fast, lean=True))
        compared += len(full.packets)
    assert compared > 10_000  # the corpus was read, not skipped file by file


@pytest.mark.parametrize("name", sorted(p.name for p in DATA.iterdir() if (p / "client.pcap").exists()))
def test_lab_captures_same_verdict_lean_or_full(name):
    c, s = str(DATA / name / "client.pcap"), str(DATA / name / "server.pcap")
    full = analyse(read_capture(c), read_capture(s)).to_json()
    lc, ls = read_pair(c, s, lean=True)  # as rig diff reads them: both at once, the second in a child
    _same_rows(read_capture(s), ls)
    assert analyse(lc, ls).to_json() == full


def test_lean_capture_has_no_payload_offsets():
    f = DATA / "seed" / "client.pcap"
    full, lean = read_capture(str(f)), read_capture(str(f), lean=True)
    row = int(np.flatnonzero(full.packets["pcaplen"] > 0)[0])
    assert full.payload(row)
    with pytest.raises(ValueError, match="read lean"):
        lean.payload(row)
