"""File mechanics of a bundle: hashes, atomic JSON writes, names, and which files a
bundle owns.

A bundle owns exactly the files its writer created: the ones it handed out or wrote
(the manifest's ``written``, and ``files`` once sealed) and what is in the captures/
and logs/ directories it made. Everything that seals, sweeps, redacts or re-hashes a
bundle visits only those, never a recursive walk. Bundles from before ``written``
existed fall back to the layout (top-level files, ``captures/*``, ``logs/*``).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, TextIO

from rig.bundle.manifest import MANIFEST, FileHash, Manifest
from rig.errors import InfraError, RigError, UsageError

LAYOUT_DIRS = ("captures", "logs")
# a disk that fills up is the machine's problem (exit 3), not the user's input
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_text_atomic(path: Path, write: Callable[[TextIO], None]) -> None:
    """``write(f)`` into a file beside ``path`` and rename it over; on failure (a full
    disk) the temporary file is removed and the old ``path`` stays as it was."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "w") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write JSON beside ``path`` and rename it over; on failure (a full disk) the
    temporary file is removed and the old ``path`` stays as it was."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def check_name(name: str) -> None:
    if not name or "/" in name or name.startswith(".") or "\\" in name:
        raise UsageError(f"bad bundle file name {name!r}")


def _listing(d: Path, root: Path) -> list[str]:
    """Regular files directly in ``d`` (no recursion), not hidden, not symlinks."""
    if not d.is_dir() or d.is_symlink():
        return []
    return [p.relative_to(root).as_posix() for p in d.iterdir()
            if not p.name.startswith(".") and p.name != MANIFEST and not p.is_symlink() and p.is_file()]


def layout_files(root: Path) -> list[str]:
    """The bundle files by the layout alone (for bundles that list none): regular files
    at the top and in captures/ and logs/, not hidden, not the manifest."""
    return sorted(f for d in (root, *(root / s for s in LAYOUT_DIRS)) for f in _listing(d, root))


def bundle_files(root: Path, tracked: Iterable[str]) -> list[str]:
    """What a writer owns: the files it tracked, and what is in the captures/ and logs/
    directories it made itself (a tool may add a file there, e.g. a capture's error
    output). Symlinks it tracked are included, so that the sweep removes them."""
    return sorted({*tracked, *(f for s in LAYOUT_DIRS for f in _listing(root / s, root))})


def owned_files(root: Path, manifest: Manifest) -> list[str]:
    """The files a bundle owns (relative paths, manifest excluded): what its writer
    listed as written, what the sealed manifest hashes, and its captures/ and logs/."""
    listed = set(manifest.written) | set(manifest.files)
    if not listed:  # a bundle from before ``written``: the layout's top-level files too
        listed = set(layout_files(root))
    return sorted(r for r in bundle_files(root, listed) if _inside(r) and r != MANIFEST)


def _inside(rel: str) -> bool:
    parts = Path(rel).parts
    return bool(parts) and not rel.startswith("/") and ".." not in parts


def hash_paths(root: Path, paths: Iterable[str]) -> dict[str, FileHash]:
    """sha256 and size of each of ``paths`` that is a regular file (not a symlink)."""
    out = {}
    for rel in sorted(set(paths)):
        p = root / rel
        if p.is_file() and not p.is_symlink() and not p.name.startswith(".") and p.name != MANIFEST:
            out[rel] = FileHash(sha256_file(p), p.stat().st_size)
    return out


def hash_files(root: Path | str) -> dict[str, dict[str, Any]]:
    """The ``files`` object of a bundle laid out as rig writes it (JSON data)."""
    root = Path(root)
    return {k: v.to_json() for k, v in hash_paths(root, layout_files(root)).items()}


def write_failed(exc: OSError, where: Path | str) -> RigError:
    """The one-line error for a bundle write that failed during a run: a full disk is
    infrastructure (exit 3), and so is any other failure to write there mid-run."""
    why = exc.strerror or str(exc)
    if exc.errno in NO_SPACE:
        return InfraError(f"cannot write the bundle {where}: {why} (free some space, or use --out elsewhere)")
    return InfraError(f"cannot write the bundle {where}: {why}")


@contextlib.contextmanager
def writing(where: Path | str) -> Iterator[None]:
    """Around a bundle write: an OSError becomes ``write_failed``'s one line."""
    try:
        yield
    except OSError as exc:
        raise write_failed(exc, where) from exc


def load_manifest(root: Path, name: str | None = None) -> Manifest:
    """The manifest of the bundle at ``root``, upgraded to the current format.
    Raises ManifestError (exit 2) for one that is missing, not JSON, or malformed."""
    from rig.bundle.manifest import ManifestError, check_header, upgrade

    name = name or str(root)
    try:
        data = json.loads((root / MANIFEST).read_text())
    except FileNotFoundError as exc:
        raise ManifestError(f"{name}: not a rig bundle (no {MANIFEST})") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{name}: {MANIFEST} is not valid JSON ({exc})") from exc
    except OSError as exc:
        raise ManifestError(f"{name}: {MANIFEST} cannot be read ({exc.strerror})") from exc
    version = check_header(data, name)
    return upgrade(data, version, root.stat().st_mtime, name)


def save_manifest(root: Path, manifest: Manifest) -> None:
    write_json_atomic(root / MANIFEST, manifest.to_json())


def write_output(path: str | Path, text: str) -> None:
    """Write a file the user named (``--html FILE``): a bad place is one line, exit 2; a
    full disk exit 3."""
    try:
        Path(path).write_text(text)
    except OSError as exc:
        if exc.errno in NO_SPACE:
            raise InfraError(f"cannot write {path}: {exc.strerror}") from exc
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from exc
