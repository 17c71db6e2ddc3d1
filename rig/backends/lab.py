"""The lab backend: the seed's double NAT in network namespaces on this machine.

``provision`` builds the topology of rig.lab.topology with the scenario's faults
(rig.lab.build), starts sshd, Apache and the UDP echo service in the server namespace
(rig.lab.services), and returns a Rig that says everything the pipeline needs: where
the server is, how to reach its sshd from the client namespace with a pinned host key,
and where to capture. ``teardown`` needs only that Rig (so another process can remove
a kept lab): it kills every process in the lab's namespaces by PID, deletes them, and
removes the workdir.
"""

from __future__ import annotations

import os
import pwd
import shutil
import stat
from concurrent.futures import ThreadPoolExecutor, wait
from functools import partial
from pathlib import Path
from typing import Mapping

from rig.backends.base import CapturePoint, Rig, RunSpec, SSHEndpoint
from rig.backends.facts import port_facts
from rig.errors import InfraError, UsageError
from rig.lab import scenarios as scenario_registry
from rig.lab.build import LabNet, build, destroy, require_root_and_tools
from rig.lab.config import lab_config
from rig.lab.services import (Service, apache_vars, make_keys, start_apache, start_sshd, start_tunnel,
                              start_udp_echo)
from rig.lab.topology import (CLIENT_ADDR, CLIENT_ADDR6, HGW_WAN_ADDR, ROUTER_WAN_ADDR, SERVER_ADDR, SERVER_ADDR2,
                              SERVER_ADDR6, new_prefix, seed_topology)
from rig.lab.scenarios import PROXY_PORT
from rig.nat.responder import nat_facts

LAB_ROOT = Path("/tmp/rig-lab")  # per-run workdirs: LAB_ROOT/<prefix>
UDP_PORT = 7
SSH_PORT = 22


def _reap(services: list[Service]) -> None:
    """Collect the exit status of the services this process started (they are dead by now)."""
    for svc in services:
        if svc.proc is not None:
            try:
                svc.proc.wait(timeout=5)
            except Exception:  # never let reaping hide the real outcome of a teardown
                pass


def _start_all(starts: list, started: list[Service]) -> None:
    """Start the services at once (each waits for its own readiness); ``started`` gets
    every one that came up, in order, even when another failed (so it can be reaped)."""
    with ThreadPoolExecutor(max_workers=len(starts)) as pool:
        futures = [pool.submit(fn) for fn in starts]
        wait(futures)
    errors = [exc for f in futures if (exc := f.exception()) is not None]
    started.extend(f.result() for f in futures if f.exception() is None)
    if errors:
        raise errors[0]


def _router_sshd(spec: RunSpec, ns: Mapping[str, str], workdir: Path, keys, starts: list) -> dict[str, str]:
    """With --capture-at router=user@192.168.1.1, sshd in the router namespace on its LAN
    address (rig.trace.router.lab_sshd); the facts that pin its host key."""
    from rig.trace.router import OPTION, lab_sshd

    target = spec.options.get(OPTION)
    if not target:
        return {}
    from rig.backends.ssh import parse_target

    lan = seed_topology().endpoint("router", "lan").ip
    _, host, port = parse_target(target)
    if (host, port) != (lan, 22):
        raise UsageError(f"--capture-at router={target}: the lab's router listens on {lan}:22")
    facts: dict[str, str] = {}

    def start():
        svc, facts["router_host_key"] = lab_sshd(ns["router"], workdir / "router-ssh", lan, keys.client_key,
                                                 keys.client_pub)
        return svc

    starts.append(start)
    return facts


def _lab_root() -> Path:
    """LAB_ROOT, created if needed, and refused if someone else could have planted it
    (it lives in /tmp and root writes keys and configs under it)."""
    LAB_ROOT.mkdir(mode=0o755, exist_ok=True)
    st = os.lstat(LAB_ROOT)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
        raise InfraError(f"{LAB_ROOT} is not a directory owned by you and writable only by you: remove it "
                         f"and run again")
    return LAB_ROOT


def workdir_for(prefix: str) -> Path:
    return LAB_ROOT / prefix


