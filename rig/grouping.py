"""What the table view prints of a run's exchanges, without a record for each.

The table shows one row per story (protocol, server, outcome, explanation), the ids of
its exchanges, how many client endpoints it spans, and one line per change the path
made. A large run's exchanges are mostly the fast paths' batches (``ExchangeList``):
here a batch gives its stories and endpoints as columns (``TableCodes``) and its changes
per exchange (``changes_each``), and a record is built only for what is printed, the
first exchange of each story. Measured on the 1M-packet bench pair (218k exchanges):
a light record for every exchange took 0.8-1.2 s of the table's ~1 s.

The rules are the ones a list of records gives (``Stories`` of a tuple of records has
no batch at all): ``tests/test_render.py`` compares the two on the same run.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Iterator, NamedTuple, Sequence

import numpy as np

from rig.analysis.keys import signature_groups
from rig.analysis.summary import addr_text, endpoints
from rig.outcome import Outcome
from rig.verdict import Change, EndpointCols, ExchangeList, ExchangeView, batch_id
from rig.unique import unique

MAX_CHANGE_VALUES = 8  # distinct values of one field and direction listed one by one
_CHUNK = 4096


def host_of(endpoint: str | None, missing: str) -> str:
    """The host an endpoint is grouped by: an IPv4 address without its port; an IPv6
    endpoint or a bare address as it is."""
    e = endpoint or missing
    return e.rsplit(":", 1)[0] if endpoint and endpoint.count(":") == 1 else e


def hosts_text(n_endpoints: int, n_hosts: int, one: str | None, missing: str) -> str:
    """One endpoint, or the host with a count of ports when a group spans several (``one``:
    any of the endpoints)."""
    if n_endpoints == 1:
        return one or missing
    if n_hosts == 1:
        return f"{host_of(one, missing)}, {n_endpoints} ports"
    return f"{n_endpoints} endpoints"


def hosts_of_texts(texts: Sequence[str | None], missing: str) -> str:
    uniq = list(dict.fromkeys(texts))
    return hosts_text(len(uniq), len({host_of(e, missing) for e in uniq}), uniq[0], missing)


def id_order(exchange_id: str) -> tuple[str, int]:
    proto, _, n = exchange_id.rpartition("-")
    return (proto, int(n)) if n.isdigit() else (exchange_id, 0)


class _Endpoints:
    """A batch's endpoints (``EndpointCols``) as codes: equal codes, equal texts; and the
    codes of their hosts (``host_of``), from one look at each distinct address."""

    def __init__(self, cols: EndpointCols):
        u, inv = np.unique(cols.addr, return_inverse=True)
        texts = [addr_text(cols.addrs[x]) for x in u.tolist()]
        uniq_text = {t: i for i, t in enumerate(dict.fromkeys(texts))}
        acode = np.array([uniq_text[t] for t in texts], np.int64)[inv.ravel()]
        self.by_code = list(uniq_text)  # text code -> address text
        self.port = cols.port
        if cols.port is None:
            self.code = acode
            host_is_addr = np.array([host_of(t, "") == t for t in self.by_code], bool)
        else:
            self.code = acode * 65536 + cols.port.astype(np.int64)
            host_is_addr = np.array([host_of(endpoints([t], [0])[0], "") == t for t in self.by_code], bool)
        self.host = np.where(host_is_addr[acode], -1 - acode, self.code)

    def text(self, code: int) -> str:
        if self.port is None:
            return self.by_code[code]
        return endpoints([self.by_code[code // 65536]], [code % 65536])[0]


class Story(NamedTuple):
    protocol: str
    server: str
    outcome: str
    explanation: str


@dataclass
class Group:
    """One row of the table: the exchanges that tell one story, in verdict order."""

    stories: "Stories"
    positions: np.ndarray
    story: Story  # what its exchanges share: protocol, server, outcome, explanation

    @cached_property
    def first(self) -> Any:
        return self.stories.record_at(int(self.positions[0]))

    @property
    def size(self) -> int:
        return len(self.positions)

    @property
    def exchanges(self) -> tuple:
        return tuple(self.stories.record_at(p) for p in self.positions.tolist())

    @property
    def ids(self) -> str:
        at, p = self.stories.id_at, self.positions
        if len(p) == 1:
            return at(int(p[0]))
        if len(p) <= 3:
            return ", ".join(at(x) for x in p.tolist())
        return f"{at(int(p[0]))} … {at(int(p[-1]))}\n({len(p)} exchanges)"

    @property
    def client(self) -> str:
        return self.stories.hosts(self.positions, "client", "-")

    @property
    def seen_at_server_as(self) -> str:
        return self.stories.hosts(self.positions, "seen_at_server_as", "not seen at the server")


class Stories:
    """A run's exchanges (an ``ExchangeList`` or any sequence of records) as the table
    view reads them: each exchange's story, its id, its endpoints and its changes."""

    def __init__(self, exchanges: Sequence[Any]):
        if isinstance(exchanges, ExchangeList):
            self.eager, self.batches = exchanges.eager, exchanges.batches
            self.src, self.loc, self.num = exchanges.src, exchanges.loc, exchanges.num
        else:
            self.eager, self.batches = list(exchanges), []
            self.src = np.full(len(self.eager), -1, np.int64)
            self.loc = np.arange(len(self.eager), dtype=np.int64)
            self.num = np.zeros(len(self.eager), np.int64)
        self.n = len(self.src)
        self.story = np.zeros(self.n, np.int64)
        keys: dict[Story, int] = {}
        eager_at = np.flatnonzero(self.src < 0)
        for p, j in zip(eager_at.tolist(), self.loc[eager_at].tolist()):
            e = self.eager[j]
            self.story[p] = keys.setdefault(Story(e.protocol, e.server, e.outcome, e.explanation), len(keys))
        self._keys = keys
        # per batch: its positions (ascending), their endpoints as codes, and which of its
        # distinct story codes each has (``_coded``; their words are read in ``groups``)
        self._pos: dict[int, np.ndarray] = {}
        self._ends: dict[tuple[int, str], _Endpoints] = {}
        self._coded: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        servers: dict[str, int] = {}
        for b, batch in enumerate(self.batches):
            pos = np.flatnonzero(self.src == b)
            if not len(pos):
                continue
            codes = batch.table_codes(self.loc[pos])
            first, inv = signature_groups([codes.story[:, i] for i in range(codes.story.shape[1])])
            self._coded[b] = (first, inv)
            self._pos[b] = pos
            self._ends[(b, "client")] = _Endpoints(codes.client)
            self._ends[(b, "seen_at_server_as")] = _Endpoints(codes.seen)
            n_servers = len(unique(codes.server))
            servers[batch.protocol] = max(servers.get(batch.protocol, 0), n_servers)
        # the stories are at least this many: every problem story is an eager record's (a
        # batch's exchanges are delivered), and a batch's distinct servers each tell one
        # (their stories may be an eager delivered record's too)
        problems = {k for k in keys if not Outcome(k.outcome).clean}
        self.at_least = len(problems) + sum(servers.values())

    def _tell(self) -> list[Story]:
        """Number the batches' stories by their words (one record of each distinct story
        code says them); every story, by number."""
        keys = dict(self._keys)
        for b, (first, inv) in self._coded.items():
            batch, pos = self.batches[b], self._pos[b]
            firsts = batch.build(self.loc[pos][first], self.num[pos][first].tolist(), light=True, make=ExchangeView)
            ids = np.array([keys.setdefault(Story(v.protocol, v.server, v.outcome, v.explanation), len(keys))
                            for v in firsts], np.int64)
            self.story[pos] = ids[inv]
        return list(keys)

    def groups(self) -> list[Group]:
        """The stories in the order each first appears, each with its exchanges."""
        return self._grouped(np.arange(self.n), self._tell())

    def problem_groups(self) -> list[Group]:
        """``groups()`` of the stories that are not clean, without reading any batch's
        (a batch's exchanges are delivered): what the table shows past ``at_least``."""
        keys = list(self._keys)
        clean = np.array([Outcome(k.outcome).clean for k in keys], bool)
        at = np.flatnonzero(self.src < 0)
        return self._grouped(at[~clean[self.story[at]]], keys)

    def _grouped(self, positions: np.ndarray, keys: list[Story]) -> list[Group]:
        """The groups of the exchanges at ``positions`` (ascending) by story (``keys``:
        each story by number), in the order each story first appears."""
        if not len(positions):
            return []
        story = self.story[positions]
        order = np.argsort(story, kind="stable")
        cut = np.flatnonzero(np.diff(story[order])) + 1
        parts = np.split(positions[order], cut)
        firsts = order[np.r_[0, cut]]
        parts = [parts[i] for i in np.argsort(firsts, kind="stable").tolist()]
        return [Group(self, p, keys[k]) for p, k in zip(parts, story[np.sort(firsts)].tolist())]

    def record_at(self, p: int) -> Any:
        """The record at position ``p`` (a light one where a batch holds it)."""
        b = int(self.src[p])
        if b < 0:
            return self.eager[int(self.loc[p])]
        return self.batches[b].build(self.loc[p : p + 1], [int(self.num[p])], light=True, make=ExchangeView)[0]

    def id_at(self, p: int) -> str:
        b = int(self.src[p])
        if b < 0:
            return self.eager[int(self.loc[p])].id
        return batch_id(self.batches[b].protocol, int(self.num[p]))

    def hosts(self, positions: np.ndarray, which: str, missing: str) -> str:
        """``hosts_text`` of the endpoints (``which``: "client" or "seen_at_server_as") of
        the exchanges at ``positions``."""
        src = self.src[positions]
        sources = unique(src).tolist()
        if len(sources) == 1 and sources[0] >= 0:  # one batch: count the codes
            b = sources[0]
            ends = self._ends[(b, which)]
            at = np.searchsorted(self._pos[b], positions)
            codes = ends.code[at]
            n = len(unique(codes))
            n_hosts = 1 if n == 1 else len(unique(ends.host[at]))
            return hosts_text(n, n_hosts, ends.text(int(codes[0])), missing)
        texts: list[str | None] = []
        for b in sources:
            mine = positions[src == b]
            if b < 0:
                texts += [getattr(self.eager[j], which) for j in self.loc[mine].tolist()]
            else:
                ends = self._ends[(b, which)]
                texts += [ends.text(c) for c in unique(ends.code[np.searchsorted(self._pos[b], mine)]).tolist()]
        return hosts_of_texts(texts, missing)

    def changes(self) -> Iterator[tuple[np.ndarray, tuple[Change, ...]]]:
        """(positions, their changes) of the exchanges that have any: positions ascending
        within a group, each position in one group. A batch's exchanges with one
        ``change_keys`` key are one group, their changes read once (``changes_each`` of
        the first): at 1M packets most exchanges share a few signatures, and a record's
        changes read one by one cost ~0.3 s."""
        for lo in range(0, self.n, _CHUNK):
            hi = min(lo + _CHUNK, self.n)
            src, loc = self.src[lo:hi], self.loc[lo:hi]
            for b in unique(src).tolist():
                pos = np.flatnonzero(src == b)
                if b < 0:
                    for p, j in zip(pos.tolist(), loc[pos].tolist()):
                        if self.eager[j].changes:
                            yield np.array([lo + p]), self.eager[j].changes
                    continue
                batch = self.batches[b]
                _, first, inv = np.unique(batch.change_keys(loc[pos]), return_index=True, return_inverse=True)
                got = batch.changes_each(loc[pos[first]])
                inv = inv.ravel()
                members = np.split(pos[np.argsort(inv, kind="stable")], np.cumsum(np.bincount(inv))[:-1])
                for where, ch in zip(members, got):
                    if ch:
                        yield lo + where, ch


