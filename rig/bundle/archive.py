"""Packing a bundle directory into ``<bundle>.tar.gz`` beside it, for sending or for
retention (the top directory inside is the bundle id)."""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

from rig.bundle.files import write_failed


def archive(out_dir: Path | str) -> Path:
    """Pack a bundle directory into <out>.tar.gz beside it. A failed write (full disk)
    leaves no partial archive and is one line (exit 3)."""
    root = Path(out_dir)
    dst = root.with_name(root.name + ".tar.gz")
    tmp = dst.with_name("." + dst.name + ".tmp")
    try:
        with tarfile.open(tmp, "w:gz") as tar:
            tar.add(root, arcname=root.name, filter=_tar_filter)
        os.replace(tmp, dst)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise write_failed(exc, dst) from exc
    return dst


def _tar_filter(ti: tarfile.TarInfo) -> tarfile.TarInfo | None:
    if ti.issym() or ti.islnk() or Path(ti.name).name.startswith(".") and ti.name.count("/"):
        return None
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    return ti
