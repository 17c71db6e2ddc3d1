"""The verdict timeline: the runs (bundles) under a directory in time order, each with its
diagnosis, and the points where the verdict changed.

``runs_in`` finds bundles (directories with a manifest.json, and .tar.gz archives) up to
two levels down and reads only their manifest and verdict (no hashing: fast on a year of
hourly runs). A failed run (credentials expired, rig gone) is a run too: it appears with
its error and never counts as a verdict. A change is a run whose verdict — the set of
outcomes per protocol — differs, for a protocol it measured, from the last run before
it that measured that protocol (a run that did not probe UDP is no change for UDP).

``cli_history`` prints the list (or JSON); ``--html`` draws the timeline (outcome per
protocol and per probe kind over time) as a self-contained page, and ``--png``
screenshots that page with headless Chromium.
"""

from __future__ import annotations

import html
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

from rig.bundle.files import write_output
from rig.bundle.manifest import MANIFEST, Manifest, ManifestError, check_header, upgrade
from rig.errors import InputError, MissingToolError
from rig.outcome import UNKNOWN_COLOUR, Outcome
from rig.outcome import worst as _worst

# a cell's colour: its outcome's (rig.outcome, worst first), a probe kind's, a failed run's
COLORS = {**{str(o): o.colour for o in Outcome}, "ok": "#81c784", "failed": "#e57373", "run failed": "#424242"}
FAILED_STATUSES = ("failed", "interrupted", "running", "unreadable")


@dataclass(frozen=True)
class Run:
    id: str
    path: str
    started: str
    status: str  # ok | path-problem | failed | interrupted | running (killed) | unreadable
    error: str | None
    summary: str | None  # the diagnosis sentence
    outcomes: Mapping[str, str]  # protocol -> worst outcome
    probes: Mapping[str, str]  # probe kind -> "ok" | "failed" (all probes of that kind ok?)
    signature: tuple | None  # what "the verdict" is, None for a run without one
    changed: bool = False  # the verdict differs from the previous run that had one

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["signature"] = None if self.signature is None else [list(x) for x in self.signature]
        return d


ARCHIVE_SUFFIXES = (".tar.gz", ".tgz")


def _unarchived_name(name: str) -> str:
    """The bundle's directory name for an archive's file name (the name itself otherwise)."""
    for suffix in ARCHIVE_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def worst(outcomes) -> str:
    """The outcome that names a protocol's cell (rig.outcome's order); a word this rig does
    not know (a newer rig's) is kept as it is and ranks before ``delivered``."""
    w = _worst(o if isinstance(o, str) else repr(o) for o in outcomes if o)
    return Outcome.INCOMPLETE if w is None else w


def _signature(verdict: Mapping[str, Any] | None) -> tuple | None:
    if not verdict or not verdict.get("exchanges") and not (verdict.get("diagnosis") or {}).get("by_protocol"):
        return None
    bp = (verdict.get("diagnosis") or {}).get("by_protocol") or {}
    if not bp:
        acc: dict[str, set] = {}
        for e in verdict.get("exchanges", ()):
            acc.setdefault(e.get("protocol", "?"), set()).add(e.get("outcome"))
        bp = {k: dict.fromkeys(v, 1) for k, v in acc.items()}
    return tuple(sorted((proto, tuple(sorted(o for o, n in counts.items() if n))) for proto, counts in bp.items()))


def _run_from(path: Path, manifest: Manifest | None, verdict: Mapping[str, Any] | None,
              probes_text: str | None, problem: str | None = None) -> Run:
    m = manifest
    status = "unreadable" if problem or m is None else (m.status or "unknown")
    error = problem or (m.error if m else None)
    sig = _signature(verdict) if status not in FAILED_STATUSES else None
    outcomes: dict[str, str] = {}
    if verdict and status not in FAILED_STATUSES:
        by: dict[str, list] = {}
        for e in verdict.get("exchanges", ()):
            by.setdefault(e.get("protocol", "?"), []).append(e.get("outcome"))
        if not by:
            for proto, counts in ((verdict.get("diagnosis") or {}).get("by_protocol") or {}).items():
                by[proto] = [o for o, n in counts.items() if n]
        outcomes = {p: worst(v) for p, v in sorted(by.items())}
    probes: dict[str, str] = {}
    for line in (probes_text or "").splitlines():
        try:
            p = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(p, dict):
            continue
        kind = str(p.get("kind", "?"))
        ok = bool(p.get("ok"))
        probes[kind] = "ok" if ok and probes.get(kind, "ok") == "ok" else "failed"
    name = _unarchived_name(path.name)
    started = m.started if m else ""
    if not started:
        import datetime as dt

        started = dt.datetime.fromtimestamp(path.stat().st_mtime, dt.timezone.utc).isoformat()
    summary = (verdict or {}).get("diagnosis", {}).get("summary") if verdict else None
    return Run(
        id=(m.id if m else "") or name, path=str(path), started=started, status=status,
        error=error, summary=summary, outcomes=outcomes, probes=dict(sorted(probes.items())), signature=sig,
    )


