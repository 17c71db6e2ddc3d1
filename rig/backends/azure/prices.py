"""A region's prices for ``--dry-run``, from Microsoft's Azure Retail Prices API.

Source: the Azure Retail Prices API, documented at
https://learn.microsoft.com/rest/api/cost-management/retail-prices/azure-retail-prices —
``GET https://prices.azure.com/api/retail/prices?$filter=<OData>``, unauthenticated; the
answer is ``{"BillingCurrency": "USD", "Items": [...], "NextPageLink": ..., "Count": N}``,
each item with ``retailPrice``, ``unitOfMeasure``, ``armRegionName``, ``armSkuName``,
``productName``, ``skuName``, ``meterName``, ``serviceName``, ``type``, ...

``filters`` (pure) says what to ask, one query per kind of meter; ``parse_prices`` (pure)
picks the Linux pay-as-you-go meters out of the items; ``lookup`` does the HTTP (stdlib
urllib, 5 s per request, a few pages at most, the whole lookup bounded) and never raises:
a failure comes back as a ``PriceFailure`` that says why. ``RIG_AZURE_PRICES_URL``
replaces the base URL (tests point it at a loopback server).
"""

from __future__ import annotations

import http.client
import json
import os
import threading
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from datetime import date, datetime, timezone
from enum import Enum
from typing import Callable, Iterable

DEFAULT_URL = "https://prices.azure.com/api/retail/prices"
REQUEST_TIMEOUT = 5.0  # seconds per request
TOTAL_TIMEOUT = 10.0  # seconds for the whole lookup, DNS included
MAX_PAGES = 3  # NextPageLink followed at most this often per query
MAX_BODY = 4 << 20  # a page of 1000 items is about 1 MB
HOURS_PER_MONTH = 730  # Azure's convention for monthly meters

# The meters of what a run creates besides the VM (provision.py): a Standard static public
# IPv4 ("Virtual Network" / "IP Addresses") and a Standard SSD OS disk of up to 32 GiB
# (StandardSSD_LRS; Ubuntu's 30 GiB image disk is billed as E4).
IP_METER = ("Virtual Network", "Standard IPv4 Static Public IP")
DISK_METER = ("Storage", "E4 LRS Disk")
_UNITS = {"1 Hour": 1.0, "1/Month": 1.0 / HOURS_PER_MONTH, "1 Month": 1.0 / HOURS_PER_MONTH}
_NOT_LINUX_PAYG = ("Spot", "Low Priority")

Fetch = Callable[[str, float], bytes]  # (url, timeout) -> body; raises OSError and kin


class Unavailable(Enum):
    """Why a region's price could not be had."""

    UNREACHABLE = "unreachable"  # connection refused, no route, DNS, TLS
    TIMEOUT = "timeout"
    HTTP_STATUS = "http-status"  # answered, but not 200 (detail: the status)
    MALFORMED = "malformed"  # answered 200, but not the documented shape (detail: what)
    NO_METER = "no-meter"  # the answer lists no such meter in the region (detail: which)


@dataclass(frozen=True)
class RegionPrices:
    """USD per hour in one region, Linux pay-as-you-go, from the retail price list."""

    region: str
    vm: dict[str, float]  # size -> USD/hour, for the sizes the region lists
    public_ip: float
    os_disk: float  # the monthly price spread over 730 hours
    as_of: date  # the day the price list was read
    host: str = ""

    def total(self, size: str) -> float | None:
        price = self.vm.get(size)
        return None if price is None else price + self.public_ip + self.os_disk


@dataclass(frozen=True)
class PriceFailure:
    reason: Unavailable
    host: str  # the price service asked, e.g. prices.azure.com
    detail: str = ""


class _Failed(Exception):
    def __init__(self, reason: Unavailable, detail: str = ""):
        super().__init__(reason.value, detail)
        self.reason, self.detail = reason, detail


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"  # an OData string literal


def filters(region: str, sizes: Iterable[str]) -> dict[str, str]:
    """The OData $filter of each query: the VM sizes, the public IP, the OS disk."""
    common = f"armRegionName eq {_quote(region)} and priceType eq 'Consumption'"
    skus = " or ".join(f"armSkuName eq {_quote(s)}" for s in dict.fromkeys(sizes))
    return {
        "vm": f"serviceName eq 'Virtual Machines' and {common} and ({skus})",
        "ip": f"serviceName eq {_quote(IP_METER[0])} and {common} and meterName eq {_quote(IP_METER[1])}",
        "disk": f"serviceName eq {_quote(DISK_METER[0])} and {common} and meterName eq {_quote(DISK_METER[1])}",
    }


def _is_linux_payg(item: dict) -> bool:
    if item.get("type") != "Consumption" or str(item.get("productName", "")).endswith("Windows"):
        return False
    names = f"{item.get('skuName', '')} {item.get('meterName', '')}"
    return not any(word in names for word in _NOT_LINUX_PAYG)


def _hourly(item: dict) -> float | None:
    unit = item.get("unitOfMeasure")
    price, per = item.get("retailPrice"), _UNITS.get(unit) if isinstance(unit, str) else None
    if per is None or isinstance(price, bool) or not isinstance(price, (int, float)) or price < 0:
        return None
    return float(price) * per


def _pick(items: list[dict]) -> float | None:
    """One price among the candidates: the primary region's meter, then the newest, then the dearest."""
    priced = [(bool(i.get("isPrimaryMeterRegion", True)), str(i.get("effectiveStartDate", "")), p)
              for i in items if (p := _hourly(i)) is not None]
    return max(priced)[2] if priced else None


