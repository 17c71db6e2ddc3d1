"""The NAT tests, run from the client side against rig's responder (templates/nat_responder.py).

Each test opens its own sockets (so each starts from fresh mappings) and returns the
raw observations; rig.nat.classify turns them into words. ``profile`` runs UDP and TCP
at once, and inside each protocol the tests at once, so the whole profile costs about
one wait for a reply that is not coming (``Wait``), not the sum. Call it inside the
client's namespace (rig.netns.in_netns); it sends only to the responder's endpoints and
to the client's own public mapping (hairpinning).
"""

from __future__ import annotations

import secrets
import select
import socket
import time
from dataclasses import dataclass
from typing import Callable

from rig.concurrency import run_all
from rig.nat import classify
from rig.nat.records import Binding, Dependence, Proto, ProtoProfile, Trail, Undecided

MAGIC = "RIGNAT1"
NOT_MEASURED = Undecided("not measured (--nat-lifetime)")
BURST = 16
# mapping tests per protocol, each from its own inside socket: a NAT that draws a new port
# per destination from a small pool (a 16-port set) lands on the same port by chance
# (1 in 16); every trial must coincide to look endpoint-independent (1 in 16**(2*4))
MAPPING_TRIALS = 4
TRIES = 3


@dataclass(frozen=True)
class Target:
    """The responder as the client addresses it: ``addresses`` (public) and ``ports``;
    endpoint ``i * len(ports) + j`` is (addresses[i], ports[j]), the responder's order."""

    addresses: tuple[str, ...]
    ports: tuple[int, ...]
    secret: str

    def index(self, a: int, p: int) -> int:
        return a * len(self.ports) + p

    def endpoint(self, a: int, p: int) -> tuple[str, int]:
        return (self.addresses[a], self.ports[p])

    @property
    def last(self) -> tuple[int, int]:
        """The endpoint no other test makes mappings towards (A2, P2 with two of each): the
        burst's, so its new mappings never compete with the others' for a small port set."""
        return (len(self.addresses) - 1, len(self.ports) - 1)

    def request(self, rid: str, *words: str) -> bytes:
        return " ".join((MAGIC, self.secret, rid, *words)).encode() + b"\n"


@dataclass(frozen=True)
class Wait:
    """How long to wait for a reply: ``reply`` for one that should come (then the request
    is sent again, up to TRIES times), ``extra`` for one that may not (filtering)."""

    reply: float = 0.5
    extra: float = 0.5


def _rid() -> str:
    return secrets.token_hex(4)


def _parse(data: bytes) -> tuple[str, str, str, str] | None:
    """("id", "seen", "ip:port", "via-index") or ("id", "back", word, rest)."""
    parts = data.decode("ascii", "replace").split()
    if len(parts) >= 4 and parts[0] == MAGIC:
        if parts[2] == "seen" and len(parts) >= 5:
            return parts[1], "seen", parts[3], parts[5] if len(parts) >= 6 else ""
        if parts[2] == "back":
            return parts[1], "back", parts[3], " ".join(parts[4:])
    return None


def _port(endpoint: str) -> int:
    return int(endpoint.rsplit(":", 1)[1])


# ------------------------------------------------------------------ UDP


def _udp_ask(sock: socket.socket, dest: tuple[str, int], payload: bytes, rid: str, want: set[str],
             wait: Wait, extra: frozenset[str] | set[str] = frozenset()) -> dict[str, str]:
    """Send ``payload`` to ``dest`` and collect replies to ``rid`` by the index of the
    endpoint that sent them: resend until every ``want`` came (TRIES times), then wait
    ``wait.extra`` more for the ``extra`` ones."""
    got: dict[str, str] = {}
    for _ in range(TRIES):
        sock.sendto(payload, dest)
        _collect(sock, rid, got, want, wait.reply)
        if want <= got.keys():
            break
    if want <= got.keys() and extra and not extra <= got.keys():
        _collect(sock, rid, got, want | extra, wait.extra)
    return got


