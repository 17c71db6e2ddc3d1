"""Make a topology description real with ``ip`` and ``nft``, and take it down again.

Planning is pure (``plan``: the ``ip -batch`` text and nft rulesets for a topology and a
scenario, testable without root); ``build`` runs the plan: one ``ip -batch`` in this
namespace creates the namespaces and the veth pairs straight between them (no interface
ever exists here), then per namespace one ``ip -n NS -batch`` and one ``nft -f``.
``destroy`` kills by PID every process ``ip netns pids`` lists, then deletes the
namespaces.
"""

from __future__ import annotations

import ctypes
import fcntl
import functools
import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import time
from dataclasses import dataclass, field
from typing import Iterable, Mapping

from rig.concurrency import run_all
from rig.errors import InfraError, MissingToolError, NotRootError
from rig.lab.scenarios import CHAINS, OBJECTS, Scenario
from rig.lab.topology import Topology, ns_name
from rig.netns import in_netns
from rig.portset import PortSet

# program -> package that brings it (Debian); the lab needs all of them
LAB_TOOLS = {"ip": "iproute2", "nft": "nftables", "sshd": "openssh-server", "ssh-keygen": "openssh-client",
             "apache2": "apache2"}
SBIN = ("/usr/sbin", "/sbin", "/usr/local/sbin")
# packets a TUN device queues for its user-space tunnel end (rig.lab.tunnel) while that
# process waits for a CPU: the default 500 overflowed on a loaded two-CPU machine
TUN_QUEUE = 10000


@dataclass(frozen=True)
class Plan:
    host_batch: str  # `ip -batch` run here: namespaces and veth pairs
    ns_batches: Mapping[str, str]  # node -> `ip -n NS -batch` (addresses, MTU, routes)
    rulesets: Mapping[str, str]  # node -> `nft -f` text
    sysctls: Mapping[str, Mapping[str, str]]  # node -> {"net/ipv4/ip_forward": "1"}


@dataclass(frozen=True)
class LabNet:
    """A built network: the prefix and the namespace of every node."""

    prefix: str
    namespaces: Mapping[str, str] = field(default_factory=dict)  # node -> namespace


def find_tool(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path=os.pathsep.join(SBIN))
    if not path:
        pkg = LAB_TOOLS.get(name, name)
        raise MissingToolError(f"{name} not found: install {pkg} (e.g. 'apt-get install {pkg}' or 'make system')")
    return path


def require_root_and_tools(tools: Iterable[str] = LAB_TOOLS) -> None:
    if os.geteuid() != 0:
        raise NotRootError("the lab needs root (network namespaces, sshd, Apache, tcpdump): run it with sudo")
    for t in tools:
        find_tool(t)


def _masquerade(node: str, out_iface: str, scenario: Scenario, port_set: PortSet | None = None) -> list[str]:
    opts = scenario.masquerade.get(node, "")
    lines = []
    if port_set is not None:
        # a MAP-E CE's NAPT into its PSID's blocks: nft masquerades into one port range
        # per rule, so each new flow draws a block at random (the mark, set in this nat
        # chain, is seen by the first packet of a flow only) and takes a free port in it
        ranges = port_set.ranges()
        flows = f'oifname "{out_iface}" meta l4proto {{ tcp, udp }}'
        if len(ranges) > 1:
            lines.append(f"{flows} meta mark set numgen random mod {len(ranges)}")
        for i, (lo, hi) in enumerate(ranges):
            pick = f" meta mark {i}" if len(ranges) > 1 else ""
            lines.append(f"{flows}{pick} masquerade to :{lo}-{hi} {opts}".rstrip())
    elif node in scenario.port_set:
        lo, hi = scenario.port_set[node]
        lines.append(f'oifname "{out_iface}" meta l4proto {{ tcp, udp }} masquerade to :{lo}-{hi} {opts}'.rstrip())
    lines.append(f'oifname "{out_iface}" masquerade {opts}'.rstrip())
    return lines


_HOOKS = {
    "prerouting": "type nat hook prerouting priority dstnat",
    "postrouting": "type nat hook postrouting priority srcnat",
    "mangle": "type filter hook forward priority mangle",
    "forward": "type filter hook forward priority filter",
    "input": "type filter hook input priority filter",
    "output": "type filter hook output priority filter",
}


def _mac(link: int, end: int) -> str:
    """A fixed, locally administered MAC for end ``end`` (0 or 1) of link number ``link``."""
    return f"02:72:69:67:{link:02x}:{end:02x}"


