"""The bulk of a large run for echo and UDP: one request, one reply, both seen everywhere.

Requests pair with the server's copies, and each point's requests with that point's
replies, by ``pair_by_order`` (vectorised). Exchanges whose four packets are all there
are built here from column lists, with the same wording, changes and evidence as the
close look in ``reqrep``; everything else is left to it.
"""

from __future__ import annotations

import numpy as np

from rig.analysis.keys import take
from rig.analysis.changes import changes_by_signature, ip_changes, signature_keys
from rig.analysis.context import Ctx, with_copies_each, with_copy_notes
from rig.analysis.prose import DELIVERED_NOTES, reqrep_delivered_words
from rig.analysis.sides import Part
from rig.analysis.udpflow import DELIVERED
from rig.analysis.summary import RowTexts, echo_text, udp_text
from rig.outcome import Outcome
from rig.verdict import Change, EndpointCols, Evidence, Exchange, TableCodes
from rig.unique import unique

IP_FIELDS = ("ttl", "ipver", "ip_id", "tos", "frag")
_NAMES = {0: "echo reply", 8: "echo request", 128: "echo request", 129: "echo reply"}
ECHO_ID_NOTE = "echo id rewritten"


def echo_id_change(at_client: int, at_server: int) -> Change:
    """The echo id a request left the client with, and the one the server saw."""
    return Change("icmp.id", "out", at_client, at_server, ECHO_ID_NOTE)


class Rows(RowTexts):
    def eps(self, which: str, port: bool, shared: bool = False) -> list[str]:
        """Endpoints (``port``: UDP) or bare addresses (ICMP)."""
        if not port:
            return self.src if which == "src" else self.dst
        return self.endpoints(which, shared)

    def summaries(self, udp: bool, note: str) -> list[str]:
        c = self.c
        if udp:
            return [f"{udp_text(a, b, n, t)} — {note}"
                    for a, b, n, t in zip(self.eps("src", True), self.eps("dst", True), c["plen"], c["ttl"])]
        return [f"{echo_text(a, b, _NAMES.get(ty, 'echo'), i, q, t)} — {note}"
                for a, b, ty, i, q, t in zip(self.src, self.dst, c["icmp_type"], c["icmp_id"], c["icmp_seq"], c["ttl"])]


def delivered_drafts(ctx: Ctx, protocol: str, creq: np.ndarray, sreq: np.ndarray, srep: np.ndarray,
                     crep: np.ndarray) -> tuple[list["ReqRepBatch"], np.ndarray, np.ndarray]:
    """Exchanges whose request and reply were seen at both points (rows given, one per
    exchange), as one batch (none if there are none); with the out and back delays for
    the clock offset."""
    c, s = ctx.client, ctx.server
    out_d = take(s.t["ts_ns"], sreq).astype(np.int64) - take(c.t["ts_ns"], creq).astype(np.int64)
    back_d = take(c.t["ts_ns"], crep).astype(np.int64) - take(s.t["ts_ns"], srep).astype(np.int64)
    return ([ReqRepBatch(ctx, protocol, creq, sreq, srep, crep)] if len(creq) else []), out_d, back_d


# the columns each protocol's records read (copying all of them for both: +50% time here)
ROW_FIELDS = {"udp": ("ttl", "sport", "dport", "plen", "frame"), "icmp": ("ttl", "icmp_type", "icmp_id", "icmp_seq", "frame")}
REQ_FIELDS = {"udp": ("sport", "dport", "frame"), "icmp": ("icmp_id", "icmp_seq", "frame")}


