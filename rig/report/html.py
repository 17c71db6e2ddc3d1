"""Render a run's report: one HTML file with inline CSS and SVG, readable on a phone and
in print.

Order of the page: the diagnosis in one sentence; outcome counts per protocol; one
section per exchange (problems first) with its ladder diagram, the probe's own view
(connected? HTTP status? socket state?) and what the path changed; a table of the NAT
mappings and changed fields; the run's facts (status, stage timings, capture points,
tools). Input is the ``rig.verdict/1`` JSON (so any stored verdict renders), the bundle
manifest and probe records, and the captures for the ladders.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any, Mapping, Sequence

from rig.outcome import Outcome, rank
from rig.report.ladder import build_ladder, ladder_svg
from rig.trace.diagram import path_diagram, path_html

SHOW_PER_OUTCOME = 4  # exchanges drawn open per outcome; the rest fold under <details>


def _exchange_order(x: Mapping[str, Any]) -> tuple:
    ident = str(x.get("id", ""))
    proto, _, num = ident.rpartition("-")
    # worst first (rig.outcome); an outcome this rig does not know comes before the delivered ones
    return (rank(x.get("outcome")), proto, int(num) if num.isdigit() else 0, ident)


CSS = """
:root{--fg:#1b1f24;--muted:#5b6570;--bad:#c62828;--good:#2e7d32;--warn:#b35c00;--line:#d0d7de;--bg:#fff;--card:#f6f8fa}
*{box-sizing:border-box}
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;\
color:var(--fg);background:var(--bg);margin:0;padding:12px}
main{max-width:980px;margin:0 auto}
h1{font-size:1.35rem;margin:.2rem 0 .4rem}
h2{font-size:1.1rem;margin:1.6rem 0 .5rem;border-bottom:1px solid var(--line);padding-bottom:.2rem}
h3{font-size:1rem;margin:0 0 .3rem;word-break:break-word}
.diagnosis{font-size:1.25rem;font-weight:600;padding:.7rem .9rem;border-left:6px solid var(--bad);background:#fdecea;border-radius:4px}
.diagnosis.clean{border-color:var(--good);background:#e8f5e9}
.diagnosis.failed{border-color:var(--warn);background:#fff4e5}
.muted{color:var(--muted)}
table.path{width:auto}table.path td,table.path th.hop{text-align:center}table.path td.lost{color:var(--bad);font-weight:600}
.meta{color:var(--muted);font-size:.85rem;margin:.3rem 0 0}
.badge{display:inline-block;padding:0 .45rem;border-radius:9px;font-size:.8rem;font-weight:600;\
color:#fff;background:var(--bad);vertical-align:middle}
""" + "".join(f".badge.{o}{{background:{o.colour}}}\n" for o in Outcome) + """\
section.ex{background:var(--card);border:1px solid var(--line);border-radius:6px;padding:.7rem;\
margin:.8rem 0;break-inside:avoid;page-break-inside:avoid}
.cols{display:flex;flex-wrap:wrap;gap:.8rem}
.cols>.draw{flex:3 1 380px;min-width:0}
.cols>.side{flex:1 1 200px;min-width:0;font-size:.88rem}
.side h4{margin:.2rem 0;font-size:.9rem}
.side ul{padding-left:1.1rem;margin:.2rem 0}
details.more>summary{cursor:pointer;margin:.6rem 0;font-weight:600}
svg.ladder{width:100%;height:auto;display:block;background:#fff;border:1px solid var(--line);border-radius:4px}
svg.ladder .col{font:600 15px sans-serif;fill:var(--fg)}
svg.ladder .post{stroke:#8c959f;stroke-width:2}
svg.ladder .pkt line{stroke:#1f4e79;stroke-width:2}
svg.ladder .pkt.middlebox>line{stroke:var(--warn);stroke-dasharray:6 4}
svg.ladder .pkt.lost>line{stroke:var(--bad)}
svg.ladder .pkt .lost-mark line{stroke:var(--bad);stroke-width:3}
svg.ladder .origin{fill:var(--warn)}
svg.ladder .lbl{font:13px sans-serif;fill:var(--fg)}
svg.ladder .pkt.lost .lbl{fill:var(--bad);font-weight:600}
svg.ladder .t{font:11px monospace;fill:var(--muted)}
table{border-collapse:collapse;width:100%;font-size:.88rem;margin:.3rem 0}
th,td{border:1px solid var(--line);padding:.25rem .4rem;text-align:left;vertical-align:top;overflow-wrap:break-word}
th{background:#eef1f4}
dl.kv{display:grid;grid-template-columns:max-content 1fr;gap:.1rem .6rem;margin:.2rem 0}
dl.kv dt{color:var(--muted)}
dl.kv dd{margin:0;word-break:break-word}
.scroll{overflow-x:auto}
code{font-size:.85em}
footer{margin-top:2rem;color:var(--muted);font-size:.8rem}
@media (max-width:600px){body{padding:6px;font-size:14px}.diagnosis{font-size:1.05rem}}
@media print{body{padding:0;font-size:11pt}section.ex{background:none}details{display:block}details>summary{display:none}
 .diagnosis{background:none}a{color:inherit}}
"""


def _e(x: Any) -> str:
    return html.escape("" if x is None else str(x))


def _load_tables(captures: Mapping[str, Any] | None) -> tuple[dict, str | None]:
    """Captures (or bare packet tables) per point from paths or Capture objects; never fails the report."""
    tables, problems = {}, []
    for point, c in (captures or {}).items():
        if hasattr(c, "packets"):  # a Capture (the ladder needs its ``quoted`` too)
            tables[point] = c
            continue
        if hasattr(c, "dtype"):  # a packet table already
            tables[point] = c
            continue
        try:
            from rig.capture import read_capture

            tables[point] = read_capture(str(c))
        except Exception as exc:  # a report still renders without one capture's ladder
            problems.append(f"{point}: {exc}")
    return tables, ("; ".join(problems) or None)


def _probe_for(ex: Mapping[str, Any], probes: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Probe records that made this exchange: same local address:port (TCP/UDP/HTTP), or
    same source and echo id and sequence (ICMP, the exchange's ``echo``; none when the
    verdict predates it: unknown)."""
    client = ex.get("client") or ""
    out = []
    for p in probes:
        local = p.get("local")
        if local and local == client and ex.get("protocol") != "icmp":
            out.append(p)
            continue
        seen = p.get("seen") or {}
        if ex.get("protocol") == "icmp" and local and client == local and p.get("kind") == "icmp":
            echo = ex.get("echo") if isinstance(ex.get("echo"), Mapping) else None
            seq, ident = seen.get("seq"), seen.get("ident")
            if seq is None or (echo is not None and echo.get("seq") == seq
                               and (ident is None or echo.get("id") == ident)):
                out.append(p)
        for conn in seen.get("connections", ()) if isinstance(seen.get("connections"), list) else ():
            if isinstance(conn, Mapping) and conn.get("local") == client:
                result = conn.get("result")
                out.append({
                    **p, "id": f"{p.get('id')} (one of the burst)", "seen": conn,
                    "ok": result in ("connected", "ok"), "error": None if result in ("connected", "ok") else result,
                    "tcp": {"state": conn.get("state")} if conn.get("state") else None,
                })
    return out


def _probe_view(p: Mapping[str, Any]) -> str:
    raw = p.get("seen") or {}
    tcp = p.get("tcp") or {}
    seen = {k: v for k, v in raw.items() if not isinstance(v, (list, dict))}
    rows = [("probe", f"{p.get('id', '?')} ({p.get('kind', '?')})")]
    if p.get("kind") in ("tcp", "http", "large", "burst") or tcp:
        connected = seen.get("connected") if isinstance(seen.get("connected"), bool) else (
            p.get("ok") or tcp.get("state") in ("ESTABLISHED", "TIME_WAIT", "FIN_WAIT1", "FIN_WAIT2", "CLOSE_WAIT"))
        rows.append(("connected?", "yes" if connected else "no"))
    else:
        rows.append(("answered?", "yes" if p.get("ok") else "no"))
    status = seen.get("status") or seen.get("http_status")
    if status is not None:
        rows.append(("HTTP status", status))
    if tcp.get("state"):
        rows.append(("socket state", tcp["state"]))
    if tcp.get("total_retrans"):
        rows.append(("retransmissions", tcp["total_retrans"]))
    if p.get("error"):
        rows.append(("error", p["error"]))
    # the names rig.probes records in ``seen`` (rig/probes/http.py, icmp.py, udp.py)
    for k in ("request_sent", "bytes_received", "body_bytes", "body_ok", "stalled", "echoed", "server",
              "responder", "reply_from", "reply_ttl", "rtt_ms", "size"):
        if seen.get(k) is not None:
            v = seen[k]
            rows.append((k.replace("_", " "), ("yes" if v else "no") if isinstance(v, bool) else v))
    proxy = raw.get("proxy_headers")
    if isinstance(proxy, dict) and proxy:
        rows.append(("proxy/cache headers", "; ".join(f"{h}: {v}" for h, v in proxy.items())))
    return '<dl class="kv">' + "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in rows) + "</dl>"


def _probe_detail(p: Mapping[str, Any]) -> str:
    """One short phrase of what the probe measured, by kind."""
    seen = p.get("seen") or {}
    kind = p.get("kind")
    if kind == "burst" and "n" in seen:
        return f"{seen.get('connected', 0)} of {seen['n']} connected"
    if kind == "icmp":
        bits = [f"{seen['size']} B" if "size" in seen else "", "DF" if seen.get("df") else "",
                f"reply ttl {seen['reply_ttl']}" if seen.get("reply_ttl") is not None else ""]
        return " ".join(b for b in bits if b)
    if kind == "udp":
        return "echoed" if seen.get("echoed") else "no echo"
    if kind == "large-udp":
        return f"{seen.get('bytes_sent', 0)} B in fragments, " + ("echoed" if seen.get("echoed") else "no echo")
    if kind in ("http", "large"):
        if seen.get("stalled"):
            return f"stalled after {seen.get('bytes_received', 0)} bytes"
        if "bytes_received" in seen:
            return f"{seen['bytes_received']} bytes"
    return ""


def _changes_table(changes: Sequence[Mapping[str, Any]], with_exchange: bool = False) -> str:
    if not changes:
        return ""
    head = (("<th>exchange</th>" if with_exchange else "")
            + "<th>field</th><th>direction</th><th>at client</th><th>at server</th><th>note</th>")
    rows = []
    for c in changes:
        rows.append(
            "<tr>" + (f"<td>{_e(c.get('_ex'))}</td>" if with_exchange else "")
            + f"<td><code>{_e(c.get('field'))}</code></td><td>{_e(c.get('direction'))}</td>"
            f"<td>{_e(json.dumps(c.get('client')) if isinstance(c.get('client'), (list, dict)) else c.get('client'))}</td>"
            f"<td>{_e(json.dumps(c.get('server')) if isinstance(c.get('server'), (list, dict)) else c.get('server'))}</td>"
            f"<td>{_e(c.get('note') or _note(c))}</td></tr>"
        )
    return f'<div class="scroll"><table class="changes"><tr>{head}</tr>{"".join(rows)}</table></div>'


def _note(c: Mapping[str, Any]) -> str:
    if c.get("field") == "ip.ttl":
        try:
            a, b = int(c["client"]), int(c["server"])
            hops = a - b if c.get("direction") == "out" else b - a
            return f"{abs(hops)} hop(s)"
        except (TypeError, ValueError, KeyError):
            return ""
    if c.get("field") == "tcp.mss":
        return "MSS clamped" if c.get("client") != c.get("server") else ""
    return ""


def _ids(ids: Sequence[str], n: int = 8) -> str:
    return ", ".join(ids[:n]) + (f" and {len(ids) - n} more" if len(ids) > n else "")


def _split(endpoint: str | None) -> tuple[str | None, str | None]:
    if not endpoint:
        return None, None
    if endpoint.count(":") == 1:
        host, port = endpoint.split(":")
        return host, port
    if endpoint.startswith("[") and "]:" in endpoint:
        host, port = endpoint[1:].split("]:")
        return host, port
    return endpoint, None


def _nat_table(exchanges: Sequence[Mapping[str, Any]]) -> str:
    """The NAT mappings, grouped: client address -> address the server saw, ports kept?"""
    groups: dict[tuple, dict] = {}
    for x in exchanges:
        ch, cp = _split(x.get("client"))
        sh, sp = _split(x.get("seen_at_server_as"))
        g = groups.setdefault((x.get("protocol"), ch, sh), {"ids": [], "kept": 0, "ported": 0, "examples": []})
        g["ids"].append(x.get("id", "?"))
        if cp is not None and sp is not None:
            g["ported"] += 1
            g["kept"] += cp == sp
            if cp != sp and len(g["examples"]) < 3:
                g["examples"].append(f"{cp}→{sp}")
    if not groups:
        return ""
    rows = []
    for (proto, ch, sh), g in groups.items():
        if sh is None:
            ports = "—"
        elif g["ported"] == 0:
            ports = "n/a"
        elif g["kept"] == g["ported"]:
            ports = f"kept ({g['ported']} of {g['ported']})"
        else:
            ports = f"rewritten in {g['ported'] - g['kept']} of {g['ported']} (" + ", ".join(g["examples"]) + ")"
        rows.append(
            f"<tr><td>{_e(proto)}</td><td>{_e(ch)}</td><td>{_e(sh or 'never seen at the server')}</td>"
            f"<td>{_e(ports)}</td><td>{_e(_ids(g['ids']))}</td></tr>"
        )
    return ('<div class="scroll"><table class="nat"><tr><th>protocol</th><th>client sent from</th>'
            '<th>server saw it from (NAT mapping)</th><th>source ports</th><th>exchanges</th></tr>'
            + "".join(rows) + "</table></div>")


def _grouped_changes(exchanges: Sequence[Mapping[str, Any]]) -> list[dict]:
    """Identical changes across exchanges become one row naming the exchanges."""
    groups: dict[tuple, dict] = {}
    for x in exchanges:
        for c in x.get("changes", ()):
            key = (c.get("field"), c.get("direction"), json.dumps(c.get("client")), json.dumps(c.get("server")),
                   c.get("note"))
            g = groups.setdefault(key, {**c, "_ids": []})
            g["_ids"].append(x.get("id", "?"))
    return [{**g, "_ex": _ids(g.pop("_ids"))} for g in groups.values()]


def render_report(
    verdict: Mapping[str, Any],
    manifest: Mapping[str, Any] | None = None,
    probes: Sequence[Mapping[str, Any]] | None = None,
    captures: Mapping[str, Any] | None = None,
    traces: Sequence[Mapping[str, Any]] | None = None,
) -> str:
    """The whole report as one HTML string. ``traces``: logs/traces.json (rig.trace), for
    the path diagram."""
    manifest = manifest or {}
    probes = list(probes or ())
    diag = verdict.get("diagnosis") or {}
    exchanges = list(verdict.get("exchanges") or ())
    status = manifest.get("status")
    tables, cap_problem = _load_tables(captures)
    offsets = {
        c["name"]: c["clock_offset_s"] for c in verdict.get("capture_points", ()) if c.get("clock_offset_s") is not None
    }
    drops = {c["name"]: c.get("kernel_drops") for c in verdict.get("capture_points", ())}
    clean = bool(exchanges) and all(getattr(Outcome.known(x.get("outcome")), "clean", False) for x in exchanges)
    if verdict.get("nat"):  # the NAT profile (rig.nat): clean only when every protocol reached the responder
        from rig.nat.records import NatProfile

        profile = NatProfile.from_dict(verdict["nat"])
        clean = profile.complete and (clean or not exchanges)
    dcls = "clean" if clean else ("failed" if status in ("failed", "interrupted") and not exchanges else "")
    summary = diag.get("summary") or (
        f"The run {status}: {manifest.get('error')}" if status in ("failed", "interrupted") else "No verdict."
    )
    spec = manifest.get("spec") or {}
    title = f"rig report — {manifest.get('id') or ''}".strip(" —")
    meta_bits = [
        f"run {manifest.get('id')}" if manifest.get("id") else None,
        f"backend {spec.get('backend') or (manifest.get('backend') or {}).get('backend')}" if spec.get("backend") else None,
        f"scenario {spec.get('scenario')}" if spec.get("scenario") else None,
        f"started {manifest.get('started')}" if manifest.get("started") else None,
        f"status {status}" if status else None,
        f"rig {manifest.get('rig_version')}" if manifest.get("rig_version") else None,
        "private addresses redacted" if manifest.get("redacted") else None,
    ]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">",
        f"<title>{_e(title)}</title><style>{CSS}</style></head><body><main>",
        f'<h1>{_e(title)}</h1>',
        f'<p id="diagnosis" class="diagnosis {dcls}">{_e(summary)}</p>',
        f'<p class="meta">{_e(" · ".join(b for b in meta_bits if b))}</p>',
    ]
    if status in ("failed", "interrupted") and manifest.get("error"):
        parts.append(f'<p class="diagnosis failed">The run {_e(status)}: {_e(manifest.get("error"))}</p>')
    # outcome counts
    bp = diag.get("by_protocol") or {}
    if bp:
        rows = "".join(
            f"<tr><td>{_e(proto)}</td><td>"
            + ", ".join(f'<span class="badge {_e(o)}">{_e(o)}</span> ×{_e(n)}' for o, n in counts.items())
            + "</td></tr>"
            for proto, counts in bp.items()
        )
        parts.append(f'<table class="outcomes"><tr><th>protocol</th><th>outcomes</th></tr>{rows}</table>')
    parts.append(_not_sent_table(verdict.get("not_sent") or ()))
    parts.append(path_html(path_diagram(traces or (), exchanges)))  # where each group died (rig.trace.diagram)
    parts.append(_nat_profile_table(verdict.get("nat")))
    # exchanges, problems first
    if exchanges:
        parts.append("<h2>Exchanges</h2>")
        if cap_problem:
            parts.append(f'<p class="muted">ladders drawn without some captures: {_e(cap_problem)}</p>')
    ordered = sorted(exchanges, key=_exchange_order)
    stories: dict[str, list] = {}  # identical stories are drawn once, with their count
    for x in ordered:
        stories.setdefault(_story(x), []).append(x)
    shown: dict[str, int] = {}
    folded: dict[str, list] = {}
    for same in stories.values():
        o = same[0].get("outcome", "?")
        if shown.get(o, 0) < SHOW_PER_OUTCOME:
            shown[o] = shown.get(o, 0) + 1
            parts.append(_exchange_section(same[0], tables, offsets, probes, drops, same[1:]))
        else:
            folded.setdefault(o, []).append(same)
    for o, groups in folded.items():
        xs = [x for same in groups for x in same]
        parts.append(
            f'<details class="more"><summary>{len(xs)} more {_e(o)} exchange(s): '
            f'{_e(", ".join(x.get("id", "?") for x in xs[:12]))}{" …" if len(xs) > 12 else ""}</summary>'
        )
        parts.extend(_exchange_section(same[0], tables, offsets, probes, drops, same[1:]) for same in groups)
        parts.append("</details>")
    # what the path changed
    parts.append('<h2 id="changed">What the path changed</h2>')
    parts.append(_nat_table(exchanges))
    parts.append(_changes_table(_grouped_changes(exchanges), with_exchange=True)
                 or '<p class="muted">no field changed beyond the NAT rewrite</p>')
    # probes
    if probes:
        parts.append("<h2>What the probes saw</h2>")
        probe_rows = []
        for p in probes:
            tcp = p.get("tcp") or {}
            seen = p.get("seen") or {}
            probe_rows.append(
                f"<tr><td>{_e(p.get('id'))}</td><td>{_e(p.get('kind'))}</td><td>{_e(p.get('target'))}</td>"
                f"<td>{'yes' if p.get('ok') else 'no'}</td><td>{_e(seen.get('status', ''))}</td>"
                f"<td>{_e(tcp.get('state', ''))}</td><td>{_e(p.get('error') or '')}</td>"
                f"<td>{_e(_probe_detail(p))}</td><td>{_e(p.get('local') or '')}</td></tr>"
            )
        parts.append(
            '<div class="scroll"><table class="probes"><tr><th>probe</th><th>kind</th><th>target</th><th>ok</th>'
            "<th>HTTP</th><th>socket</th><th>error</th><th>detail</th><th>local</th></tr>"
            f"{''.join(probe_rows)}</table></div>"
        )
    parts.append(_facts(verdict, manifest))
    parts.append(
        '<footer>Generated by rig. Ladder: one column per capture point; an arrow per packet; '
        "a red cross marks where a packet vanished; dashed orange arrows start where something on the path "
        "made a packet its sender never sent.</footer></main></body></html>"
    )
    return "\n".join(parts)


def _nat_profile_table(nat: Mapping[str, Any] | None) -> str:
    """The verdict's ``nat`` section (rig.nat), one row per test, one column per protocol."""
    if not nat:
        return ""
    from rig.nat.records import NatProfile
    from rig.nat.words import rows

    profile = NatProfile.from_dict(nat)
    head = "".join(f"<th>{_e(p.name)}</th>" for p in profile.protocols)
    body = "".join(f"<tr><td>{_e(label)}</td>" + "".join(f"<td>{_e(c)}</td>" for c in cells) + "</tr>"
                   for label, cells in rows(profile))
    return f'<h2 id="nat">NAT profile</h2><table class="nat-profile"><tr><th>test</th>{head}</tr>{body}</table>'


def _not_sent_table(not_sent: Sequence[Mapping[str, Any]]) -> str:
    """The probes whose request never left the client (the verdict's ``not_sent``)."""
    if not not_sent:
        return ""
    rows = "".join(
        f"<tr><td>{_e(p.get('id'))}</td><td>{_e(p.get('protocol'))}</td><td>{_e(p.get('target'))}</td>"
        f"<td>{_e('' if p.get('size') is None else str(p.get('size')) + ' bytes')}</td><td>{_e(p.get('reason'))}</td></tr>"
        for p in not_sent
    )
    return ('<h2 id="not-sent">Not sent</h2><p class="muted">the client\'s kernel refused to send these probes: '
            'no capture shows them, so no exchange stands for them</p>'
            '<table class="not-sent"><tr><th>probe</th><th>protocol</th><th>target</th><th>size</th><th>why</th></tr>'
            f"{rows}</table>")


def _story(x: Mapping[str, Any]) -> str:
    """What the report says of an exchange beyond its id and ports: exchanges with equal
    stories (the seed's burst of 35 lost handshakes) are drawn once, with their count."""
    changes = [(c.get("field"), c.get("direction"), c.get("client"), c.get("server")) for c in x.get("changes") or ()]
    return json.dumps([x.get("protocol"), x.get("outcome"), x.get("explanation"), x.get("lost_between"),
                       x.get("lost_at"), changes], sort_keys=True, default=str)


def _exchange_section(x, tables, offsets, probes, drops=None, same: Sequence[Mapping[str, Any]] = ()) -> str:
    outcome = x.get("outcome", "?")
    ladder = build_ladder(x, tables, offsets) if tables else None
    head = (
        f'<section class="ex" id="ex-{_e(x.get("id"))}" data-outcome="{_e(outcome)}">'
        f'<h3>{_e(x.get("id"))} · {_e(x.get("protocol"))} {_e(x.get("client"))} → {_e(x.get("server"))} '
        f'<span class="badge {_e(outcome)}">{_e(outcome)}</span></h3>'
        f'<p>{_e(x.get("explanation"))}</p>'
    )
    if same:
        head += (f'<p class="same">×{len(same) + 1}: {_e(len(same))} more exchange(s) with the same story, drawn once: '
                 f'{_e(_ids([str(y.get("id", "?")) for y in same], 12))}</p>')
    if ladder is not None and ladder.points:
        draw = ladder_svg(ladder, title=f"{x.get('id')}: {outcome}")
        if ladder.note:
            draw += f'<p class="muted">{_e(ladder.note)}</p>'
        dropped = {p: n for p, n in (drops or {}).items() if n and p in ladder.points}
        if dropped:
            draw += ('<p class="muted">the kernel dropped packets at ' + _e(", ".join(f"{p} ({n})" for p, n in dropped.items()))
                     + ": a packet missing there may have passed unseen</p>")
    else:
        ev = x.get("evidence") or ()
        draw = '<p class="muted">captures not available: evidence only</p>' + (
            "<table><tr><th>point</th><th>frame</th><th>packet</th></tr>"
            + "".join(f"<tr><td>{_e(e.get('point'))}</td><td>{_e(e.get('frame'))}</td><td>{_e(e.get('summary'))}</td></tr>" for e in ev)
            + "</table>"
            if ev else ""
        )
    mine = _probe_for(x, probes)
    side = "".join(_probe_view(p) for p in mine) or '<p class="muted">no probe record for this exchange</p>'
    side = "<h4>the probe's own view</h4>" + side
    ev = x.get("evidence") or ()
    if ev:
        side += f"<details><summary>evidence ({len(ev)} packets)</summary><ul>" + "".join(
            f"<li>{_e(e.get('point'))} #{_e(e.get('frame'))}: {_e(e.get('summary'))}</li>" for e in ev
        ) + "</ul></details>"
    changes = _changes_table(x.get("changes") or ())
    return head + f'<div class="cols"><div class="draw">{draw}</div><div class="side">{side}</div></div>' + changes + "</section>"


def _facts(verdict, manifest) -> str:
    out = ["<h2>The run</h2>"]
    cps = verdict.get("capture_points") or ()
    if cps:
        rows = "".join(
            f"<tr><td>{_e(c.get('name'))}</td><td>{_e(c.get('file'))}</td><td>{_e(c.get('packets'))}</td>"
            f"<td>{_e(c.get('undecoded'))}</td><td>{_e(c.get('kernel_drops'))}</td><td>{_e(c.get('clock_offset_s', ''))}</td></tr>"
            for c in cps
        )
        out.append(
            '<div class="scroll"><table><tr><th>capture point</th><th>file</th><th>packets</th><th>undecoded</th>'
            f"<th>kernel drops</th><th>clock offset (s)</th></tr>{rows}</table></div>"
        )
    timings = manifest.get("timings") or ()
    if timings:
        rows = "".join(
            f"<tr><td>{_e(t.get('stage'))}</td><td>{_e(t.get('seconds'))}</td>"
            f"<td>{'ok' if t.get('ok') else ('failed: ' + _e(t.get('error')) if t.get('ok') is False else '…')}</td></tr>"
            for t in timings
        )
        out.append(f"<table><tr><th>stage</th><th>seconds</th><th>result</th></tr>{rows}</table>")
    kv = []
    for k in ("status", "error", "started", "finished", "rig_version", "host"):
        if manifest.get(k):
            kv.append((k, manifest[k]))
    for k, v in (manifest.get("backend") or {}).items():
        kv.append((f"backend {k}", v))
    if manifest.get("clock_offset"):
        kv.append(("clock offset", json.dumps(manifest["clock_offset"])))
    if manifest.get("kernel"):
        kv.append(("kernel", f"{manifest['kernel'].get('system')} {manifest['kernel'].get('release')}"))
    for k, v in (manifest.get("tools") or {}).items():
        if v:
            kv.append((k, v))
    if kv:
        out.append('<dl class="kv">' + "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in kv) + "</dl>")
    return "".join(out)


def write_report(root: Path | str, verdict: Mapping[str, Any], manifest: Mapping[str, Any] | None = None) -> Path:
    """report.html inside a bundle directory, from its verdict, probes and captures."""
    root = Path(root)
    probes = []
    pf = root / "probes.jsonl"
    if pf.exists():
        for line in pf.read_text().splitlines():
            try:
                probes.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    caps = {c.stem: c for c in sorted((root / "captures").glob("*.pcap*"))} if (root / "captures").is_dir() else {}
    tf = root / "logs" / "traces.json"
    traces = json.loads(tf.read_text()) if tf.exists() else None
    dst = root / "report.html"
    dst.write_text(render_report(verdict, manifest=manifest, probes=probes, captures=caps, traces=traces))
    return dst