def _route_line(r) -> str:
    """One ``ip -batch`` route line (the family follows the addresses)."""
    line = f"route add {r.dest}"
    if r.via is not None:
        line += f" via {r.via}"
    if r.dev is not None:
        line += f" dev {r.dev}"
    return line


def ruleset(rules_by_chain: Mapping[str, list[str]], family: str = "ip") -> str:
    """The ``table <family> rig`` of one node (``ip``: IPv4, ``ip6``: IPv6), with only
    the chains that hold rules."""
    out = [f"table {family} rig {{"]
    out.extend(f"\t{obj}" for obj in rules_by_chain.get(OBJECTS, ()))  # stateful objects the rules name
    for chain in CHAINS:
        rules = rules_by_chain.get(chain)
        if not rules:
            continue
        out.append(f"\tchain {chain} {{")
        out.append(f"\t\t{_HOOKS[chain]}; policy accept;")
        out.extend(f"\t\t{r}" for r in rules)
        out.append("\t}")
    out.append("}")
    return "\n".join(out) + "\n"


def plan(topo: Topology, prefix: str, scenario: Scenario, nat_sets: Mapping[str, PortSet] | None = None) -> Plan:
    """Everything ``build`` will run, as text (pure). ``nat_sets``: nodes whose NAT maps
    into a MAP-E port set (rig.portset.PortSet)."""
    topo.validate()
    ns = {n: ns_name(prefix, n) for n in topo.nodes}
    mtu: dict[tuple[str, str], int] = {}
    for change in scenario.mtu:
        link = topo.link_of(change.node, change.iface)
        for end in (link.a, link.b):
            mtu[(end.node, end.iface)] = change.mtu

    host = [f"netns add {ns[n]}" for n in topo.nodes]
    for i, link in enumerate(topo.links):
        host.append(f"link add name {link.a.iface} address {_mac(i, 0)} netns {ns[link.a.node]} type veth "
                    f"peer name {link.b.iface} address {_mac(i, 1)} netns {ns[link.b.node]}")

    batches: dict[str, str] = {}
    for node in topo.nodes:
        lines = ["link set lo up"]
        for link in topo.links:
            for end in (link.a, link.b):
                if end.node != node:
                    continue
                lines.append(f"link set {end.iface} mtu {mtu.get((node, end.iface), link.mtu)}")
                if end.addr is not None:
                    lines.append(f"addr add {end.addr} dev {end.iface}")
                if end.addr6 is not None:  # nodad: usable at once (DAD would hold it ~1 s)
                    lines.append(f"addr add {end.addr6} dev {end.iface} nodad")
                # no link-local address: while the kernel's duplicate address detection
                # holds it (~1 s after the link comes up, whatever accept_dad says),
                # neighbour solicitations went unanswered and the first IPv6 packet of a
                # run waited 1 s. Neighbour discovery uses the global addresses instead.
                lines.append(f"link set {end.iface} addrgenmode none")
                lines.append(f"link set {end.iface} up")
        lines += [f"addr add {a.addr} dev {a.iface}" for a in topo.aliases if a.node == node]
        # IPv6 neighbours are written down, not discovered: right after the links come
        # up the first neighbour solicitation went unanswered (measured: the first IPv6
        # probe of a run waited the 1 s retransmit timer), and the captures stay free
        # of neighbour discovery
        for i, link in enumerate(topo.links):
            for me, peer, pi in ((link.a, link.b, 1), (link.b, link.a, 0)):
                if me.node == node and me.addr6 and peer.addr6:
                    lines.append(f"neigh add {peer.ip6} lladdr {_mac(i, pi)} dev {me.iface} nud permanent")
        for t in topo.tunnels:
            if t.node != node:
                continue
            # a persistent TUN device, so its addresses and routes are set here; the
            # encapsulator (rig.lab.tunnel) attaches to it once the lab is up. No IPv6
            # on it: the kernel would send its own IPv6 (MLD, RS) into an IPv4 tunnel
            lines.append(f"tuntap add dev {t.tun} mode tun")
            lines.append(f"link set {t.tun} mtu {t.mtu} txqueuelen {TUN_QUEUE} addrgenmode none")
            if t.addr is not None:
                lines.append(f"addr add {t.addr} dev {t.tun}")
            lines.append(f"link set {t.tun} up")
        lines.extend(_route_line(r) for r in topo.routes if r.node == node)
        batches[node] = "\n".join(lines) + "\n"

    chains: dict[str, dict[str, list[str]]] = {n: {} for n in topo.nodes}
    chains6: dict[str, dict[str, list[str]]] = {n: {} for n in topo.nodes}
    for nat in topo.nats:
        chains[nat.node].setdefault("postrouting", []).extend(
            _masquerade(nat.node, nat.out_iface, scenario, (nat_sets or {}).get(nat.node)))
    for rule in scenario.rules:
        if rule.node not in chains:
            raise ValueError(f"scenario {scenario.name}: rule on unknown node {rule.node!r}")
        if rule.chain not in (*CHAINS, OBJECTS):
            raise ValueError(f"scenario {scenario.name}: unknown chain {rule.chain!r}")
        if rule.family not in ("ip", "ip6"):
            raise ValueError(f"scenario {scenario.name}: unknown nft family {rule.family!r}")
        (chains6 if rule.family == "ip6" else chains)[rule.node].setdefault(rule.chain, []).append(rule.rule)
    rulesets = {n: "".join([ruleset(chains[n]) if chains[n] else "", ruleset(chains6[n], "ip6") if chains6[n] else ""])
                for n in topo.nodes if chains[n] or chains6[n]}

    sysctls: dict[str, dict[str, str]] = {}
    for node in topo.nodes:
        # IPv6 on, statically: no duplicate address detection, no router advertisements
        # taken or solicited (routes are the topology's own), and no random delay before
        # an address is set up: the kernel waits up to router_solicitation_delay (1 s) before it
        # joins an address's solicited-node group, and a neighbour solicitation sent
        # meanwhile went unanswered (measured: the first IPv6 probe of a run waited 1 s)
        s = {"net/ipv6/conf/all/disable_ipv6": "0", "net/ipv6/conf/default/disable_ipv6": "0"}
        for conf in ("all", "default", *(e.iface for e in topo.ifaces(node))):
            s.update({f"net/ipv6/conf/{conf}/accept_dad": "0", f"net/ipv6/conf/{conf}/accept_ra": "0"})
            if conf != "all":  # per interface only
                s.update({f"net/ipv6/conf/{conf}/router_solicitation_delay": "0",
                          f"net/ipv6/conf/{conf}/router_solicitations": "0"})
        if node in topo.forwarding:
            s["net/ipv4/ip_forward"] = "1"
            s["net/ipv6/conf/all/forwarding"] = "1"
        if node == topo.roles.get("client"):
            s["net/ipv4/ping_group_range"] = "0 2147483647"  # ICMP datagram sockets for probes
        sysctls[node] = s
    return Plan("\n".join(host) + "\n", batches, rulesets, sysctls)


