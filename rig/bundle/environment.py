"""The environment survey every bundle records (Flent's metadata): the versions of the
programs a run depends on, and the kernel."""

from __future__ import annotations

import functools
import os
import platform
import shutil
import subprocess


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
