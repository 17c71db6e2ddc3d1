"""Scheduled reruns with the system's own scheduler: a systemd timer, or a cron entry.

``rig schedule add`` freezes the run's spec into ``<root>/etc/rig/schedules/<name>.toml``
(a rig.toml that ``rig run --config`` reads, plus a ``[schedule]`` table) and writes
``rig-schedule-<name>.service`` + ``.timer`` under ``<root>/etc/systemd/system`` — or,
where systemd is absent (or ``--scheduler cron``), ``<root>/etc/cron.d/rig-<name>``.
Both run ``rig schedule exec NAME``, which:

- takes a lock so two reruns of one schedule never overlap (a rerun that finds the
  previous one still running is recorded as a failed bundle, not skipped silently);
- with ``keep_rig``: provisions once with ``rig up --name`` (state in
  ``<root>/var/lib/rig/schedules/<name>.json``) and reruns with ``rig run --rig NAME``;
- runs ``rig run --config <frozen spec> --out <out>/<UTC time>-<name>``;
- if the run left no finished bundle (credentials expired, rig gone, crash), writes or
  completes one with status ``failed`` and the run's last error line, so ``rig history``
  shows the failure;
- applies retention: the newest ``retain`` bundles stay directories, the next
  ``retain`` older ones are compressed to .tar.gz, anything older is pruned. Only
  entries named like this schedule's bundles are touched.

Nothing here calls systemctl unless the root is ``/`` (``--root`` is for packaging and
tests).
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rig.errors import EXIT_INFRA, InfraError, UsageError

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,47}$")
INTERVAL_RE = re.compile(r"^(\d+)\s*(m|min|h|d)$")
BUNDLE_RE = re.compile(r"^(\d{8}T\d{6}Z)-(.+?)(\.tar\.gz)?$")


@dataclass(frozen=True)
class Interval:
    seconds: int
    text: str  # as given: "15m", "1h", "1d"

    def systemd(self) -> str:
        m = INTERVAL_RE.match(self.text)
        if m is None:  # parse_interval made every Interval's text from a match
            raise ValueError(f"not an interval: {self.text!r}")
        n, unit = m.groups()
        return f"{n}{ {'m': 'min', 'min': 'min', 'h': 'h', 'd': 'd'}[unit] }".replace(" ", "")

    def cron(self) -> str:
        """The five cron time fields; UsageError when cron cannot express the interval."""
        m = self.seconds // 60
        if m < 60 and 60 % m == 0:
            return "* * * * *" if m == 1 else f"*/{m} * * * *"
        if m % 60 == 0 and m < 1440 and 24 % (m // 60) == 0:
            h = m // 60
            return "0 * * * *" if h == 1 else f"0 */{h} * * *"
        if m == 1440:
            return "0 0 * * *"
        raise UsageError(
            f"cron cannot run every {self.text} exactly (use minutes dividing 60, hours dividing 24, or 1d; "
            "or --scheduler systemd)"
        )


def parse_interval(text: str) -> Interval:
    m = INTERVAL_RE.match(text.strip().lower())
    if not m:
        raise UsageError(f"--every {text!r}: expected a number with m, h or d (e.g. 15m, 1h, 1d)")
    n, unit = int(m.group(1)), m.group(2)
    secs = n * {"m": 60, "min": 60, "h": 3600, "d": 86400}[unit]
    if secs < 300:
        raise UsageError(f"--every {text}: reruns closer than 5 minutes would overlap a run; use 5m or more")
    return Interval(secs, f"{n}{unit}")


# --------------------------------------------------------------------------- paths


def _root(args) -> Path:
    return Path(getattr(args, "root", None) or "/")


def spec_dir(root: Path) -> Path:
    return root / "etc/rig/schedules"


def state_dir(root: Path) -> Path:
    return root / "var/lib/rig/schedules"


def unit_paths(root: Path, name: str) -> tuple[Path, Path]:
    d = root / "etc/systemd/system"
    return d / f"rig-schedule-{name}.service", d / f"rig-schedule-{name}.timer"


def cron_path(root: Path, name: str) -> Path:
    return root / "etc/cron.d" / f"rig-{name.replace('.', '_')}"  # cron.d ignores names with dots


def has_systemd(root: Path) -> bool:
    return (root / "run/systemd/system").is_dir()


# --------------------------------------------------------------------------- toml


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return json.dumps(str(v))  # a JSON string is a valid TOML basic string


def dump_toml(data: dict[str, Any], header: str = "") -> str:
    lines = [f"# {h}" if h else "#" for h in header.splitlines()] if header else []
    for k, v in data.items():
        if not isinstance(v, dict):
            lines.append(f"{k} = {_toml_value(v)}")
    for k, v in data.items():
        if isinstance(v, dict):
            lines.append(f"\n[{k}]")
            lines.extend(f"{kk} = {_toml_value(vv)}" for kk, vv in v.items() if vv is not None)
    return "\n".join(lines) + "\n"


def load_schedule(root: Path, name: str) -> dict[str, Any]:
    f = spec_dir(root) / f"{name}.toml"
    if not f.exists():
        raise UsageError(f"no schedule named {name!r} (see 'rig schedule list')")
    try:
        data = tomllib.loads(f.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{f}: not valid TOML: {exc}") from None
    if not isinstance(data.get("schedule"), dict):
        raise UsageError(f"{f}: has no [schedule] table")
    return data


# --------------------------------------------------------------------------- add


def rig_command() -> list[str]:
    """How the unit calls this very rig: the interpreter it runs under, -m rig."""
    return [sys.executable, "-m", "rig"]


def build_files(name: str, interval: Interval, scheduler: str, installed_spec: str,
                cmd: list[str], out: str) -> dict[str, str]:
    """{path relative to root: content} for the chosen scheduler."""
    argv = [*cmd, "schedule", "exec", name]
    env = f"{installed_spec[:-5]}.env"  # beside the spec: credentials for cloud backends
    if scheduler == "systemd":
        service_path, timer_path = unit_paths(Path("/"), name)
        service = (
            "[Unit]\n"
            f"Description=rig scheduled rerun {name} (every {interval.text})\n"
            "Wants=network-online.target\n"
            "After=network-online.target\n\n"
            "[Service]\n"
            "Type=oneshot\n"
            f"ExecStart={shlex.join(argv)}\n"
            f"EnvironmentFile=-{env}\n"
            f"TimeoutStartSec={max(interval.seconds - 30, 240)}\n"
            "KillSignal=SIGTERM\n"
            "Nice=5\n"
        )
        timer = (
            "[Unit]\n"
            f"Description=rig scheduled rerun {name} every {interval.text}\n\n"
            "[Timer]\n"
            "OnBootSec=5min\n"
            f"OnUnitActiveSec={interval.systemd()}\n"
            "AccuracySec=1min\n"
            f"Unit={service_path.name}\n\n"
            "[Install]\n"
            "WantedBy=timers.target\n"
        )
        return {str(service_path)[1:]: service, str(timer_path)[1:]: timer}
    line = (
        f"{interval.cron()} root set -a; [ -f {shlex.quote(env)} ] && . {shlex.quote(env)}; set +a; "
        f"{shlex.join(argv)} >/dev/null 2>&1\n"
    )
    entry = (
        f"# rig scheduled rerun {name} every {interval.text}; spec {installed_spec}; bundles in {out}\n"
        "SHELL=/bin/sh\n"
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n" + line
    )
    return {str(cron_path(Path("/"), name))[1:]: entry}


def cli_add(args) -> int:
    """rig schedule add --every 1h [--backend B] [--scenario S] [--keep-rig] [--name N] [--out DIR] [--retain N]"""
    from rig.config import load_toml, spec_from

    root = _root(args)
    interval = parse_interval(args.every)
    backend = args.backend or "lab"
    name = args.name or f"{backend}-{getattr(args, 'scenario', None) or 'default'}-{interval.text}"
    if not NAME_RE.match(name):
        raise UsageError(f"schedule name {name!r}: use letters, digits, '.', '_' or '-' (at most 48)")
    if args.retain < 1:
        raise UsageError("--retain must be at least 1")
    scheduler = args.scheduler
    if scheduler == "auto":
        scheduler = "systemd" if has_systemd(root) else "cron"
    spec_file = spec_dir(root) / f"{name}.toml"
    if spec_file.exists():
        raise UsageError(f"a schedule named {name!r} exists already ({spec_file}); remove it first")

    data: dict[str, Any] = {}
    if getattr(args, "config", None):
        data = {k: v for k, v in load_toml(args.config).items() if k != "schedule"}
    data["backend"] = backend
    if getattr(args, "scenario", None):
        data["scenario"] = args.scenario
    data.pop("out", None)
    data.pop("keep", None)
    spec_from(data, None, source=str(spec_file))  # refuse a spec that `rig run` would refuse
    out = os.path.abspath(args.out) if args.out else f"/var/lib/rig/runs/{name}"
    cmd = rig_command()
    rig_name = f"sched-{name}" if args.keep_rig else None
    data["schedule"] = {
        "name": name,
        "every": interval.text,
        "scheduler": scheduler,
        "out": out,
        "retain": int(args.retain),
        "retain_archives": int(args.retain),
        "keep_rig": bool(args.keep_rig),
        "rig_name": rig_name,
        "rig_command": cmd,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    from rig import __version__

    header = (
        f"rig schedule {name}: written by 'rig schedule add' (rig {__version__}).\n"
        "The spec of every rerun, frozen: 'rig run --config THIS-FILE' reads it.\n"
        "Credentials for cloud backends go into the .env file beside it (read by the unit), never here."
    )
    installed_spec = "/" + str(spec_file.relative_to(root))
    files = {str(spec_file.relative_to(root)): dump_toml(data, header)}
    files.update(build_files(name, interval, scheduler, installed_spec, cmd, out))
    written = []
    for rel, content in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(content)
        written.append(p)
    if root == Path("/") and scheduler == "systemd" and has_systemd(root):
        _systemctl("daemon-reload")
        _systemctl("enable", "--now", unit_paths(root, name)[1].name)
    if root == Path("/") and scheduler == "cron" and not any(shutil.which(c) for c in ("cron", "crond")):
        print("rig: note: no cron daemon is installed here; the entry runs once one is", file=sys.stderr)
    print(f"schedule {name}: every {interval.text} via {scheduler}; bundles in {out}; keeps {args.retain}")
    for p in written:
        print(f"  wrote {p}")
    if args.keep_rig:
        print(f"  keeps a rig named {rig_name}: provisioned by the first rerun ('rig up'), removed by 'rig schedule remove'")
    return 0


def _systemctl(*argv: str) -> None:
    try:
        p = subprocess.run(["systemctl", *argv], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        raise InfraError(f"systemctl {' '.join(argv)} failed: {exc}") from exc
    if p.returncode != 0:
        raise InfraError(f"systemctl {' '.join(argv)} failed: {(p.stderr.strip().splitlines() or ['?'])[-1]}")


# --------------------------------------------------------------------------- list / remove


def bundles_of(out: Path, name: str) -> list[Path]:
    """This schedule's bundles in its out dir, oldest first (directories and archives)."""
    if not out.is_dir():
        return []
    found = []
    for p in out.iterdir():
        m = BUNDLE_RE.match(p.name)
        if m and m.group(2) == name and (p.is_dir() or m.group(3)):
            found.append(p)
    return sorted(found, key=lambda p: p.name)


