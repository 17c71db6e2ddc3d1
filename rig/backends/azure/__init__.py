"""The Azure backend: plan -> provision (concurrent waves) -> Rig -> preflight -> teardown.

plan.py      the resources, NSG rules, size, region and cost, as data (--dry-run)
prices.py    the region's prices from the Azure Retail Prices API (--dry-run)
provision.py the SDK calls, wave by wave; deletes the resource group on any failure
nsg.py       rule models, and the check of the NIC's effective rules
errors.py    ARM errors classified by error.code, said in one line
cloudinit.py per-run login key, locally generated pinned host key, cloud-init data
credentials.py / caller_ip.py  DefaultAzureCredential + subscription; the caller's /32
fake.py      a stateful fake ARM behind an azure-core transport, for offline tests
"""

from rig.backends.azure.backend import AzureBackend, dry_run

__all__ = ["AzureBackend", "dry_run"]
