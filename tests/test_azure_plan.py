"""The Azure plan (--dry-run), the effective-NSG check, error classes and address detection.

Pure functions and loopback only: nothing here talks to Azure or the Internet.
"""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading
from datetime import datetime, timezone

import pytest

from rig.backends.azure.caller_ip import detect
from rig.backends.azure.nsg import EffectiveRule, check_effective
from rig.backends.azure.plan import DEFAULT_SIZES, check_allow_from, make_plan, render_plan
from rig.errors import InfraError, UsageError

NOW = datetime(2026, 11, 26, 9, 0, tzinfo=timezone.utc)


# -- plan ------------------------------------------------------------------------------

def test_plan_defaults_and_expiry():
    plan = make_plan({"location": "JapanEast"}, now=NOW, run_id="rig-test-1")
    assert plan.location == "japaneast" and plan.sizes == DEFAULT_SIZES
    assert plan.image.urn == "Canonical:ubuntu-24_04-lts:server:latest"
    assert plan.tags == {"rig-run": "rig-test-1", "created-by": plan.created_by, "expires-at": "2026-11-26T13:00:00Z"}
    assert [w for _, _, w in plan.resources()] == [1, 2, 2, 2, 3, 4, 5]


def test_size_flag_goes_first_and_keeps_fallbacks():
    plan = make_plan({"size": "Standard_D2as_v5"}, now=NOW)
    assert plan.sizes[0] == "Standard_D2as_v5" and len(plan.sizes) == len(DEFAULT_SIZES)
    assert len(set(plan.sizes)) == len(plan.sizes)


@pytest.mark.parametrize("given,expected", [("203.0.113.7", "203.0.113.7/32"), ("203.0.113.0/24", "203.0.113.0/24"),
                                            (" 198.51.100.9/32 ", "198.51.100.9/32"),
                                            ("2001:db8::1", "2001:db8::1/128"), ("2001:db8:5::/48", "2001:db8:5::/48")])
def test_allow_from_accepts(given, expected):
    assert check_allow_from(given) == expected


@pytest.mark.parametrize("bad", ["0.0.0.0/0", "10.0.0.0/4", "::/0", "2001::/16", "my-house", ""])
def test_allow_from_refuses(bad):
    with pytest.raises(UsageError):
        check_allow_from(bad)


def test_image_urn():
    plan = make_plan({"image": "Canonical:ubuntu-24_04-lts:server-arm64:latest"})
    assert plan.image.os_family == "debian" and plan.image.sku == "server-arm64"


@pytest.mark.parametrize("image", ["freebsd", "FreeBSD",
                                   "thefreebsdfoundation:freebsd-14_2:14_2-release-amd64-gen2-zfs:latest"])
def test_freebsd_is_refused_in_one_line_because_its_host_key_cannot_be_pinned(image):
    with pytest.raises(UsageError) as err:
        make_plan({"image": image})
    msg = str(err.value)
    assert "\n" not in msg and "host key" in msg and "first use" in msg and "--image ubuntu" in msg
    assert err.value.exit_code == 2


def test_unknown_image_is_a_usage_error():
    with pytest.raises(UsageError, match="--image"):
        make_plan({"image": "windows"})


def test_render_plan_lists_resources_rules_size_region_cost():
    text = render_plan(make_plan({"location": "japaneast", "allow_from": "203.0.113.7"}, now=NOW))
    for needle in ("region:   japaneast", "Standard_B2s", "Microsoft.Network/networkSecurityGroups/rig-nsg",
                   "Microsoft.DevTestLab/schedules/shutdown-computevm-", "from 203.0.113.7/32", "Deny",
                   "USD/hour", "expires-at=2026-11-26T13:00:00Z"):
        assert needle in text, needle
    assert "0.0.0.0/0" not in text


@pytest.mark.parametrize("region,differs", [("japaneast", True), ("eastus", False)])
def test_render_plan_says_whose_price_it_shows(region, differs):
    text = render_plan(make_plan({"location": region}, now=NOW))
    [cost] = [line for line in text.splitlines() if "USD/hour" in line]
    assert "East US list price" in cost
    assert (f"{region} may differ" in cost) is differs


def test_render_plan_without_address_says_it_is_detected_later():
    text = render_plan(make_plan({}, now=NOW))
    assert "<your address>/32" in text and "--allow-from" in text