def cli_list(args) -> int:
    root = _root(args)
    d = spec_dir(root)
    specs = sorted(d.glob("*.toml")) if d.is_dir() else []
    if not specs:
        print("no schedules")
        return 0
    for f in specs:
        try:
            s = load_schedule(root, f.stem)["schedule"]
        except UsageError as exc:
            print(f"{f.stem}: unreadable ({exc})")
            continue
        bs = bundles_of(Path(s["out"]), s["name"])
        last = "never ran"
        if bs:
            last = bs[-1].name
            mf = bs[-1] / "manifest.json"
            if mf.exists():
                try:
                    last += f" ({json.loads(mf.read_text()).get('status')})"
                except json.JSONDecodeError:
                    pass
        rig = f", rig {s['rig_name']}" if s.get("keep_rig") else ""
        print(f"{s['name']}: every {s['every']} via {s['scheduler']}, keeps {s['retain']}{rig}; "
              f"{len(bs)} bundle(s) in {s['out']}; last {last}")
    return 0


def cli_remove(args) -> int:
    root = _root(args)
    data = load_schedule(root, args.name)
    s = data["schedule"]
    if root == Path("/") and s.get("scheduler") == "systemd" and has_systemd(root):
        _systemctl("disable", "--now", unit_paths(root, args.name)[1].name)
    removed = []
    for p in (*unit_paths(root, args.name), cron_path(root, args.name), spec_dir(root) / f"{args.name}.toml"):
        if p.exists():
            p.unlink()
            removed.append(p)
    if root == Path("/") and s.get("scheduler") == "systemd" and has_systemd(root):
        _systemctl("daemon-reload")
    st = _read_state(root, args.name)
    if s.get("keep_rig") and st.get("provisioned"):
        down = subprocess.run([*s.get("rig_command", rig_command()), "down", s["rig_name"]], capture_output=True, text=True)
        if down.returncode != 0:
            print(f"rig: could not remove the kept rig {s['rig_name']}: {_last_line(down)}; "
                  f"run 'rig down {s['rig_name']}'", file=sys.stderr)
    sf = state_dir(root) / f"{args.name}.json"
    if sf.exists():
        sf.unlink()
    print(f"schedule {args.name} removed ({len(removed)} file(s)); its bundles stay in {s['out']}")
    return 0


