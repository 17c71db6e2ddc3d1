"""``rig clean``: remove what killed lab runs left behind (like Mininet's ``mn -c``).

Finds every namespace named ``rig-<6 hex>-<node>`` (or only those of one prefix), kills
by PID every process inside, deletes the namespaces, and removes the matching workdirs
under /tmp/rig-lab. A run keeps every temporary file it makes inside its workdir
(ansible-runner's private dir, OpenSSH's ControlPath sockets, the server's remote
captures), so removing the workdir leaves nothing of it under /tmp; the processes of
the run outside its namespaces (the playbook, its ControlPersist master) name the
workdir on their command line and are killed by PID first. Without ``--prefix`` it
removes EVERY rig lab on this machine, including those of runs still alive; give a
run's prefix to remove only that one.

The ssh and azure backends have a workdir on this machine too (removed at teardown)
and leave files on the server (removed at teardown, over SSH): after a SIGKILL those
stay, and `rig clean` does not know them (it only knows labs).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from rig.errors import UsageError
from rig.lab.build import destroy, kill_pids, list_namespaces, require_root_and_tools
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


def workdir_processes(workdir: Path) -> list[int]:
    """Processes anywhere on this machine whose command line names a path inside
    ``workdir`` (a lab's workdir is unique to its run: rig-lab/rig-<6 hex>/)."""
    inside = f"{workdir}/".encode()
    me, pids = os.getpid(), []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            with open(f"/proc/{entry.name}/cmdline", "rb") as fh:
                cmd = fh.read()
        except OSError:  # gone meanwhile, or a kernel thread
            continue
        if inside in cmd:
            pids.append(int(entry.name))
    return pids


def clean(prefix: str | None = None) -> Cleaned:
    """Remove lab namespaces (and their processes) and workdirs; ``prefix`` limits it to one run."""
    from rig.backends.lab import LAB_ROOT

    if prefix is not None and not PREFIX_RE.match(prefix):
        raise UsageError(f"not a lab prefix: {prefix!r} (expected rig-<6 hex digits>, e.g. rig-1a2b3c)")
    workdirs = sorted(d for d in LAB_ROOT.iterdir() if PREFIX_RE.match(d.name)
                      and (prefix is None or d.name == prefix)) if LAB_ROOT.is_dir() else []
    for d in workdirs:  # first the run's processes outside its namespaces (the playbook, ssh)
        kill_pids(workdir_processes(d))
    names = destroy(leftover_namespaces(prefix))
    dirs = []
    for d in workdirs:
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
