"""rig.toml + command-line flags -> a RunSpec (flags win over the file).

rig.toml (every key optional)::

    backend = "lab"              # lab | azure | ssh
    scenario = "healthy"
    router = "pf"                # lab: the router profile, linux (default) | pf
    probes = ["icmp", "tcp"]     # or "icmp,tcp"
    out = "runs/today"
    timeout = 3.0                # probe time-out, seconds
    burst = 32
    configure = true             # run the Ansible playbook
    capture_at = ["router"]      # extra capture points
    keep = false

    [azure]                      # backend options, passed through as strings
    location = "japaneast"
    [ssh]
    host = "me@vps.example.net"

A bad file is one clear line (UsageError, exit 2).
"""

from __future__ import annotations

import argparse
import math
import os
import tomllib
from dataclasses import dataclass
from typing import Any, Mapping

from rig.backends.base import RunSpec
from rig.errors import UsageError

BACKENDS = ("lab", "azure", "ssh")
CAPTURE_POINTS = ("client", "router", "server")
_TOP_KEYS = {"backend", "scenario", "router", "probes", "out", "timeout", "burst", "configure", "capture_at", "keep"}
# tables: each backend's options, and the schedule rig.schedule freezes beside the spec
_TABLES = (*BACKENDS, "schedule")
# flags that carry backend options: argparse dest -> option name
_OPTION_FLAGS = ("location", "size", "image", "allow_from", "dry_run", "host", "host_key", "identity",
                 "rig_id", "archive", "redact", "router", "no_trace", "nat_lifetime")


