"""The manifest (``manifest.json``) as a typed record: what one run's bundle says about
itself, read from and written to the same JSON keys (a contract, ``rig.bundle/1``).

``Manifest.from_json`` checks every key it knows (type and value) and keeps the keys it
does not know as they were (``extra``), so a bundle written by a later rig of the same
format survives a re-hash by this one. Older formats are upgraded step by step
(``UPGRADES``); newer ones and malformed manifests are refused with ``ManifestError``
(an input error, exit 2), one line naming the key.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from rig import __version__
from rig.errors import InputError

BUNDLE_FORMAT = "rig.bundle"
BUNDLE_VERSION = 1  # bump when the layout or the manifest changes; add an upgrade step
STATUSES = ("running", "ok", "path-problem", "failed", "interrupted")

MANIFEST = "manifest.json"
VERDICT = "verdict.json"
PROBES = "probes.jsonl"
REPORT = "report.html"


class ManifestError(InputError):
    """A manifest.json that is not one this rig can read (one line, exit 2)."""


@dataclass(frozen=True)
class Timing:
    """One pipeline stage as the manifest records it."""

    stage: str
    start: str
    seconds: float | None = None
    ok: bool | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class FileHash:
    """One file of the bundle: its sha256 and size when the bundle was sealed."""

    sha256: str | None
    bytes: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "bytes": self.bytes}


@dataclass(frozen=True)
class Removed:
    """A file the credential sweep took out of the bundle, and why."""

    path: str
    reason: str

    def to_json(self) -> dict[str, str]:
        return {"path": self.path, "reason": self.reason}


@dataclass(frozen=True)
class Manifest:
    """manifest.json. Key order on disk is the field order below (``extra`` after
    ``files``); ``seconds`` and ``redact_error`` appear once they are set."""

    id: str
    started: str
    status: str
    spec: Mapping[str, Any] = field(default_factory=dict)
    format: str = BUNDLE_FORMAT
    format_version: int = BUNDLE_VERSION
    rig_version: str | None = __version__
    finished: str | None = None
    error: str | None = None
    backend: Mapping[str, Any] = field(default_factory=dict)
    kernel_drops: Mapping[str, Any] = field(default_factory=dict)
    clock_offset: Mapping[str, Any] | None = None
    facts: Mapping[str, Any] = field(default_factory=dict)
    timings: tuple[Timing, ...] = ()
    tools: Mapping[str, Any] = field(default_factory=dict)
    kernel: Mapping[str, Any] | None = None
    python: str | None = None
    host: str | None = None
    redacted: bool | Mapping[str, Any] = False
    removed: tuple[Removed, ...] = ()
    report_error: str | None = None
    # every file the writer created (relative paths): the only files sealing, the
    # credential sweep, redaction and re-hashing ever open
    written: tuple[str, ...] = ()
    files: Mapping[str, FileHash] = field(default_factory=dict)
    seconds: float | None = None
    redact_error: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)  # keys this rig does not know

    def replace(self, **changes: Any) -> "Manifest":
        return dataclasses.replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        """The JSON object of manifest.json (the same keys as every rig.bundle/1)."""
        d: dict[str, Any] = {
            "format": self.format,
            "format_version": self.format_version,
            "rig_version": self.rig_version,
            "id": self.id,
            "started": self.started,
            "finished": self.finished,
            "status": self.status,
            "error": self.error,
            "spec": self.spec,
            "backend": self.backend,
            "kernel_drops": self.kernel_drops,
            "clock_offset": self.clock_offset,
            "facts": self.facts,
            "timings": [t.to_json() for t in self.timings],
            "tools": self.tools,
            "kernel": self.kernel,
            "python": self.python,
            "host": self.host,
            "redacted": self.redacted,
            "removed": [r.to_json() for r in self.removed],
            "report_error": self.report_error,
            "written": list(self.written),
            "files": {k: v.to_json() for k, v in self.files.items()},
        }
        if self.seconds is not None:
            d["seconds"] = self.seconds
        if self.redact_error is not None:
            d["redact_error"] = self.redact_error
        for k, v in self.extra.items():
            d.setdefault(k, v)
        return d

    @classmethod
    def from_json(cls, data: Any, name: str = MANIFEST) -> "Manifest":
        """A current-format manifest from its JSON data; ManifestError names the first
        key that is missing or of the wrong type."""
        return _parse(data, name)


# --------------------------------------------------------------------------- parsing

_KNOWN = {f.name for f in dataclasses.fields(Manifest)} - {"extra"}


def _bad(name: str, key: str, want: str, got: Any) -> ManifestError:
    return ManifestError(f"{name}: {MANIFEST}: '{key}' should be {want}, not {_kind(got)}")


def _kind(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return f"the boolean {str(v).lower()}"
    if isinstance(v, (int, float)):
        return f"the number {v}"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, list):
        return "a list"
    if isinstance(v, dict):
        return "an object"
    return type(v).__name__


def _get(d: Mapping[str, Any], name: str, key: str, check: Callable[[Any], bool], want: str, default: Any,
         where: str = "") -> Any:
    """d[key] if it passes ``check``, ``default`` if absent; ``where`` prefixes the key
    in the message (e.g. "timings[2].")."""
    if key not in d:
        return default
    v = d[key]
    if not check(v):
        raise _bad(name, where + key, want, v)
    return v


def _is_str(v: Any) -> bool:
    return isinstance(v, str)


def _opt_str(v: Any) -> bool:
    return v is None or isinstance(v, str)


def _is_obj(v: Any) -> bool:
    return isinstance(v, dict)


def _opt_obj(v: Any) -> bool:
    return v is None or isinstance(v, dict)


def _opt_num(v: Any) -> bool:
    return v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))


def check_header(data: Any, name: str) -> int:
    """The format version of a manifest's JSON data, checked: a rig bundle manifest, a
    version this rig reads (0..BUNDLE_VERSION). Raises ManifestError otherwise."""
    if not isinstance(data, dict):
        raise ManifestError(f"{name}: {MANIFEST} is {_kind(data)}, not a rig bundle manifest (an object)")
    if data.get("format") != BUNDLE_FORMAT:
        raise ManifestError(f"{name}: {MANIFEST} is not a rig bundle manifest (format is not {BUNDLE_FORMAT!r})")
    version = data.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise ManifestError(f"{name}: {MANIFEST} has no format version (an integer)")
    if version < 0:
        raise ManifestError(f"{name}: {MANIFEST} has format version {version}; versions start at 0")
    if version > BUNDLE_VERSION:
        raise ManifestError(
            f"{name}: bundle format {version} is newer than this rig ({__version__}) reads "
            f"(up to {BUNDLE_VERSION}); upgrade rig to read it"
        )
    return version


def _parse(data: Any, name: str) -> Manifest:
    version = check_header(data, name)
    if version != BUNDLE_VERSION:
        raise ManifestError(f"{name}: {MANIFEST} is format {version}; upgrade it first (read_manifest does)")
    d: Mapping[str, Any] = data
    timings = []
    for i, t in enumerate(_get(d, name, "timings", lambda v: isinstance(v, list), "a list", [])):
        if not isinstance(t, dict) or not isinstance(t.get("stage"), str):
            raise _bad(name, f"timings[{i}]", "an object with a 'stage'", t)
        timings.append(Timing(
            stage=t["stage"], start=str(t.get("start") or ""),
            seconds=_get(t, name, "seconds", _opt_num, "a number", None, f"timings[{i}]."),
            ok=_get(t, name, "ok", lambda v: v is None or isinstance(v, bool), "true or false", None, f"timings[{i}]."),
            error=_get(t, name, "error", _opt_str, "a string", None, f"timings[{i}]."),
        ))
    files: dict[str, FileHash] = {}
    for rel, info in _get(d, name, "files", _is_obj, "an object (path -> sha256 and bytes)", {}).items():
        if isinstance(info, str):  # a bare sha256
            files[rel] = FileHash(info)
        elif isinstance(info, dict):
            sha = _get(info, name, "sha256", _opt_str, "a string", None, f"files[{rel!r}].")
            size = _get(info, name, "bytes",
                        lambda v: v is None or (isinstance(v, int) and not isinstance(v, bool) and v >= 0),
                        "a byte count", None, f"files[{rel!r}].")
            files[rel] = FileHash(sha, size)
        else:
            raise _bad(name, f"files[{rel!r}]", "an object with sha256 and bytes", info)
    removed = []
    for i, r in enumerate(_get(d, name, "removed", lambda v: v is None or isinstance(v, list), "a list", None) or ()):
        if not isinstance(r, dict):
            raise _bad(name, f"removed[{i}]", "an object", r)
        removed.append(Removed(str(r.get("path", "")), str(r.get("reason", ""))))
    written = _get(d, name, "written", lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
                   "a list of paths", [])
    redacted = _get(d, name, "redacted", lambda v: v is None or isinstance(v, (bool, dict)),
                    "true, false or an object", False)
    return Manifest(
        format=BUNDLE_FORMAT,
        format_version=version,
        rig_version=_get(d, name, "rig_version", _opt_str, "a string", None),
        id=str(_get(d, name, "id", _is_str, "a string", "")),
        started=_get(d, name, "started", _opt_str, "a time stamp (string)", None) or "",
        finished=_get(d, name, "finished", _opt_str, "a time stamp (string)", None),
        status=_get(d, name, "status", _is_str, "a string", "unknown"),
        error=_get(d, name, "error", _opt_str, "a string", None),
        spec=_get(d, name, "spec", _opt_obj, "an object", None) or {},
        backend=_get(d, name, "backend", _opt_obj, "an object", None) or {},
        kernel_drops=_get(d, name, "kernel_drops", _opt_obj, "an object", None) or {},
        clock_offset=_get(d, name, "clock_offset", _opt_obj, "an object", None),
        facts=_get(d, name, "facts", _opt_obj, "an object", None) or {},
        timings=tuple(timings),
        tools=_get(d, name, "tools", _opt_obj, "an object", None) or {},
        kernel=_get(d, name, "kernel", _opt_obj, "an object", None),
        python=_get(d, name, "python", _opt_str, "a string", None),
        host=_get(d, name, "host", _opt_str, "a string", None),
        redacted=bool(redacted) if not isinstance(redacted, dict) else redacted,
        removed=tuple(removed),
        report_error=_get(d, name, "report_error", _opt_str, "a string", None),
        written=tuple(written),
        files=files,
        seconds=_get(d, name, "seconds", _opt_num, "a number", None),
        redact_error=_get(d, name, "redact_error", _opt_str, "a string", None),
        extra={k: v for k, v in d.items() if k not in _KNOWN},
    )


# --------------------------------------------------------------------------- upgrades


def _upgrade_0(data: Mapping[str, Any], mtime: float) -> dict[str, Any]:
    """Format 0: a hand-made directory of captures (client.pcap, server.pcap[, router.pcap])
    with no manifest: synthesize one (nothing is hashed, so nothing is verified)."""
    started = _dt.datetime.fromtimestamp(mtime, _dt.timezone.utc).isoformat()
    return Manifest(id=str(data.get("id") or ""), started=started, status="ok", rig_version=None).to_json()


# version on disk -> function giving the next version's manifest data (given the
# bundle directory's mtime, for versions that recorded no start time)
UPGRADES: dict[int, Callable[[Mapping[str, Any], float], dict[str, Any]]] = {0: _upgrade_0}


def upgrade(data: Any, version: int, mtime: float, name: str) -> Manifest:
    """Manifest data of format ``version`` (checked by ``check_header``, or 0 for a
    directory of captures), upgraded to the current format and parsed."""
    while version < BUNDLE_VERSION:
        data = UPGRADES[version](data, mtime)
        version = data["format_version"]
    return Manifest.from_json(data, name)
