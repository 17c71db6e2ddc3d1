"""Per-run keys and the cloud-init custom data that installs the pinned host key.

``new_keys(dir)`` makes the run's SSH login key pair and the VM's ed25519 host key
here, on the caller's machine; ``render(keys)`` fills templates/cloud-init.yaml.j2 so
cloud-init installs exactly that host key (``ssh_genkeytypes: []``). The public half is
pinned in the Rig before the first connection: no trust-on-first-use.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from pathlib import Path

import jinja2

from rig.resources import templates_dir

TEMPLATE = "cloud-init.yaml.j2"


@dataclass(frozen=True)
class RunKeys:
    login_key_file: str  # private key rig logs in with (0600, in the run's workdir)
    login_public: str  # "ssh-ed25519 AAAA... rig"
    host_private: str  # OpenSSH PEM of the VM's host key (only ever in custom data)
    host_public: str  # "ssh-ed25519 AAAA..." — pinned


def _ed25519() -> tuple[str, str]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                           serialization.PublicFormat.OpenSSH).decode()
    return private, public


def new_keys(workdir: str | os.PathLike) -> RunKeys:
    """A login key pair (written to workdir, 0600) and a host key pair (kept in memory)."""
    wd = Path(workdir)
    wd.mkdir(parents=True, exist_ok=True, mode=0o700)
    login_private, login_public = _ed25519()
    path = wd / "id_ed25519"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(login_private)
    (wd / "id_ed25519.pub").write_text(login_public + " rig\n")
    host_private, host_public = _ed25519()
    return RunKeys(str(path), f"{login_public} rig", host_private, host_public)


def render(keys: RunKeys, nat_addr: str = "", dhcp6: bool = False) -> str:
    """``nat_addr``: the static private address of the NIC's second IP configuration (the
    NAT responder's, rig.nat): Azure's DHCP gives the VM only the primary one. ``dhcp6``
    (a dual-stack VM): Azure hands the private IPv6 address out by DHCPv6, which not
    every Linux image asks for by default (Azure's "Configure DHCPv6 for Linux VMs"), so
    a netplan drop-in asks for it on eth0."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(templates_dir())),
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    return env.get_template(TEMPLATE).render(host_private=keys.host_private.strip(),
                                             host_public=keys.host_public, nat_addr=nat_addr, dhcp6=dhcp6)


def custom_data(keys: RunKeys, nat_addr: str = "", dhcp6: bool = False) -> str:
    """Base64 of the rendered cloud-config, as osProfile.customData wants it."""
    return base64.b64encode(render(keys, nat_addr, dhcp6).encode()).decode()