def load_toml(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise UsageError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:  # TOML is UTF-8 (tomllib decodes before parsing)
        raise UsageError(f"{path}: not valid TOML: not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot be read: {exc.strerror}") from None


def _list(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(v.strip() for v in value.split(",") if v.strip())
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise UsageError(f"{where}: expected a list of names or a comma-separated string")


def _typed(where: str, value: Any, kind: type) -> Any:
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise UsageError(f"{where}: expected {kind.__name__}, got {value!r}")
    return value


def spec_from(data: Mapping[str, Any], args: argparse.Namespace | None = None, source: str = "rig.toml") -> RunSpec:
    """Merge a parsed rig.toml (``data``) with the flags of ``rig run`` (``args``)."""
    unknown = sorted(k for k, v in data.items() if k not in _TOP_KEYS and not isinstance(v, dict))
    if unknown:
        raise UsageError(f"{source}: unknown key {unknown[0]!r} (known: {', '.join(sorted(_TOP_KEYS))})")
    tables = sorted(k for k, v in data.items() if isinstance(v, dict) and k not in _TABLES)
    if tables:  # e.g. a [run] table: its keys would be silently ignored
        raise UsageError(f"{source}: unknown table [{tables[0]}] (run settings are top-level keys; "
                         f"tables: {', '.join(f'[{t}]' for t in _TABLES)})")
    flag = (lambda name: getattr(args, name, None)) if args is not None else (lambda name: None)

    backend = flag("backend") or _typed(f"{source}: backend", data.get("backend", "lab"), str)
    if backend not in BACKENDS:
        raise UsageError(f"unknown backend {backend!r} (choose from {', '.join(BACKENDS)})")
    scenario = flag("scenario") or _typed(f"{source}: scenario", data.get("scenario", "healthy"), str)
    probes = _list(flag("probes"), "--probes") if flag("probes") else _list(data.get("probes", []), f"{source}: probes")
    timeout = flag("timeout")
    if timeout is None:
        timeout = _typed(f"{source}: timeout", data.get("timeout", 3.0), float)
    if not 0 < timeout <= 120:
        raise UsageError(f"probe time-out must be between 0 and 120 seconds, got {timeout:g}")
    burst = flag("burst")
    if burst is None:
        burst = _typed(f"{source}: burst", data.get("burst", 32), int)
    if not 1 <= burst <= 4096:
        raise UsageError(f"burst must be between 1 and 4096, got {burst}")
    configure = _typed(f"{source}: configure", data.get("configure", True), bool)
    if flag("no_configure"):
        configure = False
    extra = _list(flag("capture_at"), "--capture-at") if flag("capture_at") else \
        _list(data.get("capture_at", []), f"{source}: capture_at")
    from rig.trace.router import OPTION as ROUTER_SSH, split_point

    points = [split_point(item) for item in extra]  # router=user@host[:port]: over SSH (rig.trace.router)
    for point, _ in points:
        if point not in CAPTURE_POINTS:
            raise UsageError(f"unknown capture point {point!r} (choose from {', '.join(CAPTURE_POINTS)})")
    router_ssh = next((target for _, target in points if target), None)
    capture_at = tuple(dict.fromkeys(("client", "server", *(point for point, _ in points))))
    out = flag("out") or data.get("out")
    if out is not None:
        out = _typed(f"{source}: out", out, str)
    keep = bool(flag("keep")) or _typed(f"{source}: keep", data.get("keep", False), bool)

    options: dict[str, str] = {}
    section = data.get(backend, {})
    if not isinstance(section, dict):
        raise UsageError(f"{source}: [{backend}] must be a table")
    if "router" in data:  # a top-level key (like --router), kept with the lab's options
        options["router"] = _typed(f"{source}: router", data["router"], str)
    for key, value in section.items():
        options[key.replace("-", "_")] = str(value).lower() if isinstance(value, bool) else str(value)
    for name in _OPTION_FLAGS:
        value = flag(name)
        if value not in (None, False):
            options[name] = "true" if value is True else str(value)

    if router_ssh:
        options[ROUTER_SSH] = router_ssh
    return RunSpec(backend=backend, scenario=scenario, probes=probes, out=out, keep=keep,
                   json=bool(flag("json")), capture_at=capture_at, probe_timeout=float(timeout),
                   burst=int(burst), configure=configure, options=options)


_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0", "")


@dataclass(frozen=True)
class RunOptions:
    """The run options (``RunSpec.options``, strings from flags and rig.toml tables) that
    are not plain strings, parsed once: ``run_options(spec.options)``."""

    dry_run: bool = False  # --dry-run: the backend's plan, nothing made
    redact: bool = False  # --redact: the bundle's private addresses replaced as it is sealed
    archive: bool = False  # --archive: the sealed bundle packed as one file
    install_packages: bool = True  # ssh: apt/pkg install Apache and tcpdump on the host
    provision_timeout: float | None = None  # azure: seconds for the VM to come up (None: the default)
    ttl_hours: float | None = None  # azure: hours until the VM's expires-at tag (None: the default)
    trace: bool = True  # --no-trace: no TTL-limited traces after the analysis (rig.trace)


def _bool(name: str, raw: str) -> bool:
    word = str(raw).strip().lower()
    if word in _TRUE or word in _FALSE:
        return word in _TRUE
    raise UsageError(f"option {name}: expected true or false, got {raw!r}")


def _seconds(name: str, raw: str) -> float | None:
    if str(raw).strip() == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise UsageError(f"option {name}: expected a positive number, got {raw!r}")
    return value


def run_options(options: Mapping[str, str]) -> RunOptions:
    """The typed options of ``options``; a bad value is a UsageError (exit 2, one line)."""
    o = RunOptions()
    kw: dict[str, Any] = {}
    for name in ("dry_run", "redact", "archive", "install_packages"):
        if name in options:
            kw[name] = _bool(name, options[name])
    if "no_trace" in options:
        kw["trace"] = not _bool("no_trace", options["no_trace"])
    for name in ("provision_timeout", "ttl_hours"):
        if name in options:
            kw[name] = _seconds(name, options[name])
    return RunOptions(**{**o.__dict__, **kw})


# backend options that only one backend reads (the others would ignore them silently)
_BACKEND_OPTIONS = {"lab": ("router",), "azure": ("location", "size", "image", "allow_from"), "ssh": ("host", "host_key", "identity")}


def _flag(option: str) -> str:
    return "--" + option.replace("_", "-")


def check_spec(spec: RunSpec) -> None:
    """Everything about a RunSpec that can be wrong before a run makes anything: the
    backend, the lab's scenario, the probe kinds, capture points the backend has, backend
    options that belong to another backend, and files named by options. UsageError
    (exit 2, one line) on the first problem; nothing is created, so no bundle is left."""
    from rig.probes.runner import parse_kinds

    if spec.backend not in BACKENDS:
        raise UsageError(f"unknown backend {spec.backend!r} (choose from {', '.join(BACKENDS)})")
    run_options(spec.options)
    kept = bool(spec.options.get("rig_id"))  # --rig NAME: the kept rig says what it is
    if spec.backend == "lab" and not kept:
        from rig.lab.routers import router_for
        from rig.lab.scenarios import get

        router_for(get(spec.scenario), spec.options.get("router"))
    from rig.nat.run import check, split_probes

    kinds, _ = split_probes(spec.probes or None)
    parse_kinds(kinds)
    check(spec.probes or None, spec.options)
    for point in spec.capture_at:
        if point not in CAPTURE_POINTS:
            raise UsageError(f"unknown capture point {point!r} (choose from {', '.join(CAPTURE_POINTS)})")
        if point == "router" and spec.backend != "lab" and not kept and not spec.options.get("router_ssh"):
            raise UsageError(f"--capture-at router: the {spec.backend} backend has no router to capture at "
                             "(only the lab has one; a router of yours: --capture-at router=user@host)")
    for owner, names in _BACKEND_OPTIONS.items():
        stray = [n for n in names if n in spec.options and owner != spec.backend]
        if stray:
            raise UsageError(f"{_flag(stray[0])} is an option of the {owner} backend, not of {spec.backend}")
    if spec.backend == "ssh" and not kept:
        if not spec.options.get("host"):
            raise UsageError("--backend ssh needs --host user@host[:port]")
        identity = spec.options.get("identity")
        if identity and not os.path.isfile(identity):
            raise UsageError(f"--identity {identity}: no such file")


def load_spec(args: argparse.Namespace) -> RunSpec:
    """The RunSpec for ``rig run``: --config FILE, else ./rig.toml if present, else defaults."""
    path = getattr(args, "config", None)
    if path is None and os.path.exists("rig.toml"):
        path = "rig.toml"
    data = load_toml(path) if path else {}
    return spec_from(data, args, source=path or "rig.toml")
