"""Where a run's bundle goes (``rig run --out DIR``), decided before anything is built.

The rule (README, "Where a bundle goes"):

- ``DIR`` does not exist: it is created and is the bundle.
- ``DIR`` is an empty directory: it is the bundle.
- ``DIR`` holds a rig bundle (a ``manifest.json``): refused (exit 2); an earlier run's
  bundle is never written into.
- ``DIR`` is any other directory (files of the user's, hidden ones too, other bundles):
  the bundle goes into a new subdirectory ``DIR/<UTC time>-<scenario>``, as under the
  default ``./runs/``, and stderr says so. Nothing that was in ``DIR`` is opened.
- ``DIR`` is a file, a symlink to nothing, or a place no directory can be made
  (``/proc``, a read-only filesystem, no permission): refused (exit 2).
- less than ``NEED_FREE`` bytes free where the bundle would go: refused (exit 3) before
  the run, since a full disk mid-run loses the captures.

A symlink to a directory is followed (the rule applies to its target); the bundle keeps
the name the user gave.
"""

from __future__ import annotations

import datetime as _dt
import errno
import os
from dataclasses import dataclass
from pathlib import Path

from rig.bundle.files import NO_SPACE
from rig.bundle.manifest import MANIFEST
from rig.errors import InfraError, UsageError

# A lab run's bundle is about 1.5 MB (two 0.6 MB captures); an Azure one with Internet
# noise a few MB. 16 MiB leaves room for ten of those, the report and the manifest.
NEED_FREE = 16 << 20


@dataclass(frozen=True)
class OutDir:
    """The bundle directory (made, and empty) and, when it is not what the user named,
    why (one line for stderr)."""

    path: Path
    note: str | None = None
    created: bool = True  # made here (False: an empty directory the user named)


def bundle_name(scenario: str, now: _dt.datetime | None = None) -> str:
    now = now or _dt.datetime.now(_dt.timezone.utc)
    return f"{now.strftime('%Y%m%dT%H%M%SZ')}-{scenario}"


def new_bundle_dir(parent: Path, name: str) -> Path:
    """``parent/name``, made here (exclusively: a second run in the same second gets
    -2, -3...)."""
    base = parent / name
    for n in range(1, 1000):
        cand = base if n == 1 else parent / f"{name}-{n}"
        try:
            cand.mkdir()
            return cand
        except FileExistsError:
            continue
        except OSError as exc:
            raise _cannot(parent, exc) from exc
    raise InfraError(f"cannot make a run directory under {parent}")


def prepare_out(out: str | Path | None, scenario: str, default_root: str | Path = "runs") -> OutDir:
    """Apply the rule above: returns the (new or empty) directory to write the bundle in."""
    if out is None or str(out) == "":
        root = Path(default_root)
        _check_space(_existing_ancestor(root), root)
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _cannot(root, exc) from exc
        return OutDir(new_bundle_dir(root, bundle_name(scenario)))
    p = Path(out)
    if p.is_symlink() and not p.exists():
        raise UsageError(f"--out {out} is a symlink to nothing ({os.readlink(p)})")
    if p.exists() and not p.is_dir():
        raise UsageError(f"--out {out} is a file, not a directory: name a new or empty directory")
    if not p.exists():
        _check_space(_existing_ancestor(p), p)
        try:
            p.mkdir(parents=True)
        except OSError as exc:
            raise _cannot(p, exc) from exc
        return OutDir(p)
    try:
        entries = sorted(e.name for e in os.scandir(p))
    except OSError as exc:
        raise _cannot(p, exc) from exc
    if MANIFEST in entries:
        raise UsageError(
            f"--out {out} holds the bundle of an earlier run: rig never writes into one; "
            f"name a new directory, or its parent to put the bundle beside it"
        )
    _check_space(p, p)
    if not os.access(p, os.W_OK | os.X_OK):
        raise _cannot(p, PermissionError(errno.EACCES, os.strerror(errno.EACCES)))
    if not entries:
        return OutDir(p, created=False)
    sub = new_bundle_dir(p, bundle_name(scenario))
    return OutDir(sub, note=f"--out {out} is not empty: the bundle goes to {sub}")


def _existing_ancestor(p: Path) -> Path:
    q = p.absolute()
    while not q.exists() and q != q.parent:
        q = q.parent
    return q


def _check_space(where: Path, named: Path) -> None:
    try:
        st = os.statvfs(where)
    except OSError:
        return  # no answer: the writer's reserve still guards the end of the run
    free = st.f_bavail * st.f_frsize
    if st.f_blocks and free < NEED_FREE:
        raise InfraError(
            f"only {free / 2**20:.1f} MiB free on the filesystem of {named}; a run needs at least "
            f"{NEED_FREE >> 20} MiB for its bundle (free some space, or use --out elsewhere)"
        )


def _cannot(p: Path, exc: OSError) -> Exception:
    why = exc.strerror or str(exc)
    try:
        if os.statvfs(_existing_ancestor(p)).f_flag & os.ST_RDONLY:
            why = os.strerror(errno.EROFS)
    except OSError:
        pass
    if exc.errno in NO_SPACE:
        return InfraError(f"cannot make the bundle directory {p}: {why}")
    return UsageError(f"--out {p}: cannot make a bundle directory there ({why})")