def _manifest(data: Any, path: Path) -> Manifest:
    """The typed manifest, or ManifestError naming what is wrong with it."""
    return upgrade(data, check_header(data, path.name), path.stat().st_mtime, path.name)


def _read_dir(d: Path) -> Run:
    try:
        m = _manifest(json.loads((d / MANIFEST).read_text()), d)
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        return _run_from(d, None, None, None, problem=f"manifest.json unreadable ({exc})")
    except ManifestError as exc:
        return _run_from(d, None, None, None, problem=_without_name(str(exc), d))
    v = None
    if (d / "verdict.json").exists():
        try:
            v = json.loads((d / "verdict.json").read_text())
        except (OSError, json.JSONDecodeError, UnicodeDecodeError):
            v = None
    try:
        probes = (d / "probes.jsonl").read_text() if (d / "probes.jsonl").exists() else None
    except (OSError, UnicodeDecodeError):
        probes = None
    try:
        return _run_from(d, m, v if isinstance(v, dict) else None, probes)
    except (AttributeError, TypeError, ValueError) as exc:  # a verdict.json of the wrong shape
        return _run_from(d, None, None, None, problem=f"verdict.json malformed ({type(exc).__name__}: {exc})")


def _without_name(message: str, path: Path) -> str:
    """A ManifestError's text without the leading '<name>: ' (the row names the run)."""
    prefix = f"{path.name}: "
    return message[len(prefix):] if message.startswith(prefix) else message


