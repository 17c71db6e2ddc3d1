"""Reading a bundle back: the manifest (upgraded from older formats, newer refused),
the stored verdict and probe records, the captures, and a check of every file against
its recorded sha256. Anything unusable is an InputError with one line (exit 2)."""

from __future__ import annotations

import contextlib
import json
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

from rig.bundle.files import load_manifest, sha256_file
from rig.bundle.manifest import BUNDLE_VERSION, MANIFEST, PROBES, REPORT, VERDICT, Manifest, check_header, upgrade
from rig.capture.compressed import capture_point
from rig.errors import InputError


@dataclass(frozen=True)
class Bundle:
    """A bundle read back: its manifest (upgraded to the current format), the stored
    verdict (as JSON data), the probe records and the capture files per point."""

    root: Path
    source: str  # what the user named (directory or archive)
    manifest: Manifest
    verdict: Mapping[str, Any] | None
    probes: tuple[Mapping[str, Any], ...]
    captures: Mapping[str, Path]
    upgraded_from: int | None = None  # the format version on disk, if older than current
    warnings: tuple[str, ...] = ()

    @property
    def status(self) -> str:
        return self.manifest.status or "unknown"

    @property
    def started(self) -> str:
        return self.manifest.started


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


def read_manifest(root: Path, source: str | None = None) -> tuple[Manifest, int | None]:
    """The manifest upgraded to the current format, and the version found on disk if it
    was older. Refuses newer formats and malformed manifests (ManifestError, exit 2)."""
    name = source or str(root)
    if not (root / MANIFEST).exists():
        if (root / "captures").is_dir() or any(root.glob("*.pcap")):
            # format 0: a hand-made directory of captures, no manifest
            return upgrade({"id": root.name}, 0, root.stat().st_mtime, name), 0
        raise InputError(f"{name}: not a rig bundle (no {MANIFEST})")
    try:
        found = check_header(json.loads((root / MANIFEST).read_text()), name)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{name}: {MANIFEST} is not valid JSON ({exc})") from exc
    return load_manifest(root, name), (found if found < BUNDLE_VERSION else None)


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
        if not isinstance(verdict, dict):
            raise InputError(f"{name}: {VERDICT} is not a rig.verdict/1 object")
    probes = []
    if (root / PROBES).exists():
        try:
            lines = (root / PROBES).read_text().splitlines()
        except UnicodeDecodeError as exc:
            raise InputError(f"{name}: {PROBES} is not UTF-8 text ({exc.reason})") from exc
        for n, line in enumerate(lines, 1):
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


def verify_files(root: Path, manifest: Manifest, name: str) -> list[str]:
    """Every file the manifest lists must be there with its recorded sha256. Returns
    warnings for derived files (report.html) that differ; raises for everything else."""
    warnings = []
    for rel, info in manifest.files.items():
        if rel.startswith("/") or ".." in Path(rel).parts:
            raise InputError(f"{name}: {MANIFEST} lists a file outside the bundle ({rel!r})")
        f = root / rel
        if not f.is_file():
            raise InputError(f"{name}: {rel} is listed in {MANIFEST} but missing from the bundle")
        want, size = info.sha256, info.bytes
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
