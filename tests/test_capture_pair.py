"""rig.capture.pair.read_pair: the same two captures as read_capture, read at once (the
second in a forked child, its table in shared memory); errors as read_capture's."""

from __future__ import annotations

import os

import numpy as np
import pytest

from rig.capture import read_capture
from rig.capture.pair import read_pair
from rig.capture.synth import ICMP_UNREACH, Path, Pkt
from rig.errors import InputError

from tests._analysis_scenarios import ping, tcp_delivered, udp


def _pair(tmp_path):
    w = Path(port_map=lambda p: p + 1000)
    for k in range(30):
        tcp_delivered(w, 30000 + k, 1000 + 7919 * k, 5000 + 104729 * k, nonce=k)
        ping(w, k)
        udp(w, 40000 + k, k)
        # ICMP errors at both points (port unreachable), and one only the client sees
        q = w.out(Pkt(w.client, w.server, 17, sport=50000 + k, dport=9999, payload=b"closed-%d" % k, ip_id=k))
        w.back(Pkt(w.server, q.src, 1, icmp_type=ICMP_UNREACH, icmp_code=3, quoted=q))
    big = w.out(Pkt(w.client, w.server, 1, icmp_type=8, icmp_id=9, icmp_seq=1, payload=bytes(1472)), arrive=False)
    w.at_client(Pkt("192.168.0.1", w.client, 1, icmp_type=ICMP_UNREACH, icmp_code=4, mtu=1454, quoted=big))
    c, s = w.write(tmp_path)
    return str(c), str(s)


def _same(a, b):
    assert np.array_equal(a.packets, b.packets) and a.packets.dtype == b.packets.dtype
    # the ICMP errors' side table comes back from the child too
    assert len(a.quoted) >= 30 and a.quoted.dtype == b.quoted.dtype and a.quoted.tobytes() == b.quoted.tobytes()
    assert (a.path, a.format, a.interfaces, a.undecoded, a.truncated_tail, a.tail_note, a.bad_timestamps) == \
        (b.path, b.format, b.interfaces, b.undecoded, b.truncated_tail, b.tail_note, b.bad_timestamps)
    rows = np.flatnonzero(a.packets["pcaplen"] > 0)
    assert len(rows) and all(a.payload(int(r)) == b.payload(int(r)) for r in rows)


def test_pair_reads_what_read_capture_reads(tmp_path):
    c, s = _pair(tmp_path)
    stats = {}
    pc, ps = read_pair(c, s, stats)
    _same(pc, read_capture(c))
    _same(ps, read_capture(s))
    assert stats["child_peak_private_mb"] > 0  # a child did read the second file
    ps.packets["ttl"][0]  # the shared table is readable after the child is gone


def test_pair_errors_are_read_captures(tmp_path):
    c, s = _pair(tmp_path)
    bad = tmp_path / "not.pcap"
    bad.write_bytes(b"this is not a capture file at all")
    for args in ((c, str(bad)), (str(bad), s), (c, str(tmp_path / "missing.pcap"))):
        with pytest.raises(InputError) as got:
            read_pair(*args)
        with pytest.raises(InputError) as want:
            read_capture(args[0]) if args[0] != c else read_capture(args[1])
        assert str(got.value) == str(want.value)


def test_pair_reads_a_pipe_one_after_the_other(tmp_path):
    c, s = _pair(tmp_path)
    fifo = tmp_path / "server.fifo"
    os.mkfifo(fifo)
    pid = os.fork()
    if pid == 0:  # a writer for the pipe
        try:
            with open(fifo, "wb") as f, open(s, "rb") as src:
                f.write(src.read())
        finally:
            os._exit(0)
    try:
        pc, ps = read_pair(c, str(fifo))
    finally:
        os.waitpid(pid, 0)
    want = read_capture(s)
    assert np.array_equal(ps.packets, want.packets) and ps.quoted.tobytes() == want.quoted.tobytes()
    assert len(ps.quoted) == 30
