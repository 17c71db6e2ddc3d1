"""The bulk of a large run: TCP connections delivered both ways, decided in one pass.

``tcp.py`` decides each connection with a close look at its packets; at a million
packets that look costs too much for the many connections where nothing went wrong. Here
the counts and sequence ranges of every matched connection are compared as arrays, and
only those that are plainly delivered get their record built from column lists (with
the same changes, evidence and wording as the close look). Everything else is left to
``tcp.py``.
"""

from __future__ import annotations

import numpy as np

from rig.analysis.keys import take_fields
from rig.analysis.match import copy_that_arrived
from rig.analysis.changes import (DATA_FIELDS, changes_by_signature, data_changes, isn_change, signature_keys,
                                  tcp_syn_changes)
from rig.analysis.context import Ctx, with_copies_each
from rig.analysis.prose import DELIVERED_NOTES, copy_note, tcp_delivered_words
from rig.analysis.sides import Part
from rig.analysis.summary import RowTexts, tcp_text
from rig.outcome import Outcome
from rig.verdict import EndpointCols, Evidence, Exchange, TableCodes
from rig.unique import isin, unique

_CHANGE_FIELDS = ("ttl", "ipver", "ip_id", "tos", "frag", "mss", "wscale", "sackok", "has_ts")


def acked(cc, sc, ci, si) -> tuple[np.ndarray, np.ndarray]:
    """How far each receiver acknowledged (relative, +1), for client connections ``ci``
    matched to server ``si``: the server of the client's data, the client of the
    server's. A receiver's ACK proves receipt wherever it was captured: at its own point,
    or arriving at the other (the client capture may stop before the client's last ACK
    leaves; the server's, before the server's)."""
    return np.maximum(sc.ack_rev[si], cc.ack_rev[ci]), np.maximum(cc.ack_fwd[ci], sc.ack_fwd[si])


def delivered_mask(ctx: Ctx, ci: np.ndarray, si: np.ndarray) -> np.ndarray:
    """Which client connections (``ci``, matched to server ``si``, -1 if none) are plainly delivered."""
    cc, sc = ctx.client.tcp, ctx.server.tcp
    if ctx.extra or len(ci) == 0 or len(sc) == 0:
        return np.zeros(len(ci), bool)
    ok = si >= 0
    s = np.maximum(si, 0)
    ok &= (sc.syn[s] >= 0) & (sc.synack[s] >= 0) & (cc.synack[ci] >= 0)
    ok &= cc.n_rst_rev[ci] <= sc.n_rst_rev[s]
    s_end, c_end = sc.data_end_rev[s], cc.data_end_fwd[ci]
    ok &= cc.data_end_rev[ci] <= np.maximum(s_end, 1)
    got_s, got_c = acked(cc, sc, ci, s)
    ok &= (c_end <= 1) | (got_s >= c_end)
    ok &= (s_end <= 1) | (got_c >= s_end)
    return ok


class _Cols(RowTexts):
    """TCP rows, by default with the columns their summaries read."""

    def __init__(self, side, rows: np.ndarray,
                 fields=("ttl", "mss", "sport", "dport", "seq", "ack", "flags", "plen", "frame")):
        super().__init__(side, rows, fields)

    def summaries(self, note: str) -> list[str]:
        """The same words as ``summary.summarize`` for each row, with ``note`` appended."""
        c = self.c
        return [f"{tcp_text(*row)} — {note}" for row in zip(self.endpoints("src"), self.endpoints("dst"), c["flags"],
                                                            c["seq"], c["ack"], c["plen"], c["mss"], c["ttl"])]


_SUMMARY_FIELDS = ("ttl", "mss", "sport", "dport", "seq", "ack", "flags", "plen", "frame", "src_i", "dst_i")


def delivered_drafts(ctx: Ctx, ci: np.ndarray, si: np.ndarray) -> list["TcpBatch"]:
    """The connections ``delivered_mask`` accepted, as one batch (none if there are none)."""
    return [TcpBatch(ctx, ci, si)] if len(ci) else []


