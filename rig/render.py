"""The verdict for people: a rich table of exchanges, what the path changed, the diagnosis."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from rig.verdict import Change, Verdict

MAX_ROWS = 200
OUTCOME_STYLE = {
    "delivered": "green",
    "lost-outbound": "bold red",
    "lost-return": "bold red",
    "unanswered": "yellow",
    "refused": "yellow",
    "answered-by-middlebox": "bold magenta",
    "reset-by-middlebox": "bold magenta",
    "mtu-blackhole": "bold red",
    "incomplete": "dim",
}


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
    shown = verdict.exchanges
    if len(shown) > MAX_ROWS:  # a large capture: the problems first, the rest counted
        shown = tuple(e for e in shown if e.outcome != "delivered")[:MAX_ROWS]
    for e in shown:
        outcome = Text(e.outcome, style=OUTCOME_STYLE.get(e.outcome, ""))
        if narrow:
            where = f"{e.client} > {e.server}\n({e.seen_at_server_as or 'not seen at the server'})"
            table.add_row(e.id, where, outcome, e.explanation)
        else:
            table.add_row(e.id, e.protocol, e.client, e.server, e.seen_at_server_as or "-", outcome, e.explanation)
    console.print(table)
    if len(shown) < len(verdict.exchanges):
        left = len(verdict.exchanges) - len(shown)
        console.print(Text(f"... and {left} more exchanges not shown (delivered, or past the first {MAX_ROWS} "
                           f"problems); --json lists them all", style="dim"))
    # what the path changed, grouped: the same change on many exchanges is printed once
    seen: dict[str, list[str]] = {}
    for e in verdict.exchanges:
        for ch in e.changes:
            seen.setdefault(change_text(ch), []).append(e.id)
    if seen:
        console.print(Text("What the path changed (-> on the way out, <- on the way back):", style="bold"))
        for text, ids in seen.items():
            who = ", ".join(ids[:6]) + (f" and {len(ids) - 6} more" if len(ids) > 6 else "")
            console.print(f"  {text}   [dim]{who}[/dim]", highlight=False)
    style = "bold green" if verdict.exit_code() == 0 else "bold red"
    console.print(Text("Diagnosis: ", style="bold") + Text(verdict.diagnosis.summary, style=style))
