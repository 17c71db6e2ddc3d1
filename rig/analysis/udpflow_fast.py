"""The bulk of a run's UDP flows: the delivered ones (some datagrams arrived each way)
that got no datagram from elsewhere.

``udpflow.flow_drafts`` decides which flows these are (``PlainFlows``) and leaves them
here; their records are made from columns when read (``rig.verdict.ExchangeBatch``),
with what the close look in ``flow_drafts`` gives such a flow: the wording of a flow
that passed both ways and its losses, its counts, every frame of it at each point, as
changes and evidence those of a delivered request/reply made of its first datagram that
arrived each way (the client's as it left and arrived, the server's as it left and
arrived), then the first lost datagrams each way. So the record builder is
``ReqRepBatch``'s. Measured on bench/mix.py's pair (7,000 flows): the close look took
0.74 s of the 1.3 s UDP step, a Python loop of ~100 us a flow.
"""

from __future__ import annotations

import numpy as np

from rig.analysis import prose_reqrep as W
from rig.analysis.context import Ctx, with_copy_notes
from rig.analysis.prose import arrived_note
from rig.analysis.reqrep_fast import ReqRepBatch, Rows
from rig.analysis.sides import Part
from rig.analysis.udpflow import LOST_EACH, PlainFlows
from rig.verdict import Datagrams, TableCodes

_ARRIVED = arrived_note("datagram")
_LOST_FIELDS = ("ttl", "sport", "dport", "plen", "frame", "src_i", "dst_i")  # what a lost datagram's summary reads


class FlowBatch(ReqRepBatch):
    """Delivered flows without a stray datagram (``PlainFlows``), as columns."""

    def __init__(self, ctx: Ctx, p: PlainFlows):
        super().__init__(ctx, "udp", p.creq, p.sreq, p.srep, p.crep)
        self.first_frame = ctx.client.frames(p.first).astype(np.int64)  # (the flow's first datagram, arrived or not)
        self.n_out, self.out_lost, self.n_back, self.back_lost = p.n_out, p.out_lost, p.n_back, p.back_lost
        self.c_frames, self.c_cut, self.s_frames, self.s_cut = p.c_frames, p.c_cut, p.s_frames, p.s_cut
        self.lost_c, self.lost_c_cut = Part(ctx.client, p.lost_c, _LOST_FIELDS), p.lost_c_cut
        self.lost_s, self.lost_s_cut = Part(ctx.server, p.lost_s, _LOST_FIELDS), p.lost_s_cut

    def _counts(self, idx: np.ndarray) -> zip:
        return zip(self.n_out[idx].tolist(), self.out_lost[idx].tolist(), self.n_back[idx].tolist(),
                   self.back_lost[idx].tolist())

    def notes(self) -> tuple[str, str]:
        return _ARRIVED, _ARRIVED

    def explanations(self, idx: np.ndarray) -> list[str]:
        return [W.flow_passed(a, al, b, bl, 0) for a, al, b, bl in self._counts(idx)]

    def datagrams_each(self, idx: np.ndarray) -> list:
        return [Datagrams(a, al, b, bl) for a, al, b, bl in self._counts(idx)]

    def datagram_sums(self, idx: np.ndarray) -> tuple[int, int, int, int]:
        return (int(self.n_out[idx].sum()), int(self.out_lost[idx].sum()), int(self.n_back[idx].sum()),
                int(self.back_lost[idx].sum()))

    def frames_each(self, idx: np.ndarray, cq: Rows, sq: Rows, cp: Rows) -> tuple[list, list]:
        return _slices(self.c_frames, self.c_cut, idx), _slices(self.s_frames, self.s_cut, idx)

    def more_evidence(self, idx: np.ndarray, evidence) -> list[tuple]:
        """The first ``LOST_EACH`` datagrams lost each way, as ``ctx.ev`` words them: the
        client's (at the client), then the server's (at the server)."""
        out = [()] * len(idx)
        for part, cut, lost, note, copies in (
                (self.lost_c, self.lost_c_cut, self.out_lost, W.NEVER_REACHED_SERVER_EACH, self.c_copies),
                (self.lost_s, self.lost_s_cut, self.back_lost, W.NEVER_REACHED_CLIENT_EACH, self.s_copies)):
            lo, hi = cut[idx], cut[idx + 1]
            has = np.flatnonzero(hi > lo)
            if not len(has):
                continue
            rows = np.concatenate([np.arange(a, b) for a, b in zip(lo[has].tolist(), hi[has].tolist())])
            r = Rows(part, rows, ("ttl", "sport", "dport", "plen", "frame"))
            texts = r.summaries(True, note)
            frames = r.c["frame"]
            k = 0
            for j, a, b, n in zip(has.tolist(), lo[has].tolist(), hi[has].tolist(), lost[idx[has]].tolist()):
                m = b - a
                got = texts[k:k + m]
                if n > LOST_EACH:  # (ctx.ev: the last listed says how many more)
                    got[-1] += f" (and {n - LOST_EACH} more)"
                got = with_copy_notes(got, frames[k:k + m], copies)
                out[j] = out[j] + tuple(evidence(part.name, f, t) for f, t in zip(frames[k:k + m], got))
                k += m
        return out

    def table_codes(self, idx: np.ndarray) -> TableCodes:
        codes = super().table_codes(idx)  # the explanation reads the counts too
        story = np.column_stack([codes.story, self.n_out[idx], self.out_lost[idx], self.n_back[idx],
                                 self.back_lost[idx]]).astype(np.int64)
        return TableCodes(story, codes.client, codes.seen, codes.server)


def _slices(frames: np.ndarray, cut: np.ndarray, idx: np.ndarray) -> list[tuple[int, ...]]:
    """``tuple(frames[cut[i]:cut[i + 1]])`` for each ``i`` in ``idx``."""
    lo, hi = cut[idx].tolist(), cut[idx + 1].tolist()
    if not len(idx):
        return []
    a, b = min(lo), max(hi)
    flat = frames[a:b].tolist()
    return [tuple(flat[x - a:y - a]) for x, y in zip(lo, hi)]
