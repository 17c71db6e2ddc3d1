"""The compiled fast path (rig/capture/_fast.c) and the numpy one (fast._chunk) give the
same tables bit for bit (every column, the address numbering included), the same quoted
records, addresses and counts: on every file of the shared corpus, on generated packets
of every fast layout and link (ICMP errors quoting every packet cut at every length,
every snaplen), random and mutated captures, a busy server's capture of bench size; and
``rig diff --json`` writes the same bytes either way on the golden pairs and on busy
pairs (read focused, and whole). ``RIG_PURE_READER=1`` selects the numpy code."""

from __future__ import annotations

import os
import struct
import types
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rig.capture import container, fast, read_capture, read_capture_bytes
from rig.capture.addresses import AddressBook
from rig.capture.synth_busy import unrelated
from rig.capture.synth_columns import file_header, records
from rig.capture.table import LEAN_DTYPE, PACKET_DTYPE, empty_table
from rig.errors import InputError
from tests import test_capture_props as props
from tests._corpus import CORPUS
from tests.test_capture_focus import _busy

pytestmark = pytest.mark.skipif(fast._fast is None, reason="the compiled fast path (rig/capture/_fast.c) did not "
                                "build (pip install -e . builds it where a C compiler and the Python headers are)")

DATA = Path(__file__).parent / "data" / "analysis"
PAIRS = sorted(p.name for p in DATA.iterdir() if (p / "server.pcap").exists())


@pytest.fixture
def counted(monkeypatch):
    """The compiled decode, counting the rows it claims: a test comparing it with the
    numpy code must also show it ran."""
    claimed = []
    real, real_scan = fast._fast.rows, fast._fast.walkscan

    def rows(*args):
        nq = real(*args)
        claimed.append(int(args[11].sum()))
        return nq

    monkeypatch.setattr(fast, "_fast", types.SimpleNamespace(rows=rows, walkscan=real_scan))
    monkeypatch.delenv("RIG_PURE_READER", raising=False)
    return claimed


def _read(read, pure: bool):
    if pure:
        os.environ["RIG_PURE_READER"] = "1"
    try:
        return read()
    except InputError as exc:
        return f"InputError: {exc}"
    finally:
        os.environ.pop("RIG_PURE_READER", None)


def _same(read, what: str) -> int:
    """Both ways of reading agree; returns the rows read."""
    c, p = _read(read, False), _read(read, True)
    assert type(c) is type(p), what
    if isinstance(c, str):
        assert c == p, what
        return 0
    assert c.packets.dtype == p.packets.dtype and len(c.packets) == len(p.packets), what
    if c.packets.tobytes() != p.packets.tobytes():
        for name in c.packets.dtype.names:
            ne = c.packets[name] != p.packets[name]
            ne = ne.any(axis=tuple(range(1, ne.ndim))) if ne.ndim > 1 else ne
            assert not ne.any(), f"{what}: {name} differs at row {int(np.flatnonzero(ne)[0])}"
    assert c.quoted.dtype == p.quoted.dtype and c.quoted.tobytes() == p.quoted.tobytes(), what
    assert np.array_equal(c.addrs, p.addrs), what
    assert (c.undecoded, c.skipped, c.truncated_tail, c.tail_note) == (p.undecoded, p.skipped, p.truncated_tail,
                                                                        p.tail_note), what
    return len(c.packets)


def _decoded(buf, recs, dtype, pure: bool):
    """fast.decode_rows on every record, a chunk at a time as the readers call it: the
    rows claimed, the table, the quoted records."""
    if pure:
        os.environ["RIG_PURE_READER"] = "1"
    try:
        n = len(recs.data_off)
        arr = np.frombuffer(buf, np.uint8) if len(buf) else np.zeros(0, np.uint8)
        t = empty_table(n, dtype)
        t["status"] = recs.status
        book = AddressBook()
        claims, quotes = [np.zeros(0, bool)], []
        for a in range(0, n, fast.CHUNK):
            b = min(n, a + fast.CHUNK)
            claimed, q = fast.decode_rows(t[a:b], arr, recs, a, b, book)
            claims.append(claimed)
            quotes.append(q.copy())
        return np.concatenate(claims), t, fast.merge_quoted(quotes)
    finally:
        os.environ.pop("RIG_PURE_READER", None)


def _same_claims(buf, what: str) -> int:
    """The compiled decode claims exactly the rows the numpy one claims, and fills them
    and their quoted records alike (the reference decoder would hide a row left to it)."""
    try:
        recs = container.walk(buf, what)
    except InputError:
        return 0
    for dtype in (PACKET_DTYPE, LEAN_DTYPE):
        (c_claim, c_t, c_q), (p_claim, p_t, p_q) = (_decoded(buf, recs, dtype, pure) for pure in (False, True))
        assert np.array_equal(c_claim, p_claim), f"{what}: claimed differs at {np.flatnonzero(c_claim != p_claim)[:5]}"
        assert c_t.tobytes() == p_t.tobytes(), what
        assert c_q.tobytes() == p_q.tobytes(), what
    return int(c_claim.sum())


def _both_tables(data: bytes, what: str) -> int:
    _same_claims(data, what)
    return _same(lambda: read_capture_bytes(data), what) + _same(lambda: read_capture_bytes(data, lean=True), what)


