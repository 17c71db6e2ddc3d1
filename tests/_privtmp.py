"""Test helper: run `rig` with a /tmp of its own, to count exactly what one run leaves there.

Other runs on this machine write to /tmp at the same time, so a before/after listing of
the real /tmp cannot say which files one run made. ``PrivateTmp.cmd`` wraps a command
in a new mount namespace (``unshare --mount``) where a fresh directory is bind-mounted
on /tmp; everything else is shared with this machine, /run/netns included (propagation
unchanged: the lab's namespaces are seen from outside as usual), and the bind mount
itself does not propagate out (the mount holding /tmp is made a slave first). The lab's
own processes (``ip netns exec`` copies the caller's mounts) see the same private /tmp.
Run `rig clean` through the same wrapper to reach what the run left there.

A checkout (or its venv) may itself live under /tmp (CI clones wherever it likes): those
paths are bound back into the fresh /tmp at the same place, from the real /tmp kept
reachable beside it, and are not counted as left behind.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from _sshd import missing_tools


def _under_tmp(paths) -> list[str]:
    """Of ``paths``, those under the real /tmp, relative to it (the ones the wrapped command
    still needs: this checkout, the venv and the interpreter it runs)."""
    tmp = Path("/tmp").resolve()
    out = set()
    for p in paths:
        p = Path(p).resolve()
        if p != tmp and tmp in p.parents:
            out.add(str(p.relative_to(tmp)))
    # a path inside another kept one comes with it
    return sorted(r for r in out if not any(r.startswith(o + "/") for o in out))


KEEP = _under_tmp([Path(__file__).resolve().parents[1], sys.prefix, sys.base_prefix])


def private_tmp_skip() -> str | None:
    missing = missing_tools("unshare", "findmnt", "mount")
    if missing:
        return f"missing tools: {', '.join(missing)}"
    return None if os.geteuid() == 0 else "needs root (mount namespaces)"


class PrivateTmp:
    """A scratch directory outside /tmp holding ``tmp`` (bind-mounted on /tmp for the
    wrapped commands) and ``out`` (for bundles: the wrapped command cannot see the real
    /tmp, pytest's tmp_path included)."""

    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="rig-privtmp-", dir="/var/tmp"))
        self.tmp = self.base / "tmp"
        self.tmp.mkdir(mode=0o1777)
        self.tmp.chmod(0o1777)
        self.orig = self.base / "orig"  # the real /tmp, for the paths bound back (KEEP)
        self.orig.mkdir()

    def _script(self) -> str:
        # a bind mount over /tmp whose mount point is a slave: nothing propagates back out
        q = shlex.quote
        steps = ['mount --make-slave "$(findmnt -n -o TARGET -T /tmp)"']
        if KEEP:
            steps.append(f"mount --rbind /tmp {q(str(self.orig))}")
        steps.append(f"mount --bind {q(str(self.tmp))} /tmp")
        for rel in KEEP:
            steps.append(f"mkdir -p {q('/tmp/' + rel)} && mount --rbind {q(str(self.orig / rel))} {q('/tmp/' + rel)}")
        return " && ".join([*steps, 'exec "$@"'])

    def cmd(self, argv: list[str]) -> list[str]:
        return ["unshare", "--mount", "--propagation", "unchanged", "sh", "-c", self._script(), "privtmp", *argv]

    def run(self, argv: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(self.cmd(argv), capture_output=True, text=True, timeout=timeout)

    def lab_prefixes(self) -> list[str]:
        """The lab workdirs (rig-lab/<prefix>) that runs made under this /tmp."""
        root = self.tmp / "rig-lab"
        return sorted(p.name for p in root.iterdir()) if root.is_dir() else []

    def leftovers(self) -> list[str]:
        """Every path under this /tmp, except an empty rig-lab (the root of lab workdirs)."""
        kept = {str(Path(rel).parents[i]) for rel in KEEP for i in range(len(Path(rel).parts) - 1)} | set(KEEP)
        paths = sorted(str(p.relative_to(self.tmp)) for p in self.tmp.rglob("*"))
        paths = [p for p in paths if p not in kept]  # the mount points of KEEP (empty seen from here)
        return [] if paths == ["rig-lab"] else paths

    def remove(self) -> None:
        shutil.rmtree(self.base, ignore_errors=True)