def _collect(sock: socket.socket, rid: str, got: dict[str, str], until: set[str], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not until <= got.keys():
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([sock], [], [], left)[0]:
            return
        try:
            data = sock.recv(2048)
        except OSError:  # an ICMP error for an earlier datagram
            continue
        msg = _parse(data)
        if msg and msg[0] == rid and msg[1] == "seen":
            got.setdefault(msg[3], msg[2])


def _udp() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", 0))
    return s


@dataclass(frozen=True)
class MappingSeen:
    local_port: int
    base: str | None  # public endpoint towards (A1, P1)
    other_address: str | None  # towards (A2, P1)
    other_port: str | None  # towards (A1, P2)
    payloads: tuple[bytes | None, ...] = ()  # the request sent towards each, for finding it in a capture

    def trail(self) -> Trail:
        return Trail(self.local_port, self.payloads, (self.base, self.other_address, self.other_port))


MAPPING_ORDER = ((0, 0), (1, 0), (0, 1))  # (address, port) indexes: (A1,P1), (A2,P1), (A1,P2)


def _worth_asking(t: Target, a: int, p: int, seen: list[str | None]) -> bool:
    """Whether the mapping test asks destination (a, p): the responder has it, and the
    first destination answered (else the others would only wait too)."""
    return a < len(t.addresses) and p < len(t.ports) and not (seen and seen[0] is None)


def udp_mapping(t: Target, wait: Wait, keep: Callable[[socket.socket, str | None], None] | None = None) -> MappingSeen:
    """One socket towards (A1,P1), (A2,P1), (A1,P2) in that order (RFC 5780 §4.3).
    ``keep`` gets the socket and its first public endpoint (the hairpin test reuses it)."""
    s = _udp()
    try:
        seen: list[str | None] = []
        payloads: list[bytes | None] = []
        for a, p in MAPPING_ORDER:
            if not _worth_asking(t, a, p, seen):
                seen.append(None)
                payloads.append(None)
                continue
            rid = _rid()
            payloads.append(t.request(rid))
            got = _udp_ask(s, t.endpoint(a, p), t.request(rid), rid, {str(t.index(a, p))}, wait)
            seen.append(got.get(str(t.index(a, p))))
        local = s.getsockname()[1]
        if keep is not None:
            keep(s, seen[0])
            s = None  # type: ignore[assignment]
        return MappingSeen(local, seen[0], seen[1], seen[2], tuple(payloads))
    finally:
        if s is not None:
            s.close()


@dataclass(frozen=True)
class FilteringSeen:
    confirmed: bool
    from_other_address: bool | None  # None: the responder has no other address
    from_other_port: bool | None


def udp_filtering(t: Target, wait: Wait) -> FilteringSeen:
    """Two fresh mappings towards (A1, P1): one asks for replies from (A1,P1) and from
    (A2,P2), the other from (A1,P1) and from (A1,P2) (RFC 5780 §4.4, tests II and III)."""

    def one(other: int | None) -> tuple[bool, bool | None]:
        if other is None:
            return True, None
        s = _udp()
        try:
            rid, base = _rid(), str(t.index(0, 0))
            got = _udp_ask(s, t.endpoint(0, 0), t.request(rid, f"from={base}", f"from={other}"), rid,
                           {base}, wait, extra={str(other)})
            return base in got, str(other) in got
        finally:
            s.close()

    two_addr = len(t.addresses) > 1
    other_addr = t.index(1, len(t.ports) - 1) if two_addr else None
    other_port = t.index(0, 1) if len(t.ports) > 1 else None
    (ok_a, via_a), (ok_p, via_p) = run_all([lambda: one(other_addr), lambda: one(other_port)])
    return FilteringSeen(ok_a and ok_p and (other_addr is not None or other_port is not None), via_a, via_p)


def _burst_over(answered: list, misses: int) -> bool:
    """Stop a burst: nothing answered yet (the path carries none of it), or two misses in a
    row (the NAT's ports, or the path, ran out): each further miss costs a full wait."""
    return not answered or misses >= 2


def udp_burst(t: Target, wait: Wait, n: int = BURST) -> list[tuple[int, int]]:
    """``n`` new mappings towards ``t.last``, one after the other: (local port, public port)
    of each that got an answer."""
    socks = [_udp() for _ in range(n)]
    out: list[tuple[int, int]] = []
    dest, via = t.endpoint(*t.last), str(t.index(*t.last))
    misses = 0
    try:
        for s in socks:
            rid = _rid()
            got = _udp_ask(s, dest, t.request(rid), rid, {via}, wait)
            if via in got:
                out.append((s.getsockname()[1], _port(got[via])))
                misses = 0
            else:
                misses += 1
                if _burst_over(out, misses):
                    break
    finally:
        for s in socks:
            s.close()
    return out


def udp_hairpin(sock: socket.socket, public: str | None, wait: Wait) -> bool | Undecided:
    """A second socket sends to ``public`` (the first socket's mapping): did it arrive?"""
    if public is None:
        return Undecided(classify.NO_ANSWER)
    ip, port = public.rsplit(":", 1)
    token = f"{MAGIC} hairpin {_rid()}".encode()
    s2 = _udp()
    try:
        deadline = time.monotonic() + wait.reply + wait.extra
        for _ in range(TRIES):
            try:
                s2.sendto(token, (ip, int(port)))
            except OSError as exc:
                return Undecided(f"cannot send to the public mapping {public}: {exc.strerror}")
            while (left := min(deadline, time.monotonic() + wait.reply / TRIES + 0.01) - time.monotonic()) > 0:
                if not select.select([sock], [], [], left)[0]:
                    break
                try:
                    if sock.recv(2048) == token:
                        return True
                except OSError:
                    continue
        return False
    finally:
        s2.close()


@dataclass(frozen=True)
class Held:
    """One mapping the binding search made and leaves idle: ``alive`` asks the responder
    to send on it (from elsewhere, so it stays idle) and says whether that came in (None:
    the responder could not try); ``close`` lets it go."""

    alive: Callable[[], bool | None]
    close: Callable[[], None]


Round = Callable[[list[float]], tuple[float | None, float | None, float]]


def binding_search(round_: Round, budget: float) -> Binding | Undecided:
    """A binding lifetime by a bounded search, for either protocol: ``round_`` makes one
    mapping per idle time at once and tests each once, after its idle time, returning
    (longest idle survived, shortest idle that killed the mapping, seconds spent). A first
    round on a growing ladder (1, 2, 4, ... s, up to ``budget``) bounds the lifetime; a
    second one with four idle times between the two bounds narrows it, if the budget allows."""
    ladder = []
    step = 1.0
    while step <= budget:
        ladder.append(step)
        step *= 2
    if not ladder:
        return Undecided(f"budget {budget:g} s is less than a second")
    lo, hi, spent = round_(ladder)
    if lo is None:
        return Undecided(classify.NO_ANSWER)
    if hi is not None and hi - lo > 1 and spent + hi <= budget:
        inner = [lo + (hi - lo) * k / 5 for k in range(1, 5)]
        lo2, hi2, _ = round_(inner)
        if lo2 is not None:
            lo = max(lo, lo2)
            hi = min(hi, hi2) if hi2 is not None else hi
    return Binding(round(lo, 1), None if hi is None else round(hi, 1))


def binding_round(hold: Callable[[], Held | None], idles: list[float],
                  sleep: Callable[[float], None] = time.sleep) -> tuple[float | None, float | None, float]:
    """One round of ``binding_search``: ``hold`` makes each mapping (None: no answer),
    all at once, and each is tested after its idle time, shortest first; the first that
    is gone ends the round."""
    start = time.monotonic()
    held: list[tuple[Held | None, float]] = []
    try:
        for _ in idles:
            held.append((hold(), time.monotonic()))
        if not any(h for h, _ in held):
            return None, None, time.monotonic() - start
        alive: float = 0.0
        for (h, at), idle in zip(held, idles):
            if h is None:
                continue
            left = at + idle - time.monotonic()
            if left > 0:
                sleep(left)
            came = h.alive()
            if came is False:
                return alive, idle, time.monotonic() - start
            if came:
                alive = idle
        return alive, None, time.monotonic() - start
    finally:
        for h, _ in held:
            if h is not None:
                h.close()


def _udp_hold(t: Target, wait: Wait) -> Held | None:
    """A UDP mapping towards (A1, P1); the responder is asked (from another socket) to send
    to its public port."""
    s = _udp()
    rid = _rid()
    public = _udp_ask(s, t.endpoint(0, 0), t.request(rid), rid, {"0"}, wait).get("0")
    if public is None:
        s.close()
        return None

    def alive() -> bool:
        control = _udp()
        try:
            rid = _rid()
            control.sendto(t.request(rid, "from=0", f"to={_port(public)}"), t.endpoint(0, 0))
            back: dict[str, str] = {}
            _collect(s, rid, back, {"0"}, wait.reply + wait.extra)
            return "0" in back
        finally:
            control.close()

    return Held(alive, s.close)


def udp_binding(t: Target, wait: Wait, budget: float, sleep: Callable[[float], None] = time.sleep) -> Binding | Undecided:
    """UDP binding lifetime (binding_search): the idle mapping is gone when the responder's
    datagram to its public port no longer comes in."""
    return binding_search(lambda idles: binding_round(lambda: _udp_hold(t, wait), idles, sleep), budget)


# ------------------------------------------------------------------ TCP


def _tcp(port: int = 0) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind(("0.0.0.0", port))
    return s


def _lines(s: socket.socket, n: int, seconds: float) -> list[tuple[str, str, str, str]]:
    """Up to ``n`` reply lines from a TCP connection within ``seconds``."""
    buf = b""
    out: list[tuple[str, str, str, str]] = []
    deadline = time.monotonic() + seconds
    while len(out) < n:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([s], [], [], left)[0]:
            break
        try:
            chunk = s.recv(2048)
        except OSError:
            break
        if not chunk:
            break
        buf += chunk
        while b"\n" in buf and len(out) < n:
            line, buf = buf.split(b"\n", 1)
            msg = _parse(line)
            if msg:
                out.append(msg)
    return out


def _tcp_ask(s: socket.socket, dest: tuple[str, int], t: Target, wait: Wait, *words: str,
             rid: str | None = None) -> str | None:
    """Connect ``s`` to ``dest``, send a request, return the public endpoint the responder saw."""
    s.settimeout(wait.reply * TRIES)
    rid = rid or _rid()
    try:
        s.connect(dest)
        s.sendall(t.request(rid, *words))
    except OSError:
        return None
    for msg in _lines(s, 1, wait.reply * TRIES):
        if msg[0] == rid and msg[1] == "seen":
            return msg[2]
    return None


def tcp_mapping(t: Target, wait: Wait, hold: list[socket.socket] | None = None) -> MappingSeen:
    """Three connections from one local port to (A1,P1), (A2,P1), (A1,P2), held open at once;
    past the test too when ``hold`` is given (the caller closes them): a NAT may give a
    closing connection's public port to a new one (Linux does, for a port in TIME_WAIT),
    and then cannot keep it towards the next destination the closing one still holds."""
    first = _tcp()
    local = first.getsockname()[1]
    socks = [first]
    try:
        seen: list[str | None] = []
        payloads: list[bytes | None] = []
        for a, p in MAPPING_ORDER:
            if not _worth_asking(t, a, p, seen):
                seen.append(None)
                payloads.append(None)
                continue
            s = socks[-1] if not seen else _tcp(local)
            if s is not socks[-1]:
                socks.append(s)
            rid = _rid()
            payloads.append(t.request(rid))
            seen.append(_tcp_ask(s, t.endpoint(a, p), t, wait, rid=rid))
        return MappingSeen(local, seen[0], seen[1], seen[2], tuple(payloads))
    finally:
        if hold is not None:
            hold.extend(socks)
        else:
            for s in socks:
                s.close()


def _tcp_back(t: Target, wait: Wait, back: int) -> tuple[bool, bool]:
    """A connection to (A1,P1) with a listener on its own local port; the responder then
    connects from endpoint ``back``'s address to the public endpoint it saw. Returns
    (the connection worked, the listener accepted the responder's connection)."""
    c = _tcp()
    port = c.getsockname()[1]
    listener = _tcp(port)
    listener.listen(4)
    try:
        public = _tcp_ask(c, t.endpoint(0, 0), t, wait, f"back={back}")
        if public is None:
            return False, False
        if select.select([listener], [], [], wait.extra + wait.reply * TRIES)[0]:
            conn, _ = listener.accept()
            conn.close()
            return True, True
        return True, False
    finally:
        listener.close()
        c.close()


def tcp_filtering(t: Target, wait: Wait) -> FilteringSeen:
    """RFC 5382 §4.3: may the responder's other address (or its same address from another
    port) open a connection to the mapping a connection to (A1, P1) made?"""
    other_addr = t.index(1, 0) if len(t.addresses) > 1 else None
    # the responder connects from its address with an ephemeral port: another port than P1
    results = run_all([(lambda: _tcp_back(t, wait, other_addr)) if other_addr is not None else (lambda: (True, None)),
                       lambda: _tcp_back(t, wait, t.index(0, 0))])
    (ok_a, via_a), (ok_p, via_p) = results
    return FilteringSeen(bool(ok_a and ok_p), via_a, via_p)


def tcp_burst(t: Target, wait: Wait, n: int = BURST) -> list[tuple[int, int]]:
    """``n`` connections, one after the other, held open: (local port, public port) of each that got an answer."""
    out: list[tuple[int, int]] = []
    socks: list[socket.socket] = []
    misses = 0
    try:
        for _ in range(n):
            s = _tcp()
            socks.append(s)
            public = _tcp_ask(s, t.endpoint(*t.last), t, wait)
            if public is not None:
                out.append((s.getsockname()[1], _port(public)))
                misses = 0
            else:
                misses += 1
                if _burst_over(out, misses):
                    break
    finally:
        for s in socks:
            s.close()
    return out


def tcp_hairpin(t: Target, wait: Wait) -> bool | Undecided:
    """A connection to (A1,P1) with a listener on its local port; a second connection to
    the public endpoint the responder saw: does the listener get it?"""
    c = _tcp()
    listener = _tcp(c.getsockname()[1])
    listener.listen(4)
    c2 = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        public = _tcp_ask(c, t.endpoint(0, 0), t, wait)
        if public is None:
            return Undecided(classify.NO_ANSWER)
        ip, port = public.rsplit(":", 1)
        c2.setblocking(False)
        c2.connect_ex((ip, int(port)))
        return bool(select.select([listener], [], [], wait.reply + wait.extra)[0])
    finally:
        for s in (c2, listener, c):
            s.close()


def _tcp_hold(t: Target, wait: Wait) -> Held | None:
    """A TCP connection to (A1, P1) the responder holds open (``hold=K``); another
    connection asks it (``poke=K``) to write on the held one: server to client, so it
    comes in only while the NATs still map the idle connection."""
    s = _tcp()
    key = str(secrets.randbelow(10**12))
    if _tcp_ask(s, t.endpoint(0, 0), t, wait, f"hold={key}") is None:
        s.close()
        return None

    def alive() -> bool | None:
        control = _tcp()
        control.settimeout(wait.reply * TRIES)
        try:
            rid = _rid()
            control.connect(t.endpoint(0, 0))
            control.sendall(t.request(rid, f"poke={key}"))
            said = [m for m in _lines(control, 2, wait.reply * TRIES) if m[0] == rid and m[1] == "back"]
            if not said or said[0][2:] == ("failed", "unknown"):
                return None  # the responder did not try
            # "ok": written; "failed": a reset already came back for it
            return any(m[0] == rid and m[1] == "seen" for m in _lines(s, 1, wait.reply + wait.extra))
        except OSError:
            return None
        finally:
            control.close()

    return Held(alive, s.close)


def tcp_binding(t: Target, wait: Wait, budget: float, sleep: Callable[[float], None] = time.sleep) -> Binding | Undecided:
    """TCP established-idle binding lifetime (binding_search): the idle connection's
    mapping is gone when the responder's write on it no longer comes in."""
    return binding_search(lambda idles: binding_round(lambda: _tcp_hold(t, wait), idles, sleep), budget)


# ------------------------------------------------------------------ the profile


def _layers_pending() -> Undecided:
    return Undecided("no router capture and no forward trace")


def _mapping(t: Target, trials: list[MappingSeen]) -> Dependence | Undecided:
    return classify.combine([classify.mapping(m.base, m.other_address, m.other_port, len(t.addresses), len(t.ports))
                             for m in trials])


def udp_profile(t: Target, wait: Wait, lifetime_budget: float | None = None) -> ProtoProfile:
    kept: list[tuple[socket.socket, str | None]] = []

    def mappings() -> list[MappingSeen]:
        first = udp_mapping(t, wait, keep=lambda s, pub: kept.append((s, pub)))
        if first.base is None:
            return [first]  # no answer: more trials would only wait
        return [first, *(udp_mapping(t, wait) for _ in range(MAPPING_TRIALS - 1))]

    jobs = [mappings, lambda: udp_filtering(t, wait), lambda: udp_burst(t, wait)]
    if lifetime_budget:
        jobs.append(lambda: udp_binding(t, wait, lifetime_budget))
    results = run_all(jobs)
    ms, f, burst = results[0], results[1], results[2]
    try:
        sock, public = kept[0]
        hairpin = udp_hairpin(sock, public, wait)
    finally:
        for sock, _ in kept:
            sock.close()
    alloc, pset = classify.allocation(burst)
    binding = results[3] if lifetime_budget else NOT_MEASURED
    return ProtoProfile(
        mapping=_mapping(t, ms),
        filtering=classify.filtering(f.confirmed, f.from_other_address, f.from_other_port),
        port_allocation=alloc, port_set=pset, hairpin=hairpin, binding=binding,
        layers=_layers_pending(), public=ms[0].base, trail=ms[0].trail(),
    )


def tcp_profile(t: Target, wait: Wait, lifetime_budget: float | None = None) -> ProtoProfile:
    def mappings() -> list[MappingSeen]:
        held: list[socket.socket] = []
        try:
            trials = [tcp_mapping(t, wait, held)]
            if trials[0].base is not None:  # no answer: more trials would only wait
                trials += [tcp_mapping(t, wait, held) for _ in range(MAPPING_TRIALS - 1)]
            return trials
        finally:
            for s in held:
                s.close()

    jobs = [mappings, lambda: tcp_filtering(t, wait), lambda: tcp_burst(t, wait), lambda: tcp_hairpin(t, wait)]
    if lifetime_budget:
        jobs.append(lambda: tcp_binding(t, wait, lifetime_budget))
    results = run_all(jobs)
    ms, f, burst, hairpin = results[:4]
    alloc, pset = classify.allocation(burst)
    return ProtoProfile(
        mapping=_mapping(t, ms),
        filtering=classify.filtering(f.confirmed, f.from_other_address, f.from_other_port),
        port_allocation=alloc, port_set=pset, hairpin=hairpin,
        binding=results[4] if lifetime_budget else NOT_MEASURED,
        layers=_layers_pending(), public=ms[0].base, trail=ms[0].trail(),
    )


def profile(t: Target, wait: Wait = Wait(), lifetime_budget: float | None = None) -> dict[Proto, ProtoProfile]:
    """Both protocols at once; with ``lifetime_budget`` each also searches its binding
    lifetime (UDP idle, TCP established-idle) within that many seconds, concurrently."""
    udp, tcp = run_all([lambda: udp_profile(t, wait, lifetime_budget), lambda: tcp_profile(t, wait, lifetime_budget)])
    return {Proto.UDP: udp, Proto.TCP: tcp}