def change_lines(stories: Stories) -> list[tuple[str, list[str], int]]:
    """The change lines to print, in the order first met: (text, the first ids, how many
    exchanges). One per distinct change, except where one field changed in more than
    MAX_CHANGE_VALUES ways in one direction (pf's random IP IDs: a value per packet),
    which is one line for that field and direction; --json keeps every value.

    A large run's records share their Change objects (one per signature), but a value
    per packet is a Change per record: each object is visited once, and a field's texts
    are written only until it has more than MAX_CHANGE_VALUES (measured on the pf bench
    pair: a text and an id list per record took 1.6 s of the table's 6)."""
    objs: dict[int, tuple[Change, tuple[int, int], list]] = {}  # id -> (change, first met, positions)
    keep = []  # the changes made per read (a batch's per-packet values) live until the end
    for where, chs in stories.changes():
        keep.append(chs)
        pos = int(where[0])
        for j, ch in enumerate(chs):
            got = objs.get(id(ch))
            if got is None:
                objs[id(ch)] = (ch, (pos, j), [where])
            else:
                if (pos, j) < got[1]:
                    objs[id(ch)] = got = (ch, (pos, j), got[2])
                got[2].append(where)
    by_kind: dict[tuple[str, str], list[tuple[Change, tuple[int, int], list]]] = {}
    for item in objs.values():
        by_kind.setdefault((item[0].field, item[0].direction), []).append(item)
    out: list[tuple[tuple[int, int], str, list[str], int]] = []
    id_at = stories.id_at
    for (field, direction), items in by_kind.items():
        texts: dict[str, tuple[list[tuple[int, int]], list]] = {}  # text -> (where first met, positions)
        for ch, first, parts in items:
            text = change_text(ch)
            had = texts.get(text)
            if had is None:
                texts[text] = ([first], list(parts))
            else:
                had[0].append(first)
                had[1].extend(parts)
            if len(texts) > MAX_CHANGE_VALUES:
                break
        if len(texts) <= MAX_CHANGE_VALUES:
            for text, (firsts, parts) in texts.items():
                at = unique(np.concatenate(parts))
                out.append((min(firsts), text, [id_at(p) for p in at[:6].tolist()], len(at)))
        else:
            first = min(f for _, f, _ in items)
            every = unique(np.concatenate([w for _, _, parts in items for w in parts])).tolist()
            ids = heapq.nsmallest(6, (id_at(p) for p in every), key=id_order)
            arrow = "->" if direction == "out" else "<-"
            n_values = len({_value_key(ch) for ch, _, _ in items})
            out.append((first, f"{field} {arrow} {n_values} different rewrites (a value per exchange or packet; "
                               "--json lists each)", ids, len(every)))
    out.sort(key=lambda line: line[0])
    return [(text, ids, n) for _, text, ids, n in out]


def _value_key(ch: Change) -> object:
    """What tells two changes of one field and direction apart in ``change_text``, cheaper
    to make than the text (the values and the note; the text where a value is a list)."""
    key = (ch.client, ch.server, ch.note)
    try:
        hash(key)
    except TypeError:
        return change_text(ch)
    return key


def change_text(ch: Change) -> str:
    arrow = "->" if ch.direction == "out" else "<-"
    if ch.direction == "out":
        a, b = ch.client, ch.server
    else:
        a, b = ch.server, ch.client
    text = f"{ch.field} {arrow} {_v(a)} => {_v(b)}"
    return f"{text} ({ch.note})" if ch.note else text


def _v(x) -> str:
    if isinstance(x, list):
        return "[" + ", ".join(map(str, x)) + "]"
    return "absent" if x is None else str(x)
