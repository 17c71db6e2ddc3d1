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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

from rig import __version__
from rig.capture.compressed import capture_point
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
    # "password": "x" (JSON, quoted key) and PASSWORD=x / --password=x (env, flags)
    re.compile(
        r"(?i)(\"[A-Z0-9_.-]*(?:password|passwd|secret|token|api_?key|access_?key|sas)[A-Z0-9_.-]*\"\s*:\s*\")"
        r"([^\"]{3,})"
    ),
    re.compile(r"(?i)(\b[A-Z0-9_.-]*(?:password|passwd|secret|token|api_?key|access_?key|sas)[A-Z0-9_.-]*=)([^\s\"',}]{3,})"),
    # key: value (YAML-ish) only when the value looks generated (has a digit, 8+ chars)
    re.compile(
        r"(?i)(\b[A-Z0-9_.-]*(?:password|passwd|secret|token|api_?key|access_?key)[A-Z0-9_.-]*:\s*)"
        r"(?=[^\s\"',}]*\d)([^\s\"',}]{8,})"
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
    for rx in _TOKEN_RES[2:]:
        text = rx.sub(lambda m: m.group(1) + REDACTED, text)
    return text


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
    import importlib.metadata  # here, not at the top: ~40 ms that only finish() needs

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


def _manifest_skeleton(
    bundle_id: str,
    started: str,
    status: str,
    spec: Any,
    format_version: int = BUNDLE_VERSION,
    rig_version: str | None = __version__,
    **extra: Any,
) -> dict[str, Any]:
    """The keys every manifest has (a fresh run's and a synthesized format-0 one);
    ``extra`` keys go before ``files``."""
    return {
        "format": BUNDLE_FORMAT,
        "format_version": format_version,
        "rig_version": rig_version,
        "id": bundle_id,
        "started": started,
        "finished": None,
        "status": status,
        "error": None,
        "spec": spec,
        "backend": {},
        "kernel_drops": {},
        "clock_offset": None,
        "facts": {},
        "timings": [],
        "tools": {},
        **extra,
        "files": {},
    }


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
        self.manifest: dict[str, Any] = _manifest_skeleton(
            self.root.name,
            _now(),
            "running",
            scrub_spec(spec),
            kernel=kernel(),
            python=sys.version.split()[0],
            host=platform.node(),
            redacted=False,
            removed=[],
            report_error=None,
        )
        opts = (spec.get("options") if isinstance(spec, Mapping) else getattr(spec, "options", None)) or {}
        self._redact = str(opts.get("redact", "")).lower() in ("true", "1", "yes")
        self._archive = str(opts.get("archive", "")).lower() in ("true", "1", "yes")
        self.archive_path: Path | None = None
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
        """verdict.json (the rig.verdict/1 object). The report beside it is rendered once,
        by finish(), so that it shows the final status and timings."""
        vd = _as_dict(verdict)
        _write_json_atomic(self.root / VERDICT, vd)
        if not self.manifest.get("clock_offset"):  # the analysis estimated it from matched packets
            est = {c["name"]: c["clock_offset_s"] for c in vd.get("capture_points", ())
                   if c.get("clock_offset_s") is not None and c.get("name") != "client"}
            if est:
                self.manifest["clock_offset"] = {"seconds_ahead_of_client": est, "source": "analysis"}
        self._flush()

    def _render_report(self) -> None:
        """report.html from verdict.json and the manifest. A report that fails to render
        never fails the run: the error is kept in the manifest (``report_error``)."""
        if not (self.root / VERDICT).exists():
            return
        try:
            from rig.report.html import write_report

            write_report(self.root, verdict=json.loads((self.root / VERDICT).read_text()), manifest=self.manifest)
            self.manifest["report_error"] = None
        except Exception as exc:  # the report is a view; the verdict is the result
            self.manifest["report_error"] = f"{type(exc).__name__}: {exc}"

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
        self._render_report()
        self.manifest["removed"] = sweep_secrets(self.root) + list(self.manifest.get("removed") or [])
        self.manifest["files"] = hash_files(self.root)
        self._finished = True
        self._flush()
        # the spec's --redact / --archive (RunSpec.options) are honoured here, after sealing
        if self._redact:
            try:
                redact(self.root)
                self.manifest = json.loads((self.root / MANIFEST).read_text())
                self._render_report()  # the report says it is redacted
                self.manifest["files"] = hash_files(self.root)
                self._flush()
            except Exception as exc:  # keep the bundle; say it is NOT redacted
                self.manifest["redact_error"] = f"{type(exc).__name__}: {exc}"
                self._flush()
        if self._archive:
            self.archive_path = archive(self.root)
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


def _rehash(root: Path, update: Mapping[str, Any] | None = None) -> None:
    mp = root / MANIFEST
    m = json.loads(mp.read_text())
    m.update(update or {})
    m["files"] = hash_files(root)
    _write_json_atomic(mp, m)


def append_log(root: Path | str, name: str, text: str) -> Path:
    """Add (or extend) logs/<name> in a finished bundle, scrubbed, and re-hash it."""
    root = Path(root)
    _check_name(name)
    (root / "logs").mkdir(exist_ok=True)
    dst = root / "logs" / name
    with open(dst, "a") as f:
        f.write(scrub_text(text))
    if (root / MANIFEST).exists():
        _rehash(root)
    return dst


def finish_failed(root: Path | str, error: str) -> None:
    """Seal a bundle whose run died before ``finish`` (manifest still ``running``) or
    record a failure on top of it: status ``failed``, the error, hashes."""
    root = Path(root)
    m = json.loads((root / MANIFEST).read_text())
    prev = m.get("error")
    removed = sweep_secrets(root) + list(m.get("removed") or [])
    _rehash(root, {
        "status": "failed",
        "error": scrub_text(error if not prev else f"{error} (the run said: {prev})"),
        "finished": m.get("finished") or _now(),
        "removed": removed,
    })


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


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class Bundle:
    """A bundle read back: its manifest (upgraded to the current format), the stored
    verdict (as JSON data), the probe records and the capture files per point."""

    root: Path
    source: str  # what the user named (directory or archive)
    manifest: Mapping[str, Any]
    verdict: Mapping[str, Any] | None
    probes: tuple[Mapping[str, Any], ...]
    captures: Mapping[str, Path]
    upgraded_from: int | None = None  # the format version on disk, if older than current
    warnings: tuple[str, ...] = ()

    @property
    def status(self) -> str:
        return str(self.manifest.get("status") or "unknown")

    @property
    def started(self) -> str:
        return str(self.manifest.get("started") or "")


def _upgrade_0(root: Path, m: dict) -> dict:
    """Format 0: a hand-made directory of captures (client.pcap, server.pcap[, router.pcap])
    with no manifest: synthesize one (nothing is hashed, so nothing is verified)."""
    started = _dt.datetime.fromtimestamp(root.stat().st_mtime, _dt.timezone.utc).isoformat()
    return _manifest_skeleton(root.name, started, "ok", {}, format_version=1, rig_version=None)


# version on disk -> function giving the next version's manifest (and fixing the layout)
UPGRADES = {0: _upgrade_0}


@contextlib.contextmanager
def open_bundle(path: Path | str, verify: bool = True) -> Iterator[Bundle]:
    """Read a bundle directory or .tar.gz (unpacked into a temporary directory for the
    duration of the ``with``). Raises InputError with one line for anything unusable."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{path}: no such bundle")
    if p.is_dir():
        yield read_bundle(p, source=str(path), verify=verify)
        return
    if not tarfile.is_tarfile(p):
        raise InputError(f"{path}: not a bundle (neither a directory nor a .tar.gz archive)")
    with tempfile.TemporaryDirectory(prefix="rig-bundle-") as tmp:
        try:
            with tarfile.open(p) as tar:
                tar.extractall(tmp, filter="data")
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise InputError(f"{path}: cannot unpack the archive ({exc})") from exc
        root = Path(tmp)
        tops = [d for d in root.iterdir() if d.is_dir()]
        if not (root / MANIFEST).exists() and len(tops) == 1:
            root = tops[0]
        yield read_bundle(root, source=str(path), verify=verify)


def read_manifest(root: Path, source: str | None = None) -> tuple[dict, int | None]:
    """The manifest upgraded to the current format, and the version found on disk if it
    was older. Refuses newer formats."""
    name = source or str(root)
    mp = root / MANIFEST
    if not mp.exists():
        if (root / "captures").is_dir() or any(root.glob("*.pcap")):
            version, m = 0, {}
        else:
            raise InputError(f"{name}: not a rig bundle (no {MANIFEST})")
    else:
        try:
            m = json.loads(mp.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InputError(f"{name}: {MANIFEST} is not valid JSON ({exc})") from exc
        if not isinstance(m, dict) or m.get("format") != BUNDLE_FORMAT:
            raise InputError(f"{name}: {MANIFEST} is not a rig bundle manifest")
        version = m.get("format_version")
        if not isinstance(version, int):
            raise InputError(f"{name}: {MANIFEST} has no format version")
        if version > BUNDLE_VERSION:
            raise InputError(
                f"{name}: bundle format {version} is newer than this rig ({__version__}) reads "
                f"(up to {BUNDLE_VERSION}); upgrade rig to read it"
            )
    found = version
    while version < BUNDLE_VERSION:
        m = UPGRADES[version](root, m)
        version = m["format_version"]
    return m, (found if found < BUNDLE_VERSION else None)


def read_bundle(root: Path, source: str | None = None, verify: bool = True) -> Bundle:
    name = source or str(root)
    manifest, upgraded_from = read_manifest(root, name)
    warnings = verify_files(root, manifest, name) if verify else []
    verdict = None
    if (root / VERDICT).exists():
        try:
            verdict = json.loads((root / VERDICT).read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InputError(f"{name}: {VERDICT} is not valid JSON ({exc})") from exc
    probes = []
    if (root / PROBES).exists():
        for n, line in enumerate((root / PROBES).read_text().splitlines(), 1):
            if line.strip():
                try:
                    probes.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise InputError(f"{name}: {PROBES} line {n} is not JSON ({exc.msg})") from exc
    caps: dict[str, Path] = {}
    for d in (root / "captures", root) if upgraded_from == 0 else (root / "captures",):
        if d.is_dir():
            for c in sorted(d.iterdir()):
                point = capture_point(c.name)  # client.pcap, client.pcapng, client.pcap.gz, ...
                if point and c.is_file():
                    caps.setdefault(point, c)
    return Bundle(root, name, manifest, verdict, tuple(probes), caps, upgraded_from, tuple(warnings))


# derived views: a mismatch is worth a warning, not a refusal (rig show --html redraws it)
SOFT_FILES = (REPORT,)


def verify_files(root: Path, manifest: Mapping[str, Any], name: str) -> list[str]:
    """Every file the manifest lists must be there with its recorded sha256. Returns
    warnings for derived files (report.html) that differ; raises for everything else."""
    warnings = []
    for rel, info in (manifest.get("files") or {}).items():
        if not isinstance(rel, str) or rel.startswith("/") or ".." in Path(rel).parts:
            raise InputError(f"{name}: {MANIFEST} lists a file outside the bundle ({rel!r})")
        f = root / rel
        if not f.is_file():
            raise InputError(f"{name}: {rel} is listed in {MANIFEST} but missing from the bundle")
        want = info.get("sha256") if isinstance(info, Mapping) else info
        size = info.get("bytes") if isinstance(info, Mapping) else None
        if rel in SOFT_FILES:
            if (size is not None and f.stat().st_size != size) or (want and sha256_file(f) != want):
                warnings.append(f"{name}: {rel} differs from the one the run wrote (re-rendered?)")
            continue
        if size is not None and f.stat().st_size != size:
            raise InputError(
                f"{name}: {rel} is {f.stat().st_size} bytes, the manifest recorded {size} (truncated or modified)"
            )
        if want and sha256_file(f) != want:
            raise InputError(f"{name}: {rel} does not match its sha256 in {MANIFEST} (modified or corrupt)")
    return warnings


# --------------------------------------------------------------------------- re-analysis


def reanalyse(b: Bundle):
    """Run the current rig's analysis on the bundle's captures; returns a Verdict."""
    from rig.analysis.api import analyse
    from rig.capture import read_capture
    from rig.capture.checks import ensure_distinct

    if "client" not in b.captures or "server" not in b.captures:
        have = ", ".join(sorted(b.captures)) or "none"
        why = f" (the run {b.status}: {b.manifest.get('error')})" if b.status in ("failed", "interrupted") else ""
        raise InputError(f"{b.source}: needs captures/client.pcap and captures/server.pcap to re-analyse, has {have}{why}")

    def read(point: str):
        name = b.captures[point].name
        try:
            cap = read_capture(str(b.captures[point]), lean=True)
        except InputError as exc:
            raise InputError(f"{b.source}: captures/{name}: {exc}") from exc
        except (ValueError, OSError, EOFError, IndexError) as exc:
            raise InputError(f"{b.source}: captures/{name} cannot be read ({exc})") from exc
        if getattr(cap, "truncated_tail", False):
            raise InputError(
                f"{b.source}: captures/{name} is truncated after {len(cap.packets)} packets "
                "(its last record is cut short); the verdict would be built on a partial capture"
            )
        return cap

    client, server = read("client"), read("server")
    ensure_distinct(client, server)
    extra = {p: read(p) for p in b.captures if p not in ("client", "server")} or None
    server_addr = (b.manifest.get("backend") or {}).get("server_addr") or (b.manifest.get("facts") or {}).get(
        "server_addr"
    )
    drops = b.manifest.get("kernel_drops") or None
    return analyse(client, server, server_addr=server_addr, extra=extra, kernel_drops=drops)


def outcome_signature(verdict: Mapping[str, Any] | None) -> tuple:
    """What must be equal for two verdicts to say the same thing: outcomes per exchange."""
    if not verdict:
        return ()
    return tuple((e.get("id"), e.get("outcome")) for e in verdict.get("exchanges", ()))


def cli_show(args) -> int:
    """rig show BUNDLE [--json] [--html FILE]"""
    with open_bundle(args.bundle) as b:
        if b.upgraded_from is not None:
            print(f"rig: {b.source}: read bundle format {b.upgraded_from}, upgraded to {BUNDLE_VERSION}", file=sys.stderr)
        for w in b.warnings:
            print(f"rig: {w}", file=sys.stderr)
        if b.status == "running":
            print(f"rig: {b.source}: the run never finished (killed?); showing what it left", file=sys.stderr)
        verdict = reanalyse(b)
        vd = verdict.to_dict()
        if b.verdict is not None and outcome_signature(b.verdict) != outcome_signature(vd):
            print(
                f"rig: {b.source}: re-analysed with rig {__version__}, the verdict differs from the one recorded "
                f"by rig {b.manifest.get('rig_version')}",
                file=sys.stderr,
            )
        if args.json:
            verdict.write_json(sys.stdout)  # a piece at a time (verdict.py)
            sys.stdout.write("\n")
        else:
            from rich.console import Console

            from rig.render import print_verdict

            print_verdict(verdict, Console())
        if getattr(args, "html", None):
            from rig.report.html import render_report

            html = render_report(vd, manifest=b.manifest, probes=b.probes, captures=b.captures)
            Path(args.html).write_text(html)
            if not args.json:
                print(f"report: {args.html}")
        return verdict.exit_code()