class ReqRepBatch:
    """Delivered echo / UDP exchanges as columns; ``build`` makes their records
    (``rig.verdict.ExchangeBatch``) with the wording of the close look in ``reqrep``."""

    def __init__(self, ctx: Ctx, protocol: str, creq: np.ndarray, sreq: np.ndarray, srep: np.ndarray,
                 crep: np.ndarray):
        c, s = ctx.client, ctx.server
        self.protocol = protocol
        self.fields = ROW_FIELDS[protocol]
        self.cq = Part(c, creq, REQ_FIELDS[protocol] + ("src_i", "dst_i"))
        self.sq = Part(s, sreq, self.fields + ("src_i", "dst_i"))
        self.cp = Part(c, crep, self.fields + ("src_i", "dst_i"))
        self.sp_frame = s.frames(srep, np.uint32)
        self.dst_key = c.addr_keys("dst", creq)
        self.first_frame = self.cq.t["frame"].astype(np.int64)
        self.out_per, self.out_inv = changes_by_signature(c, s, creq, sreq, "out", IP_FIELDS, ip_changes)
        self.back_per, self.back_inv = changes_by_signature(c, s, crep, srep, "back", IP_FIELDS, ip_changes)
        self.ids_changed = (np.zeros(len(creq), bool) if protocol == "udp"
                            else take(c.t["icmp_id"], creq) != take(s.t["icmp_id"], sreq))
        self.cname, self.sname = c.name, s.name
        self.c_copies, self.s_copies = c.copy_frames(), s.copy_frames()  # packets captured twice

    def __len__(self) -> int:
        return len(self.first_frame)

    def change_notes(self, idx: np.ndarray, field: str) -> set[str]:
        notes = set()
        for per, inv in ((self.out_per, self.out_inv), (self.back_per, self.back_inv)):
            for k in unique(per.groups(inv[idx])).tolist():
                notes |= {ch.note for ch in per[k] if ch.field == field and ch.note}
        if field == "icmp.id" and self.ids_changed[idx].any():
            notes.add(ECHO_ID_NOTE)
        return notes

    def change_fields(self, idx: np.ndarray) -> set[tuple[str, str]]:
        out = set()
        for per, inv in ((self.out_per, self.out_inv), (self.back_per, self.back_inv)):
            for k in unique(inv[idx]).tolist():
                out |= {(ch.field, ch.direction) for ch in per[k]}
        if self.ids_changed[idx].any():
            out.add(("icmp.id", "out"))
        return out

    def seen_at_server(self, idx: np.ndarray) -> list[str]:
        return Rows(self.sq, idx, self.fields).eps("src", self.protocol == "udp")

    def changes_each(self, idx: np.ndarray) -> list[tuple]:
        """The changes of each exchange ``idx``, in the record's order (what ``build`` puts in it)."""
        out_ch, back_ch = self.out_per.each(self.out_inv[idx].tolist()), self.back_per.each(self.back_inv[idx].tolist())
        out = [o + b for o, b in zip(out_ch, back_ch)]
        changed = np.flatnonzero(self.ids_changed[idx])
        if not len(changed):
            return out
        at_c, at_s = self.cq.t["icmp_id"][idx[changed]].tolist(), self.sq.t["icmp_id"][idx[changed]].tolist()
        for j, a, b in zip(changed.tolist(), at_c, at_s):
            out[j] = out_ch[j] + (echo_id_change(a, b),) + back_ch[j]
        return out

    def change_keys(self, idx: np.ndarray) -> np.ndarray:
        # changes_each: the two signatures' changes, unless the echo id was rewritten
        return signature_keys(self.out_inv[idx], self.back_inv[idx], self.ids_changed[idx])

    def table_codes(self, idx: np.ndarray) -> TableCodes:
        cq, sq, udp = self.cq.t, self.sq.t, self.protocol == "udp"
        server = cq["dst_i"][idx].astype(np.int64) * 65536 + (cq["dport"][idx] if udp else 0)
        # one explanation for all: the server tells the story
        return TableCodes(server[:, None], EndpointCols(cq["src_i"][idx], cq["sport"][idx] if udp else None, self.cq.addrs),
                          EndpointCols(sq["src_i"][idx], sq["sport"][idx] if udp else None, self.sq.addrs), server)

    # what a subclass (``udpflow_fast.FlowBatch``) says otherwise of its exchanges
    def notes(self) -> tuple[str, str]:
        """The evidence notes: the request as it arrived at the server, the reply at the client."""
        return DELIVERED_NOTES[self.protocol]

    def explanations(self, idx: np.ndarray) -> list[str]:
        req, rep = ("datagram", "reply") if self.protocol == "udp" else ("echo request", "echo reply")
        return [reqrep_delivered_words(req, rep)] * len(idx)

    def datagrams_each(self, idx: np.ndarray) -> list:
        return [DELIVERED if self.protocol == "udp" else None] * len(idx)

    def datagram_sums(self, idx: np.ndarray) -> tuple[int, int, int, int]:
        n = len(idx) if self.protocol == "udp" else 0  # DELIVERED: one each way, arrived
        return n, 0, n, 0

    def frames_each(self, idx: np.ndarray, cq: Rows, sq: Rows, cp: Rows) -> tuple[list, list]:
        """Each exchange's frames at the client and at the server, in order (without the
        other copies of packets captured twice)."""
        sp_frame = self.sp_frame[idx].tolist()
        return ([(a, b) if a < b else (b, a) for a, b in zip(cq.c["frame"], cp.c["frame"])],
                [(a, b) if a < b else (b, a) for a, b in zip(sq.c["frame"], sp_frame)])

    def more_evidence(self, idx: np.ndarray, evidence) -> list[tuple]:
        """Evidence each exchange has after its request's and reply's (made by ``evidence``)."""
        return [()] * len(idx)

    def build(self, idx: np.ndarray, numbers: list[int], light: bool = False, make=Exchange,
              evidence=Evidence) -> list:
        udp = self.protocol == "udp"
        arrived, got = self.notes()
        cq = Rows(self.cq, idx, REQ_FIELDS[self.protocol])
        # light: seen_at_server_as reads the port (UDP) and a rewritten echo id the id (ICMP);
        # the evidence reads every column
        sq = Rows(self.sq, idx, self.fields if not light else ("sport",) if udp else ("icmp_id",))
        explanation = self.explanations(idx)
        client_ep, server_ep, seen_ep = cq.eps("src", udp), cq.eps("dst", udp, shared=True), sq.eps("src", udp)
        ev_s: list = []
        ev_c: list = []
        more: list = []
        fc: list[tuple[int, ...]] = []
        fs: list[tuple[int, ...]] = []
        if not light:  # (ExchangeList.light: no evidence, no frames)
            cp = Rows(self.cp, idx, self.fields)
            fc, fs = self.frames_each(idx, cq, sq, cp)
            # packets captured twice: every copy's frame, and a note in the evidence
            fc, fs = with_copies_each(fc, self.c_copies), with_copies_each(fs, self.s_copies)
            ev_s = [evidence(self.sname, f, t) for f, t in
                    zip(sq.c["frame"], with_copy_notes(sq.summaries(udp, arrived), sq.c["frame"], self.s_copies))]
            ev_c = [evidence(self.cname, f, t) for f, t in
                    zip(cp.c["frame"], with_copy_notes(cp.summaries(udp, got), cp.c["frame"], self.c_copies))]
            more = self.more_evidence(idx, evidence)
        changes = self.changes_each(idx)
        cname, sname, proto = self.cname, self.sname, self.protocol
        dgrams = self.datagrams_each(idx)
        out = []
        for i in range(len(idx)):
            out.append(make(f"{proto}-{numbers[i]}", proto, client_ep[i], server_ep[i], seen_ep[i], Outcome.DELIVERED,
                            explanation[i], changes[i], () if light else (ev_s[i], ev_c[i], *more[i]),
                            () if light else ((cname, fc[i]), (sname, fs[i])), datagrams=dgrams[i],
                            echo=None if udp else (int(cq.c["icmp_id"][i]), int(cq.c["icmp_seq"][i]))))
        return out
