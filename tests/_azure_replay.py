"""Replay recorded ARM answers to rig's real provisioning code (tests/data/azure/recorded.json).

``ReplayTransport`` is an azure-core transport. Each request is matched on its method and
resource type (the recordings used other names and older API versions); the answer is
the recorded one, with ids and names rewritten to the request's. An operation URL from a
recording is made unique per request (its query string kept: compute's ``?p=..&`` form
included) and its polls answer the recorded poll responses in order. A sleep the SDK
asks for (a Retry-After, or the polling interval when there is none) is recorded, not
slept. Anything the scripts do not cover answers 404, so an unexpected request fails loudly.
"""

from __future__ import annotations

import copy
import io
import itertools
import json
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any

DATA = Path(__file__).parent / "data" / "azure" / "recorded.json"
# NSGs are not in the recordings: they answer as the Microsoft.Network PUT that is (a VNet)
ALIASES = {"networksecuritygroups": "virtualnetworks"}


def load() -> dict:
    return json.loads(DATA.read_text())


def _rtype(path: str) -> str:
    parts = path.lower().rstrip("/").split("/")
    if len(parts) == 5 and parts[3] == "resourcegroups":
        return "resourcegroups"
    if len(parts) == 10 and parts[5] == "providers":
        return parts[9]  # an action: effectivenetworksecuritygroups
    return parts[7] if len(parts) >= 9 else ""


class ReplayTransport:
    def __init__(self, data: dict | None = None, static_ip: str | None = None, effective: dict | None = None):
        self.data = data or load()
        self.static_ip = static_ip  # Standard static IPs carry their address from creation
        self.effective = effective  # replaces the recorded effective-NSG result
        self.sleeps: list[float] = []
        self.requests: list[tuple[str, str, int]] = []
        self.ops: dict[str, list[dict]] = {}  # operation path -> polls still to answer
        self.finals: dict[str, dict] = {}  # resource path -> the final GET's answer
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    # azure-core transport protocol
    def __enter__(self):
        return self

    def __exit__(self, *args):
        pass

    def open(self):
        pass

    def close(self):
        pass

    def sleep(self, duration: float) -> None:
        with self._lock:
            self.sleeps.append(duration)
        time.sleep(0.001)

    def send(self, request, **kwargs):
        import requests
        from azure.core.rest._requests_basic import RestRequestsTransportResponse

        with self._lock:
            status, headers, body = self._answer(request.method, request.url)
            self.requests.append((request.method, request.url, status))
        resp = requests.Response()
        resp.status_code = status
        resp.url = request.url
        resp.headers.update({"Content-Type": "application/json; charset=utf-8", **headers})
        raw = b"" if body == "" else json.dumps(body).encode()
        resp.raw = io.BytesIO(raw)
        ret = RestRequestsTransportResponse(request=request, internal_response=resp)
        ret.read()
        return ret

    # the replay
    def _answer(self, method: str, url: str) -> tuple[int, dict, Any]:
        path = urllib.parse.urlparse(url).path
        if path in self.ops:
            polls = self.ops[path]
            answer = polls.pop(0) if len(polls) > 1 else polls[0]
            headers = {k: (url if v == "$op" else v) for k, v in answer["headers"].items()}
            body = answer["body"]
            if self.effective is not None and isinstance(body, dict) and "value" in body:
                body = self.effective
            return answer["status"], headers, copy.deepcopy(body)
        if method == "GET" and path.lower() in self.finals:
            final = self.finals[path.lower()]
            return final["status"], {}, final["body"]
        rtype = _rtype(path)
        script = self.data["scripts"].get(f"{method} {ALIASES.get(rtype, rtype)}")
        if script is None:
            return 404, {}, {"error": {"code": "NotRecorded", "message": f"no recorded answer for {method} {path}"}}
        first = script["first"]
        headers = {}
        for name, value in first["headers"].items():
            if name in ("Azure-AsyncOperation", "Location"):
                value = self._op_url(value, script)
            headers[name] = value
        body = self._rewrite(first["body"], path, rtype)
        if "final" in script:
            self.finals[path.lower()] = {"status": script["final"]["status"],
                                         "body": self._rewrite(script["final"]["body"], path, rtype)}
        return first["status"], headers, body

    def _op_url(self, recorded: str, script: dict) -> str:
        """The recorded operation URL, made unique (its query string kept), with its own copy
        of the recorded polls (Azure-AsyncOperation and Location of one answer each get one)."""
        parts = urllib.parse.urlsplit(recorded)
        op_path = f"{parts.path}-replay{next(self._ids)}"
        self.ops[op_path] = copy.deepcopy(script.get("polls") or [{"status": 200, "headers": {}, "body": ""}])
        return urllib.parse.urlunsplit((parts.scheme, parts.netloc, op_path, parts.query, ""))

    def _rewrite(self, body: Any, path: str, rtype: str) -> Any:
        """The recorded body, about the requested resource: its id and name."""
        if not isinstance(body, dict):
            return copy.deepcopy(body)
        out = copy.deepcopy(body)
        if "id" in out:
            out["id"] = path
            out["name"] = path.rstrip("/").rsplit("/", 1)[-1]
        if rtype == "publicipaddresses" and self.static_ip:
            props = out.setdefault("properties", {})
            props.update(ipAddress=self.static_ip, publicIPAllocationMethod="Static")
            out["sku"] = {"name": "Standard", "tier": "Regional"}
        return out
