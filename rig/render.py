"""The verdict for people: a rich table of exchanges, what the path changed, the diagnosis."""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Iterable

from rich.console import Console
from rich.table import Table
from rich.text import Text

from rig.gcpause import gc_paused
from rig.nat.records import NatProfile
from rig.outcome import Outcome
from rig.verdict import Change, Exchange, NotSentProbe, Verdict

MAX_ROWS = 200
MAX_CHANGE_VALUES = 8  # distinct values of one field and direction listed one by one


def _change_lines(exchanges: list[Exchange]) -> list[tuple[str, list[str], int]]:
    """The change lines to print, in the order first met: (text, the first ids, how many
    exchanges). One per distinct change, except where one field changed in more than
    MAX_CHANGE_VALUES ways in one direction (pf's random IP IDs: a value per packet),
    which is one line for that field and direction; --json keeps every value.

    A large run's records share their Change objects (one per signature), but a value
    per packet is a Change per record: each object is visited once, and a field's texts
    are written only until it has more than MAX_CHANGE_VALUES (measured on the pf bench
    pair: a text and an id list per record took 1.6 s of the table's 6)."""
    objs: dict[int, tuple[Change, tuple[int, int], list[int]]] = {}  # id -> (change, first met, positions)
    for pos, e in enumerate(exchanges):
        for j, ch in enumerate(e.changes):
            got = objs.get(id(ch))  # (the records, and so their changes, live as long as ``exchanges``)
            if got is None:
                objs[id(ch)] = (ch, (pos, j), [pos])
            else:
                got[2].append(pos)
    by_kind: dict[tuple[str, str], list[tuple[Change, tuple[int, int], list[int]]]] = {}
    for item in objs.values():
        by_kind.setdefault((item[0].field, item[0].direction), []).append(item)
    out: list[tuple[tuple[int, int], str, list[str], int]] = []
    for (field, direction), items in by_kind.items():
        texts: dict[str, tuple[list[tuple[int, int]], list[int]]] = {}  # text -> (where first met, positions)
        for ch, first, where in items:
            text = change_text(ch)
            had = texts.get(text)
            if had is None:
                texts[text] = ([first], list(where))
            else:
                had[0].append(first)
                had[1].extend(where)
            if len(texts) > MAX_CHANGE_VALUES:
                break
        if len(texts) <= MAX_CHANGE_VALUES:
            for text, (firsts, where) in texts.items():
                at = sorted(set(where))
                out.append((min(firsts), text, [exchanges[p].id for p in at[:6]], len(at)))
        else:
            first = min(f for _, f, _ in items)
            every = {p for _, _, where in items for p in where}
            ids = heapq.nsmallest(6, (exchanges[p].id for p in every), key=_id_order)
            arrow = "->" if direction == "out" else "<-"
            n_values = len({_value_key(ch) for ch, _, _ in items})
            out.append((first, f"{field} {arrow} {n_values} different rewrites (a value per exchange or packet; "
                               "--json lists each)", ids, len(every)))
    out.sort(key=lambda line: line[0])
    return [(text, ids, n) for _, text, ids, n in out]


def _value_key(ch: Change) -> object:
    """What tells two changes of one field and direction apart in ``change_text``, cheaper
    to make than the text (the values and the note; the text where a value is a list)."""
    key = (ch.client, ch.server, ch.note)
    try:
        hash(key)
    except TypeError:
        return change_text(ch)
    return key


def _id_order(exchange_id: str) -> tuple[str, int]:
    proto, _, n = exchange_id.rpartition("-")
    return (proto, int(n)) if n.isdigit() else (exchange_id, 0)


def change_text(ch: Change) -> str:
    arrow = "->" if ch.direction == "out" else "<-"
    if ch.direction == "out":
        a, b = ch.client, ch.server
    else:
        a, b = ch.server, ch.client
    text = f"{ch.field} {arrow} {_v(a)} => {_v(b)}"
    return f"{text} ({ch.note})" if ch.note else text


def _v(x) -> str:
    if isinstance(x, list):
        return "[" + ", ".join(map(str, x)) + "]"
    return "absent" if x is None else str(x)


@dataclass(frozen=True)
class Row:
    """One line of the table: exchanges with the same protocol, server, outcome and
    explanation (a burst of 32 identical losses is one line, not 32)."""

    exchanges: tuple[Exchange, ...]

    @property
    def first(self) -> Exchange:
        return self.exchanges[0]

    @property
    def ids(self) -> str:
        xs = self.exchanges
        if len(xs) == 1:
            return xs[0].id
        if len(xs) <= 3:
            return ", ".join(x.id for x in xs)
        return f"{xs[0].id} … {xs[-1].id}\n({len(xs)} exchanges)"

    @staticmethod
    def _hosts(endpoints: list[str | None], missing: str) -> str:
        """One endpoint, or the host with a count of ports when a group spans several."""
        uniq = list(dict.fromkeys(endpoints))
        if len(uniq) == 1:
            return uniq[0] or missing
        hosts = list(dict.fromkeys((e or missing).rsplit(":", 1)[0] if e and e.count(":") == 1 else (e or missing)
                                   for e in uniq))
        if len(hosts) == 1:
            return f"{hosts[0]}, {len(uniq)} ports"
        return f"{len(uniq)} endpoints"

    @property
    def client(self) -> str:
        return self._hosts([x.client for x in self.exchanges], "-")

    @property
    def seen_at_server_as(self) -> str:
        return self._hosts([x.seen_at_server_as for x in self.exchanges], "not seen at the server")


