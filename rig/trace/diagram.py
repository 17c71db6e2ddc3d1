"""The report's path diagram: client — hops — server, from the traces, with a mark where
each group of lost exchanges died, in both directions.

``path_diagram`` lays the hops on one line of columns (0 the client, ``length`` the
server): a forward hop of TTL t stands in column t, a return-path hop of TTL t in column
``length - t``. Exchanges with the same outcome and the same ``lost_at`` are one mark
with their count. ``path_html`` draws it as a table: one cell per hop and one per link,
a row per mark, arrows as far as the packets got and a cross on the link where they
died. Inputs are the JSON forms (``logs/traces.json``, the verdict's exchanges), so a
bundle's report can be drawn again from its files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from html import escape
from typing import Any, Mapping, Sequence


@dataclass(frozen=True)
class Column:
    index: int
    node: str | None
    out: str | None = None  # the address that answered the forward trace here
    back: str | None = None  # ... and the return-path trace


@dataclass(frozen=True)
class Mark:
    protocol: str
    outcome: str
    count: int
    direction: str  # "out" | "return"
    after: int | None  # the column of the last hop that forwarded the packets; None: undecided
    undecided_because: str | None = None


@dataclass(frozen=True)
class PathDiagram:
    columns: tuple[Column, ...]
    marks: tuple[Mark, ...]

    @property
    def length(self) -> int:
        return len(self.columns) - 1


def _host(endpoint: str | None) -> str | None:
    """The address of "192.168.1.10:40312" or "192.168.1.10 id 7" (a trace's source)."""
    if not endpoint:
        return None
    first = endpoint.split(" ", 1)[0]
    return first.rsplit(":", 1)[0] if ":" in first else first


def _length(traces: Sequence[Mapping[str, Any]], exchanges: Sequence[Mapping[str, Any]]) -> int:
    arrived = [t["arrived_ttl"] for t in traces if t.get("arrived_ttl")]
    if arrived:
        return max(arrived)
    deepest = [h["ttl"] for t in traces for h in t.get("hops", ())]
    deepest += [(e["lost_at"].get("after_hop") or {}).get("index") or 0 for e in exchanges if e.get("lost_at")]
    return max(deepest, default=0) + 1


def path_diagram(traces: Sequence[Mapping[str, Any]], exchanges: Sequence[Mapping[str, Any]]) -> PathDiagram | None:
    """The diagram of a run's traces and lost exchanges; None when there is nothing to draw."""
    lost = [e for e in exchanges if isinstance(e.get("lost_at"), Mapping)]
    if not traces and not lost:
        return None
    n = _length(traces, lost)
    nodes: dict[int, str | None] = {0: "client", n: "server"}
    out: dict[int, str] = {}
    back: dict[int, str] = {}
    for t in traces:
        if t.get("direction") == "out" and t.get("source") and 0 not in out:
            out[0] = _host(t["source"]) or ""
        for h in t.get("hops", ()):
            if h.get("kind") == "reply":
                continue
            col = h["ttl"] if t.get("direction") == "out" else n - h["ttl"]
            if not 0 < col < n:
                continue
            (out if t.get("direction") == "out" else back).setdefault(col, h["address"])
            if h.get("node") and nodes.get(col) is None:
                nodes[col] = h["node"]
    columns = tuple(Column(i, nodes.get(i), out.get(i), back.get(i)) for i in range(n + 1))
    groups: dict[tuple, int] = {}
    for e in lost:
        key = (e.get("protocol", "?"), e.get("outcome", "?"), json.dumps(e["lost_at"], sort_keys=True))
        groups[key] = groups.get(key, 0) + 1
    marks = []
    for (proto, outcome, la_text), count in groups.items():
        la = json.loads(la_text)
        hop = la.get("after_hop") or {}
        index = hop.get("index")
        if index is None:
            after = None
        else:
            after = min(index, n) if la["direction"] == "out" else max(n - index, 0)
        marks.append(Mark(proto, outcome, count, la["direction"], after, la.get("undecided_because")))
    return PathDiagram(columns, tuple(marks))


def _cells(d: PathDiagram, m: Mark) -> list[str]:
    """2n+1 cells (hop, link, hop, ..., hop) for one mark."""
    n = d.length
    cells = [""] * (2 * n + 1)
    if m.after is None:
        return cells
    if m.direction == "out":
        for i in range(m.after + 1):
            cells[2 * i] = "●"
        for i in range(m.after):
            cells[2 * i + 1] = "→"
        if m.after < n:
            cells[2 * m.after + 1] = "✗"
        else:
            cells[2 * n] = "● ✗ no reply"
    else:
        for i in range(m.after, n + 1):
            cells[2 * i] = "●"
        for i in range(m.after, n):
            cells[2 * i + 1] = "←"
        if m.after > 0:
            cells[2 * m.after - 1] = "✗"
    return cells


def path_html(d: PathDiagram | None) -> str:
    """The diagram as an HTML section ('' when there is nothing to draw)."""
    if d is None:
        return ""

    def label(c: Column) -> str:
        return escape(c.node or f"hop {c.index}")

    head = "".join(f'<th class="hop">{label(c)}</th>' + ("<th></th>" if c.index < d.length else "")
                   for c in d.columns)

    def addr_row(title: str, pick) -> str:
        cells = "".join(f"<td>{escape(pick(c) or '')}</td>" + ("<td></td>" if c.index < d.length else "")
                        for c in d.columns)
        return f"<tr><th>{escape(title)}</th>{cells}</tr>"

    rows = [addr_row("answered out", lambda c: c.out), addr_row("answered back", lambda c: c.back)]
    notes = []
    for m in d.marks:
        what = f"{m.protocol} {m.outcome} ×{m.count}"
        cells = "".join(f'<td class="{"lost" if "✗" in x else ""}">{escape(x)}</td>' for x in _cells(d, m))
        rows.append(f"<tr><th>{escape(what)}</th>{cells}</tr>")
        if m.after is None:
            notes.append(f"<li>{escape(what)}: where is not known ({escape(m.undecided_because or 'no trace')})</li>")
    note = f'<ul class="muted">{"".join(notes)}</ul>' if notes else ""
    return ('<h2 id="path">The path</h2>'
            '<div class="scroll"><table class="path"><tr><th></th>' + head + "</tr>" + "".join(rows) + "</table></div>"
            + note)
