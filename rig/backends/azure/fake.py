"""A stateful fake of Azure Resource Manager behind an azure-core transport.

The real management clients run unchanged against it (``FakeARM().clients()``):
``transport=`` routes every request here, nothing leaves the process, and the default
https base URL keeps the SDK's bearer-token policy happy with a fake credential.
It behaves like ARM where rig depends on it (DESIGN.md §7):

- PUT of a network/compute resource: 201 + ``Azure-AsyncOperation``; the operation
  reports ``InProgress`` until ``latency`` seconds have passed, then ``Succeeded`` (or
  ``Failed`` with an injected error); the poller then GETs the resource.
- DELETE of a resource group or VM: 202 + ``Location``; the group's resources are gone
  once the operation finishes.
- POST effectiveNetworkSecurityGroups / runCommand: 202 + ``Location`` with a result.
- Faults are injected per resource type: a synchronous error (409 SkuNotAvailable,
  OperationNotAllowed...), an asynchronous one (AllocationFailed), an operation that
  never finishes, or a Ctrl-C (SIGINT to the main thread) while its poller is waited on.

It records every request with its body, and for each PUT the number of sequential
waits before it (``depth``): a request's depth is one more than the deepest operation
whose completion the client had observed when it sent the request. Resources started
together in one wave share a depth; a chain of one-at-a-time waits does not.
"""

from __future__ import annotations

import io
import itertools
import json
import signal
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Callable

ARM = "https://management.azure.com"
SUBSCRIPTION = "00000000-0000-0000-0000-00000000f00d"


@dataclass
class Fault:
    type: str  # resource type, lowercase last segment: "virtualmachines", "networkinterfaces", ...
    code: str = ""
    message: str = ""
    status: int = 409
    mode: str = "sync"  # sync | async | hang | interrupt
    times: int = 1  # how many requests it hits (0: forever)
    when: Callable[[dict], bool] | None = None  # on the request body


@dataclass
class Op:
    id: str
    resource_id: str
    rtype: str
    kind: str  # put | delete | post
    ready_at: float
    depth: int
    fault: Fault | None = None
    result: Any = None  # POST result body
    observed: bool = False


@dataclass
class Request:
    method: str
    path: str
    body: Any
    depth: int = 0
    status: int = 0
    query: dict = field(default_factory=dict)


@dataclass
class FakeCredential:
    """Any object whose get_token returns an AccessToken will do (DESIGN.md §7)."""

    calls: list = field(default_factory=list)

    def get_token(self, *scopes: str, **kwargs: Any):
        from azure.core.credentials import AccessToken

        self.calls.append(scopes)
        return AccessToken("fake-token", int(time.time()) + 3600)