def _read_tar(f: Path) -> Run:
    try:
        with tarfile.open(f) as tar:
            files: dict[str, bytes] = {}
            for mem in tar.getmembers():
                base = mem.name.rsplit("/", 1)[-1]
                if mem.isfile() and base in ("manifest.json", "verdict.json", "probes.jsonl") and mem.name.count("/") <= 1:
                    fh = tar.extractfile(mem)
                    if fh is not None:
                        files[base] = fh.read()
        m = _manifest(json.loads(files["manifest.json"]), f)
        v = json.loads(files["verdict.json"]) if "verdict.json" in files else None
        p = files.get("probes.jsonl", b"").decode("utf-8", "replace")
        return _run_from(f, m, v if isinstance(v, dict) else None, p)
    except ManifestError as exc:
        return _run_from(f, None, None, None, problem=_without_name(str(exc), f))
    except (tarfile.TarError, OSError, EOFError, KeyError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        return _run_from(f, None, None, None, problem=f"archive unreadable ({type(exc).__name__}: {exc})")


def runs_in(directory: Path | str) -> list[Run]:
    """Every bundle under ``directory`` (up to two levels down), oldest first, with
    ``changed`` set where the verdict differs from the previous run that had one."""
    root = Path(directory)
    if not root.is_dir():
        raise InputError(f"{directory}: not a directory")
    found: list[Run] = []

    def scan(d: Path, depth: int) -> None:
        if (d / "manifest.json").exists():
            found.append(_read_dir(d))
            return
        if depth == 0:
            return
        for c in sorted(d.iterdir()):
            if c.name.startswith("."):
                continue
            if c.is_dir():
                scan(c, depth - 1)
            elif c.name.endswith(ARCHIVE_SUFFIXES) and not (c.parent / _unarchived_name(c.name)).is_dir():
                found.append(_read_tar(c))

    scan(root, 2)
    found.sort(key=lambda r: (r.started, r.id))
    out: list[Run] = []
    last: dict[str, tuple] = {}  # protocol -> its outcomes in the last run that measured it
    for r in found:
        cur = dict(r.signature or ())
        # a protocol a run did not probe is no change; a different outcome for one it did is
        changed = any(p in last and last[p] != o for p, o in cur.items())
        last.update(cur)
        out.append(Run(**{**r.__dict__, "changed": changed}))
    return out


# --------------------------------------------------------------------------- output


def format_text(runs: list[Run]) -> str:
    if not runs:
        return "no runs"
    lines = []
    for r in runs:
        mark = "▶" if r.changed else ("✗" if r.status in FAILED_STATUSES else " ")
        when = r.started.replace("T", " ")[:19]
        if r.status == "running":
            what = "RUN NEVER FINISHED (killed, or still running)"
        elif r.status in FAILED_STATUSES:
            what = f"RUN {r.status.upper()}: {r.error or 'no error recorded'}"
        else:
            what = r.summary or ", ".join(f"{p} {o}" for p, o in r.outcomes.items()) or "no verdict"
        lines.append(f"{mark} {when}  {r.id:<32} {r.status:<12} {what}" + ("   <- verdict changed" if r.changed else ""))
    n_changes = sum(r.changed for r in runs)
    n_failed = sum(r.status in FAILED_STATUSES for r in runs)
    lines.append(f"{len(runs)} runs, {n_changes} change(s) of verdict, {n_failed} failed run(s)")
    return "\n".join(lines)


def render_timeline_html(runs: list[Run], title: str = "rig history") -> str:
    """A self-contained page: one row per protocol and per probe kind, one column per
    run; each cell coloured by outcome; changes of verdict marked above the columns."""
    e = html.escape
    protos = sorted({p for r in runs for p in r.outcomes})
    kinds = sorted({k for r in runs for k in r.probes})
    rows = [("protocol", p) for p in protos] + [("probe", k) for k in kinds]
    cw, rh, left, top = 26, 24, 150, 40
    n = max(len(runs), 1)
    width = left + cw * n + 20
    height = top + rh * max(len(rows), 1) + 30
    svg = [f'<svg class="timeline" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
           f'role="img" aria-label="outcome per probe type over time">']
    for j, (group, name) in enumerate(rows):
        y = top + j * rh
        label = f'{e(name)}{" (probe)" if group == "probe" else ""}'
        svg.append(f'<text x="{left - 8}" y="{y + 16}" text-anchor="end" class="rl">{label}</text>')
    for i, r in enumerate(runs):
        x = left + i * cw
        failed = r.status in FAILED_STATUSES
        tip = f"{r.started} {r.id}: " + (f"run {r.status}: {r.error}" if failed else (r.summary or ""))
        cls = f'run{" failed" if failed else ""}{" changed" if r.changed else ""}'
        svg.append(f'<g class="{cls}" data-id="{e(r.id)}"><title>{e(tip)}</title>')
        if r.changed:
            svg.append(f'<line class="change" x1="{x + 1}" y1="{top - 14}" x2="{x + 1}" y2="{height - 24}"/>'
                       f'<text x="{x + 2}" y="{top - 18}" class="cm">▼</text>')
        for j, (group, name) in enumerate(rows):
            y = top + j * rh
            val: str | None
            if failed:
                val = "run failed"
            else:
                val = (r.outcomes if group == "protocol" else r.probes).get(name)
            if val is None:
                continue
            svg.append(f'<rect x="{x + 2}" y="{y + 2}" width="{cw - 4}" height="{rh - 4}" rx="3" '
                       f'fill="{COLORS.get(val, UNKNOWN_COLOUR)}" class="cell" data-value="{e(val)}"/>')
        svg.append("</g>")
    if runs:
        svg.append(f'<text x="{left}" y="{height - 8}" class="ax">{e(runs[0].started[:16])}</text>')
        if cw * n > 260:
            svg.append(f'<text x="{width - 20}" y="{height - 8}" text-anchor="end" class="ax">{e(runs[-1].started[:16])}</text>')
    svg.append("</svg>")
    legend = "".join(
        f'<span class="lg"><i style="background:{c}"></i>{e("probe " + k if k in ("ok", "failed") else k)}</span>'
        for k, c in COLORS.items() if k not in ("ok", "failed") or kinds
    )
    unknown = sorted({o for r in runs for o in r.outcomes.values() if o not in COLORS})
    if unknown:  # words of a newer rig: drawn, in their own colour, never taken for a known outcome
        legend += (f'<span class="lg"><i style="background:{UNKNOWN_COLOUR}"></i>'
                   f'{e("outcome unknown to this rig: " + ", ".join(unknown))}</span>')
    items = []
    for r in runs:
        failed = r.status in FAILED_STATUSES
        what = f"run {r.status}: {r.error or ''}" if failed else (r.summary or "")
        items.append(
            f'<tr class="{"changed" if r.changed else ""}{" failed" if failed else ""}"><td>{"▶ changed" if r.changed else ""}</td>'
            f"<td>{e(r.started.replace('T', ' ')[:19])}</td><td>{e(r.id)}</td><td>{e(r.status)}</td><td>{e(what)}</td></tr>"
        )
    css = (
        "body{font:14px/1.4 system-ui,sans-serif;margin:12px;color:#1b1f24}main{max-width:1100px;margin:auto}"
        ".scroll{overflow-x:auto}svg.timeline{display:block}"
        ".rl{font:12px sans-serif}.ax{font:11px monospace;fill:#5b6570}.cm{font:11px sans-serif;fill:#c62828}"
        ".change{stroke:#c62828;stroke-width:2;stroke-dasharray:3 2}"
        ".lg{display:inline-block;margin:0 .8rem .3rem 0;font-size:12px}.lg i{display:inline-block;width:12px;height:12px;"
        "border-radius:2px;margin-right:4px;vertical-align:-1px}"
        "table{border-collapse:collapse;width:100%;font-size:13px}td,th{border:1px solid #d0d7de;padding:3px 5px;text-align:left}"
        "tr.changed td{background:#fff4e5;font-weight:600}tr.failed td{color:#c62828}"
        "@media print{.scroll{overflow:visible}}"
    )
    n_changes = sum(r.changed for r in runs)
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">"
        f"<title>{e(title)}</title><style>{css}</style></head><body><main>"
        f"<h1>{e(title)}</h1><p>{len(runs)} runs, {n_changes} change(s) of verdict, "
        f"{sum(r.status in FAILED_STATUSES for r in runs)} failed run(s).</p>"
        f'<div class="scroll">{"".join(svg)}</div><p>{legend}</p>'
        f"<table><tr><th></th><th>started</th><th>run</th><th>status</th><th>diagnosis</th></tr>{''.join(items)}</table>"
        "</main></body></html>"
    )


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        exe = shutil.which(name)
        if exe:
            return exe
    raise MissingToolError("chromium is not installed (needed for --png; 'make system' installs it)")