def group_rows(exchanges: Iterable[Exchange]) -> list[Row]:
    """Group exchanges that tell the same story, in the order each story first appears."""
    groups: dict[tuple[str, str, str, str], list[Exchange]] = {}
    for e in exchanges:
        groups.setdefault((e.protocol, e.server, e.outcome, e.explanation), []).append(e)
    return [Row(tuple(xs)) for xs in groups.values()]


def print_not_sent(not_sent: Iterable[NotSentProbe], console: Console) -> None:
    """The probes whose request never left the client: no capture shows them."""
    table = Table(header_style="bold", title="Not sent (the client's kernel refused them; no capture shows them)",
                  title_justify="left", title_style="bold")
    for col in ("id", "protocol", "target", "size", "why"):
        table.add_column(col, overflow="fold")
    for p in not_sent:
        table.add_row(p.id, p.protocol, p.target, "" if p.size is None else f"{p.size} bytes",
                      Text(p.reason, style="yellow"))
    console.print(table)


def print_nat(profile: NatProfile, console: Console) -> None:
    """The NAT profile (rig.nat): one row per test, one column per protocol."""
    from rig.nat.words import rows

    table = Table(header_style="bold", title="NAT profile (RFC 4787 / 5382 words)", title_justify="left",
                  title_style="bold")
    table.add_column("test")
    for proto in profile.protocols:
        table.add_column(proto.name, overflow="fold")
    for label, cells in rows(profile):
        table.add_row(label, *(Text(c, style="yellow") if c.startswith("undecided") else c for c in cells))
    console.print(table)


def print_verdict(verdict: Verdict, console: Console | None = None) -> None:
    with gc_paused():  # a record per exchange alive at once, no cycles (rig.gcpause)
        _print_verdict(verdict, console or Console())


def _print_verdict(verdict: Verdict, console: Console) -> None:
    pts = ", ".join(
        f"{p.name}: {p.file} ({p.packets} packets"
        + (f", {p.undecoded} undecoded" if p.undecoded else "")
        + (f", {p.kernel_drops} dropped by the kernel" if p.kernel_drops else "")
        + ")"
        for p in verdict.capture_points
    )
    console.print(Text(pts, style="dim"))
    narrow = console.width < 140  # one column for the addresses, so the explanation has room
    table = Table(show_lines=narrow, header_style="bold")
    if narrow:
        table.add_column("id", no_wrap=True)
        table.add_column("client > server\n(seen at server as)", overflow="fold")
    else:
        for col in ("id", "protocol", "client", "server", "seen at server as"):
            table.add_column(col, overflow="fold")
    table.add_column("outcome", overflow="fold")
    table.add_column("explanation", overflow="fold", ratio=1, min_width=20)
    # built once: a large verdict makes its records on demand (rig.verdict.ExchangeList),
    # and the table reads neither evidence nor frames
    views = getattr(verdict.exchanges, "views", None)
    exchanges = views() if views is not None else list(verdict.exchanges)
    # worst first, in rig's one order of outcomes (rig.outcome); within an outcome, as they came
    rows = sorted(group_rows(exchanges), key=lambda r: Outcome(r.first.outcome).severity)
    shown = rows
    if len(rows) > MAX_ROWS:  # a large capture: the problems first, the rest counted
        shown = [r for r in rows if not Outcome(r.first.outcome).clean][:MAX_ROWS]
    for r in shown:
        e = r.first
        outcome = Text(e.outcome, style=Outcome(e.outcome).style)
        if narrow:
            where = f"{r.client} > {e.server}\n({r.seen_at_server_as})"
            table.add_row(r.ids, where, outcome, e.explanation)
        else:
            table.add_row(r.ids, e.protocol, r.client, e.server, r.seen_at_server_as, outcome, e.explanation)
    if exchanges or verdict.nat is None:  # a run of the NAT tests alone has its profile table instead
        console.print(table)
    hidden = len(exchanges) - sum(len(r.exchanges) for r in shown)
    if hidden:
        console.print(Text(f"... and {hidden} more exchanges not shown (delivered, or past the first {MAX_ROWS} "
                           f"lines of problems); --json lists them all", style="dim"))
    if verdict.not_sent:
        print_not_sent(verdict.not_sent, console)
    if verdict.nat is not None:
        print_nat(verdict.nat, console)
    # what the path changed, grouped: the same change on many exchanges is printed once
    lines = _change_lines(exchanges)
    if lines:
        console.print(Text("What the path changed (-> on the way out, <- on the way back):", style="bold"))
        for text, ids, n in lines:
            who = ", ".join(ids[:6]) + (f" and {n - 6} more" if n > 6 else "")
            console.print(f"  {text}   [dim]{who}[/dim]", highlight=False)
    style = "bold green" if verdict.exit_code() == 0 else "bold red"
    console.print(Text("Diagnosis: ", style="bold") + Text(verdict.diagnosis.summary, style=style))
