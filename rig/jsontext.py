"""JSON text exactly as ``json.dumps(obj, separators=(",", ":"))`` writes it, from a
fast encoder (orjson).

The verdict of a large run is ~200k exchange records, each written as one line of
compact JSON (``rig.verdict.Verdict.write_json``). Measured on the 1M-packet bench
pair's 220k records (``bench/diff.py``), encoding alone: ``json.dumps`` 4.7 s, msgspec
1.3 s, orjson 0.8 s (one loaded machine, best of 3). orjson writes UTF-8 where
``json.dumps`` escapes (``ensure_ascii``), so the bytes are escaped the same way
afterwards, a chunk of records at a time (per record, the escaping cost twice the
encoding): the evidence's em dash, in every record, by one ``bytes.replace``; any other
character outside printable ASCII by the rule ``json`` uses. A value orjson refuses (an
int past 64 bits, a key that is not a string) falls back to ``json.dumps``.

Floats: orjson writes ``1e-7`` and ``0.00001`` where ``json.dumps`` writes ``1e-07`` and
``1e-05``, and ``null`` for NaN. A value whose bytes hold a digit, ``e-`` and a digit,
or ``0.0000`` and a digit, is written by ``json.dumps`` instead (the same text; exchange
records hold no floats, so this is rare); NaN and infinities are not JSON and no record
holds one.
"""

from __future__ import annotations

import json
import re
from typing import Any, Sequence

import orjson

_ERRORS: tuple[type[Exception], ...] = (orjson.JSONEncodeError, TypeError, OverflowError)
_DASH, _DASH_ESC = "\u2014".encode(), b"\\u2014"
_FLOATY = re.compile(rb"[0-9]e-[0-9]|0\.0000[0-9]")  # where orjson and json.dumps may spell a float otherwise
_NOT_PRINTABLE_ASCII = re.compile(r"[^\x00-\x7e]")  # what json.dumps escapes beyond \ " and control characters


def _esc(m: re.Match) -> str:
    return json.dumps(m.group())[1:-1]


def _encode(obj: Any) -> bytes:
    """One value's compact JSON as UTF-8: orjson's, or json.dumps's where they may differ."""
    try:
        b = orjson.dumps(obj)
    except _ERRORS:
        return json.dumps(obj, separators=(",", ":")).encode()
    if (b"e-" in b or b"0.0000" in b) and _FLOATY.search(b):  # perhaps such a float (module docstring)
        return json.dumps(obj, separators=(",", ":")).encode()
    return b


def join_compact(objs: Sequence[Any], sep: str) -> str:
    """``sep.join(json.dumps(o, separators=(",", ":")) for o in objs)``, the same characters.
    The values are encoded by orjson in one pass and the joined bytes checked once for a
    float orjson may spell otherwise; only then, and for a value orjson refuses, each
    value is encoded by ``_encode`` (a call and two scans per value cost a third of the
    encoding of 220k records)."""
    try:
        parts = [orjson.dumps(o) for o in objs]
    except _ERRORS:
        parts = [_encode(o) for o in objs]
    b = sep.encode().join(parts)
    if (b"e-" in b or b"0.0000" in b) and _FLOATY.search(b):  # perhaps such a float: value by value
        b = sep.encode().join([_encode(o) for o in objs])
    if b.isascii() and b"\x7f" not in b:
        return b.decode("ascii")
    b = _DASH_ESC.join(b.split(_DASH))  # (twice as fast as bytes.replace where every record has one)
    if b.isascii() and b"\x7f" not in b:
        return b.decode("ascii")
    return _NOT_PRINTABLE_ASCII.sub(_esc, b.decode())


def dumps_compact(obj: Any) -> str:
    """``json.dumps(obj, separators=(",", ":"))``, the same characters."""
    return join_compact((obj,), "")
