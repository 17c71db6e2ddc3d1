"""The caller's public IPv4 address, which the NSG allows (and nothing wider).

``detect()`` asks an HTTPS "what is my IP" service (``RIG_MYIP_URL``, default
api.ipify.org, IPv4 only) with proxies disabled — a proxy would report its own
address, not the one the probes leave from. Tests inject the address (or point the
URL at a loopback server); nothing here runs unless a real Azure run needs it.
"""

from __future__ import annotations

import ipaddress
import os
import urllib.request

from rig.errors import InfraError

DEFAULT_URL = "https://api.ipify.org"


def detect(url: str | None = None, timeout: float = 5.0) -> str:
    """The caller's address as a /32 CIDR; InfraError asking for --allow-from if unknown."""
    url = url or os.environ.get("RIG_MYIP_URL") or DEFAULT_URL
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(urllib.request.Request(url, headers={"User-Agent": "rig"}), timeout=timeout) as resp:
            text = resp.read(64).decode("ascii", "replace").strip()
    except OSError as exc:
        raise InfraError(f"could not detect your public address from {url} ({exc}); "
                         "pass --allow-from YOUR.PUBLIC.IP/32") from exc
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        raise InfraError(f"{url} did not answer with an address ({text[:40]!r}); "
                         "pass --allow-from YOUR.PUBLIC.IP/32") from None
    if addr.version != 4 or not addr.is_global:
        raise InfraError(f"{url} reported {addr}, not a public IPv4 address; pass --allow-from YOUR.PUBLIC.IP/32")
    return f"{addr}/32"