@pytest.mark.skipif(not CORPUS.is_dir(), reason=f"corpus {CORPUS} is not here")
def test_both_decoders_agree_on_the_corpus(counted):
    files = sorted(p for p in CORPUS.iterdir() if p.is_file() and p.name != "LICENSE")
    assert len(files) > 500
    rows = claimed = 0
    for f in files:
        rows += _same(lambda f=f: read_capture(f), f.name)
        _same(lambda f=f: read_capture(f, lean=True), f.name)
        try:
            buf, _ = container.open_noted(str(f))
        except InputError:
            continue
        claimed += _same_claims(buf, f.name)
    assert rows > 10_000 and claimed > 2_000 and sum(counted) > 5_000


def test_both_decoders_agree_on_every_icmp_error_and_link(counted):
    ips, _ = props.error_frames(cut_quotes=True)
    _both_tables(props.pcap([props.on_link(1, ip) for ip in ips]), "errors, quotes cut")
    whole, _ = props.error_frames(cut_quotes=False)
    frames = [props.on_link(1, ip) for ip in whole]
    caplens = [n for f in frames for n in range(len(f) + 1)]
    _both_tables(props.pcap([f for f in frames for _ in range(len(f) + 1)], caplens=caplens), "every snaplen")
    for lt, tags in ((1, ((0x8100, 5),)), (1, ((0x88A8, 1), (0x8100, 2))), (113, ()), (276, ()), (101, ()),
                     (228, ()), (229, ())):
        _both_tables(props.pcap([props.on_link(lt, ip, tags) for ip in whole], linktype=lt), f"link {lt} {tags}")
    assert sum(counted) > 10_000


def test_both_decoders_agree_on_first_fragments_around_the_hash_window(counted):
    """A first UDP fragment hashes as the datagram it starts (its UDP length) once both it
    and the bytes captured pass the hash window: every UDP length and payload around it."""
    frames, caplens = [], []
    for ulen in range(0, 140, 1):
        for body in (40, 56, 63, 64, 65, 72, 100):
            d = struct.pack("!HHHH", 5000, 53, ulen, 0) + bytes(range(body))
            f = props.eth(props.ip4("10.0.0.1", "10.0.0.2", 17, d, mf=True))
            frames.append(f)
            caplens.append(len(f) if body != 100 else len(f) - 20)
    assert _same_claims(props.pcap(frames, caplens=caplens), "first fragments") == len(frames)
    assert counted


SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                            HealthCheck.function_scoped_fixture])


@SETTINGS
@given(st.lists(props.framed(), min_size=1, max_size=12), st.data())
def test_both_decoders_agree_on_generated_packets(counted, frames, data):
    lt = frames[0][0]
    pkts = [f for link, f in frames if link == lt]
    caplens = [data.draw(st.integers(0, len(f))) if data.draw(st.booleans()) else len(f) for f in pkts]
    _both_tables(props.pcap(pkts, linktype=lt, caplens=caplens), "generated")


@SETTINGS
@given(props.mutated())
def test_both_decoders_agree_on_mutated_captures(counted, data):
    _both_tables(data, "mutated")


@SETTINGS
@given(st.binary(max_size=300))
def test_both_decoders_agree_on_random_bytes_behind_a_header(counted, body):
    _both_tables(props.BASE[0][:24] + body, "random")


@pytest.mark.parametrize("ns", [False, True])
def test_both_decoders_agree_on_a_busy_capture(counted, ns):
    """A busy server's traffic of bench size (other users' TCP and QUIC, DNS, scanners,
    port unreachables quoting them, pings, fragments, IPv6)."""
    p = unrelated(np.random.default_rng(3), 200_000, 1_700_000_000 * 10**9, 1_700_000_060 * 10**9, (0, 0xC6336410),
                  reuse_addr=0xCB007102, reuse_ports=np.arange(40000, 40100))
    rb, _ = records(p, ns=ns)
    assert _both_tables(file_header(ns=ns) + rb.tobytes(), "busy") == 400_000
    assert sum(counted) > 350_000


def _diff_json(client: str, server: str, capsys) -> list[tuple[int, str]]:
    from rig.cli import main

    outs = []
    for pure in (False, True):
        if pure:
            os.environ["RIG_PURE_READER"] = "1"
        try:
            rc = main(["diff", client, server, "--json"])
        finally:
            os.environ.pop("RIG_PURE_READER", None)
        outs.append((rc, capsys.readouterr().out))
    return outs


@pytest.mark.parametrize("name", PAIRS)
def test_rig_diff_json_is_the_same_with_either_decoder(counted, capsys, name):
    a, b = _diff_json(str(DATA / name / "client.pcap"), str(DATA / name / "server.pcap"), capsys)
    assert a == b and a[1]
    assert counted


@pytest.mark.parametrize("focused", [True, False])
@pytest.mark.parametrize("name", ["seed", "mtu-blackhole", "port-set"])
def test_rig_diff_json_on_a_busy_pair_is_the_same_with_either_decoder(counted, capsys, monkeypatch, tmp_path, name,
                                                                       focused):
    from rig.capture import pair

    busy = tmp_path / "server.pcap"
    _busy(name, busy, 60_000)
    # small files read as rig diff reads a busy server's capture (focus.read_focused), or whole
    monkeypatch.setattr(pair, "FOCUS_MIN_BYTES", 1 << 20 if focused else 1 << 40)
    c, s = pair.read_for_diff(str(DATA / name / "client.pcap"), str(busy))
    assert (s.skipped > 50_000) == focused
    a, b = _diff_json(str(DATA / name / "client.pcap"), str(busy), capsys)
    assert a == b and a[1]
    assert counted
