"""Preflight: is the responder itself working, before any packet is blamed on the path?

Checked from the server's own side over SSH, so the path under test plays no part:
SSH works (the connection is up and runs a command), Apache answers on the server
itself, the UDP echo echoes. A backend may add its own checks with an optional
``preflight(rig) -> list[str]`` method (Azure: the effective NSG rules are in effect).
Any problem is an infrastructure/configuration error (PreflightError, exit 3), never a
path verdict: the seed's first confound was an NSG rule that was not applied.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from rig.backends.base import Rig
from rig.errors import InfraError

PYTHON = {"debian": "/usr/bin/python3", "freebsd": "/usr/local/bin/python3"}

# runs with the server's python3; argv: addr http_port udp_port nonce
_CHECK = r"""
import json, socket, sys, urllib.request
addr, http_port, udp_port, nonce = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
out = {}
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never a proxy
try:
    with opener.open(f"http://{addr}:{http_port}/rig/n/{nonce}", timeout=3) as r:
        out["http"] = {"status": r.status, "responder": r.headers.get("X-Rig-Responder")}
except Exception as e:
    out["http"] = {"error": f"{type(e).__name__}: {e}"}
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2)
try:
    s.sendto(nonce.encode(), (addr, udp_port))
    data, _ = s.recvfrom(2048)
    out["udp"] = {"echoed": data == nonce.encode()}
except Exception as e:
    out["udp"] = {"error": f"{type(e).__name__}: {e}"}
print(json.dumps(out))
"""


class PreflightError(InfraError):
    """The responder is not ready: a configuration problem, not a path verdict."""


@dataclass(frozen=True)
class PreflightReport:
    problems: tuple[str, ...]
    http: dict
    udp: dict


def server_ports(rig: Rig) -> tuple[str, int, int]:
    known = rig.known
    return known.listen_addr or rig.server_addr, known.http_port, known.udp_port


def check(rig: Rig, ssh, backend=None, nonce: str = "rig-preflight") -> PreflightReport:
    """Run every check; return the report (problems empty when all is well)."""
    problems: list[str] = []
    addr, http_port, udp_port = server_ports(rig)
    python = rig.known.python or PYTHON.get(rig.os_family, "python3")
    try:
        res = ssh.run([python, "-c", _CHECK, addr, str(http_port), str(udp_port), nonce], timeout=20)
        found = json.loads(res.stdout.strip().splitlines()[-1])
    except InfraError as exc:
        raise PreflightError(f"preflight: cannot run checks on the server over SSH: {exc}") from exc
    except (ValueError, IndexError) as exc:
        raise PreflightError(f"preflight: the server's check printed no result ({exc})") from exc
    http, udp = found.get("http", {}), found.get("udp", {})
    if "error" in http:
        problems.append(f"Apache does not answer on the server itself ({addr}:{http_port}): {http['error']}")
    elif http.get("status") != 200:
        problems.append(f"Apache on the server answered {http.get('status')} instead of 200")
    if "error" in udp:
        problems.append(f"the UDP echo does not answer on the server itself ({addr}:{udp_port}): {udp['error']}")
    elif not udp.get("echoed"):
        problems.append(f"the UDP echo on {addr}:{udp_port} answered something else")
    extra = getattr(backend, "preflight", None)
    if callable(extra):
        problems.extend(extra(rig))
    return PreflightReport(tuple(problems), http, udp)


def preflight(rig: Rig, ssh, backend=None, nonce: str = "rig-preflight") -> PreflightReport:
    """Like ``check``, but a problem raises PreflightError (exit 3) with the first one."""
    report = check(rig, ssh, backend, nonce)
    if report.problems:
        more = f" (and {len(report.problems) - 1} more)" if len(report.problems) > 1 else ""
        raise PreflightError(f"preflight: {report.problems[0]}{more}")
    return report
