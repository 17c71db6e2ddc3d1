"""Credentials and management clients: DefaultAzureCredential + AZURE_SUBSCRIPTION_ID.

``Clients`` bundles the three management clients built with the same credential and
client options (tests pass ``transport=``, ``polling_interval=0``, ``retry_total=0``
and a fake credential; see fake.py). The SDK is imported here, lazily, so that
``--dry-run`` and ``rig diff`` never need it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from rig.errors import UsageError

# The options rig gives the real clients. ARM's Retry-After wins when present; without it
# the SDK would wait its default 30 s per poll. Retries stay the SDK's default policy
# (10 tries; 429 and 5xx retried, Retry-After honoured).
LIVE_CLIENT_OPTIONS: dict[str, Any] = {"polling_interval": 5}


@dataclass(frozen=True)
class Clients:
    subscription_id: str
    resource: Any  # ResourceManagementClient
    network: Any  # NetworkManagementClient
    compute: Any  # ComputeManagementClient


def subscription_id(explicit: str | None = None) -> str:
    sub = explicit or os.environ.get("AZURE_SUBSCRIPTION_ID")
    if not sub:
        raise UsageError("AZURE_SUBSCRIPTION_ID is not set: export it (az account show --query id -o tsv), "
                         "or use --dry-run / --backend lab")
    return sub


def default_credential():
    """DefaultAzureCredential (env service principal, managed identity, Azure CLI, ...)."""
    import logging

    from azure.identity import DefaultAzureCredential

    # azure-identity logs a page per failed credential; rig says it in one line instead
    logging.getLogger("azure.identity").setLevel(logging.CRITICAL)
    return DefaultAzureCredential(exclude_interactive_browser_credential=True)


def make_clients(credential=None, subscription: str | None = None, **client_kwargs: Any) -> Clients:
    from azure.mgmt.compute import ComputeManagementClient
    from azure.mgmt.network import NetworkManagementClient
    from azure.mgmt.resource.resources import ResourceManagementClient

    sub = subscription_id(subscription)
    cred = credential or default_credential()
    return Clients(sub,
                   ResourceManagementClient(cred, sub, **client_kwargs),
                   NetworkManagementClient(cred, sub, **client_kwargs),
                   ComputeManagementClient(cred, sub, **client_kwargs))
