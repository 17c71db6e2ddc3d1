"""The bundle: the directory one run leaves behind, written even when the run fails.

Layout (format ``rig.bundle/1``)::

    <out>/manifest.json     format, rig version, spec, backend facts, timings per stage,
                            tool versions, kernel, clock-offset estimate, status,
                            sha256 of every other file
    <out>/captures/<point>.pcap
    <out>/probes.jsonl      one ProbeResult.to_dict() per line
    <out>/logs/...          Apache access log, socket states, ansible events
    <out>/verdict.json      the rig.verdict/1 object (DESIGN.md §3)
    <out>/report.html       the self-contained report (rig.report.html)

``BundleWriter`` writes it during a run (the manifest says ``running`` from the first
moment, so a killed run still leaves a readable bundle). ``load_bundle`` reads one back
(directory or .tar.gz), upgrading older formats and refusing newer ones; ``cli_show``
re-analyses the captures with the current rig. ``redact`` replaces the client's private
addresses (also inside the pcaps) for sharing; ``archive`` packs a bundle into a tarball.

No credential ever enters a bundle: files that look like private keys or carry tokens
are refused when added and swept again in ``finish`` (removed and listed in the
manifest under ``removed``); spec values whose key names a secret are dropped.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import functools
import hashlib
import importlib.metadata
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

from rig import __version__
from rig.errors import InputError, UsageError

BUNDLE_FORMAT = "rig.bundle"
BUNDLE_VERSION = 1  # bump when the layout or the manifest changes; add an upgrade step
STATUSES = ("running", "ok", "path-problem", "failed", "interrupted")

MANIFEST = "manifest.json"
VERDICT = "verdict.json"
PROBES = "probes.jsonl"
REPORT = "report.html"


# --------------------------------------------------------------------------- secrets

# Content that must never be written into a bundle.
_PRIVATE_KEY_RE = re.compile(
    rb"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----|PuTTY-User-Key-File-\d|-----BEGIN PGP PRIVATE KEY BLOCK-----"
)
# Token-like strings inside text files (logs, ansible events): replaced, not dropped.
_TOKEN_RES = [
    re.compile(r"(?i)\b(authorization\s*[:=]\s*)(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"),  # JWT
    re.compile(
        r"(?i)([\"']?\b[A-Z0-9_]*(?:password|passwd|secret|token|api_key|apikey|access_key|sas)[A-Z0-9_]*[\"']?"
        r"\s*[:=]\s*[\"']?)([^\s\"',}]{4,})"
    ),
]
_SECRET_NAME_RE = re.compile(r"(?i)(password|passwd|secret|token|credential|api_?key|access_?key|private_?key)")
_PRIVATE_KEY_NAMES = re.compile(r"(?i)^(id_(rsa|dsa|ecdsa|ed25519)(_sk)?|.*\.(pem|key|p12|pfx|ppk))$")

REDACTED = "[redacted]"


def looks_like_private_key(data: bytes, name: str = "") -> bool:
    """True for the bytes of a private key (PEM/OpenSSH/PuTTY/PGP) or a key-like file name."""
    return bool(_PRIVATE_KEY_RE.search(data)) or bool(_PRIVATE_KEY_NAMES.match(name))


def scrub_text(text: str) -> str:
    """Replace token-like values (bearer tokens, JWTs, password=/secret= values) in text."""
    text = _TOKEN_RES[0].sub(lambda m: m.group(1) + REDACTED, text)
    text = _TOKEN_RES[1].sub(REDACTED, text)
    return _TOKEN_RES[2].sub(lambda m: m.group(1) + REDACTED, text)


def scrub_spec(obj: Any) -> Any:
    """The spec as plain JSON data, with values under secret-sounding keys dropped."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        obj = dataclasses.asdict(obj)
    if isinstance(obj, Mapping):
        out = {}
        for k, v in obj.items():
            if _SECRET_NAME_RE.search(str(k)) and v not in (None, "", False):
                out[str(k)] = REDACTED
            else:
                out[str(k)] = scrub_spec(v)
        return out
    if isinstance(obj, (list, tuple)):
        return [scrub_spec(v) for v in obj]
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return str(obj)


class SecretRefused(UsageError):
    """A file that looks like a private key or credential was offered to a bundle."""


# --------------------------------------------------------------------------- environment


