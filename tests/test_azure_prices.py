"""The region's prices in --dry-run (rig/backends/azure/prices.py), from fakes and a loopback server.

The answers have the documented shape of the Azure Retail Prices API
(learn.microsoft.com/rest/api/cost-management/retail-prices/azure-retail-prices); the
figures are made up for these tests. Nothing here leaves loopback.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.parse
from datetime import date, datetime, timezone

import pytest

from rig.backends.azure import dry_run
from rig.backends.azure import prices as P
from rig.backends.azure.plan import make_plan, render_plan
from rig.backends.base import RunSpec

NOW = datetime(2026, 11, 26, 9, 0, tzinfo=timezone.utc)
TODAY = date(2026, 12, 7)


def item(sku, price, product, sku_name, meter, *, region="japaneast", service="Virtual Machines", unit="1 Hour",
         kind="Consumption", **extra):
    """One price-list item in the documented shape."""
    return {"currencyCode": "USD", "tierMinimumUnits": 0.0, "retailPrice": price, "unitPrice": price,
            "armRegionName": region, "location": "JA East" if region == "japaneast" else "US East",
            "effectiveStartDate": "2024-05-01T00:00:00Z", "meterId": "00000000-0000-0000-0000-000000000000",
            "meterName": meter, "productId": "DZH318Z0BQ4L", "skuId": "DZH318Z0BQ4L/00TG", "productName": product,
            "skuName": sku_name, "serviceName": service, "serviceId": "DZH313Z7MMC8", "serviceFamily": "Compute",
            "unitOfMeasure": unit, "type": kind, "isPrimaryMeterRegion": True, "armSkuName": sku, **extra}


B2S_LINUX = 0.0528
VM_ITEMS = [
    item("Standard_B2s", 0.0608, "Virtual Machines BS Series Windows", "B2s", "B2s"),
    item("Standard_B2s", 0.0106, "Virtual Machines BS Series", "B2s Spot", "B2s Spot"),
    item("Standard_B2s", 0.0106, "Virtual Machines BS Series", "B2s Low Priority", "B2s Low Priority"),
    item("Standard_B2s", B2S_LINUX, "Virtual Machines BS Series", "B2s", "B2s"),
    item("Standard_B2s", 0.0416, "Virtual Machines BS Series", "B2s", "B2s", region="eastus"),
    item("Standard_B2s", 0.0300, "Virtual Machines BS Series", "B2s", "B2s", kind="DevTestConsumption"),
    item("Standard_D2s_v5", 0.1240, "Virtual Machines Dsv5 Series", "D2s v5", "D2s v5"),
    item("Standard_D2s_v5", 0.2160, "Virtual Machines Dsv5 Series Windows", "D2s v5", "D2s v5"),
    item("Standard_B2als_v2", 0.0480, "Virtual Machines Basv2 Series", "B2als v2", "B2als v2"),
]  # Standard_D2as_v5: not offered in this made-up japaneast
IP_ITEMS = [item("", 0.005, "IP Addresses", "Standard", "Standard IPv4 Static Public IP", service="Virtual Network")]
DISK_ITEMS = [item("", 2.64, "Standard SSD Managed Disks", "E4 LRS", "E4 LRS Disk", service="Storage", unit="1/Month"),
              item("", 0.0015, "Standard SSD Managed Disks", "E4 LRS", "E4 LRS Disk Operations", service="Storage",
                   unit="10K")]
EXPECTED_TOTAL = B2S_LINUX + 0.005 + 2.64 / 730


def answer(items, next_link=None, currency="USD") -> bytes:
    return json.dumps({"BillingCurrency": currency, "CustomerEntityId": "Default", "CustomerEntityType": "Retail",
                       "Items": items, "NextPageLink": next_link, "Count": len(items)}).encode()


def service_of(url: str) -> str:
    odata = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)["$filter"][0]
    return re.match(r"serviceName eq '([^']+)'", odata).group(1)


class FakeFetch:
    """Serves each query its items (by serviceName) and records the URLs asked."""

    def __init__(self, vm=VM_ITEMS, ip=IP_ITEMS, disk=DISK_ITEMS):
        self.bodies = {"Virtual Machines": answer(vm), "Virtual Network": answer(ip), "Storage": answer(disk)}
        self.urls: list[str] = []

    def __call__(self, url: str, timeout: float) -> bytes:
        assert 0 < timeout <= P.REQUEST_TIMEOUT
        self.urls.append(url)
        return self.bodies[service_of(url)]


@pytest.fixture(autouse=True)
def default_base(monkeypatch):
    monkeypatch.delenv("RIG_AZURE_PRICES_URL", raising=False)  # fakes answer; the host named is prices.azure.com


def plan(location="japaneast", **options):
    return make_plan({"location": location, **options}, now=NOW, run_id="rig-test-1")


def cost_lines(text: str) -> list[str]:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("  cost:"))
    return lines[start:start + 2]


# -- what is asked -----------------------------------------------------------------------------

def test_filters_pin_region_service_and_pay_as_you_go_and_bracket_the_sizes():
    f = P.filters("japaneast", ["Standard_B2s", "Standard_D2s_v5", "Standard_B2s"])
    assert f["vm"] == ("serviceName eq 'Virtual Machines' and armRegionName eq 'japaneast' and priceType eq "
                       "'Consumption' and (armSkuName eq 'Standard_B2s' or armSkuName eq 'Standard_D2s_v5')")
    assert f["ip"].endswith("and meterName eq 'Standard IPv4 Static Public IP'") and "'Virtual Network'" in f["ip"]
    assert f["disk"].endswith("and meterName eq 'E4 LRS Disk'") and "serviceName eq 'Storage'" in f["disk"]
    assert "armSkuName eq 'it''s'" in P.filters("eastus", ["it's"])["vm"]  # an OData literal, not an injection


# -- what is chosen ------------------------------------------------------------------------------

def test_the_linux_pay_as_you_go_meter_of_the_region_is_chosen():
    fetch = FakeFetch()
    got = P.lookup("japaneast", ("Standard_B2s", "Standard_B2als_v2", "Standard_D2s_v5", "Standard_D2as_v5"),
                   fetch=fetch, today=TODAY)
    assert isinstance(got, P.RegionPrices), got
    assert got.vm == {"Standard_B2s": B2S_LINUX, "Standard_B2als_v2": 0.0480, "Standard_D2s_v5": 0.1240}
    assert got.public_ip == 0.005 and got.os_disk == pytest.approx(2.64 / 730)
    assert got.total("Standard_B2s") == pytest.approx(EXPECTED_TOTAL) and got.as_of == TODAY
    assert got.host == "prices.azure.com" and len(fetch.urls) == 3
    assert all(u.startswith("https://prices.azure.com/api/retail/prices?$filter=") for u in fetch.urls)


def test_the_dry_run_prints_the_regions_price_and_date():
    text = render_plan(plan(), P.lookup("japaneast", plan().sizes, fetch=FakeFetch(), today=TODAY))
    first, fallbacks = cost_lines(text)
    assert first == (f"  cost:     about {EXPECTED_TOTAL:.3f} USD/hour in japaneast (Azure retail prices, 2026-12-07): "
                     f"VM 0.0528 + static IPv4 0.0050 + OS disk {2.64 / 730:.4f}")
    assert "East US" not in text
    assert fallbacks == ("            fallback sizes, the same way: Standard_B2als_v2 about 0.057, "
                         "Standard_D2s_v5 about 0.133, Standard_D2as_v5 not listed in japaneast")


def test_fallback_regions_are_not_said_to_share_the_price():
    two = plan("japaneast,japanwest")
    text = render_plan(two, P.lookup("japaneast", two.sizes, fetch=FakeFetch(), today=TODAY))
    assert "            (prices are japaneast's; japanwest may differ)" in text.splitlines()


def test_a_size_neither_listed_nor_in_the_table_is_unknown():
    odd = plan(size="Standard_X9")
    got = P.lookup("japaneast", odd.sizes, fetch=failing(ConnectionRefusedError(111, "Connection refused")))
    first, fallbacks = cost_lines(render_plan(odd, got))
    assert first == ("  cost:     unknown for Standard_X9 (prices.azure.com not reachable; "
                     "rig's East US table does not list it)")
    assert "Standard_B2s about 0.050" in fallbacks


def test_the_backend_dry_run_uses_the_fetcher():
    spec = RunSpec(backend="azure", options={"location": "japaneast", "size": "Standard_D2s_v5"})
    text = dry_run(spec, fetch=FakeFetch())
    assert re.search(r"cost:     about 0\.133 USD/hour in japaneast \(Azure retail prices, \d{4}-\d\d-\d\d\): "
                     r"VM 0\.1240 ", text), text


@pytest.mark.parametrize("vm", [
    [i for i in VM_ITEMS if i["armSkuName"] != "Standard_B2s" or i["armRegionName"] != "japaneast"
     or i["productName"].endswith("Windows") or "Spot" in i["skuName"] or "Low Priority" in i["skuName"]],
    [i for i in VM_ITEMS if i["armSkuName"] != "Standard_B2s"],
], ids=["only-windows-spot-low-priority-devtest", "not-offered"])
def test_without_a_linux_meter_for_the_size_the_estimate_says_so(vm):
    got = P.lookup("japaneast", plan().sizes, fetch=FakeFetch(vm=vm), today=TODAY)
    assert got == P.PriceFailure(P.Unavailable.NO_METER, "prices.azure.com", "Standard_B2s")
    first, _ = cost_lines(render_plan(plan(), got))
    assert first == ("  cost:     about 0.050 USD/hour for VM + static IP + OS disk — the East US estimate; japaneast's "
                     "price is not available: prices.azure.com lists no Linux pay-as-you-go price for Standard_B2s "
                     "in japaneast")


def test_a_missing_disk_meter_is_no_price():
    got = P.lookup("japaneast", plan().sizes, fetch=FakeFetch(disk=DISK_ITEMS[1:]), today=TODAY)
    assert got == P.PriceFailure(P.Unavailable.NO_METER, "prices.azure.com", "E4 LRS Disk")


# -- what fails ------------------------------------------------------------------------------------

def failing(exc):
    def fetch(url, timeout):
        raise exc
    return fetch


@pytest.mark.parametrize("exc,reason", [
    (ConnectionRefusedError(111, "Connection refused"), P.Unavailable.UNREACHABLE),
    (urllib.error.URLError(socket.gaierror(-3, "Temporary failure in name resolution")), P.Unavailable.UNREACHABLE),
    (TimeoutError("timed out"), P.Unavailable.TIMEOUT),
    (urllib.error.URLError(TimeoutError("timed out")), P.Unavailable.TIMEOUT),
    (urllib.error.HTTPError(P.DEFAULT_URL, 503, "Service Unavailable", {}, None), P.Unavailable.HTTP_STATUS),
])
def test_a_failed_request_is_a_reason_not_an_error(exc, reason):
    got = P.lookup("japaneast", plan().sizes, fetch=failing(exc), today=TODAY)
    assert isinstance(got, P.PriceFailure) and got.reason is reason and got.host == "prices.azure.com"


@pytest.mark.parametrize("exc,why", [
    (ConnectionRefusedError(111, "Connection refused"), "prices.azure.com not reachable"),
    (TimeoutError("timed out"), "prices.azure.com did not answer in time"),
    (urllib.error.HTTPError(P.DEFAULT_URL, 429, "Too Many Requests", {}, None), "prices.azure.com answered HTTP 429"),
])
def test_the_fallback_says_east_us_estimate_and_why(exc, why):
    text = render_plan(plan(), P.lookup("japaneast", plan().sizes, fetch=failing(exc)))
    first, fallbacks = cost_lines(text)
    assert first == ("  cost:     about 0.050 USD/hour for VM + static IP + OS disk — the East US estimate; "
                     f"japaneast's price is not available: {why}")
    assert fallbacks.startswith("            fallback sizes, the same way: Standard_B2als_v2 about 0.046")
    east = render_plan(plan("eastus"), P.lookup("eastus", plan().sizes, fetch=failing(exc)))
    assert f"rig's East US estimate; the current price list is not available: {why}" in cost_lines(east)[0]


@pytest.mark.parametrize("body,detail", [
    (b"<html>Service Unavailable</html>", "not JSON"),
    (b"[]", "no Items list"),
    (b'{"Items": 3}', "no Items list"),
    (b'{"Items": ["B2s"]}', "an item is not an object"),
    (answer(VM_ITEMS, currency="EUR"), "prices in 'EUR', not USD"),
    (answer(VM_ITEMS, next_link=42), "NextPageLink is not a link"),
])
def test_a_malformed_answer_is_a_reason(body, detail):
    got = P.lookup("japaneast", plan().sizes, fetch=lambda url, timeout: body)
    assert got == P.PriceFailure(P.Unavailable.MALFORMED, "prices.azure.com", detail)
    assert "prices.azure.com's answer was not the documented shape" in cost_lines(render_plan(plan(), got))[0]


def test_items_without_a_usable_price_are_skipped():
    broken = [dict(i, retailPrice="0.05") for i in VM_ITEMS] + [dict(VM_ITEMS[3], unitOfMeasure=["1 Hour"])]
    got = P.lookup("japaneast", plan().sizes, fetch=FakeFetch(vm=broken))
    assert got == P.PriceFailure(P.Unavailable.NO_METER, "prices.azure.com", "Standard_B2s")


def test_a_next_page_elsewhere_is_not_followed():
    asked = []

    def fetch(url, timeout):
        asked.append(url)
        return answer(VM_ITEMS, next_link="https://example.invalid/api/retail/prices?$skip=100")

    got = P.lookup("japaneast", plan().sizes, fetch=fetch)
    assert got == P.PriceFailure(P.Unavailable.MALFORMED, "prices.azure.com", "NextPageLink points elsewhere")
    assert len(asked) == 1


def test_a_hanging_lookup_is_abandoned():
    release = threading.Event()

    def fetch(url, timeout):
        release.wait()  # a name lookup that never returns
        raise ConnectionRefusedError(111, "Connection refused")

    try:
        got = P.lookup("japaneast", plan().sizes, fetch=fetch, total_timeout=0.05)
    finally:
        release.set()
    assert got == P.PriceFailure(P.Unavailable.TIMEOUT, "prices.azure.com")


# -- the real HTTP path, on loopback -------------------------------------------------------------

class _PriceList(http.server.BaseHTTPRequestHandler):
    """The price API's shape on loopback: the VM answer comes in two pages."""

    status = 200
    asked: list = []

    def do_GET(self):
        self.asked.append(self.path)
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        service = re.match(r"serviceName eq '([^']+)'", query["$filter"][0]).group(1)
        if self.status != 200:
            body = b'{"error": "busy"}'
        elif service == "Virtual Machines" and "$skip" not in query:
            port = self.server.server_address[1]
            link = f"http://127.0.0.1:{port}{self.path}&$skip=1000"
            body = answer(VM_ITEMS[:3], next_link=link)
        else:
            body = answer({"Virtual Machines": VM_ITEMS[3:], "Virtual Network": IP_ITEMS, "Storage": DISK_ITEMS}[service])
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def price_server():
    servers = []

    def start(status=200):
        handler = type("H", (_PriceList,), {"status": status, "asked": []})
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return f"http://127.0.0.1:{srv.server_address[1]}/api/retail/prices", handler.asked

    yield start
    for srv in servers:
        srv.shutdown()
        srv.server_close()


