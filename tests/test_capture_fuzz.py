"""Fuzzed captures through `rig diff`: never a traceback, never a hang (issue 16).

Seeded mutations (deterministic) of a lab golden pair, a synthetic pair and pcapng and
gzip versions of them: bytes flipped or overwritten (anywhere, and in record headers
especially), bytes deleted, inserted or repeated, files cut short, a header's length
made absurd. Each mutated capture is diffed against its intact partner, in-process
(``rig.cli.main``, as the console script runs it): the exit code is 0, 1 or 2, and any
other exception fails the test with its traceback. A hang is caught by the timeout.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import signal
import struct
from pathlib import Path as FsPath

import numpy as np
import pytest

from rig.capture import container
from rig.capture.synth import Path, write_pcapng
from rig.cli import main

from tests._analysis_scenarios import ping, tcp_delivered, udp

GOLDEN = FsPath(__file__).parent / "data" / "analysis" / "seed"
# mutations per seed capture, and the seed (a longer campaign: RIG_FUZZ_CASES=2000 RIG_FUZZ_SEED=n)
CASES = int(os.environ.get("RIG_FUZZ_CASES", "40"))
SEED = int(os.environ.get("RIG_FUZZ_SEED", "16"))


def _synthetic(tmp: FsPath) -> tuple[FsPath, FsPath]:
    w = Path()
    for i in range(12):
        tcp_delivered(w, 40000 + i, 1000 * i, 5000 * i, nonce=i)
        ping(w, i, reply_arrives=i % 3 != 0)
        udp(w, 6000 + i, i, arrive=i % 4 != 1)
    return w.write(tmp)


def _as_pcapng(src: FsPath, dst: FsPath) -> FsPath:
    data = src.read_bytes()
    recs = container.walk(data, str(src))
    frames = [(0, int(t), data[int(o): int(o) + int(n)]) for o, n, t in zip(recs.data_off, recs.caplen, recs.ts_ns)]
    write_pcapng(dst, [(1, "eth0")], frames)
    return dst


def _mutate(data: bytes, rng: np.random.Generator) -> bytes:
    d = bytearray(data)
    try:
        heads = container.walk(bytes(d), "seed").data_off - 16
    except Exception:  # noqa: BLE001 -- a seed that does not walk: mutate anywhere
        heads = np.zeros(0, np.int64)
    for _ in range(int(rng.integers(1, 4))):
        kind = int(rng.integers(0, 8))
        at = int(rng.integers(0, len(d))) if len(d) else 0
        if kind <= 1 and len(heads):  # in a record header (pcapng: near the block start)
            at = min(int(rng.choice(heads)) + int(rng.integers(0, 16)), len(d) - 1)
        if kind in (0, 2):  # bits flipped
            d[at] ^= 1 << int(rng.integers(0, 8))
        elif kind in (1, 3):  # bytes overwritten
            n = int(rng.integers(1, 64))
            d[at:at + n] = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        elif kind == 4:  # bytes deleted
            del d[at:at + int(rng.integers(1, 32))]
        elif kind == 5:  # bytes inserted
            d[at:at] = rng.integers(0, 256, int(rng.integers(1, 32)), dtype=np.uint8).tobytes()
        elif kind == 6:  # a chunk repeated
            n = int(rng.integers(16, 400))
            d[at:at] = d[at:at + n]
        elif kind == 7 and len(heads):  # a length made absurd or zero
            h = int(rng.choice(heads))
            if h + 12 <= len(d):
                struct.pack_into("<I", d, h + 8, int(rng.choice([0, 0x7FFFFFFF, 0xFFFFFFFF, 300_000])))
    if rng.random() < 0.15:  # cut short
        d = d[: int(rng.integers(0, len(d) + 1))]
    return bytes(d)


def _diff(a: FsPath, b: FsPath) -> int:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        return main(["diff", str(a), str(b), "--json"])


@pytest.mark.timeout(max(120, CASES * 3))
def test_fuzzed_captures_through_rig_diff(tmp_path):
    c, s = _synthetic(tmp_path / "synth")
    seeds = [(GOLDEN / "client.pcap", GOLDEN / "server.pcap"), (c, s),
             (_as_pcapng(c, tmp_path / "c.pcapng"), _as_pcapng(s, tmp_path / "s.pcapng"))]
    rng = np.random.default_rng(SEED)
    codes: dict[int, int] = {}
    old = signal.getsignal(signal.SIGTERM)  # main() sets its own
    try:
        for k, (client, server) in enumerate(seeds):
            for i in range(CASES):
                side = i % 2  # mutate the client's capture, then the server's
                bad = _mutate((client, server)[side].read_bytes(), rng)
                if i % 5 == 4:  # compressed, sometimes after the damage, sometimes the stream damaged
                    bad = gzip.compress(bad, compresslevel=1)
                    if i % 10 == 9:
                        bad = _mutate(bad, rng)
                f = tmp_path / f"fuzz-{k}-{i}.pcap"
                f.write_bytes(bad)
                code = _diff(f, server) if side == 0 else _diff(client, f)
                assert code in (0, 1, 2), (f, code)
                codes[code] = codes.get(code, 0) + 1
    finally:
        signal.signal(signal.SIGTERM, old)
    assert sum(codes.values()) == CASES * len(seeds)
    assert codes.get(1, 0) > CASES  # most mutated pairs are still diffed (the seeds have path problems)