def run(argv: list[str], input: str | None = None, what: str = "") -> str:
    """Run a command; a failure is an InfraError with the command's own message."""
    try:
        p = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        raise MissingToolError(f"{argv[0]} not found") from None
    except subprocess.TimeoutExpired as exc:
        raise InfraError(f"{what or argv[0]} timed out") from exc
    if p.returncode != 0:
        msg = (p.stderr or p.stdout).strip().replace("\n", "; ")
        raise InfraError(f"{what or ' '.join(argv[:3])} failed: {msg}")
    return p.stdout


def _write_sysctls(values: Mapping[str, str]) -> None:
    for key, value in values.items():
        with open(f"/proc/sys/{key}", "w") as fh:
            fh.write(value)


# legacy ethtool ioctls (iproute2 cannot change offloads, and ethtool may be absent)
_SIOCETHTOOL = 0x8946
_ETHTOOL_SET = {"tso": 0x1F, "gso": 0x24, "gro": 0x2C}
_ETHTOOL_GET = {"tso": 0x1E, "gso": 0x23, "gro": 0x2B}


def _ethtool(sock: socket.socket, iface: str, cmd: int, value: int = 0) -> int:
    data = ctypes.create_string_buffer(struct.pack("II", cmd, value))
    ifreq = struct.pack("16sP", iface.encode(), ctypes.addressof(data)).ljust(40, b"\0")
    fcntl.ioctl(sock.fileno(), _SIOCETHTOOL, ifreq)
    return struct.unpack("II", data.raw[:8])[1]


def disable_offloads(ifaces: Iterable[str]) -> None:
    """TSO, GSO and GRO off, so every link carries wire-sized packets as a real one does.

    With them on, libpcap sizes each ring slot for a 64 KB packet: tcpdump's 8 MB
    buffer then holds only 128 packets, and a capture starved of CPU for a moment
    (two busy cores) drops most of a burst."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for iface in ifaces:
            for feature in ("tso", "gso", "gro"):
                try:
                    _ethtool(sock, iface, _ETHTOOL_SET[feature], 0)
                except OSError as exc:
                    raise InfraError(f"cannot turn {feature} off on {iface}: {exc.strerror}") from exc


def offloads(iface: str) -> dict[str, int]:
    """The current TSO/GSO/GRO settings of ``iface`` in this namespace (for tests)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        return {f: _ethtool(sock, iface, cmd) for f, cmd in _ETHTOOL_GET.items()}


