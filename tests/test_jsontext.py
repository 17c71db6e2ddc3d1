"""The verdict's JSON text: the fast encoder writes json.dumps's characters, and one
writer (``write_verdict_json``) gives rig diff, rig show, rig run and verdict.json the
same text."""

from __future__ import annotations

import io
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from rig.jsontext import dumps_compact, join_compact
from rig.verdict import (CapturePointInfo, Change, Datagrams, Diagnosis, Evidence, Exchange, ExchangeList,
                         Verdict, write_verdict_json)

_leaf = (st.none() | st.booleans() | st.integers() | st.integers(min_value=-(2**80), max_value=2**80)
         | st.floats(allow_nan=False, allow_infinity=False) | st.text()
         | st.sampled_from(["\u2014", "\x7f", "\x00", "\u2028", "\U0001f600", "caf\u00e9", "e-1", "0.00001"]))
_json = st.recursive(_leaf, lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=6), kids, max_size=4),
                     max_leaves=12)


def _reference(objs, sep):
    return sep.join(json.dumps(o, separators=(",", ":")) for o in objs)


@settings(max_examples=300, deadline=None)
@given(st.lists(_json, max_size=5), st.sampled_from(["", ",\n    ", ","]))
def test_join_compact_writes_json_dumps_text(objs, sep):
    assert join_compact(objs, sep) == _reference(objs, sep)


def test_floats_orjson_spells_otherwise_are_written_as_json_does():
    for x in (1e-05, 1e-07, 1.5e-300, 0.0001, 1e16, 1e22, -0.0, 5e-324, 123456789012345678.0):
        assert dumps_compact({"x": x, "s": "\u2014"}) == json.dumps({"x": x, "s": "\u2014"}, separators=(",", ":"))


def test_non_string_keys_and_huge_ints_fall_back():
    for obj in ({1: "a"}, [2**70, -(2**70)], {"k": (1, 2)}):
        assert dumps_compact(obj) == json.dumps(obj, separators=(",", ":"))


def _big_verdict(n: int) -> Verdict:
    """``n`` exchanges (past ExchangeList.CHUNK: several chunks), with text outside ASCII."""
    ex = tuple(Exchange(f"udp-{i + 1}", "udp", f"192.168.1.10:{40000 + i % 20000}", "198.51.100.10:53",
                        "203.0.113.2:9", "delivered" if i % 3 else "lost-return",
                        "words \"quoted\" \u2014 and caf\u00e9" if i % 7 else "\U0001f600 \x7f \u2028",
                        (Change("ip.ttl", "out", 64, 61, "3 hops"),), (Evidence("client", 2 * i + 1, "a > b \u2014 c"),),
                        (("client", (2 * i + 1, 2 * i + 2)), ("server", (i + 1,))),
                        datagrams=Datagrams(1, 0, 1, i % 2))
               for i in range(n))
    points = (CapturePointInfo("client", "c.pcap", 2 * n, 0, 0, 0.0), CapturePointInfo("server", "s.pcap", n, 0, 0, 0.25))
    return Verdict(points, ex, Diagnosis("summary \u2014", {"udp": {}}))


def test_the_writer_gives_json_dumps_text_across_chunks():
    n = 2 * ExchangeList.CHUNK + 5
    v = _big_verdict(n)
    out = io.StringIO()
    write_verdict_json(v, out)
    text = out.getvalue()
    assert text.endswith("}\n") and json.loads(text) == v.to_dict()
    lines = [line for line in text.splitlines() if line.startswith('    {"id":"udp-')]
    assert [line.rstrip(",")[4:] for line in lines] == [json.dumps(e.to_dict(), separators=(",", ":"))
                                                        for e in v.exchanges]
    assert text.isascii()  # ensure_ascii, as json.dumps writes


def test_bundle_verdict_json_is_the_writers_text(tmp_path):
    """verdict.json is what rig diff --json / rig run --json print (one writer): past 500
    exchanges a record a line, not json.dumps(indent=2)'s line per value."""
    from rig.bundle import BundleWriter

    v = _big_verdict(600)
    w = BundleWriter(tmp_path / "b", {"backend": "lab"})
    w.write_verdict(v)
    w.finish("ok")
    out = io.StringIO()
    write_verdict_json(v, out)
    assert (tmp_path / "b" / "verdict.json").read_text() == out.getvalue()
    # the clock offsets the analysis estimated still reach the manifest
    m = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert m["clock_offset"] == {"seconds_ahead_of_client": {"server": 0.25}, "source": "analysis"}
