"""Responders behind one small interface (see base.py); the registry maps names to classes.

Backends are imported lazily so that `rig diff` never pays for paramiko or the Azure SDK.
"""

from __future__ import annotations

import importlib

from rig.errors import UsageError

BACKENDS = {
    "lab": "rig.backends.lab:LabBackend",
    "ssh": "rig.backends.ssh:SSHBackend",
    "azure": "rig.backends.azure:AzureBackend",
}


def get_backend(name: str):
    """The backend class registered under ``name``."""
    try:
        target = BACKENDS[name]
    except KeyError:
        raise UsageError(f"unknown backend {name!r}: choose one of {', '.join(BACKENDS)}") from None
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)
