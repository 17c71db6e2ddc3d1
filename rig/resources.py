"""Files shipped inside the rig package: the Ansible playbooks and the templates.

Both live under rig/ so that an installed (non-editable) rig has them; the repository's
top-level ``playbooks/`` and ``templates/`` are symlinks into the package. The one
override is ``$RIG_TEMPLATES`` (a directory laid out like rig/templates).
"""

from __future__ import annotations

import importlib.resources
import os
from pathlib import Path

from rig.errors import InfraError


def package_dir(name: str) -> Path:
    """A directory shipped with rig (``playbooks`` or ``templates``)."""
    res = importlib.resources.files("rig") / name
    if res.is_dir():
        return Path(str(res))
    raise InfraError(f"rig is installed without its {name}/ directory; reinstall the package")


def playbooks_dir() -> Path:
    return package_dir("playbooks")


def templates_dir() -> Path:
    env = os.environ.get("RIG_TEMPLATES")
    return Path(env) if env else package_dir("templates")
