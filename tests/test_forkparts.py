"""A text written in parts by forked children (``rig.forkparts``) is the same characters
as the parts written one after the other: in order, whatever part a child fails to make,
on files and pipes; no child is left behind when the parent stops half-way; and a
verdict's JSON written so is ``to_json()``'s text."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time

import pytest

from rig import forkparts, verdict as verdict_mod
from rig.verdict import ExchangeList, Verdict

pytestmark = pytest.mark.skipif(not (hasattr(os, "fork") and hasattr(os, "memfd_create")),
                                reason="fork and memfd_create are Linux's")


@pytest.fixture
def four_cores(monkeypatch):
    monkeypatch.setattr(forkparts, "cores", lambda: 4)


def _texts(k: int, size: int) -> list[str]:
    return [f"<part {i}>" + "".join(f"{i}.{j}," for j in range(size)) for i in range(k)]


def _parts(texts: list[str], made_in: list[int] | None = None):
    """Parts giving ``texts`` in pieces of 1000 characters; each records the pid it ran in."""
    def part(t: str):
        if made_in is not None:
            made_in.append(os.getpid())
        for a in range(0, len(t), 1000):
            yield t[a:a + 1000]
    return [lambda t=t: part(t) for t in texts]


def _no_children() -> bool:
    try:
        os.waitpid(-1, os.WNOHANG)
    except ChildProcessError:
        return True
    return False


@pytest.mark.parametrize("k,size", [(1, 10), (2, 10), (3, 300_000), (4, 0)])
def test_parts_in_order_on_a_file(tmp_path, four_cores, k, size):
    texts = _texts(k, size)  # 300k numbers: parts past the child's 1 MB buffer
    made_in: list[int] = []
    with open(tmp_path / "out", "w") as out:
        out.write("head:")  # written before: still first
        forkparts.write_parts(out, _parts(texts, made_in))
        out.write(":tail")
    assert (tmp_path / "out").read_text() == "head:" + "".join(texts) + ":tail"
    assert made_in == [os.getpid()]  # the first here; the others in children (their appends are theirs)
    assert _no_children()


def _fail():
    raise RuntimeError("a child's failure")


def _stuck():
    time.sleep(60)  # (a lock another thread held at the fork)


@pytest.mark.parametrize("in_child", [_fail, _stuck])
def test_a_part_a_child_does_not_make_is_made_here(tmp_path, four_cores, monkeypatch, in_child):
    """A child that fails, or does not finish once the first part has taken long enough
    several times over, has its part made by the parent; the text is whole."""
    monkeypatch.setattr(forkparts, "STUCK_MIN_S", 0.3)
    parent = os.getpid()
    texts = _texts(3, 2000)

    def part():
        if os.getpid() != parent:
            in_child()
        yield texts[1]

    parts = _parts(texts)
    parts[1] = part
    with open(tmp_path / "out", "w") as out:
        forkparts.write_parts(out, parts)
    assert (tmp_path / "out").read_text() == "".join(texts)
    assert _no_children()


def test_the_parent_stopping_ends_its_children(tmp_path, four_cores):
    def slow_then_fail():
        yield "a"
        raise KeyboardInterrupt

    def forever():
        while True:
            yield "x" * 1000

    with open(tmp_path / "out", "w") as out, pytest.raises(KeyboardInterrupt):
        forkparts.write_parts(out, [slow_then_fail, forever, forever])
    assert _no_children()


def test_no_file_descriptor_or_one_core_no_child(monkeypatch, tmp_path):
    made_in: list[int] = []
    texts = _texts(3, 50)
    out = io.StringIO()
    monkeypatch.setattr(forkparts, "cores", lambda: 4)
    assert not forkparts.usable(out)
    forkparts.write_parts(out, _parts(texts, made_in))
    assert out.getvalue() == "".join(texts) and made_in == [os.getpid()] * 3
    monkeypatch.setattr(forkparts, "cores", lambda: 1)
    made_in.clear()
    with open(tmp_path / "out", "w") as f:
        assert not forkparts.usable(f)
        forkparts.write_parts(f, _parts(texts, made_in))
    assert (tmp_path / "out").read_text() == "".join(texts) and made_in == [os.getpid()] * 3


def test_through_a_pipe_read_slowly(tmp_path):
    """The children's texts copied into a pipe another process reads (sendfile to a pipe)."""
    code = ("import sys; from rig import forkparts; forkparts.cores = lambda: 4\n"
            "texts = [f'<{i}>' + 'y' * 300_000 for i in range(3)]\n"
            "forkparts.write_parts(sys.stdout, [lambda t=t: iter([t[:1000], t[1000:]]) for t in texts])\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert p.stdout == "".join(f"<{i}>" + "y" * 300_000 for i in range(3))


def test_split_covers_every_index():
    for n in (0, 1, 7, 100, 10_001):
        for k in (1, 2, 3, 4):
            ranges = list(forkparts.split(n, k))
            assert len(ranges) == k and ranges[0][0] == 0 and ranges[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
            assert max(b - a for a, b in ranges) - min(b - a for a, b in ranges) <= 1


def _long_verdict(tmp_path) -> Verdict:
    from tests.test_analysis_bulk import _verdict

    return _verdict(tmp_path)


@pytest.mark.parametrize("cores", [2, 3, 4])
def test_a_verdict_written_in_parts_is_its_json(tmp_path, monkeypatch, cores):
    """Exchanges built lazily from batches and built eagerly, split between parts across
    the list's chunks: the text of ``to_json`` (made in one process)."""
    v = _long_verdict(tmp_path)
    assert isinstance(v.exchanges, ExchangeList) and len(v.exchanges) == 121
    monkeypatch.setattr(verdict_mod, "LINE_EACH_PAST", 10)  # one record a line, in parts
    monkeypatch.setattr(verdict_mod, "PART_MIN", 13)
    monkeypatch.setattr(ExchangeList, "CHUNK", 7)
    monkeypatch.setattr(forkparts, "cores", lambda: cores)
    seen: list[int] = []
    real = forkparts.write_parts
    monkeypatch.setattr(forkparts, "write_parts", lambda out, parts: (seen.append(len(parts)), real(out, parts)))
    with open(tmp_path / "v.json", "w") as out:
        v.write_json(out)
    assert seen == [cores]
    text = (tmp_path / "v.json").read_text()
    assert text == v.to_json() == Verdict(v.capture_points, tuple(v.exchanges), v.diagnosis).to_json()
    assert len(text.splitlines()) > 121 and Verdict.from_json(text) == v
    assert _no_children()