# --------------------------------------------------------------------------- exec


def _read_state(root: Path, name: str) -> dict:
    f = state_dir(root) / f"{name}.json"
    try:
        return json.loads(f.read_text()) if f.exists() else {}
    except json.JSONDecodeError:
        return {}


def _write_state(root: Path, name: str, state: dict) -> None:
    d = state_dir(root)
    d.mkdir(parents=True, exist_ok=True)
    (d / f"{name}.json").write_text(json.dumps(state, indent=2) + "\n")


def _last_line(p: subprocess.CompletedProcess) -> str:
    for text in (p.stderr, p.stdout):
        lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
        if lines:
            return lines[-1]
    return f"exited {p.returncode} without a message"


def record_failure(bundle: Path, spec: dict, error: str) -> None:
    """Make sure ``bundle`` exists and says ``failed`` with ``error``: complete the
    manifest a dying run left at ``running``, or write a bundle from nothing."""
    from rig.bundle import MANIFEST, BundleWriter, finish_failed

    if (bundle / MANIFEST).exists():
        finish_failed(bundle, error)
        return
    BundleWriter(bundle, spec).finish("failed", error=error)


def run_bounded(argv: list[str], limit: float, grace: float = 60.0) -> subprocess.CompletedProcess:
    """Run ``argv``; past ``limit`` seconds send SIGTERM (rig tears its rig down on it), and
    SIGKILL only after ``grace`` more. A hung run must not hold the schedule forever."""
    try:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    except OSError as exc:
        return subprocess.CompletedProcess(argv, 127, "", f"cannot start {argv[0]}: {exc}")
    try:
        out, err = proc.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        proc.terminate()
        try:
            out, err = proc.communicate(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        err = (err or "") + f"\nrig: the rerun took longer than {limit:.0f} s and was stopped\n"
        return subprocess.CompletedProcess(argv, EXIT_INFRA, out, err)
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def _new_bundle_path(out: Path, name: str, now: dt.datetime) -> Path:
    """<out>/<UTC time>-<name> that no bundle (directory or archive) has yet: a second
    rerun in the same second takes the next second, so a rerun never writes into (or
    marks failed) another rerun's bundle, and the name still matches BUNDLE_RE."""
    for k in range(3600):
        cand = out / f"{(now + dt.timedelta(seconds=k)).strftime('%Y%m%dT%H%M%SZ')}-{name}"
        if not cand.exists() and not cand.with_name(cand.name + ".tar.gz").exists():
            return cand
    raise InfraError(f"no free bundle name under {out}")


def run_once(root: Path, name: str, now: dt.datetime | None = None) -> tuple[int, Path]:
    """One rerun of schedule ``name``: returns (exit code, bundle path)."""
    from rig.bundle import MANIFEST

    data = load_schedule(root, name)
    s = data["schedule"]
    spec = {k: v for k, v in data.items() if k != "schedule"}
    spec_file = spec_dir(root) / f"{name}.toml"
    out = Path(s["out"])
    out.mkdir(parents=True, exist_ok=True)
    now = now or dt.datetime.now(dt.timezone.utc)
    bundle = _new_bundle_path(out, name, now)
    cmd = list(s.get("rig_command") or rig_command())
    state_dir(root).mkdir(parents=True, exist_ok=True)
    lock = open(state_dir(root) / f"{name}.lock", "w")
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            record_failure(bundle, spec, "skipped: the previous rerun of this schedule was still running")
            return EXIT_INFRA, bundle
        log = []
        if s.get("keep_rig"):
            st = _read_state(root, name)
            if not st.get("provisioned"):
                up = subprocess.run([*cmd, "up", "--config", str(spec_file), "--backend", spec.get("backend", "lab"),
                                     "--name", s["rig_name"]], capture_output=True, text=True)
                log.append(("rig up", up))
                if up.returncode != 0:
                    record_failure(bundle, spec, f"rig up {s['rig_name']} failed: {_last_line(up)}")
                    _attach(bundle, log)
                    return EXIT_INFRA, bundle
                _write_state(root, name, {"provisioned": True, "rig_name": s["rig_name"],
                                          "since": now.isoformat(timespec="seconds")})
        argv = [*cmd, "run", "--config", str(spec_file), "--out", str(bundle)]
        if s.get("keep_rig"):
            argv += ["--rig", s["rig_name"]]
        limit = max(parse_interval(s.get("every", "1h")).seconds - 30, 240)
        p = run_bounded(argv, limit)
        log.append(("rig run", p))
        status = None
        mf = bundle / MANIFEST
        if mf.exists():
            try:
                status = json.loads(mf.read_text()).get("status")
            except json.JSONDecodeError:
                status = None
        code = p.returncode
        if status not in ("ok", "path-problem", "failed", "interrupted"):
            record_failure(bundle, spec, f"rerun failed (exit {code}): {_last_line(p)}")
            status = "failed"
        if status in ("failed", "interrupted") and code in (0, 1):
            code = EXIT_INFRA
        _attach(bundle, log)
        apply_retention(out, name, int(s.get("retain", 48)), int(s.get("retain_archives", s.get("retain", 48))),
                        keep=bundle)
        return code, bundle
    finally:
        lock.close()


def _attach(bundle: Path, log: list[tuple[str, subprocess.CompletedProcess]]) -> None:
    from rig.bundle import append_log

    text = "".join(
        f"$ {what} (exit {p.returncode})\n--- stdout\n{p.stdout}\n--- stderr\n{p.stderr}\n" for what, p in log
    )
    if text:
        append_log(bundle, "schedule-exec.log", text)


def apply_retention(out: Path, name: str, retain: int, retain_archives: int, keep: Path | None = None) -> dict:
    """Newest ``retain`` bundles stay; the next ``retain_archives`` are compressed; older
    ones are removed. Returns what happened (names)."""
    from rig.bundle import archive

    done: dict[str, list[str]] = {"compressed": [], "pruned": []}
    bs = bundles_of(out, name)
    # a bundle that exists both as dir and archive counts once (the directory)
    by_id: dict[str, Path] = {}
    for b in bs:
        bid = b.name[: -len(".tar.gz")] if b.name.endswith(".tar.gz") else b.name
        if bid not in by_id or b.is_dir():
            by_id[bid] = b
    ordered = [by_id[k] for k in sorted(by_id, reverse=True)]  # newest first
    for i, b in enumerate(ordered):
        if keep is not None and b == keep:
            continue
        if i < retain:
            continue
        if i < retain + retain_archives:
            if b.is_dir():
                archive(b)
                shutil.rmtree(b)
                done["compressed"].append(b.name)
            continue
        if b.is_dir():
            shutil.rmtree(b)
            arc = b.with_name(b.name + ".tar.gz")
            if arc.exists():
                arc.unlink()
        else:
            b.unlink()
        done["pruned"].append(b.name)
    return done


def cli_exec(args) -> int:
    """What the timer or cron entry runs: one rerun of a named schedule."""
    code, bundle = run_once(_root(args), args.name)
    print(f"{bundle}")
    return code
