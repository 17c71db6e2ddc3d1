"""A stateful fake of Azure Resource Manager behind an azure-core transport.

The real management clients run unchanged against it (``FakeARM().clients()``):
``transport=`` routes every request here, nothing leaves the process, and the default
https base URL keeps the SDK's bearer-token policy happy with a fake credential.
It answers with the shapes of real ARM sessions (the recordings under
tests/data/azure/, DESIGN.md §7):

- PUT of a network/compute resource: 201 + ``Azure-AsyncOperation`` (+ ``Retry-After``);
  network operations live under ``.../Microsoft.Network/locations/L/operations/ID?api-version``,
  compute ones under ``.../Microsoft.Compute/locations/L/operations/ID?p=..&api-version``
  (a query string of their own). The operation reports ``InProgress`` until ``latency``
  seconds have passed, then ``Succeeded`` (or ``Failed`` with an injected error); the
  poller then GETs the resource.
- DELETE of a resource group: 202 + ``Location``, empty body; its polls answer 202 then 200,
  both empty. DELETE of a VM: 202 + ``Azure-AsyncOperation`` + ``Location`` (``monitor=true``).
- POST effectiveNetworkSecurityGroups: 202 with a JSON ``null`` body + ``Location``; the
  result arrives on the poll. It answers 400 NicMustBeAttachedToRunningVmToGetEffectiveSecurityGroups
  unless the NIC is attached to a running VM; a subnet NSG adds a second group.
- A NIC whose VM failed or was deleted is held for ``nic_hold`` seconds: a VM PUT naming
  it answers 400 NicReservedForAnotherVm.
- Faults are injected per resource type: a synchronous error (409 SkuNotAvailable,
  OperationNotAllowed, 403 RequestDisallowedByPolicy, 429 with Retry-After...), an
  asynchronous one (AllocationFailed), an operation that never finishes, or a Ctrl-C
  (SIGINT to the main thread) while its poller is waited on.

It records every request with its body, and for each PUT the number of sequential
waits before it (``depth``): a request's depth is one more than the deepest operation
whose completion the client had observed when it sent the request. Resources started
together in one wave share a depth; a chain of one-at-a-time waits does not. The
transport records every sleep the SDK asks for (polling intervals, Retry-After) and
waits only as long as the fake needs.
"""

from __future__ import annotations

import io
import itertools
import json
import signal
import threading
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

ARM = "https://management.azure.com"
SUBSCRIPTION = "00000000-0000-0000-0000-00000000f00d"


NO_BODY = object()  # an empty response body (not the JSON null)
NIC_HOLD = 180.0  # seconds Azure holds a NIC after its VM failed or was deleted
NIC_RESERVED_MESSAGE = ("Nic(s) in request is reserved for another Virtual Machine for 180 seconds. "
                        "Please provide another nic(s) or retry after 180 seconds.")  # paraphrase, see tests/data/azure
NOT_RUNNING_MESSAGE = ("A network interface must be attached to a running virtual machine to get effective "
                       "security groups. The network interface {nic} is not attached to a running virtual machine.")


