"""The diagnosis reads facts, never the sentences the analysis wrote: blanking every
explanation and evidence summary leaves it the same (through the verdict JSON too)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from rig.analysis.api import analyse
from rig.analysis.diagnosis import diagnose
from rig.analysis.families import diagnose_families
from rig.capture import read_capture
from rig.verdict import Evidence, Exchange

DATA = Path(__file__).parent / "data" / "analysis"


def _verdict(name: str, extra: tuple[str, ...] = ()):
    d = DATA / name
    return analyse(read_capture(str(d / "client.pcap")), read_capture(str(d / "server.pcap")),
                   extra={p: read_capture(str(d / f"{p}.pcap")) for p in extra})


def _blank(e: Exchange) -> Exchange:
    return replace(e, explanation="", evidence=tuple(Evidence(x.point, x.frame, "") for x in e.evidence))


@pytest.mark.parametrize("name,extra", [("seed-router", ("router",)), ("port-set", ()), ("seed", ())])
def test_the_diagnosis_is_the_same_with_every_sentence_blanked(name, extra):
    v = _verdict(name, extra)
    blanked = [_blank(e) for e in v.exchanges]
    assert diagnose_families(blanked, v.not_sent or ()).summary == v.diagnosis.summary
    # and from the verdict JSON, as history and the report read it back
    back = [_blank(Exchange.from_dict(e.to_dict())) for e in v.exchanges]
    assert diagnose_families(back, v.not_sent or ()).summary == v.diagnosis.summary


def test_the_hop_and_the_port_reuse_are_typed_fields():
    t = _verdict("seed-router", ("router",)).exchanges[0]
    assert t.lost_between == ("server", "router") and t.to_dict()["lost_between"] == ["server", "router"]
    reused = [e for e in _verdict("port-set").exchanges if e.outcome == "refused"]
    assert reused and all(e.port_reused and e.to_dict()["port_reused"] is True for e in reused)


def test_an_old_verdict_without_the_fields_reads_as_unknown():
    t = _verdict("seed-router", ("router",)).exchanges[0].to_dict()
    del t["lost_between"]
    old = Exchange.from_dict(t)
    assert old.lost_between is None and not old.port_reused
    # unknown hop: the diagnosis says the whole path, never parses the explanation
    assert diagnose([old]).summary.startswith("TCP replies are lost between the server and the client")


def test_the_report_finds_each_echo_probe_with_every_sentence_blanked():
    from rig.report.html import _probe_for

    v = _verdict("seed")
    icmp = [e.to_dict() for e in v.exchanges if e.protocol == "icmp"]
    assert len(icmp) >= 3
    # the seed's pinger: id 228, seq 1.. (one probe record each, as rig.probes writes them)
    probes = [{"id": f"icmp-{i}", "kind": "icmp", "local": icmp[0]["client"], "ok": True,
               "seen": {"ident": 228, "seq": i}} for i in range(1, len(icmp) + 1)]
    for blank in (False, True):
        for x in icmp:
            if blank:
                x = {**x, "explanation": "", "evidence": [{**e, "summary": ""} for e in x["evidence"]]}
            assert [p["id"] for p in _probe_for(x, probes)] == [x["id"]], (blank, x["id"])