class FakeARM:
    def __init__(self, latency: float = 0.0, public_ip: str = "203.0.113.50", effective_nsg: bool = True,
                 run_command_output: str | None = None):
        self.latency = latency
        self.public_ip = public_ip
        self.effective_nsg = effective_nsg  # False: the NSG's rules are not in effect yet
        self.run_command_output = run_command_output
        self.cond = threading.Condition()
        self.resources: dict[str, dict] = {}  # lowercase id -> body
        self.groups: dict[str, dict] = {}  # lowercase name -> body
        self.ops: dict[str, Op] = {}
        self.faults: list[Fault] = []
        self.requests: list[Request] = []
        self._deleted: list[str] = []
        self.interrupts = 0
        self._ids = itertools.count(1)
        self._observed_depth = 0

    # -- test API ----------------------------------------------------------------------
    def inject(self, rtype: str, code: str = "", message: str = "", *, status: int = 409, mode: str = "sync",
               times: int = 1, when: Callable[[dict], bool] | None = None) -> Fault:
        fault = Fault(rtype.lower(), code, message or code, status, mode, times, when)
        self.faults.append(fault)
        return fault

    def transport(self) -> "FakeTransport":
        return FakeTransport(self)

    def client_kwargs(self) -> dict:
        return {"transport": self.transport(), "polling_interval": 0, "retry_total": 0}

    def clients(self, subscription: str = SUBSCRIPTION):
        from rig.backends.azure.credentials import make_clients

        return make_clients(FakeCredential(), subscription, **self.client_kwargs())

    def puts(self, rtype: str | None = None) -> list[Request]:
        return [r for r in self.requests if r.method == "PUT" and (rtype is None or _rtype(r.path) == rtype.lower())]

    def put_body(self, rtype: str) -> dict:
        ok = [r for r in self.puts(rtype) if r.status in (200, 201)]
        return ok[-1].body if ok else self.puts(rtype)[-1].body

    @property
    def deleted_groups(self) -> list[str]:
        """Groups whose deletion has finished (Azure goes on deleting when nobody waits)."""
        self._advance()
        return list(self._deleted)

    def group_exists(self, name: str) -> bool:
        self._advance()
        return name.lower() in self.groups

    def critical_path(self) -> int:
        return max((r.depth for r in self.requests if r.method == "PUT"), default=0)

    # -- the server -----------------------------------------------------------------------
    def _advance(self) -> None:
        """Finish due deletions (their effects are visible even if nobody polls)."""
        now = time.monotonic()
        with self.cond:
            for op in self.ops.values():
                if op.kind == "delete" and op.ready_at <= now and op.fault is None and op.result is None:
                    op.result = "done"
                    self._apply_delete(op)

    def _apply_delete(self, op: Op) -> None:
        rid = op.resource_id.lower()
        if op.rtype == "resourcegroups":
            name = rid.rsplit("/", 1)[-1]
            self.groups.pop(name, None)
            self._deleted.append(name)
            prefix = rid + "/"
            for key in [k for k in self.resources if k.startswith(prefix)]:
                del self.resources[key]
        else:
            self.resources.pop(rid, None)

    def _fault_for(self, rtype: str, body: dict, modes: tuple[str, ...]) -> Fault | None:
        for f in self.faults:
            if f.type == rtype and f.mode in modes and f.times >= 0 and (f.when is None or f.when(body)):
                if f.times == 1:
                    f.times = -1  # used up
                elif f.times > 1:
                    f.times -= 1
                return f
        return None

    def handle(self, method: str, url: str, body: Any) -> tuple[int, dict, Any]:
        self._advance()
        parsed = urllib.parse.urlparse(url)
        path = parsed.path
        query = urllib.parse.parse_qs(parsed.query)
        with self.cond:
            req = Request(method, path, body, depth=self._observed_depth + 1, query=query)
            self.requests.append(req)
            status, headers, out = self._route(method, path, query, body or {}, req)
            req.status = status
        return status, headers, out

    def _route(self, method, path, query, body, req):
        low = path.lower().rstrip("/")
        if "/fakeoperations/" in low:
            return self._poll(low.rsplit("/", 1)[-1])
        parts = low.split("/")
        # /subscriptions/{s}/resourcegroups[/{rg}[/providers/...]]
        if len(parts) == 4 and parts[3] == "resourcegroups" and method == "GET":
            flt = (query.get("$filter") or [""])[0]
            groups = list(self.groups.values())
            if "tagname eq 'rig-run'" in flt.lower():
                groups = [g for g in groups if "rig-run" in (g.get("tags") or {})]
            return 200, {}, {"value": groups}
        if len(parts) == 5 and parts[3] == "resourcegroups":
            return self._group(method, parts[4], path, body, req)
        if "/providers/microsoft.marketplaceordering/" in low:
            return self._terms(method, path, body)
        if len(parts) >= 9 and parts[5] == "providers":
            rg = parts[4]
            if rg not in self.groups:
                return 404, {}, _error("ResourceGroupNotFound", f"Resource group '{rg}' could not be found.")
            action = parts[9] if len(parts) == 10 else None
            rid = "/".join(parts[:9])
            rtype = parts[7]
            if action is None and len(parts) == 9:
                return self._resource(method, rid, path, rtype, body, req)
            if len(parts) == 11:  # a child resource (subnets) — GET only
                child = self._find_child(rid, parts[9], parts[10])
                return (200, {}, child) if child else (404, {}, _error("NotFound", "no such child"))
            if method == "POST" and action == "effectivenetworksecuritygroups":
                return self._post(rid, rtype, self._effective(rid), req)
            if method == "POST" and action == "runcommand":
                out = self.run_command_output or ""
                return self._post(rid, rtype, {"value": [{"code": "ProvisioningState/succeeded", "level": "Info",
                                                          "displayStatus": "Provisioning succeeded",
                                                          "message": f"Enable succeeded: \n[stdout]\n{out}\n[stderr]\n"}]}, req)
        return 404, {}, _error("NotFound", f"the fake ARM does not know {method} {path}")

    # resource groups
    def _group(self, method, name, path, body, req):
        if method == "PUT":
            fault = self._fault_for("resourcegroups", body, ("sync",))
            if fault:
                return fault.status, {}, _error(fault.code, fault.message)
            created = name not in self.groups
            self.groups[name] = {"id": path, "name": path.rsplit("/", 1)[-1], "type": "Microsoft.Resources/resourceGroups",
                                 "location": body.get("location"), "tags": body.get("tags") or {},
                                 "properties": {"provisioningState": "Succeeded"}}
            self._observed_depth = max(self._observed_depth, req.depth)  # synchronous: seen at once
            return (201 if created else 200), {}, self.groups[name]
        if method == "GET":
            g = self.groups.get(name)
            return (200, {}, g) if g else (404, {}, _error("ResourceGroupNotFound", f"Resource group '{name}' could not be found."))
        if method == "DELETE":
            if name not in self.groups:
                return 404, {}, _error("ResourceGroupNotFound", f"Resource group '{name}' could not be found.")
            op = self._new_op(path, "resourcegroups", "delete", req.depth)
            return 202, {"Location": self._op_url(op), "Retry-After": "0"}, None
        return 405, {}, _error("MethodNotAllowed", method)

    # resources
    def _resource(self, method, rid, path, rtype, body, req):
        if method == "GET":
            res = self.resources.get(rid)
            return (200, {}, res) if res else (404, {}, _error("ResourceNotFound", f"{path} was not found"))
        if method == "DELETE":
            if rid not in self.resources:
                return 204, {}, None
            op = self._new_op(path, rtype, "delete", req.depth)
            return 202, {"Location": self._op_url(op), "Retry-After": "0"}, None
        if method != "PUT":
            return 405, {}, _error("MethodNotAllowed", method)
        fault = self._fault_for(rtype, body, ("sync",))
        if fault:
            return fault.status, {}, _error(fault.code, fault.message)
        res = self._materialise(rid, path, rtype, body)
        if rtype == "schedules" or "/microsoft.devtestlab/" in rid:
            res["properties"]["provisioningState"] = "Succeeded"
            self.resources[rid] = res
            self._observed_depth = max(self._observed_depth, req.depth)
            return 200, {}, res
        res["properties"]["provisioningState"] = "Creating"
        self.resources[rid] = res
        op = self._new_op(path, rtype, "put", req.depth, fault=self._fault_for(rtype, body, ("async", "hang", "interrupt")))
        return 201, {"Azure-AsyncOperation": self._op_url(op), "Retry-After": "0"}, res

    def _materialise(self, rid, path, rtype, body) -> dict:
        res = json.loads(json.dumps(body))
        segs = path.rstrip("/").split("/")
        res.update({"id": path, "name": segs[-1], "type": f"{segs[6]}/{segs[7]}"})
        props = res.setdefault("properties", {})
        if rtype == "publicipaddresses":
            props["ipAddress"] = self.public_ip
        if rtype == "virtualnetworks":
            for s in props.get("subnets", []):
                s["id"] = f"{path}/subnets/{s['name']}"
        if rtype == "networkinterfaces":
            for i, cfg in enumerate(props.get("ipConfigurations", [])):
                cfg["id"] = f"{path}/ipConfigurations/{cfg['name']}"
                cfg.setdefault("properties", {})["privateIPAddress"] = f"10.77.1.{4 + i}"
        if rtype == "virtualmachines":
            props["vmId"] = "11111111-2222-3333-4444-555555555555"
        return res

    def _find_child(self, rid, kind, name):
        parent = self.resources.get(rid)
        for child in (parent or {}).get("properties", {}).get(kind, []) or []:
            if child.get("name", "").lower() == name:
                return child
        return None

    def _effective(self, nic_rid: str) -> dict:
        rules = []
        nic = self.resources.get(nic_rid) or {}
        nsg_id = ((nic.get("properties") or {}).get("networkSecurityGroup") or {}).get("id", "")
        nsg = self.resources.get(nsg_id.lower()) if nsg_id else None
        if nsg and self.effective_nsg:
            for r in nsg["properties"].get("securityRules", []):
                p = r["properties"]
                port = p.get("destinationPortRange", "*")
                rules.append({"name": f"securityRules/{r['name']}", "protocol": "All" if p["protocol"] == "*" else p["protocol"],
                              "sourcePortRange": "0-65535",
                              "destinationPortRange": "0-65535" if port == "*" else f"{port}-{port}",
                              "sourceAddressPrefix": p["sourceAddressPrefix"],
                              "expandedSourceAddressPrefix": [] if p["sourceAddressPrefix"] == "*" else [p["sourceAddressPrefix"]],
                              "destinationAddressPrefix": "0.0.0.0/0", "access": p["access"],
                              "priority": p["priority"], "direction": p["direction"]})
        for name, prio, src, access in (("defaultSecurityRules/AllowVnetInBound", 65000, "VirtualNetwork", "Allow"),
                                        ("defaultSecurityRules/AllowAzureLoadBalancerInBound", 65001, "AzureLoadBalancer", "Allow"),
                                        ("defaultSecurityRules/DenyAllInBound", 65500, "0.0.0.0/0", "Deny")):
            rules.append({"name": name, "protocol": "All", "sourcePortRange": "0-65535", "destinationPortRange": "0-65535",
                          "sourceAddressPrefix": src, "destinationAddressPrefix": "0.0.0.0/0",
                          "access": access, "priority": prio, "direction": "Inbound"})
        return {"value": [{"networkSecurityGroup": {"id": nsg_id}, "association": {"networkInterface": {"id": nic_rid}},
                           "effectiveSecurityRules": rules}]}

    def _post(self, rid, rtype, result, req):
        op = self._new_op(rid, rtype, "post", req.depth)
        op.result = result
        return 202, {"Location": self._op_url(op), "Retry-After": "0"}, None

    def _terms(self, method, path, body):
        rid = path.lower()
        if method == "GET":
            return 200, {}, self.resources.get(rid) or {"id": path, "name": "current", "properties": {
                "publisher": "p", "product": "o", "plan": "s", "accepted": False,
                "licenseTextLink": "https://example.invalid/terms"}}
        res = {"id": path, "name": "current", "properties": (body or {}).get("properties", {})}
        self.resources[rid] = res
        return 200, {}, res

    # operations
    def _new_op(self, path, rtype, kind, depth, fault: Fault | None = None) -> Op:
        op = Op(f"op{next(self._ids)}", path, rtype, kind, time.monotonic() + self.latency, depth, fault)
        self.ops[op.id] = op
        return op

    def _op_url(self, op: Op) -> str:
        return f"{ARM}/subscriptions/{SUBSCRIPTION}/providers/Microsoft.Fake/fakeOperations/{op.id}?api-version=fake"

    def _poll(self, op_id: str):
        op = self.ops.get(op_id)
        if op is None:
            return 404, {}, _error("NotFound", op_id)
        fault = op.fault
        if fault is not None and fault.mode == "interrupt" and self.interrupts == 0:
            self.interrupts += 1
            signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)  # Ctrl-C at the main thread
        done = time.monotonic() >= op.ready_at and not (fault is not None and fault.mode in ("hang", "interrupt"))
        if not done:
            if op.kind == "put":
                return 200, {"Retry-After": "0"}, {"status": "InProgress"}
            return 202, {"Location": self._op_url(op), "Retry-After": "0"}, None
        if not op.observed:
            op.observed = True
            self._observed_depth = max(self._observed_depth, op.depth)
        rid = op.resource_id.lower()
        if fault is not None and fault.mode == "async":
            if rid in self.resources:
                self.resources[rid]["properties"]["provisioningState"] = "Failed"
            return 200, {}, {"status": "Failed", "error": {"code": fault.code, "message": fault.message}}
        if op.kind == "put":
            if rid in self.resources:
                self.resources[rid]["properties"]["provisioningState"] = "Succeeded"
            return 200, {}, {"status": "Succeeded"}
        if op.kind == "delete":
            if op.result is None:
                op.result = "done"
                self._apply_delete(op)
            return 200, {}, None
        return 200, {}, op.result