def screenshot(html_path: Path, png_path: Path, width: int = 1100, height: int = 700) -> Path:
    """Render a local HTML file with headless Chromium into a PNG (no network)."""
    exe = chromium()
    with tempfile.TemporaryDirectory(prefix="rig-chromium-") as prof:
        argv = [
            exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--hide-scrollbars", f"--user-data-dir={prof}", f"--window-size={width},{height}",
            f"--screenshot={png_path}", Path(html_path).resolve().as_uri(),
        ]
        try:
            p = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        except subprocess.TimeoutExpired as exc:
            raise MissingToolError("chromium did not finish the screenshot within 120 s") from exc
    if p.returncode != 0 or not Path(png_path).exists():
        last = (p.stderr.strip().splitlines() or ["no output"])[-1]
        raise MissingToolError(f"chromium could not render {html_path} ({last})")
    return Path(png_path)


def cli_history(args) -> int:
    """rig history DIR [--json] [--html FILE] [--png FILE]"""
    runs = runs_in(args.dir)
    if args.json:
        print(json.dumps([r.to_dict() for r in runs], indent=2))
    else:
        print(format_text(runs))
    page = render_timeline_html(runs, title=f"rig history — {os.path.abspath(args.dir)}")
    if args.html:
        write_output(args.html, page)
        if not args.json:
            print(f"timeline: {args.html}")
    if args.png:
        with tempfile.TemporaryDirectory(prefix="rig-history-") as tmp:
            h = Path(tmp) / "history.html"
            h.write_text(page)
            rows = len({p for r in runs for p in r.outcomes} | {k for r in runs for k in r.probes})
            screenshot(h, Path(args.png).resolve(), width=max(900, min(150 + 22 * len(runs) + 60, 4000)),
                       height=260 + 24 * rows + 26 * len(runs))
        if not args.json:
            print(f"timeline: {args.png}", file=sys.stdout)
    return 0
