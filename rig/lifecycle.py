"""Kept rigs: `rig up` provisions and configures one and remembers it; `rig ls` lists
them with age and expiry (and Azure resource groups tagged rig-run); `rig down NAME`
removes one; `rig gc` deletes what is past its expires-at.

The memory is a small state directory ($RIG_STATE_DIR, else
$XDG_STATE_HOME/rig/rigs, else ~/.local/state/rig/rigs): one ``NAME.json`` per rig
(format ``rig.kept/1``, the Rig record serialised) and ``NAME.d/`` for what must
outlive the command — the per-run SSH key of an Azure or SSH rig. Any process can
bring a kept rig down from its record alone: every backend's teardown needs only the
Rig. ``load(name).rig`` is what `rig run --rig NAME` reruns against.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from rig.backends.base import CapturePoint, Rig, RunSpec, SSHEndpoint
from rig.errors import RigError, UsageError

FORMAT = "rig.kept/1"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


# -- the state directory ------------------------------------------------------------------

def state_dir() -> Path:
    if os.environ.get("RIG_STATE_DIR"):
        return Path(os.environ["RIG_STATE_DIR"])
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(Path.home(), ".local", "state")
    return Path(base) / "rig" / "rigs"


def rig_to_dict(rig: Rig) -> dict[str, Any]:
    d = asdict(rig)
    d["facts"] = dict(rig.facts)
    return d


def rig_from_dict(d: dict[str, Any]) -> Rig:
    return Rig(**{**d, "ssh": SSHEndpoint(**d["ssh"]),
                  "capture_points": tuple(CapturePoint(**p) for p in d["capture_points"]),
                  "facts": dict(d.get("facts") or {})})


@dataclass(frozen=True)
class Kept:
    name: str
    created_at: datetime
    rig: Rig

    @property
    def expires_at(self) -> datetime | None:
        return parse_time(self.rig.facts.get("expires_at", ""))

    def to_json(self) -> str:
        return json.dumps({"format": FORMAT, "name": self.name,
                           "created_at": self.created_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                           "rig": rig_to_dict(self.rig)}, indent=2)


def parse_time(text: str) -> datetime | None:
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    except (TypeError, ValueError):
        return None


def check_name(name: str) -> str:
    if not _NAME.match(name or ""):
        raise UsageError(f"rig name {name!r}: use letters, digits, '.', '_' or '-' (at most 63)")
    return name


def keep_dir(name: str, root: Path | None = None) -> Path:
    """The directory for what a kept rig must keep (its SSH key): NAME.d, 0700."""
    d = (root or state_dir()) / f"{check_name(name)}.d"
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    return d


def save(kept: Kept, root: Path | None = None) -> Path:
    root = root or state_dir()
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = root / f"{check_name(kept.name)}.json"
    tmp = path.with_suffix(".json.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(kept.to_json())
    os.replace(tmp, path)
    return path


def load(name: str, root: Path | None = None) -> Kept:
    root = root or state_dir()
    path = root / f"{check_name(name)}.json"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"no kept rig named {name!r} (see 'rig ls')") from None
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: not a kept-rig record ({exc})") from None
    if data.get("format") != FORMAT:
        raise UsageError(f"{path}: format {data.get('format')!r} is not {FORMAT} (written by another rig version)")
    return Kept(data["name"], parse_time(data["created_at"]) or datetime.now(timezone.utc), rig_from_dict(data["rig"]))


def all_kept(root: Path | None = None) -> list[Kept]:
    root = root or state_dir()
    out = []
    for path in sorted(root.glob("*.json")) if root.is_dir() else []:
        try:
            out.append(load(path.stem, root))
        except UsageError as exc:
            print(f"rig: skipping {exc}", file=sys.stderr)
    return out


def forget(name: str, root: Path | None = None) -> None:
    root = root or state_dir()
    (root / f"{check_name(name)}.json").unlink(missing_ok=True)
    shutil.rmtree(root / f"{name}.d", ignore_errors=True)


# -- up / down --------------------------------------------------------------------------

def _backend(name: str):
    from rig.backends import get_backend

    return get_backend(name)()


def up(spec: RunSpec, name: str | None = None, *, backend=None, configure: Callable[[Rig], Any] | None = None,
       root: Path | None = None, now: datetime | None = None, say: Callable[[str], None] = print) -> Kept:
    """Provision (+ configure, + preflight) a rig and remember it. On any failure or
    Ctrl-C after provisioning, the rig is torn down again: nothing half-kept."""
    root = root or state_dir()
    backend = backend or _backend(spec.backend)
    if name is not None:
        check_name(name)
        if (root / f"{name}.json").exists():
            raise UsageError(f"a kept rig named {name!r} exists already ('rig down {name}' first)")
    staging = name or f"new-{os.getpid()}-{datetime.now(timezone.utc):%H%M%S%f}"
    workdir = keep_dir(staging, root) / "work"
    spec = replace(spec, keep=True, options={**dict(spec.options), "workdir": str(workdir)})
    try:
        rig = backend.provision(spec)
    except BaseException:
        shutil.rmtree(root / f"{staging}.d", ignore_errors=True)
        raise
    try:
        if configure is not None:
            configure(rig)
        problems = backend.preflight(rig) if hasattr(backend, "preflight") else []
        for line in problems:
            say(f"warning: {line}")
        final = name or rig.run_id
        if final != staging:
            check_name(final)
            if (root / f"{final}.d").exists():
                raise UsageError(f"a kept rig named {final!r} exists already")
            os.replace(root / f"{staging}.d", root / f"{final}.d")
            rig = _moved(rig, str(root / f"{staging}.d"), str(root / f"{final}.d"))
        kept = Kept(final, (now or datetime.now(timezone.utc)).replace(microsecond=0), rig)
        save(kept, root)
        return kept
    except BaseException:
        backend.teardown(rig)
        shutil.rmtree(root / f"{staging}.d", ignore_errors=True)
        raise


def _moved(rig: Rig, old: str, new: str) -> Rig:
    """The Rig with paths under ``old`` re-rooted under ``new`` (the staging dir renamed)."""
    def fix(p: str) -> str:
        return new + p[len(old):] if p.startswith(old) else p

    return replace(rig, workdir=fix(rig.workdir), ssh=replace(rig.ssh, key_file=fix(rig.ssh.key_file)))


def down(name: str, *, backend=None, root: Path | None = None) -> Kept:
    kept = load(name, root)
    (backend or _backend(kept.rig.backend)).teardown(kept.rig)
    forget(name, root)
    return kept


class KeptBackend:
    """A kept rig seen as a backend, for `rig run --rig NAME`: provision returns the
    recorded Rig, teardown leaves it up ('rig down NAME' removes it), preflight is the
    real backend's (e.g. Azure's effective NSG rules)."""

    def __init__(self, name: str, root: Path | None = None, inner=None):
        self.kept = load(name, root)
        self.name = self.kept.rig.backend
        self.inner = inner or _backend(self.kept.rig.backend)
        exp = self.kept.expires_at
        if exp is not None and exp <= datetime.now(timezone.utc):
            raise UsageError(f"kept rig {name!r} expired at {self.kept.rig.facts['expires_at']} "
                             f"(its VM may be shut down): 'rig down {name}' and 'rig up' a new one")

    def provision(self, spec: RunSpec) -> Rig:
        return self.kept.rig

    def preflight(self, rig: Rig) -> list[str]:
        extra = getattr(self.inner, "preflight", None)
        return extra(rig) if callable(extra) else []

    def teardown(self, rig: Rig) -> None:
        print(f"rig: kept rig {self.kept.name} stays up ('rig down {self.kept.name}' removes it)", file=sys.stderr)


# -- Azure: resource groups tagged rig-run ------------------------------------------------

@dataclass(frozen=True)
class Group:
    name: str
    location: str
    run_id: str
    created_by: str
    expires_at: datetime | None
    state: str


def azure_groups(clients) -> list[Group]:
    out = []
    for g in clients.resource.resource_groups.list(filter="tagName eq 'rig-run'"):
        tags = dict(g.tags or {})
        if "rig-run" not in tags:
            continue
        props = getattr(g, "properties", None)
        out.append(Group(g.name, g.location, tags["rig-run"], tags.get("created-by", ""),
                         parse_time(tags.get("expires-at", "")), str(getattr(props, "provisioning_state", "") or "")))
    return sorted(out, key=lambda g: g.name)


def gc_azure(clients, now: datetime, dry_run: bool = False, say: Callable[[str], None] = print,
             wait: bool = False) -> list[str]:
    """Delete every rig-run group past its expires-at: all deletions are sent at once;
    Azure finishes them on its own (``wait`` to block until it has)."""
    from rig.backends.azure.provision import DELETE_TIMEOUT

    expired = [(g, g.expires_at) for g in azure_groups(clients) if g.expires_at is not None and g.expires_at <= now
               and g.state.lower() != "deleting"]
    if dry_run:
        for g, at in expired:
            say(f"would delete {g.name} (expired {_ago(now - at)} ago)")
        return [g.name for g, _ in expired]
    pollers = {}
    for g, at in expired:
        say(f"deleting {g.name} (expired {_ago(now - at)} ago)")
        pollers[g.name] = clients.resource.resource_groups.begin_delete(g.name)
    for poller in pollers.values() if wait else ():
        poller.wait(timeout=DELETE_TIMEOUT)
    return list(pollers)


def _azure_clients_or_note() -> tuple[Any, str]:
    """Clients when AZURE_SUBSCRIPTION_ID is set, else (None, why not)."""
    if not os.environ.get("AZURE_SUBSCRIPTION_ID"):
        return None, "azure: not checked (AZURE_SUBSCRIPTION_ID is not set)"
    from rig.backends.azure import AzureBackend

    try:
        return AzureBackend().clients(), ""
    except RigError as exc:
        return None, f"azure: not checked ({exc})"


# -- listing ---------------------------------------------------------------------------------

def _ago(delta) -> str:
    s = int(abs(delta.total_seconds()))
    if s < 90:
        return f"{s}s"
    if s < 5400:
        return f"{s // 60}m"
    if s < 172800:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    return f"{s // 86400}d"


def _expiry(exp: datetime | None, now: datetime) -> str:
    if exp is None:
        return "never"
    return f"in {_ago(exp - now)}" if exp > now else f"EXPIRED {_ago(now - exp)} ago"


def listing(kept: list[Kept], groups: list[Group] | None, now: datetime) -> dict[str, Any]:
    known = {k.rig.facts.get("resource_group") for k in kept}
    return {
        "format": "rig.ls/1",
        "rigs": [{"name": k.name, "backend": k.rig.backend, "server": k.rig.server_addr,
                  "created_at": k.created_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                  "age_seconds": int((now - k.created_at).total_seconds()),
                  "expires_at": k.rig.facts.get("expires_at"),
                  "expired": bool(k.expires_at and k.expires_at <= now)} for k in kept],
        "azure_groups": None if groups is None else [
            {"name": g.name, "location": g.location, "created_by": g.created_by,
             "expires_at": g.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ") if g.expires_at else None,
             "expired": bool(g.expires_at and g.expires_at <= now), "state": g.state,
             "kept_as": next((k.name for k in kept if k.rig.facts.get("resource_group") == g.name), None),
             "orphan": g.name not in known} for g in groups],
    }


def render_listing(kept: list[Kept], groups: list[Group] | None, now: datetime, note: str = "") -> str:
    lines = []
    if kept:
        lines.append(f"{'NAME':<28} {'BACKEND':<7} {'SERVER':<16} {'AGE':>7}  EXPIRES")
        for k in kept:
            lines.append(f"{k.name:<28} {k.rig.backend:<7} {k.rig.server_addr:<16} "
                         f"{_ago(now - k.created_at):>7}  {_expiry(k.expires_at, now)}")
    else:
        lines.append(f"no kept rigs (in {state_dir()})")
    if groups is not None:
        known = {k.rig.facts.get("resource_group"): k.name for k in kept}
        lines.append("")
        lines.append(f"Azure resource groups tagged rig-run: {len(groups)}")
        for g in groups:
            stamp = re.search(r"(\d{8}-\d{6})", g.run_id)
            age = ""
            if stamp:
                born = datetime.strptime(stamp.group(1), "%Y%m%d-%H%M%S").replace(tzinfo=timezone.utc)
                age = _ago(now - born)
            owner = f"kept as {known[g.name]}" if g.name in known else "not kept here"
            lines.append(f"  {g.name:<28} {g.location:<12} {age:>7}  {_expiry(g.expires_at, now)}  "
                         f"({owner}; {g.created_by}{'; ' + g.state if g.state and g.state != 'Succeeded' else ''})")
    if note:
        lines.append(note)
    return "\n".join(lines)


# -- CLI handlers ------------------------------------------------------------------------------

def cli_up(args: argparse.Namespace) -> int:
    from rig.config import load_spec

    spec = load_spec(args)
    configure = None
    if spec.configure:
        from rig.configure import configure as run_configure

        configure = run_configure

    def say(line: str) -> None:
        print(line, file=sys.stderr)

    kept = up(spec, args.name, configure=configure, say=say)
    rig = kept.rig
    print(f"kept {rig.backend} rig {kept.name}: server {rig.server_addr}, "
          f"expires {rig.facts.get('expires_at', 'never')}")
    print(f"  rerun:  rig run --backend {rig.backend} --rig {kept.name}")
    print(f"  remove: rig down {kept.name}")
    return 0


def cli_down(args: argparse.Namespace) -> int:
    kept = down(args.name)
    print(f"removed {kept.rig.backend} rig {kept.name}")
    return 0


def cli_ls(args: argparse.Namespace) -> int:
    now = datetime.now(timezone.utc)
    kept = all_kept()
    clients, note = _azure_clients_or_note()
    groups = azure_groups(clients) if clients is not None else None
    if getattr(args, "json", False):
        print(json.dumps({**listing(kept, groups, now), "note": note or None}, indent=2))
    else:
        print(render_listing(kept, groups, now, note))
    return 0


def cli_gc(args: argparse.Namespace) -> int:
    now = datetime.now(timezone.utc)
    dry = bool(getattr(args, "dry_run", False))
    for k in all_kept():
        if k.expires_at is not None and k.expires_at <= now:
            if dry:
                print(f"would remove kept rig {k.name} (expired {_ago(now - k.expires_at)} ago)")
            else:
                print(f"removing kept rig {k.name} (expired {_ago(now - k.expires_at)} ago)")
                down(k.name)
    clients, note = _azure_clients_or_note()
    if clients is not None:
        gone = gc_azure(clients, now, dry_run=dry)
        if not gone:
            print("azure: no expired resource groups")
    else:
        print(note)
    return 0
