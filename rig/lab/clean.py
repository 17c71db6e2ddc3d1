"""``rig clean``: remove what killed lab runs left behind (like Mininet's ``mn -c``).

Finds every namespace named ``rig-<6 hex>-<node>`` (or only those of one prefix), kills
by PID every process inside, deletes the namespaces, and removes the matching workdirs
under /tmp/rig-lab. Without ``--prefix`` it removes EVERY rig lab on this machine,
including those of runs still alive; give a run's prefix to remove only that one.
"""

from __future__ import annotations

import argparse
import re
import shutil
from dataclasses import dataclass

from rig.errors import UsageError
from rig.lab.build import destroy, list_namespaces, require_root_and_tools
from rig.lab.topology import PREFIX_RE

NS_RE = re.compile(r"^(rig-[0-9a-f]{6})-[a-z]+$")


@dataclass(frozen=True)
class Cleaned:
    namespaces: tuple[str, ...]
    workdirs: tuple[str, ...]


def leftover_namespaces(prefix: str | None = None) -> list[str]:
    out = []
    for name in list_namespaces():
        m = NS_RE.match(name)
        if m and (prefix is None or m.group(1) == prefix):
            out.append(name)
    return out


def clean(prefix: str | None = None) -> Cleaned:
    """Remove lab namespaces (and their processes) and workdirs; ``prefix`` limits it to one run."""
    from rig.backends.lab import LAB_ROOT

    if prefix is not None and not PREFIX_RE.match(prefix):
        raise UsageError(f"not a lab prefix: {prefix!r} (expected rig-<6 hex digits>, e.g. rig-1a2b3c)")
    names = destroy(leftover_namespaces(prefix))
    dirs = []
    if LAB_ROOT.is_dir():
        for d in sorted(LAB_ROOT.iterdir()):
            if PREFIX_RE.match(d.name) and (prefix is None or d.name == prefix):
                shutil.rmtree(d, ignore_errors=True)
                dirs.append(str(d))
    return Cleaned(tuple(names), tuple(dirs))


def cli_clean(args: argparse.Namespace) -> int:
    prefix = getattr(args, "prefix", None)
    require_root_and_tools(("ip",))
    done = clean(prefix)
    what = f"prefix {prefix}" if prefix else "all rig labs"
    if not done.namespaces and not done.workdirs:
        print(f"rig clean ({what}): nothing to remove")
        return 0
    print(f"rig clean ({what}): removed {len(done.namespaces)} namespace(s), {len(done.workdirs)} workdir(s)")
    for n in done.namespaces:
        print(f"  netns {n}")
    return 0