class TcpBatch:
    """Delivered connections as columns; ``build`` makes their records (``rig.verdict.ExchangeBatch``).

    Everything a record needs is decided here, vectorised, and kept as arrays and shared
    tuples; the per-connection strings (endpoints, evidence summaries, frame tuples) are
    made only for the records someone reads.
    """

    protocol = "tcp"

    def __init__(self, ctx: Ctx, ci: np.ndarray, si: np.ndarray):
        c, s = ctx.client, ctx.server
        cc, sc = c.tcp, s.tcp
        rc_syn, rs_syn = cc.order[cc.syn[ci]], sc.order[sc.syn[si]]
        rc_synack = cc.order[cc.synack[ci]]
        self.syn_c = Part(c, rc_syn, ("sport", "dport", "frame", "src_i", "dst_i"))
        # the evidence (prose.DELIVERED_NOTES): the SYN as it arrived, the SYN-ACK as it arrived
        self.syn_s = Part(s, rs_syn, _SUMMARY_FIELDS)
        self.synack_c = Part(c, rc_synack, _SUMMARY_FIELDS)
        self.dst_key = c.addr_keys("dst", rc_syn)
        self.first_frame = self.syn_c.t["frame"].astype(np.int64)
        self.n = len(ci)
        # every frame of each connection, in frame order: [lo, hi) of one array per point
        self.c_frames, self.s_frames = c.frames(cc.order, np.uint32), s.frames(sc.order, np.uint32)
        c_end = np.append(cc.starts[1:], len(cc.order))
        s_end = np.append(sc.starts[1:], len(sc.order))
        self.c_lo, self.c_hi = cc.starts[ci], c_end[ci]
        self.s_lo, self.s_hi = sc.starts[si], s_end[si]
        self.isn = np.stack([cc.isn_c[ci], sc.isn_c[si], cc.isn_s[ci], sc.isn_s[si]], axis=1)
        self.sizes = np.stack([cc.data_end_fwd[ci] - 1, sc.data_end_rev[si] - 1,
                               np.maximum(cc.n_syn[ci] - sc.n_syn[si], 0),
                               np.maximum(sc.n_synack[si] - cc.n_synack[ci], 0)], axis=1)
        self.payload = _payload_suspects(ctx, ci, si)
        # changes compare the copy that arrived with the same copy as it was sent
        self.out_per, self.out_inv = changes_by_signature(
            c, s, copy_that_arrived(c, ci, "syn", s, rs_syn), rs_syn, "out", _CHANGE_FIELDS, tcp_syn_changes)
        self.back_per, self.back_inv = changes_by_signature(
            c, s, rc_synack, copy_that_arrived(s, si, "synack", c, rc_synack), "back", _CHANGE_FIELDS, tcp_syn_changes)
        self.cname, self.sname = c.name, s.name
        # packets a point captured twice (sides.capture_copies): frame -> the copies' frames
        self.c_copies, self.s_copies = c.copy_frames(), s.copy_frames()
        self._texts: dict[tuple[int, int, int, int], str] = {}

    def __len__(self) -> int:
        return self.n

    def change_notes(self, idx: np.ndarray, field: str) -> set[str]:
        notes = set()
        for per, inv in ((self.out_per, self.out_inv), (self.back_per, self.back_inv)):
            for k in unique(per.groups(inv[idx])).tolist():
                notes |= {ch.note for ch in per[k] if ch.field == field and ch.note}
        return notes | {ch.note for ch in self._data_changes(idx) if ch.field == field and ch.note}  # isn: no notes

    def _data_changes(self, idx: np.ndarray) -> list:
        """The data segments' changes (``_payload_suspects``) of exchanges ``idx``."""
        if not self.payload:
            return []
        have = np.fromiter(self.payload, np.int64, len(self.payload))
        return [ch for i in have[isin(have, idx)].tolist() for ch in self.payload[i]]

    def datagram_sums(self, idx: np.ndarray) -> tuple[int, int, int, int]:
        return 0, 0, 0, 0  # (a connection's records have no datagrams)

    def change_fields(self, idx: np.ndarray) -> set[tuple[str, str]]:
        out = set()
        for per, inv in ((self.out_per, self.out_inv), (self.back_per, self.back_inv)):
            for k in unique(inv[idx]).tolist():
                out |= {(ch.field, ch.direction) for ch in per[k]}
        isn = self.isn[idx]
        if (isn[:, 0] != isn[:, 1]).any():
            out.add(("tcp.isn", "out"))
        if (isn[:, 2] != isn[:, 3]).any():
            out.add(("tcp.isn", "back"))
        return out | {(ch.field, ch.direction) for ch in self._data_changes(idx)}

    def seen_at_server(self, idx: np.ndarray) -> list[str]:
        return _Cols(self.syn_s, idx, ("sport",)).endpoints("src")

    def changes_each(self, idx: np.ndarray) -> list[tuple]:
        """The changes of each exchange ``idx``, in the record's order (what ``build`` puts in it)."""
        isn = self.isn[idx].tolist()
        out_ch, back_ch = self.out_per.each(self.out_inv[idx].tolist()), self.back_per.each(self.back_inv[idx].tolist())
        payload = self.payload
        out = []
        for j, i in enumerate(idx.tolist()):
            o, b = out_ch[j], back_ch[j]
            a = isn[j]
            if a[0] != a[1] or a[2] != a[3] or i in payload:
                out.append(o + tuple(isn_change(a[0], a[1], "out")) + b + tuple(isn_change(a[2], a[3], "back"))
                           + tuple(payload.get(i, ())))
            else:
                out.append(o + b)
        return out

    def change_keys(self, idx: np.ndarray) -> np.ndarray:
        # changes_each: the two signatures' changes, unless an ISN or a data segment changed
        isn = self.isn[idx]
        own = (isn[:, 0] != isn[:, 1]) | (isn[:, 2] != isn[:, 3])
        if self.payload:
            own |= isin(idx, np.fromiter(self.payload, np.int64, len(self.payload)))
        return signature_keys(self.out_inv[idx], self.back_inv[idx], own)

    def table_codes(self, idx: np.ndarray) -> TableCodes:
        syn_c, syn_s = self.syn_c.t, self.syn_s.t
        server = syn_c["dst_i"][idx].astype(np.int64) * 65536 + syn_c["dport"][idx]
        story = np.column_stack([server, self.sizes[idx]]).astype(np.int64)
        return TableCodes(story, EndpointCols(syn_c["src_i"][idx], syn_c["sport"][idx], self.syn_c.addrs),
                          EndpointCols(syn_s["src_i"][idx], syn_s["sport"][idx], self.syn_s.addrs), server)

    def build(self, idx: np.ndarray, numbers: list[int], light: bool = False, make=Exchange,
              evidence=Evidence) -> list:
        syn_c = _Cols(self.syn_c, idx, ("sport", "dport", "frame"))
        client_ep, server_ep = syn_c.endpoints("src"), syn_c.endpoints("dst", shared=True)
        seen_ep = self.seen_at_server(idx)
        if not light:  # ExchangeList.light: no evidence, no frames
            syn_s, synack_c = _Cols(self.syn_s, idx), _Cols(self.synack_c, idx)
            arrived, got = DELIVERED_NOTES["tcp"]
            ev_s, ev_c = syn_s.summaries(arrived), synack_c.summaries(got)
            s_fr, c_fr = syn_s.c["frame"], synack_c.c["frame"]
        sizes = self.sizes[idx].tolist()
        changes = self.changes_each(idx)
        if not light:
            c_fr_all = with_copies_each(_ranges(self.c_frames, self.c_lo[idx], self.c_hi[idx]), self.c_copies)
            s_fr_all = with_copies_each(_ranges(self.s_frames, self.s_lo[idx], self.s_hi[idx]), self.s_copies)
        cname, sname, texts = self.cname, self.sname, self._texts
        out = []
        for j in range(len(idx)):
            ch = changes[j]
            key = tuple(sizes[j])
            text = texts.get(key)
            if text is None:  # many connections carry the same sizes: one string for all of them
                text = texts[key] = tcp_delivered_words(*key)
            if light:
                out.append(make(f"tcp-{numbers[j]}", "tcp", client_ep[j], server_ep[j], seen_ep[j], Outcome.DELIVERED,
                                text, ch, (), ()))
                continue
            frames = ((cname, c_fr_all[j]), (sname, s_fr_all[j]))
            out.append(make(f"tcp-{numbers[j]}", "tcp", client_ep[j], server_ep[j], seen_ep[j], Outcome.DELIVERED, text,
                            ch, (evidence(sname, s_fr[j], copy_note(ev_s[j], s_fr[j], self.s_copies)),
                                 evidence(cname, c_fr[j], copy_note(ev_c[j], c_fr[j], self.c_copies))), frames))
        return out