def parse_prices(region: str, sizes: Iterable[str], answers: dict[str, list[dict]], as_of: date,
                 host: str = "") -> RegionPrices:
    """The prices in ``answers`` (query name -> items); raises _Failed(NO_METER) if the first size,
    the public IP or the OS disk has no Linux pay-as-you-go meter in ``region``."""
    sizes = tuple(sizes)
    mine = [i for items in answers.values() for i in items if i.get("armRegionName") == region and _is_linux_payg(i)]
    vm = {}
    for size in sizes:
        price = _pick([i for i in mine if i.get("serviceName") == "Virtual Machines" and i.get("armSkuName") == size])
        if price is not None:
            vm[size] = price
    ip = _pick([i for i in mine if (i.get("serviceName"), i.get("meterName")) == IP_METER])
    disk = _pick([i for i in mine if (i.get("serviceName"), i.get("meterName")) == DISK_METER])
    for name, value in ((sizes[0], vm.get(sizes[0])), (IP_METER[1], ip), (DISK_METER[1], disk)):
        if value is None:
            raise _Failed(Unavailable.NO_METER, name)
    assert ip is not None and disk is not None  # the loop above raised otherwise
    return RegionPrices(region, vm, ip, disk, as_of, host)


def urlopen_fetch(url: str, timeout: float) -> bytes:
    """GET ``url`` with urllib (the environment's proxy settings apply); the body, or an OSError."""
    request = urllib.request.Request(url, headers={"User-Agent": "rig", "Accept": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as resp:
        body = resp.read(MAX_BODY + 1)
    if len(body) > MAX_BODY:
        raise _Failed(Unavailable.MALFORMED, "the answer is too large")
    return body


def _page(body: bytes) -> tuple[list[dict], str | None]:
    try:
        doc = json.loads(body)
    except ValueError:
        raise _Failed(Unavailable.MALFORMED, "not JSON") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("Items"), list):
        raise _Failed(Unavailable.MALFORMED, "no Items list")
    if doc.get("BillingCurrency", "USD") != "USD":
        raise _Failed(Unavailable.MALFORMED, f"prices in {doc.get('BillingCurrency')!r}, not USD")
    items = doc["Items"]
    if not all(isinstance(i, dict) for i in items):
        raise _Failed(Unavailable.MALFORMED, "an item is not an object")
    if any(i.get("currencyCode", "USD") != "USD" for i in items):
        raise _Failed(Unavailable.MALFORMED, "an item is not in USD")
    nxt = doc.get("NextPageLink")
    if nxt is not None and not isinstance(nxt, str):
        raise _Failed(Unavailable.MALFORMED, "NextPageLink is not a link")
    return items, nxt or None


def _origin(url: str) -> tuple[str, str]:
    parts = urllib.parse.urlsplit(url)
    return parts.scheme, parts.netloc


def _query(base: str, odata: str, fetch: Fetch, deadline: float, clock: Callable[[], float]) -> list[dict]:
    sep = "&" if "?" in base else "?"
    url, items = f"{base}{sep}$filter={urllib.parse.quote(odata, safe=chr(39))}", []
    for _ in range(MAX_PAGES):
        remaining = deadline - clock()
        if remaining <= 0:
            raise _Failed(Unavailable.TIMEOUT)
        try:
            body = fetch(url, min(REQUEST_TIMEOUT, remaining))
        except urllib.error.HTTPError as exc:
            raise _Failed(Unavailable.HTTP_STATUS, str(exc.code)) from None
        except (TimeoutError, urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            timed_out = isinstance(exc, TimeoutError) or isinstance(getattr(exc, "reason", None), TimeoutError)
            raise _Failed(Unavailable.TIMEOUT if timed_out else Unavailable.UNREACHABLE, str(exc)) from None
        page, nxt = _page(body)
        items += page
        if nxt is None:
            return items
        if _origin(nxt) != _origin(base):  # follow the price service only, nowhere else
            raise _Failed(Unavailable.MALFORMED, "NextPageLink points elsewhere")
        url = nxt
    return items  # more pages remain; the meters asked for are few, so they are on the first ones


def base_url() -> str:
    return os.environ.get("RIG_AZURE_PRICES_URL") or DEFAULT_URL


def lookup(region: str, sizes: Iterable[str], *, fetch: Fetch | None = None, base: str | None = None,
           today: date | None = None, total_timeout: float = TOTAL_TIMEOUT) -> RegionPrices | PriceFailure:
    """The prices of ``sizes``, the public IP and the OS disk in ``region``; never raises.

    Runs in a daemon thread so that a hanging name lookup cannot hold the dry run past
    ``total_timeout``."""
    import time

    base = base or base_url()
    host = urllib.parse.urlsplit(base).netloc or base
    sizes = tuple(sizes)
    fetch = fetch or urlopen_fetch
    as_of = today or datetime.now(timezone.utc).date()
    result: list[RegionPrices | PriceFailure] = []

    def work() -> None:
        deadline = time.monotonic() + total_timeout
        try:
            answers = {name: _query(base, odata, fetch, deadline, time.monotonic)
                       for name, odata in filters(region, sizes).items()}
            result.append(parse_prices(region, sizes, answers, as_of, host))
        except _Failed as exc:
            result.append(PriceFailure(exc.reason, host, exc.detail))
        except Exception as exc:  # an answer this parser did not foresee: never the dry run's failure
            result.append(PriceFailure(Unavailable.MALFORMED, host, f"{type(exc).__name__}: {exc}"))

    thread = threading.Thread(target=work, name="rig-azure-prices", daemon=True)
    thread.start()
    thread.join(total_timeout)
    return result[0] if result else PriceFailure(Unavailable.TIMEOUT, host)


__all__ = ["DEFAULT_URL", "Fetch", "PriceFailure", "RegionPrices", "Unavailable", "filters", "lookup", "parse_prices",
           "urlopen_fetch"]
