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


def _every_field_exchanges() -> list[Exchange]:
    """Records with every optional fact, sharing Change objects as the fast paths' do."""
    from rig.trace.records import HopRef, LostAt, TraceEvidence

    ttl = Change("ip.ttl", "out", 64, 61, "3 hops")
    both = Datagrams(1, 0, 1, 0)
    isn = Change("tcp.isn", "out", 1, 2, None, 99)
    opts = Change("tcp.options", "back", ["mss", "sackOK"], ["mss"], "SACK removed")
    out = []
    for i in range(6):
        out.append(Exchange(
            f"udp-{i + 1}", "udp", f"[2001:db8::{i}]:4000{i}", "[2001:db8::99]:53" if i % 2 else "198.51.100.1:53",
            None if i == 3 else "203.0.113.2:9", "lost-return" if i % 2 else "delivered", "caf\u00e9 \u2014 \"q\"",
            (ttl, opts) if i % 2 else (ttl, isn), (Evidence("server", i + 1, "x \u2014 y"), Evidence("client", 9, "z")),
            (("client", (1, 2, 3)), ("server", ())), path_mtu=1400 if i == 1 else None,
            undecided_because="why" if i == 2 else None, datagrams=(both if i % 2 else Datagrams(2, 1, 0, 0)) if i < 4 else None,
            lost_between=("client", "server") if i == 1 else None, port_reused=i == 4, echo=(i, 2 * i) if i == 5 else None,
            lost_at=LostAt("out", HopRef(2, "10.0.0.1", "r1"), None, (TraceEvidence("out", 3, None, "nothing"),))
            if i == 1 else None,
            seen_at=(("router", "10.0.0.2:4000"),) if i == 2 else (), fragments_lost=i == 3))
    return out


def test_the_writers_records_are_to_dicts_text():
    """The writer hands orjson each record's lean form (``Exchange._dict``: frame
    tuples, Change dicts shared within a chunk): its text is that of
    ``json.dumps(to_dict())``, record by record, for every optional key."""
    ex = _every_field_exchanges()
    shared: dict = {}
    lean = join_compact([e._dict(shared) for e in ex], "\n").splitlines()
    assert lean == [json.dumps(e.to_dict(), separators=(",", ":")) for e in ex]
    assert len(shared) == 3 + 3  # each Change and Datagrams once
    v = Verdict((CapturePointInfo("client", "c.pcap", 1, 0, 0),), tuple(ex * 100), Diagnosis("d", {}))
    assert json.loads(v.to_json()) == json.loads(json.dumps(v.to_dict()))
    lines = [line.rstrip(",")[4:] for line in v.to_json().splitlines() if line.startswith('    {"id":')]
    assert lines == [json.dumps(e.to_dict(), separators=(",", ":")) for e in v.exchanges] and len(lines) == 600


def test_record_dict_takes_an_exchanges_fields_in_order():
    """The fast paths call ``record_dict`` with ``Exchange``'s arguments (ExchangeBatch.build's ``make``)."""
    import dataclasses
    import inspect

    from rig.verdict import record_dict

    assert list(inspect.signature(record_dict).parameters)[1:] == [f.name for f in dataclasses.fields(Exchange)]