def test_dry_run_cli_needs_no_credentials(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AZURE_")}
    env["HOME"] = str(tmp_path)  # no ~/.azure either
    env["RIG_MYIP_URL"] = "http://127.0.0.1:9/"  # if anything tried to detect, it would fail loudly
    env["RIG_AZURE_PRICES_URL"] = "http://127.0.0.1:9/"  # the price lookup stays on loopback (and fails)
    proc = subprocess.run([sys.executable, "-m", "rig", "run", "--backend", "azure", "--dry-run",
                           "--location", "japaneast"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "japaneast" in proc.stdout and "USD/hour" in proc.stdout and "rig-allow-http" not in proc.stderr
    assert "Microsoft.Compute/virtualMachines" in proc.stdout


# -- effective NSG rules -------------------------------------------------------------------

CALLER = "198.51.100.7/32"


def rule(name, prio, proto, port, src, access="Allow"):
    return EffectiveRule(name, prio, proto, (port,), (src,), access)


DEFAULTS = [rule("defaultSecurityRules/AllowVnetInBound", 65000, "All", "0-65535", "VirtualNetwork"),
            rule("defaultSecurityRules/DenyAllInBound", 65500, "All", "0-65535", "0.0.0.0/0", "Deny")]
RIG = [rule("securityRules/icmp", 100, "Icmp", "0-65535", CALLER), rule("securityRules/ssh", 110, "Tcp", "22-22", CALLER),
       rule("securityRules/http", 120, "Tcp", "80-80", CALLER), rule("securityRules/udp", 130, "Udp", "7-7", CALLER)]


def test_rules_in_effect_pass():
    assert check_effective(RIG + DEFAULTS, CALLER) == []


def test_only_default_rules_means_not_in_effect():
    problems = check_effective(DEFAULTS, CALLER)
    assert len(problems) == 4 and all("in effect" in p and "not a path problem" in p for p in problems)


def test_a_higher_priority_deny_shadows_the_allow():
    problems = check_effective([rule("securityRules/block80", 90, "Tcp", "80-80", "0.0.0.0/0", "Deny")] + RIG + DEFAULTS,
                               CALLER)
    assert problems == ["NSG: HTTP (TCP 80) from 198.51.100.7/32 is denied by effective rule securityRules/block80 "
                        "(priority 90) before securityRules/http — the NSG, not the path"]


def test_rule_for_another_address_does_not_count():
    other = [rule(r.name, r.priority, r.protocol, r.ports[0], "203.0.113.1/32") for r in RIG]
    assert len(check_effective(other + DEFAULTS, CALLER)) == 4


def test_a_wider_allow_and_all_protocols_count():
    assert check_effective([rule("securityRules/any", 100, "All", "0-65535", "198.51.100.0/24")] + DEFAULTS, CALLER) == []


# -- caller address ------------------------------------------------------------------------

class _Answer(http.server.BaseHTTPRequestHandler):
    body = b"1.2.3.4\n"

    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass


@pytest.fixture
def whatsmyip():
    servers = []

    def start(body: bytes) -> str:
        handler = type("H", (_Answer,), {"body": body})
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return f"http://127.0.0.1:{srv.server_address[1]}/"

    yield start
    for srv in servers:
        srv.shutdown()
        srv.server_close()


def test_detect_returns_a_slash_32(whatsmyip):
    assert detect(whatsmyip(b"1.2.3.4\n")) == "1.2.3.4/32"


@pytest.mark.parametrize("body", [b"<html>blocked</html>", b"10.0.0.1", b"2001:4860::8888"])
def test_detect_refuses_what_is_not_a_public_ipv4(whatsmyip, body):
    with pytest.raises(InfraError, match="--allow-from"):
        detect(whatsmyip(body))


def test_detect_failure_asks_for_allow_from():
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    with pytest.raises(InfraError, match="pass --allow-from"):
        detect(f"http://127.0.0.1:{port}/", timeout=2)


def test_locations_list_gives_fallback_regions():
    plan = make_plan({"location": "japaneast, japanwest,japaneast"})
    assert plan.location == "japaneast" and plan.fallback_locations == ("japanwest",)
    assert "fallbacks: japanwest" in render_plan(plan)
    with pytest.raises(UsageError, match="region"):
        make_plan({"location": "japan east!"})


# -- error classification ------------------------------------------------------------------------

class _Err(Exception):
    def __init__(self, code, message, details=(), status=409):
        super().__init__(message)
        self.status_code = status
        self.error = type("E", (), {"code": code, "message": message,
                                    "details": [type("D", (), {"code": c, "message": m})() for c, m in details]})()


@pytest.mark.parametrize("exc,kind", [
    (_Err("SkuNotAvailable", "The requested size is not available"), "size-unavailable"),
    (_Err("AllocationFailed", "no capacity"), "size-unavailable"),
    (_Err("OperationNotAllowed", "exceeding approved standardDSv5Family Cores quota"), "quota"),
    (_Err("OperationNotAllowed", "the VM is deallocating"), "other"),
    (_Err("Conflict", "see details", [("ZonalAllocationFailed", "zone full")]), "size-unavailable"),
    (_Err("AuthorizationFailed", "no role", status=403), "permission"),
    (_Err("ExpiredAuthenticationToken", "expired", status=401), "auth"),
    (_Err("ResourceGroupNotFound", "gone", status=404), "not-found"),
    (_Err("MarketplacePurchaseEligibilityFailed", "terms"), "terms"),
    (_Err("RequestDisallowedByPolicy", "Resource 'rig-ip' was disallowed by policy.", status=403), "policy"),
    (_Err("MissingSubscriptionRegistration", "The subscription is not registered to use namespace "
          "'Microsoft.DevTestLab'."), "registration"),
    (_Err("AuthorizationFailed", "does not have authorization to perform action "
          "'Microsoft.DevTestLab/register/action' over scope '/subscriptions/x'", status=403), "registration"),
    (_Err("NicReservedForAnotherVm", "reserved", status=400), "nic-reserved"),
    (_Err("", "Too Many Requests", status=429), "throttled"),
])
def test_errors_are_classified_by_code(exc, kind):
    from rig.backends.azure.errors import kind_of

    assert kind_of(exc).value == kind


def test_error_lines_say_what_to_do():
    from rig.backends.azure.errors import CapacityError, to_rig_error

    quota = to_rig_error(_Err("OperationNotAllowed", "exceeding approved quota.\nDetails here"), "creating VM x",
                         location="japaneast")
    assert isinstance(quota, CapacityError) and "\n" not in str(quota) and "Usage + quotas" in str(quota)
    terms = to_rig_error(_Err("MarketplacePurchaseEligibilityFailed", "terms"), "creating VM x")
    assert "--image ubuntu" in str(terms) and terms.exit_code == 2
    reg = to_rig_error(_Err("MissingSubscriptionRegistration", "The subscription is not registered to use "
                            "namespace 'Microsoft.Compute'. See https://aka.ms/rps-not-found"), "creating VM x")
    assert "ask an administrator" in str(reg) and "az provider register --namespace Microsoft.Compute" in str(reg)
    assert reg.exit_code == 3