def cli_env(tmp_path, prices_url):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AZURE_") and "proxy" not in k.lower()}
    env.update(HOME=str(tmp_path), RIG_MYIP_URL="http://127.0.0.1:9/", RIG_AZURE_PRICES_URL=prices_url)
    return env


def run_dry(tmp_path, prices_url, *flags):
    return subprocess.run([sys.executable, "-m", "rig", "run", "--backend", "azure", "--dry-run", *flags],
                          cwd=tmp_path, env=cli_env(tmp_path, prices_url), capture_output=True, text=True, timeout=60)


def test_cli_dry_run_prices_the_region_over_http(tmp_path, price_server):
    url, asked = price_server()
    proc = run_dry(tmp_path, url, "--location", "japaneast")
    assert proc.returncode == 0, proc.stderr
    assert re.search(rf"cost:     about {EXPECTED_TOTAL:.3f} USD/hour in japaneast \(Azure retail prices, "
                     r"\d{4}-\d\d-\d\d\): VM 0\.0528 \+", proc.stdout), proc.stdout
    assert len(asked) == 4 and sum("$skip=1000" in p for p in asked) == 1  # the VM answer's second page
    assert all(p.startswith("/api/retail/prices?$filter=serviceName%20eq%20'") for p in asked)


def test_cli_dry_run_falls_back_when_the_price_service_fails(tmp_path, price_server):
    url, _ = price_server(status=503)
    proc = run_dry(tmp_path, url, "--location", "japaneast")
    host = urllib.parse.urlsplit(url).netloc
    assert proc.returncode == 0, proc.stderr
    assert (f"— the East US estimate; japaneast's price is not available: {host} answered HTTP 503"
            in proc.stdout), proc.stdout


def test_cli_dry_run_offline_exits_0_with_the_estimate(tmp_path):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now: connection refused
    proc = run_dry(tmp_path, f"http://127.0.0.1:{port}/api/retail/prices", "--location", "japaneast")
    assert proc.returncode == 0 and not proc.stderr, proc.stderr
    assert f"the East US estimate; japaneast's price is not available: 127.0.0.1:{port} not reachable" in proc.stdout
    assert "Microsoft.Compute/virtualMachines" in proc.stdout