@functools.lru_cache(maxsize=None)
def _tool_version(argv: tuple[str, ...]) -> str | None:
    exe = shutil.which(argv[0], path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
    if exe is None:
        return None
    try:
        p = subprocess.run([exe, *argv[1:]], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    for line in (p.stdout + "\n" + p.stderr).splitlines():
        line = line.strip()
        if line and not line.startswith("Running as user"):
            return line
    return None


def _pkg_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def tool_versions() -> dict[str, str | None]:
    """The versions of the programs a run depends on (None: not installed here)."""
    return {
        "tcpdump": _tool_version(("tcpdump", "--version")),
        "apache2": _tool_version(("apache2", "-v")),
        "ssh": _tool_version(("ssh", "-V")),
        "nft": _tool_version(("nft", "--version")),
        "ansible-core": _pkg_version("ansible-core"),
        "ansible-runner": _pkg_version("ansible-runner"),
        "paramiko": _pkg_version("paramiko"),
        "numpy": _pkg_version("numpy"),
        "python": platform.python_version(),
    }


def kernel() -> dict[str, str]:
    u = platform.uname()
    return {"system": u.system, "release": u.release, "version": u.version, "machine": u.machine}


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _write_json_atomic(path: Path, obj: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")
    os.replace(tmp, path)


def _as_dict(obj: Any) -> dict:
    if obj is None:
        return {}
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    return dict(obj)


# --------------------------------------------------------------------------- writing


class BundleWriter:
    """Writes one run's bundle. ``finish()`` must always be called (the pipeline does it
    in ``finally``); until then the manifest says ``running``."""

    def __init__(self, out_dir: Path | str, spec: Any):
        self.root = Path(out_dir)
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "captures").mkdir(exist_ok=True)
        (self.root / "logs").mkdir(exist_ok=True)
        self._t0 = time.monotonic()
        self.manifest: dict[str, Any] = {
            "format": BUNDLE_FORMAT,
            "format_version": BUNDLE_VERSION,
            "rig_version": __version__,
            "id": self.root.name,
            "started": _now(),
            "finished": None,
            "status": "running",
            "error": None,
            "spec": scrub_spec(spec),
            "backend": {},
            "kernel_drops": {},
            "clock_offset": None,
            "facts": {},
            "timings": [],
            "tools": {},
            "kernel": kernel(),
            "python": sys.version.split()[0],
            "host": platform.node(),
            "redacted": False,
            "removed": [],
            "report_error": None,
            "files": {},
        }
        self._finished = False
        self._flush()

    # -- paths the pipeline writes into
    def capture_path(self, point: str) -> Path:
        """captures/<point>.pcap: tcpdump -w writes here."""
        _check_name(point)
        return self.root / "captures" / f"{point}.pcap"

    def log_path(self, name: str) -> Path:
        """logs/<name> (e.g. access.log, ss-server.txt, ansible-events.jsonl)."""
        _check_name(name)
        if _PRIVATE_KEY_NAMES.match(name):
            raise SecretRefused(f"refusing to put {name!r} into a bundle: it is named like a private key")
        return self.root / "logs" / name

    def add_file(self, src: Path | str, name: str) -> Path:
        """Copy a file into logs/ after checking it is not a key or credential."""
        src = Path(src)
        data = src.read_bytes()
        if looks_like_private_key(data, src.name):
            raise SecretRefused(f"refusing to put {src.name!r} into a bundle: it looks like a private key")
        dst = self.log_path(name)
        dst.write_bytes(data)
        return dst

    # -- records
    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time one pipeline stage; its outcome (ok / error text) goes into the manifest."""
        rec: dict[str, Any] = {"stage": name, "start": _now(), "seconds": None, "ok": None, "error": None}
        self.manifest["timings"].append(rec)
        t = time.monotonic()
        try:
            yield
        except BaseException as exc:
            rec["ok"] = False
            rec["error"] = scrub_text(str(exc) or type(exc).__name__)
            raise
        else:
            rec["ok"] = True
        finally:
            rec["seconds"] = round(time.monotonic() - t, 4)
            self._flush()

    def add_probe(self, record: Any) -> None:
        """Append one probe result (a dict or an object with to_dict()) to probes.jsonl."""
        line = scrub_text(json.dumps(_as_dict(record), default=str, sort_keys=False))
        with open(self.root / PROBES, "a") as f:
            f.write(line + "\n")

    def set_facts(
        self,
        backend: Mapping[str, Any] | None = None,
        kernel_drops: Mapping[str, Any] | None = None,
        clock_offset: Mapping[str, Any] | None = None,
        **extra: Any,
    ) -> None:
        """Backend facts (server_addr, region, VM size...), per-point kernel drops, the
        clock-offset estimate between points, and anything else worth keeping."""
        if backend is not None:
            self.manifest["backend"] = scrub_spec(dict(backend))
        if kernel_drops is not None:
            self.manifest["kernel_drops"] = dict(kernel_drops)
        if clock_offset is not None:
            self.manifest["clock_offset"] = dict(clock_offset)
        self.manifest["facts"].update(scrub_spec(extra))
        self._flush()

    def write_verdict(self, verdict: Any) -> None:
        """verdict.json (the rig.verdict/1 object) and report.html beside it.

        A report that fails to render never fails the run: the error is kept in the
        manifest (``report_error``)."""
        vd = _as_dict(verdict)
        _write_json_atomic(self.root / VERDICT, vd)
        try:
            from rig.report.html import write_report

            write_report(self.root, verdict=vd, manifest=self.manifest)
            self.manifest["report_error"] = None
        except Exception as exc:  # the report is a view; the verdict is the result
            self.manifest["report_error"] = f"{type(exc).__name__}: {exc}"
        self._flush()

    def finish(self, status: str, error: str | None = None) -> Path:
        """Seal the bundle: final status, tool versions, credential sweep, file hashes."""
        if status not in STATUSES or status == "running":
            raise ValueError(f"bad bundle status {status!r}")
        self.manifest["status"] = status
        self.manifest["error"] = scrub_text(error) if error else None
        self.manifest["finished"] = _now()
        self.manifest["seconds"] = round(time.monotonic() - self._t0, 3)
        try:
            self.manifest["tools"] = tool_versions()
        except Exception as exc:  # never let the environment survey lose the bundle
            self.manifest["tools"] = {"error": str(exc)}
        self.manifest["removed"] = sweep_secrets(self.root) + list(self.manifest.get("removed") or [])
        self.manifest["files"] = hash_files(self.root)
        self._finished = True
        self._flush()
        return self.root

    def _flush(self) -> None:
        _write_json_atomic(self.root / MANIFEST, self.manifest)


def _check_name(name: str) -> None:
    if not name or "/" in name or name.startswith(".") or "\\" in name:
        raise UsageError(f"bad bundle file name {name!r}")


def _bundle_files(root: Path) -> list[Path]:
    return sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and p.name != MANIFEST and not p.name.startswith(".") and not p.is_symlink()
    )


def hash_files(root: Path) -> dict[str, dict[str, Any]]:
    return {
        p.relative_to(root).as_posix(): {"sha256": sha256_file(p), "bytes": p.stat().st_size}
        for p in _bundle_files(root)
    }


def sweep_secrets(root: Path) -> list[dict[str, str]]:
    """Remove files that are or contain private keys; scrub tokens out of text files.
    Returns what was removed (path and reason) for the manifest."""
    removed = []
    for p in root.rglob("*"):
        rel = p.relative_to(root).as_posix()
        if p.is_symlink():
            p.unlink()
            removed.append({"path": rel, "reason": "symlink"})
            continue
        if not p.is_file() or p.name == MANIFEST:
            continue
        data = p.read_bytes()
        if looks_like_private_key(data, p.name):
            p.unlink()
            removed.append({"path": rel, "reason": "looks like a private key"})
            continue
        if p.suffix in (".pcap", ".pcapng", ".gz"):
            continue
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            continue
        clean = scrub_text(text)
        if clean != text:
            p.write_text(clean)
    return removed


# --------------------------------------------------------------------------- archive


def archive(out_dir: Path | str) -> Path:
    """Pack a bundle directory into <out>.tar.gz beside it (top directory = bundle id)."""
    root = Path(out_dir)
    dst = root.with_name(root.name + ".tar.gz")
    tmp = dst.with_name("." + dst.name + ".tmp")
    with tarfile.open(tmp, "w:gz") as tar:
        tar.add(root, arcname=root.name, filter=_tar_filter)
    os.replace(tmp, dst)
    return dst


def _tar_filter(ti: tarfile.TarInfo) -> tarfile.TarInfo | None:
    if ti.issym() or ti.islnk() or Path(ti.name).name.startswith(".") and ti.name.count("/"):
        return None
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    return ti


# --------------------------------------------------------------------------- redaction


def redact(out_dir: Path | str, extra_private: tuple[str, ...] = ()) -> dict[str, str]:
    """Replace every private address (RFC 1918, RFC 6598 shared, ULA, link-local) in the
    bundle by a stable stand-in, for sharing. Implemented in rig.redact; see there."""
    from rig.redact import redact_bundle

    return redact_bundle(Path(out_dir), extra_private=extra_private)
