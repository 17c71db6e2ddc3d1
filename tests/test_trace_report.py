"""The report draws identical stories once, with their count (issue 11, item 6)."""

from __future__ import annotations

import re

from rig.report.html import render_report


def _ex(i: int, outcome: str, explanation: str, changes=()) -> dict:
    return {"id": f"tcp-{i}", "protocol": "tcp", "client": f"192.168.1.10:{40000 + i}", "server": "198.51.100.10:80",
            "seen_at_server_as": f"203.0.113.2:{40000 + i}", "outcome": outcome, "explanation": explanation,
            "changes": list(changes), "evidence": []}


def test_a_burst_of_identical_losses_is_one_section_with_its_count():
    lost = [_ex(i, "lost-return", "the server answered SYN with SYN-ACK 4 times; none reached the client")
            for i in range(1, 36)]
    odd = _ex(36, "lost-return", "the server answered SYN with SYN-ACK 2 times; none reached the client")
    ttl = [{"field": "ip.ttl", "direction": "out", "client": 64, "server": 61}]
    ok = [_ex(37, "delivered", "fine", ttl), _ex(38, "delivered", "fine", ttl),
          _ex(39, "delivered", "fine", [{"field": "ip.ttl", "direction": "out", "client": 64, "server": 60}])]
    html = render_report({"format": "rig.verdict/1", "capture_points": [], "exchanges": [*lost, odd, *ok],
                          "diagnosis": {"summary": "s", "by_protocol": {}}}, captures=None)
    sections = re.findall(r'<section class="ex" id="ex-(tcp-\d+)"', html)
    assert sections == ["tcp-1", "tcp-36", "tcp-37", "tcp-39"]
    assert "×35: 34 more exchange(s) with the same story" in html
    assert "×2: 1 more exchange(s) with the same story, drawn once: tcp-38" in html
