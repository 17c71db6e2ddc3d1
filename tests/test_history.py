"""rig history: runs in time order, change points of the verdict, failed runs kept."""

import json
import shutil
import subprocess
import sys

import pytest

from rig.bundle import BundleWriter, archive
from rig.history import render_timeline_html, runs_in, worst


def _verdict(tcp: str, icmp: str = "delivered") -> dict:
    ex = [
        {"id": "tcp-1", "protocol": "tcp", "client": "192.168.1.10:40312", "server": "198.51.100.10:80",
         "seen_at_server_as": "203.0.113.2:40312", "outcome": tcp, "explanation": "", "changes": [], "evidence": []},
        {"id": "icmp-1", "protocol": "icmp", "client": "192.168.1.10", "server": "198.51.100.10",
         "seen_at_server_as": "203.0.113.2", "outcome": icmp, "explanation": "", "changes": [], "evidence": []},
    ]
    return {"format": "rig.verdict/1", "capture_points": [], "exchanges": ex,
            "diagnosis": {"summary": f"tcp {tcp}, icmp {icmp}",
                          "by_protocol": {"tcp": {tcp: 1}, "icmp": {icmp: 1}}}}


# (tcp outcome or None for a run that failed to run)
SEQUENCE = ["delivered", "delivered", "lost-return", None, "lost-return", "delivered", "delivered"]


@pytest.fixture
def runs_dir(tmp_path):
    d = tmp_path / "runs"
    for i, tcp in enumerate(SEQUENCE):
        w = BundleWriter(d / f"2026112{i}T000000Z-seed", {"backend": "lab"})
        w.add_probe({"kind": "tcp", "ok": tcp == "delivered"})
        w.add_probe({"kind": "icmp", "ok": True})
        if tcp is None:
            w.finish("failed", error="provision: DefaultAzureCredential failed: credentials expired")
        else:
            w.write_verdict(_verdict(tcp))
            w.finish("ok" if tcp == "delivered" else "path-problem")
    # the oldest is archived (retention compresses old bundles): still part of history
    archive(d / "20261120T000000Z-seed")
    shutil.rmtree(d / "20261120T000000Z-seed")
    return d


def test_change_points_and_failed_runs(runs_dir):
    runs = runs_in(runs_dir)
    assert [r.id for r in runs] == [f"2026112{i}T000000Z-seed" for i in range(len(SEQUENCE))]
    assert runs[0].path.endswith(".tar.gz") and runs[0].outcomes == {"icmp": "delivered", "tcp": "delivered"}
    assert [r.changed for r in runs] == [False, False, True, False, False, True, False]
    failed = runs[3]
    assert failed.status == "failed" and "credentials expired" in failed.error and failed.signature is None
    assert runs[2].outcomes["tcp"] == "lost-return" and runs[2].probes == {"icmp": "ok", "tcp": "failed"}


def test_cli_text_json_and_html(runs_dir, tmp_path):
    rig = [sys.executable, "-m", "rig", "history", str(runs_dir)]
    p = subprocess.run(rig, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert len(lines) == len(SEQUENCE) + 1
    assert "verdict changed" in lines[2] and "verdict changed" in lines[5]
    assert "RUN FAILED: provision: DefaultAzureCredential failed" in lines[3]
    assert lines[-1] == "7 runs, 2 change(s) of verdict, 1 failed run(s)"
    j = json.loads(subprocess.run(rig + ["--json"], capture_output=True, text=True, check=True).stdout)
    assert [r["changed"] for r in j] == [False, False, True, False, False, True, False]
    page = tmp_path / "h.html"
    subprocess.run(rig + ["--html", str(page)], capture_output=True, text=True, check=True)
    text = page.read_text()
    assert text.count('class="run changed"') == 2 and text.count('class="run failed"') == 1
    assert "http://" not in text and "https://" not in text  # nothing fetched


def test_not_a_directory_is_one_line(tmp_path):
    p = subprocess.run([sys.executable, "-m", "rig", "history", str(tmp_path / "nope")], capture_output=True, text=True)
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "not a directory" in p.stderr


def test_timeline_png_with_chromium(runs_dir, tmp_path):
    if shutil.which("chromium") is None:
        pytest.skip("chromium not installed (make system installs it)")
    png = tmp_path / "timeline.png"
    p = subprocess.run([sys.executable, "-m", "rig", "history", str(runs_dir), "--png", str(png)],
                       capture_output=True, text=True, timeout=180)
    assert p.returncode == 0, p.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from pathlib import Path

    art = Path(__file__).resolve().parent.parent / "test-artifacts"
    art.mkdir(exist_ok=True)
    shutil.copy(png, art / "history-timeline.png")


def test_empty_dir(tmp_path):
    assert runs_in(tmp_path) == []
    assert "0 runs" in render_timeline_html([])


def test_a_protocol_not_probed_is_no_change(tmp_path):
    d = tmp_path / "runs"
    v1 = _verdict("lost-return")
    v2 = {**v1, "exchanges": v1["exchanges"][:1], "diagnosis": {"summary": "tcp only",
                                                                 "by_protocol": {"tcp": {"lost-return": 1}}}}
    v3 = _verdict("lost-return", icmp="lost-outbound")
    for i, v in enumerate((v1, v2, v3)):
        w = BundleWriter(d / f"2026112{i}T000000Z-x", {})
        w.write_verdict(v)
        w.finish("path-problem")
    assert [r.changed for r in runs_in(d)] == [False, False, True]


def test_worst_outcome_names_the_protocol():
    assert worst(["delivered", "unanswered", "lost-return", "lost-outbound"]) == "lost-return"
    assert worst(["delivered", "refused", None]) == "refused"
    # a newer rig's word ranks as in the report: after every known problem, before delivered
    # (a cell must not turn green over an exchange this rig cannot read)
    assert worst(["delivered", "a-new-outcome"]) == "a-new-outcome"
    assert worst(["a-new-outcome", "refused"]) == "refused"
    assert worst([None]) == "incomplete"


@pytest.mark.parametrize("suffix", [".tar.gz", ".tgz"])
def test_an_archive_beside_its_directory_is_one_run(tmp_path, suffix):
    d = tmp_path / "runs"
    for name in ("a", "20261121T000000Z-b"):
        w = BundleWriter(d / name, {})
        w.write_verdict(_verdict("delivered"))
        w.finish("ok")
        shutil.move(archive(d / name), d / f"{name}{suffix}")
    assert sorted(r.path for r in runs_in(d)) == [str(d / "20261121T000000Z-b"), str(d / "a")]
    shutil.rmtree(d / "a")
    assert sorted(r.path for r in runs_in(d)) == [str(d / "20261121T000000Z-b"), str(d / f"a{suffix}")]