@dataclass
class Fault:
    type: str  # resource type, lowercase last segment: "virtualmachines", "networkinterfaces", ...
    code: str = ""
    message: str = ""
    status: int = 409
    mode: str = "sync"  # sync | async | hang | interrupt
    times: int = 1  # how many requests it hits (0: forever)
    when: Callable[[dict], bool] | None = None  # on the request body
    headers: dict = field(default_factory=dict)  # e.g. {"Retry-After": "7"} on a 429
    body: dict | None = None  # the whole error body, when Azure sends more than code + message


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
                 vm_running: bool = True, subnet_nsg_rules: list[dict] | None = None, nic_hold: float = NIC_HOLD,
                 retry_after: int = 0):
        self.latency = latency
        self.public_ip = public_ip
        self.effective_nsg = effective_nsg  # False: the NSG's rules are not in effect yet
        self.vm_running = vm_running  # False: stopped/deallocated; effective rules cannot be read
        self.subnet_nsg_rules = subnet_nsg_rules  # security rules of an NSG on the subnet too
        self.nic_hold = nic_hold
        self.retry_after = str(retry_after)  # ARM sends 3-50 s; 0 keeps the unit tests fast
        self.nic_vm: dict[str, str] = {}  # NIC id -> the VM id that holds it
        self.nic_held_until: dict[str, float] = {}  # NIC id -> when Azure lets another VM use it
        self.ip_counter = itertools.count(50)
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
               times: int = 1, when: Callable[[dict], bool] | None = None, headers: dict | None = None,
               body: dict | None = None) -> Fault:
        fault = Fault(rtype.lower(), code, message or code, status, mode, times, when, dict(headers or {}), body)
        self.faults.append(fault)
        return fault

    def transport(self) -> "FakeTransport":
        if not hasattr(self, "_transport"):
            self._transport = FakeTransport(self)
        return self._transport

    @property
    def sleeps(self) -> list[float]:
        """Every delay the SDK asked the transport for (polling intervals, Retry-After)."""
        return self.transport().sleeps

    def client_kwargs(self, live: bool = False) -> dict:
        """The fast test options, or (``live``) the options rig gives the real clients: its
        polling interval and the SDK's default retry policy (429/5xx retried, Retry-After honoured)."""
        from rig.backends.azure.credentials import LIVE_CLIENT_OPTIONS

        fast = {"polling_interval": 0, "retry_total": 0}
        return {"transport": self.transport(), **(LIVE_CLIENT_OPTIONS if live else fast)}

    def clients(self, subscription: str = SUBSCRIPTION, live: bool = False):
        from rig.backends.azure.credentials import make_clients

        return make_clients(FakeCredential(), subscription, **self.client_kwargs(live))

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
            if op.rtype == "virtualmachines":
                self._release_nics(rid)

    def _release_nics(self, vm_rid: str) -> None:
        """The VM failed or is gone: its NICs are held for ``nic_hold`` seconds (like Azure)."""
        for nic, vm in list(self.nic_vm.items()):
            if vm == vm_rid:
                del self.nic_vm[nic]
                self.nic_held_until[nic] = time.monotonic() + self.nic_hold

    def _fault_for(self, rtype: str, body: dict, modes: tuple[str, ...]) -> Fault | None:
        for f in self.faults:
            if f.type == rtype and f.mode in modes and f.times >= 0 and (f.when is None or f.when(body)):
                if f.times == 1:
                    f.times = -1  # used up
                elif f.times > 1:
                    f.times -= 1
                return f
        return None

    def _sync_error(self, fault: Fault):
        body = fault.body or _error(fault.code, fault.message)
        return fault.status, dict(fault.headers), body

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
        if method == "GET" and ("/operations/" in low or "/operationresults/" in low):
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
                fault = self._fault_for(rtype, body, ("sync",))
                if fault:
                    return self._sync_error(fault)
                vm = self.nic_vm.get(rid)
                if vm is None or not self.vm_running or vm not in self.resources:
                    return 400, {}, _error("NicMustBeAttachedToRunningVmToGetEffectiveSecurityGroups",
                                           NOT_RUNNING_MESSAGE.format(nic=path))
                return self._post(rid, rtype, self._effective(rid), req)
        return 404, {}, _error("NotFound", f"the fake ARM does not know {method} {path}")

    # resource groups
    def _group(self, method, name, path, body, req):
        if method == "PUT":
            fault = self._fault_for("resourcegroups", body, ("sync",))
            if fault:
                return self._sync_error(fault)
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
            return 202, {"Location": self._op_url(op), **self._retry()}, NO_BODY
        return 405, {}, _error("MethodNotAllowed", method)

    # resources
    def _resource(self, method, rid, path, rtype, body, req):
        if method == "GET":
            res = self.resources.get(rid)
            return (200, {}, res) if res else (404, {}, _error("ResourceNotFound", f"{path} was not found"))
        if method == "DELETE":
            if rid not in self.resources:
                return 204, {}, NO_BODY
            op = self._new_op(path, rtype, "delete", req.depth)
            headers = {"Location": self._op_url(op, monitor=True), **self._retry()}
            if rtype == "virtualmachines":
                headers["Azure-AsyncOperation"] = self._op_url(op)
            return 202, headers, NO_BODY
        if method != "PUT":
            return 405, {}, _error("MethodNotAllowed", method)
        fault = self._fault_for(rtype, body, ("sync",))
        if fault:
            return self._sync_error(fault)
        if rtype == "virtualmachines":
            held = self._held_nic(body)
            if held:
                return 400, {}, _error("NicReservedForAnotherVm", NIC_RESERVED_MESSAGE)
        res = self._materialise(rid, path, rtype, body)
        if rtype == "schedules" or "/microsoft.devtestlab/" in rid:
            res["properties"]["provisioningState"] = "Succeeded"
            self.resources[rid] = res
            self._observed_depth = max(self._observed_depth, req.depth)
            return 201, {}, res  # synchronous (GlobalSchedules_CreateOrUpdate: 200/201 with the body)
        res["properties"]["provisioningState"] = "Creating" if rtype == "virtualmachines" else "Updating"
        self.resources[rid] = res
        if rtype == "virtualmachines":
            for ref in (res["properties"].get("networkProfile") or {}).get("networkInterfaces", []):
                self.nic_vm[ref["id"].lower()] = rid
        op = self._new_op(path, rtype, "put", req.depth, fault=self._fault_for(rtype, body, ("async", "hang", "interrupt")))
        return 201, {"Azure-AsyncOperation": self._op_url(op), **self._retry()}, res

    def _held_nic(self, body) -> str | None:
        now = time.monotonic()
        for ref in ((body.get("properties") or {}).get("networkProfile") or {}).get("networkInterfaces", []):
            nic = str(ref.get("id", "")).lower()
            if self.nic_held_until.get(nic, 0.0) > now:
                return nic
        return None

    def _retry(self) -> dict:
        return {"Retry-After": self.retry_after}

    def _materialise(self, rid, path, rtype, body) -> dict:
        res = json.loads(json.dumps(body))
        segs = path.rstrip("/").split("/")
        res.update({"id": path, "name": segs[-1], "type": f"{segs[6]}/{segs[7]}"})
        props = res.setdefault("properties", {})
        if rtype == "publicipaddresses" and props.get("publicIPAddressVersion") == "IPv6":
            props["ipAddress"] = f"2001:db8:77::{next(self.ip_counter)}"
        elif rtype == "publicipaddresses":
            props["ipAddress"] = self.public_ip if not any(
                r.get("type") == "Microsoft.Network/publicIPAddresses" for r in self.resources.values()) \
                else f"203.0.113.{next(self.ip_counter) + 1}"
        if rtype == "virtualnetworks":
            for s in props.get("subnets", []):
                s["id"] = f"{path}/subnets/{s['name']}"
        if rtype == "networkinterfaces":
            for i, cfg in enumerate(props.get("ipConfigurations", [])):
                cfg["id"] = f"{path}/ipConfigurations/{cfg['name']}"
                cp = cfg.setdefault("properties", {})
                if cp.get("privateIPAllocationMethod") == "Static" and cp.get("privateIPAddress"):
                    continue
                cp["privateIPAddress"] = (f"fd77:7700:7700:1::{4 + i}" if cp.get("privateIPAddressVersion") == "IPv6"
                                          else f"10.77.1.{4 + i}")
        if rtype == "virtualmachines":
            props["vmId"] = "11111111-2222-3333-4444-555555555555"
        return res

    def _find_child(self, rid, kind, name):
        parent = self.resources.get(rid)
        for child in (parent or {}).get("properties", {}).get(kind, []) or []:
            if child.get("name", "").lower() == name:
                return child
        return None

    @staticmethod
    def _effective_rules(rules: list[dict]) -> list[dict]:
        out = []
        for r in rules:
            p = r["properties"]
            port = p.get("destinationPortRange", "*")
            out.append({"name": f"securityRules/{r['name']}", "protocol": "All" if p["protocol"] == "*" else p["protocol"],
                        "sourcePortRange": "0-65535",
                        "destinationPortRange": "0-65535" if port == "*" else f"{port}-{port}",
                        "sourceAddressPrefix": p["sourceAddressPrefix"],
                        "expandedSourceAddressPrefix": [] if p["sourceAddressPrefix"] == "*" else [p["sourceAddressPrefix"]],
                        "destinationAddressPrefix": "0.0.0.0/0", "access": p["access"],
                        "priority": p["priority"], "direction": p.get("direction", "Inbound")})
        for name, prio, src, access in (("defaultSecurityRules/AllowVnetInBound", 65000, "VirtualNetwork", "Allow"),
                                        ("defaultSecurityRules/AllowAzureLoadBalancerInBound", 65001, "AzureLoadBalancer", "Allow"),
                                        ("defaultSecurityRules/DenyAllInBound", 65500, "0.0.0.0/0", "Deny")):
            out.append({"name": name, "protocol": "All", "sourcePortRange": "0-65535", "destinationPortRange": "0-65535",
                        "sourceAddressPrefix": src, "destinationAddressPrefix": "0.0.0.0/0",
                        "access": access, "priority": prio, "direction": "Inbound"})
        return out

    def _effective(self, nic_rid: str) -> dict:
        """The shape of NetworkInterfaceEffectiveNSGList.json: one group per associated NSG."""
        nic = self.resources.get(nic_rid) or {}
        props = nic.get("properties") or {}
        nsg_id = (props.get("networkSecurityGroup") or {}).get("id", "")
        nsg = self.resources.get(nsg_id.lower()) if nsg_id else None
        rules = nsg["properties"].get("securityRules", []) if nsg and self.effective_nsg else []
        groups = [{"networkSecurityGroup": {"id": nsg_id}, "association": {"networkInterface": {"id": nic.get("id", nic_rid)}},
                   "effectiveSecurityRules": self._effective_rules(rules)}]
        if self.subnet_nsg_rules is not None:
            subnet = (((props.get("ipConfigurations") or [{}])[0].get("properties") or {}).get("subnet") or {}).get("id", "")
            groups.append({"networkSecurityGroup": {"id": nsg_id.rsplit("/", 1)[0] + "/rig-subnet-nsg"},
                           "association": {"subnet": {"id": subnet}},
                           "effectiveSecurityRules": self._effective_rules(self.subnet_nsg_rules)})
        return {"value": groups}

    def _post(self, rid, rtype, result, req):
        op = self._new_op(rid, rtype, "post", req.depth)
        op.result = result
        return 202, {"Location": self._op_url(op), **self._retry()}, None  # the body is JSON null

    # operations
    def _new_op(self, path, rtype, kind, depth, fault: Fault | None = None) -> Op:
        op = Op(f"{next(self._ids):08x}-0000-4000-8000-{uuid.uuid4().hex[:12]}", path, rtype, kind,
                time.monotonic() + self.latency, depth, fault)
        self.ops[op.id] = op
        return op

    def _op_url(self, op: Op, monitor: bool = False) -> str:
        """Operation URLs as ARM writes them (the recordings): each provider its own form."""
        loc = "eastus"
        res = self.resources.get(op.resource_id.lower()) or {}
        loc = res.get("location") or loc
        if op.rtype == "resourcegroups":
            return f"{ARM}/subscriptions/{SUBSCRIPTION}/operationresults/{op.id}?api-version=2022-09-01"
        if op.rtype == "virtualmachines":
            query = "monitor=true&api-version=2024-07-01" if monitor else f"p={uuid.uuid4()}&api-version=2024-07-01"
            return f"{ARM}/subscriptions/{SUBSCRIPTION}/providers/Microsoft.Compute/locations/{loc}/operations/{op.id}?{query}"
        kind = "operationResults" if op.kind == "post" or monitor else "operations"
        return f"{ARM}/subscriptions/{SUBSCRIPTION}/providers/Microsoft.Network/locations/{loc}/{kind}/{op.id}?api-version=2024-05-01"

    def _poll(self, op_id: str):
        op = self.ops.get(op_id)
        if op is None:
            return 404, {}, _error("NotFound", op_id)
        fault = op.fault
        if fault is not None and fault.mode == "interrupt" and self.interrupts == 0:
            self.interrupts += 1
            main = threading.main_thread().ident
            assert main is not None, "the main thread has started"
            signal.pthread_kill(main, signal.SIGINT)  # Ctrl-C at the main thread
        done = time.monotonic() >= op.ready_at and not (fault is not None and fault.mode in ("hang", "interrupt"))
        compute = op.rtype == "virtualmachines"
        status_body = ({"startTime": "2026-01-01T00:00:00+00:00", "name": op.id} if compute else {})
        if not done:
            if op.kind == "put" or (compute and op.kind == "delete"):
                return 200, self._retry(), {**status_body, "status": "InProgress"}
            return 202, {"Location": self._op_url(op), **self._retry()}, NO_BODY
        if not op.observed:
            op.observed = True
            self._observed_depth = max(self._observed_depth, op.depth)
        rid = op.resource_id.lower()
        if fault is not None and fault.mode == "async":
            if rid in self.resources:
                self.resources[rid]["properties"]["provisioningState"] = "Failed"
            if op.rtype == "virtualmachines":
                self._release_nics(rid)
            return 200, {}, {**status_body, "status": "Failed", "error": {"code": fault.code, "message": fault.message}}
        if op.kind == "put":
            if rid in self.resources:
                self.resources[rid]["properties"]["provisioningState"] = "Succeeded"
            return 200, {}, {**status_body, "status": "Succeeded"}
        if op.kind == "delete":
            if op.result is None:
                op.result = "done"
                self._apply_delete(op)
            if compute:
                return 200, {}, {**status_body, "status": "Succeeded"}
            return 200, {}, NO_BODY
        return 200, {"Location": self._op_url(op)}, op.result


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
        self.sleeps: list[float] = []

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
        self.sleeps.append(duration)
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
        resp.raw = io.BytesIO(b"" if out is NO_BODY else json.dumps(out).encode())
        ret = RestRequestsTransportResponse(request=request, internal_response=resp)
        ret.read()
        return ret