def build(topo: Topology, prefix: str, scenario: Scenario, nat_sets: Mapping[str, PortSet] | None = None) -> LabNet:
    """Create the namespaces, links, addresses, routes and rules. On failure, whatever
    was created is removed before the error propagates."""
    p = plan(topo, prefix, scenario, nat_sets)
    net = LabNet(prefix, {n: ns_name(prefix, n) for n in topo.nodes})
    taken = sorted(set(net.namespaces.values()) & set(list_namespaces()))
    if taken:  # never touch them: they belong to another run
        raise InfraError(f"namespace {taken[0]} already exists: another lab uses prefix {prefix} "
                         f"('rig clean --prefix {prefix}' removes it if its run is gone)")
    try:
        run(["ip", "-batch", "-"], p.host_batch, "creating namespaces and links")
        for node, nsname in net.namespaces.items():
            in_netns(nsname, _write_sysctls, p.sysctls[node])
            run(["ip", "-n", nsname, "-batch", "-"], p.ns_batches[node], f"configuring {node}")
            in_netns(nsname, disable_offloads, [e.iface for e in topo.ifaces(node)])
            if node in p.rulesets:
                in_netns(nsname, run, ["nft", "-f", "-"], p.rulesets[node], f"nft rules in {node}")
    except BaseException:
        destroy(net.namespaces.values())
        raise
    return net


# --- taking it down -------------------------------------------------------------------


def netns_pids(nsname: str) -> list[int]:
    p = subprocess.run(["ip", "netns", "pids", nsname], capture_output=True, text=True)
    return [int(x) for x in p.stdout.split() if x.isdigit()]


def list_namespaces() -> list[str]:
    try:
        return sorted(os.listdir("/run/netns"))
    except FileNotFoundError:
        return []


def kill_pids(pids: Iterable[int], grace: float = 0.5) -> None:
    """SIGTERM each PID, wait for it to exit (pidfd, no polling), SIGKILL what remains.
    Children are not reaped here: whoever holds their Popen collects the exit status.

    The grace is short on purpose: nothing in a lab namespace holds state worth a
    graceful stop, and an Apache child blocked writing into a black hole (the
    mtu-blackhole scenario) ignores SIGTERM for ~3 s, its parent's own reclaim
    schedule — with a 2 s grace that was the whole teardown time (measured 2.02 s)."""
    me = os.getpid()
    fds: dict[int, int] = {}
    for pid in set(pids):
        if pid == me:
            continue
        try:
            fds[pid] = os.pidfd_open(pid)
        except OSError:  # already gone
            continue
        try:
            signal.pidfd_send_signal(fds[pid], signal.SIGTERM)
        except ProcessLookupError:
            pass  # exited meanwhile: its pidfd is readable
    deadline = time.monotonic() + grace
    pending = dict(fds)
    while pending:
        left = deadline - time.monotonic()
        if left <= 0:
            for fd in pending.values():
                try:
                    signal.pidfd_send_signal(fd, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            ready, _, _ = select.select(list(pending.values()), [], [], grace)
            for pid, fd in list(pending.items()):
                if fd in ready:
                    pending.pop(pid)
            break
        ready, _, _ = select.select(list(pending.values()), [], [], left)
        for pid, fd in list(pending.items()):
            if fd in ready:
                pending.pop(pid)
    for fd in fds.values():
        os.close(fd)


def destroy(namespaces: Iterable[str]) -> list[str]:
    """Kill every process in the namespaces, then delete them. Returns those deleted."""
    existing = set(list_namespaces())
    names = [n for n in namespaces if n in existing]
    for _ in range(3):  # a process may fork while we kill: look again
        # one `ip netns pids` per namespace, all at once (one after the other they were
        # most of a lab's teardown: 10 runs of ip for 5 namespaces)
        pids = [pid for found in run_all([functools.partial(netns_pids, n) for n in names]) for pid in found]
        if not pids:
            break
        kill_pids(pids)
    if names:
        run(["ip", "-batch", "-"], "".join(f"netns del {n}\n" for n in names), "deleting namespaces")
    return names
