"""The verdict for people: a rich table of exchanges, what the path changed, the diagnosis."""

from __future__ import annotations

from typing import Any, Iterable, Sequence

from rich.console import Console
from rich.table import Table
from rich.text import Text

from rig.gcpause import gc_paused
from rig.grouping import MAX_CHANGE_VALUES, Group, Stories, change_lines
from rig.nat.records import NatProfile
from rig.outcome import Outcome
from rig.verdict import NotSentProbe, Verdict

MAX_ROWS = 200
__all__ = ["MAX_CHANGE_VALUES", "MAX_ROWS", "group_rows", "print_verdict"]


def group_rows(exchanges: Sequence[Any]) -> list[Group]:
    """Group exchanges that tell the same story, in the order each story first appears."""
    return Stories(exchanges).groups()


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
    # a record only for what is printed: the first exchange of each row (rig.grouping)
    stories = Stories(verdict.exchanges)
    # worst first, in rig's one order of outcomes (rig.outcome); within an outcome, as they came
    # (more stories than MAX_ROWS for sure: the delivered ones are not read, rig.grouping)
    many = stories.at_least > MAX_ROWS
    rows = sorted(stories.problem_groups() if many else stories.groups(),
                  key=lambda r: Outcome(r.story.outcome).severity)
    shown = rows
    if many or len(rows) > MAX_ROWS:  # a large capture: the problems first, the rest counted
        shown = [r for r in rows if not Outcome(r.story.outcome).clean][:MAX_ROWS]
    for r in shown:
        e = r.story
        outcome = Text(e.outcome, style=Outcome(e.outcome).style)
        if narrow:
            where = f"{r.client} > {e.server}\n({r.seen_at_server_as})"
            table.add_row(r.ids, where, outcome, e.explanation)
        else:
            table.add_row(r.ids, e.protocol, r.client, e.server, r.seen_at_server_as, outcome, e.explanation)
    if stories.n or verdict.nat is None:  # a run of the NAT tests alone has its profile table instead
        console.print(table)
    hidden = stories.n - sum(r.size for r in shown)
    if hidden:
        console.print(Text(f"... and {hidden} more exchanges not shown (delivered, or past the first {MAX_ROWS} "
                           f"lines of problems); --json lists them all", style="dim"))
    if verdict.not_sent:
        print_not_sent(verdict.not_sent, console)
    if verdict.nat is not None:
        print_nat(verdict.nat, console)
    # what the path changed, grouped: the same change on many exchanges is printed once
    lines = change_lines(stories)
    if lines:
        console.print(Text("What the path changed (-> on the way out, <- on the way back):", style="bold"))
        for text, ids, n in lines:
            who = ", ".join(ids[:6]) + (f" and {n - 6} more" if n > 6 else "")
            console.print(f"  {text}   [dim]{who}[/dim]", highlight=False)
    style = "bold green" if verdict.exit_code() == 0 else "bold red"
    console.print(Text("Diagnosis: ", style="bold") + Text(verdict.diagnosis.summary, style=style))