class LabBackend:
    name = "lab"

    def __init__(self, prefix: str | None = None):
        self._prefix = prefix  # tests may choose it; by default a fresh one per provision
        self._started: dict[str, list[Service]] = {}  # prefix -> services this object started

    def provision(self, spec: RunSpec) -> Rig:
        chosen = scenario_registry.get(spec.scenario)
        config = lab_config(chosen, spec.options.get("router"), spec.options.get("access"))
        access, router, topo, scenario = config.access, config.router, config.topology, config.scenario
        sets = config.nat_sets
        require_root_and_tools()
        prefix = self._prefix or new_prefix()
        workdir = workdir_for(prefix)
        _lab_root()
        try:
            workdir.mkdir(mode=0o755)
        except FileExistsError:
            raise InfraError(f"{workdir} already exists: another lab uses prefix {prefix} "
                             f"('rig clean --prefix {prefix}' removes it if its run is gone)") from None
        server_dir = workdir / "server"
        net = LabNet(prefix)
        started: list[Service] = []
        try:
            net = build(topo, prefix, scenario, sets)
            ns = net.namespaces
            # the tunnel ends first: the services' readiness checks do not cross them,
            # but the probes do
            if topo.tunnels:
                _start_all([partial(start_tunnel, ns[t.node], workdir / "tunnels", t) for t in topo.tunnels], started)
            keys = make_keys(workdir / "keys")
            server_vars = apache_vars(server_dir, SERVER_ADDR, scenario.http_port, "server", SERVER_ADDR6)
            starts = [lambda: start_sshd(ns["server"], workdir, SERVER_ADDR, keys, SSH_PORT),
                      lambda: start_apache(ns["server"], server_vars, SERVER_ADDR),
                      lambda: start_udp_echo(ns["server"], server_dir, SERVER_ADDR, UDP_PORT, (SERVER_ADDR6,))]
            router_ssh = _router_sshd(spec, ns, workdir, keys, starts)  # --capture-at router=user@host
            if scenario.proxy:
                hgw_lan = topo.endpoint("hgw", "lan").ip
                proxy_vars = apache_vars(workdir / "proxy", "0.0.0.0", PROXY_PORT, "hgw-proxy")
                starts.append(lambda: start_apache(ns["hgw"], proxy_vars, hgw_lan))
            _start_all(starts, started)
            apache = started[len(topo.tunnels) + 1]
        except BaseException:
            destroy(net.namespaces.values() if net.namespaces else [f"{prefix}-{n}" for n in topo.nodes])
            _reap(started)
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        self._started[prefix] = started

        points = [CapturePoint("client", "eth0", netns=ns["client"])]
        if "router" in spec.capture_at and not router_ssh:  # the namespace shortcut
            points.append(CapturePoint("router", "wan", netns=ns["router"]))
        if "ngn" in spec.capture_at:
            if access.provider is None:
                raise InfraError("--capture-at ngn: the plain access has no NGN (use --access map-e, ds-lite or pppoe)")
            points.append(CapturePoint("ngn", "ngn", netns=ns[access.provider]))
        points.append(CapturePoint("server", "eth0", remote=True))
        facts = {
            "prefix": prefix,
            "scenario": scenario.name,
            **router.facts(),  # the router profile the verdict was made behind
            **access.facts(sets.get("hgw")),  # the access line, and how the lab made it
            "namespaces": ",".join(ns[n] for n in topo.nodes),
            **{f"ns_{node}": name for node, name in ns.items()},
            "client_addr": CLIENT_ADDR,
            "client_addr6": CLIENT_ADDR6,
            "server_addr6": SERVER_ADDR6,  # the server is dual-stack: the probes go to both
            "router_wan_addr": ROUTER_WAN_ADDR,
            "hgw_wan_addr": HGW_WAN_ADDR,
            **port_facts(scenario.http_port, UDP_PORT, scenario.probe_port),
            **nat_facts((SERVER_ADDR, SERVER_ADDR2)),  # the NAT tests' responder (rig.nat)
            # read by rig.configure: the playbook renders the same files to the same places
            "server_dir": str(server_dir),
            "listen_addr": SERVER_ADDR,
            "service_mode": "standalone",
            "python": "/usr/bin/python3",
            **{k: v for k, v in server_vars.items() if k not in ("rig_server_dir", "rig_listen_addr", "rig_http_port")},
            "access_log": apache.log,
            "error_log": str(server_dir / "logs" / "error.log"),
            "pids": ",".join(str(svc.pid) for svc in started),
            # the server's temporary files (remote captures) stay in the run's workdir:
            # the server namespace shares this machine's /tmp, and `rig clean` knows this
            "remote_tmp": str(workdir),
            **router_ssh,
        }
        return Rig(
            run_id=prefix,
            backend=self.name,
            server_addr=SERVER_ADDR,
            ssh=SSHEndpoint(host=SERVER_ADDR, port=SSH_PORT, user=pwd.getpwuid(os.geteuid()).pw_name,
                            key_file=keys.client_key, host_key=keys.host_pub, netns=ns["client"]),
            capture_points=tuple(points),
            client_netns=ns["client"],
            os_family="debian",
            install_packages=False,
            workdir=str(workdir),
            facts=facts,
        )

    def teardown(self, rig: Rig) -> None:
        prefix = rig.facts.get("prefix", rig.run_id)
        names = [n for n in rig.facts.get("namespaces", "").split(",") if n]
        if not names:
            names = [f"{prefix}-{n}" for n in ("client", "router", "hgw", "br", "aftr", "bas", "inet", "server")]
        destroy(names)
        _reap(self._started.pop(prefix, []))
        if rig.workdir and Path(rig.workdir).resolve().parent == LAB_ROOT.resolve():
            shutil.rmtree(rig.workdir, ignore_errors=True)