def _rtype(path: str) -> str:
    parts = path.lower().rstrip("/").split("/")
    if len(parts) == 5 and parts[3] == "resourcegroups":
        return "resourcegroups"
    return parts[7] if len(parts) >= 9 else ""


def _error(code: str, message: str) -> dict:
    return {"error": {"code": code, "message": message}}


class FakeTransport:
    """An azure-core HttpTransport that hands every request to a FakeARM."""

    def __init__(self, arm: FakeARM):
        self.arm = arm

    def __enter__(self):
        return self

    def __exit__(self, *args):
        pass

    def open(self):
        pass

    def close(self):
        pass

    def sleep(self, duration: float) -> None:
        """The pollers' delay: wait for the fake's state to change (or a due operation)."""
        arm = self.arm
        with arm.cond:
            now = time.monotonic()
            due = [op.ready_at for op in arm.ops.values() if not op.observed and op.ready_at > now]
            wait = min(due) - now if due else 0.0
            arm.cond.wait(timeout=min(max(wait, duration, 0.002), 0.05))

    def send(self, request, **kwargs):
        import requests
        from azure.core.rest._requests_basic import RestRequestsTransportResponse

        body = None
        raw = request.content if hasattr(request, "content") else request.data
        if raw:
            body = json.loads(raw if isinstance(raw, (str, bytes)) else json.dumps(raw))
        status, headers, out = self.arm.handle(request.method, request.url, body)
        resp = requests.Response()
        resp.status_code = status
        resp.url = request.url
        resp.headers.update({"Content-Type": "application/json", "x-ms-request-id": "fake", **headers})
        resp.raw = io.BytesIO(b"" if out is None else json.dumps(out).encode())
        ret = RestRequestsTransportResponse(request=request, internal_response=resp)
        ret.read()
        return ret
