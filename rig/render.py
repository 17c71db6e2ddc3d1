"""The verdict for people: a rich table of exchanges, what the path changed, the diagnosis."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from rich.console import Console
from rich.table import Table
from rich.text import Text

from rig.nat.records import NatProfile
from rig.outcome import Outcome
from rig.verdict import Change, Exchange, NotSentProbe, Verdict

MAX_ROWS = 200
MAX_CHANGE_VALUES = 8  # distinct values of one field and direction listed one by one


def _change_lines(seen: dict[str, list[str]], kind_of: dict[str, tuple[str, str]]) -> list[tuple[str, list[str]]]:
    """The change lines to print: one per distinct change, except where one field changed
    in more than MAX_CHANGE_VALUES ways in one direction (pf's random IP IDs: a value per
    packet), which is one line for that field and direction; --json keeps every value."""
    by_kind: dict[tuple[str, str], list[str]] = {}
    for text in seen:
        by_kind.setdefault(kind_of[text], []).append(text)
    out, done = [], set()
    for text in seen:  # in the order first met
        kind = kind_of[text]
        group = by_kind[kind]
        if len(group) <= MAX_CHANGE_VALUES:
            out.append((text, seen[text]))
        elif kind not in done:
            done.add(kind)
            ids = sorted({i for t in group for i in seen[t]}, key=_id_order)
            arrow = "->" if kind[1] == "out" else "<-"
            out.append((f"{kind[0]} {arrow} {len(group)} different rewrites (a value per exchange or packet; "
                        "--json lists each)", ids))
    return out


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
    console = console or Console()
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
    light = getattr(verdict.exchanges, "light", None)
    exchanges = list(light() if light is not None else verdict.exchanges)
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
    seen: dict[str, list[str]] = {}
    kind_of: dict[str, tuple[str, str]] = {}  # text -> (field, direction)
    texts: dict[int, str] = {}  # a large run's records share their Change objects: one text each
    for e in exchanges:
        for ch in e.changes:
            text = texts.get(id(ch))
            if text is None:
                text = texts[id(ch)] = change_text(ch)
                kind_of[text] = (ch.field, ch.direction)
            seen.setdefault(text, []).append(e.id)
    if seen:
        console.print(Text("What the path changed (-> on the way out, <- on the way back):", style="bold"))
        for text, ids in _change_lines(seen, kind_of):
            who = ", ".join(ids[:6]) + (f" and {len(ids) - 6} more" if len(ids) > 6 else "")
            console.print(f"  {text}   [dim]{who}[/dim]", highlight=False)
    style = "bold green" if verdict.exit_code() == 0 else "bold red"
    console.print(Text("Diagnosis: ", style="bold") + Text(verdict.diagnosis.summary, style=style))