def _ranges(frames: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> list[tuple[int, ...]]:
    """``tuple(frames[lo[j]:hi[j]])`` for each j, from one gather (a slice and a list per
    connection cost ~0.4 s at 1M packets)."""
    n = (hi - lo).astype(np.int64)
    if not len(n):
        return []
    end = np.cumsum(n)
    start = end - n
    flat = frames[np.repeat(lo.astype(np.int64) - start, n) + np.arange(int(end[-1]), dtype=np.int64)].tolist()
    return [tuple(flat[a:b]) for a, b in zip(start.tolist(), end.tolist())]


def _payload_suspects(ctx: Ctx, ci: np.ndarray, si: np.ndarray) -> dict[int, list]:
    """Payload, DSCP and ECN changes (``changes.data_changes``), checked on the first data
    segment of each direction (vectorised; the rule runs only where a field differs)."""
    c, s = ctx.client, ctx.server
    cc, sc = c.tcp, s.tcp
    out: dict[int, list] = {}
    for direction, fc, fs in (("out", cc.first_data_fwd, sc.first_data_fwd), ("back", cc.first_data_rev, sc.first_data_rev)):
        a, b = fc[ci], fs[si]
        has = (a >= 0) & (b >= 0)
        idx = np.flatnonzero(has)
        if not len(idx):
            continue
        ra, rb = cc.order[a[idx]], sc.order[b[idx]]
        # four columns in one pass of whole rows (keys.take_fields; indexing the table
        # copies every field of a row, and a column at a time misses the cache per row)
        fa, fb = take_fields(c.t, DATA_FIELDS, ra), take_fields(s.t, DATA_FIELDS, rb)
        same = (cc.rel_seq_at(a[idx], fa["seq"]) == sc.rel_seq_at(b[idx], fb["seq"])) & (fa["plen"] == fb["plen"])
        # what data_changes could report: another payload, or another TOS byte
        diff = same & (((fa["pcaplen"] == fb["pcaplen"]) & (fa["phash"] != fb["phash"])) | (fa["tos"] != fb["tos"]))
        for k in np.flatnonzero(diff).tolist():
            ch = data_changes(c.t[ra[k]], s.t[rb[k]], direction)
            if ch:
                out.setdefault(int(idx[k]), []).extend(ch)
    return out
