"""The outcome as one typed value (rig.outcome): exactly the contract's words, one order of
severity that the diagnosis, the terminal, the report and the history all follow, the
JSON text unchanged, unknown words from a newer rig refused (rig show) or shown (rig
history), and no numpy behind ``rig --help``."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from rig.analysis.diagnosis import diagnose
from rig.bundle import BundleWriter
from rig.errors import InputError
from rig.history import format_text, render_timeline_html, runs_in, worst
from rig.outcome import UNKNOWN_COLOUR, Kind, Outcome
from rig.render import print_verdict
from rig.report.html import render_report
from rig.verdict import OUTCOMES, CapturePointInfo, Exchange, Verdict

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data" / "analysis"
# DESIGN.md §3, the outcome table of contract rig.verdict/1 (a copy: the contract is
# relied on from outside, so a change of these words must be a visible change here)
CONTRACT = ("delivered", "lost-outbound", "lost-return", "unanswered", "refused", "answered-by-middlebox",
            "reset-by-middlebox", "mtu-blackhole", "incomplete")


def test_the_enum_is_exactly_the_contracts_words():
    assert sorted(Outcome) == sorted(CONTRACT) and len(Outcome) == len(CONTRACT)
    assert set(OUTCOMES) == set(CONTRACT) and all(isinstance(o, Outcome) for o in OUTCOMES)
    for word in CONTRACT:  # a member is its word: comparisons with strings and JSON hold
        o = Outcome(word)
        assert o == word and str(o) == word and f"{o}" == word and json.dumps(o) == f'"{word}"'


def test_the_contract_table_in_design_md_when_it_is_beside_the_worktree():
    design = next((p for p in (ROOT.parent / "shared" / "DESIGN.md", ROOT / "DESIGN.md") if p.exists()), None)
    if design is None:
        pytest.skip("DESIGN.md is not beside this checkout")
    table = design.read_text().split("| outcome | meaning |", 1)[1].split("\n\n", 1)[0]
    assert set(re.findall(r"^\| `([a-z-]+)` \|", table, re.M)) == set(Outcome)


def test_one_total_order_and_the_kinds():
    sev = [o.severity for o in Outcome]
    assert sev == list(range(len(Outcome)))  # a total order: distinct ranks, declaration order
    assert list(Outcome)[-1] is Outcome.DELIVERED and Outcome.INCOMPLETE.severity == len(Outcome) - 2
    assert [o for o in Outcome if o.clean] == [Outcome.DELIVERED]
    assert {o for o in Outcome if o.kind is Kind.UNDECIDED} == {Outcome.INCOMPLETE}
    assert {o for o in Outcome if o.kind is Kind.SERVER} == {Outcome.UNANSWERED, Outcome.REFUSED}
    # the diagnosis writes its clauses in this order; its sentence is part of the verdict JSON
    from rig.analysis import diagnosis

    assert diagnosis._SEVERITY == tuple(o for o in Outcome if not o.clean)
    assert all(o.style and re.fullmatch(r"#[0-9a-f]{6}", o.colour) for o in Outcome)
    assert len({o.colour for o in Outcome} | {UNKNOWN_COLOUR}) == len(Outcome) + 1  # one colour each


def _ex(i: int, outcome: str) -> Exchange:
    return Exchange(f"tcp-{i}", "tcp", f"192.168.1.10:{40000 + i}", "198.51.100.10:80", f"203.0.113.2:{40000 + i}",
                    Outcome(outcome), f"story {outcome}")


MIXED = ("delivered", "lost-outbound", "answered-by-middlebox", "lost-return", "refused")


def test_a_mixed_run_has_the_same_dominant_outcome_everywhere(tmp_path):
    exchanges = tuple(_ex(i, o) for i, o in enumerate(MIXED, 1))
    v = Verdict((CapturePointInfo("client", "client.pcap", 10, 0, 0),), exchanges, diagnose(exchanges))
    want = min(MIXED, key=lambda w: Outcome(w).severity)
    assert want == Outcome.ANSWERED_BY_MIDDLEBOX
    # diagnosis: the first clause is the dominant outcome's
    first = v.diagnosis.summary.split("; ")[0]
    assert first.lower().startswith("something between the client and the server answers tcp")
    # terminal: the first row of the table
    console = Console(record=True, width=200, color_system=None)
    print_verdict(v, console)
    rows = [m.group(1) for m in re.finditer(r"│ tcp-\d+\s+│.*?│ ([a-z-]+)\s+│", console.export_text())]
    assert rows[0] == want and rows == sorted(MIXED, key=lambda w: Outcome(w).severity)
    # report: the first exchange section, and every section in the same order as the terminal
    listed = re.findall(r'data-outcome="([^"]+)"', render_report(v.to_dict(), captures=None))
    assert listed == rows
    # history: the protocol's cell
    w = BundleWriter(tmp_path / "runs" / "20261201T000000Z-x", {})
    w.write_verdict(v)
    w.finish("path-problem")
    (run,) = runs_in(tmp_path / "runs")
    assert run.outcomes == {"tcp": want}
    assert worst(MIXED) == want and v.exit_code() == 1


@pytest.mark.parametrize("name", sorted(p.name for p in DATA.iterdir()))
def test_outcomes_are_typed_and_the_json_text_is_the_words(name):
    from rig.analysis.api import analyse
    from rig.capture import read_capture

    d = DATA / name
    v = analyse(read_capture(str(d / "client.pcap")), read_capture(str(d / "server.pcap")))
    assert v.exchanges and all(type(e.outcome) is Outcome for e in v.exchanges)
    # the same verdict with plain strings for outcomes writes the same characters
    plain = Verdict(v.capture_points, tuple(dataclasses.replace(e, outcome=str(e.outcome)) for e in v.exchanges),
                    v.diagnosis, v.not_sent, port_set=v.port_set)
    assert all(type(e.outcome) is str for e in plain.exchanges)
    text = v.to_json()
    assert text == plain.to_json() and "Outcome" not in text
    back = Verdict.from_json(text)
    assert all(type(e.outcome) is Outcome for e in back.exchanges) and back.to_json() == text


def test_an_unknown_word_read_back_is_an_input_error():
    d = Verdict((), (_ex(1, "delivered"),), diagnose((_ex(1, "delivered"),))).to_dict()
    d["exchanges"][0]["outcome"] = "a-new-outcome"
    with pytest.raises(InputError, match=r"exchange tcp-1: outcome 'a-new-outcome' is not a rig.verdict/1 outcome"):
        Verdict.from_dict(d)


def test_rig_show_refuses_a_recorded_outcome_it_does_not_know(tmp_path):
    from rig.bundle import hash_files
    from tests.test_bundle_show import make_seed_bundle, show

    b = tmp_path / "20261126T000000Z-seed"
    make_seed_bundle(b)
    v = json.loads((b / "verdict.json").read_text())
    v["exchanges"][0]["outcome"] = "lost-in-space"  # a newer rig's word
    (b / "verdict.json").write_text(json.dumps(v))
    m = json.loads((b / "manifest.json").read_text())
    m["files"] = hash_files(b)
    (b / "manifest.json").write_text(json.dumps(m))
    p = show(b)
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr.count("\n") == 1 and "Traceback" not in p.stderr
    assert "verdict.json, exchange tcp-1: outcome 'lost-in-space' is not a rig.verdict/1 outcome word" in p.stderr


def test_rig_history_shows_an_unknown_word_as_such(tmp_path):
    d = tmp_path / "runs"
    for i, tcp in enumerate(("delivered", "lost-in-space")):
        ex = [{"id": f"tcp-{j}", "protocol": "tcp", "client": "192.168.1.10:40312", "server": "198.51.100.10:80",
               "seen_at_server_as": None, "outcome": o, "explanation": "", "changes": [], "evidence": []}
              for j, o in enumerate(("delivered", tcp), 1)]
        w = BundleWriter(d / f"2026120{i}T000000Z-x", {})
        w.write_verdict({"format": "rig.verdict/1", "capture_points": [], "exchanges": ex,
                         "diagnosis": {"summary": "", "by_protocol": {}}})
        w.finish("path-problem")
    runs = runs_in(d)
    assert [r.outcomes["tcp"] for r in runs] == ["delivered", "lost-in-space"]  # not hidden behind delivered
    assert runs[1].changed
    assert "tcp lost-in-space" in format_text(runs)
    page = render_timeline_html(runs)
    assert f'fill="{UNKNOWN_COLOUR}" class="cell" data-value="lost-in-space"' in page
    assert "outcome unknown to this rig: lost-in-space" in page


@pytest.mark.parametrize("argv", [["--help"], ["lab", "scenarios"]])
def test_the_cli_without_analysis_imports_no_numpy(argv):
    code = ("import sys\nfrom rig.cli import main\nimport rig.outcome\n"
            f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
            "print('NUMPY' if 'numpy' in sys.modules else 'NO-NUMPY', file=sys.stderr)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert p.stderr.strip().splitlines()[-1] == "NO-NUMPY", p.stderr
