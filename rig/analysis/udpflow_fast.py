"""The bulk of a run's UDP flows: those every datagram of which arrived, both ways.

``udpflow.flow_drafts`` decides which flows these are (``PlainFlows``) and leaves them
here; their records are made from columns when read (``rig.verdict.ExchangeBatch``),
with what the close look in ``flow_drafts`` gives such a flow: the wording of a flow
that passed both ways, its counts, every frame of it at each point, and as changes and
evidence those of a delivered request/reply made of its first datagram each way (the
client's first as it left and arrived, the server's first as it left and arrived): so
the record builder is ``ReqRepBatch``'s. Measured on bench/mix.py's pair (7,000 flows):
the close look took 0.74 s of the 1.3 s UDP step, a Python loop of ~100 us a flow.
"""

from __future__ import annotations

import numpy as np

from rig.analysis import prose_reqrep as W
from rig.analysis.context import Ctx
from rig.analysis.prose import arrived_note
from rig.analysis.reqrep_fast import ReqRepBatch, Rows
from rig.analysis.udpflow import PlainFlows
from rig.verdict import Datagrams, TableCodes

_ARRIVED = arrived_note("datagram")


class FlowBatch(ReqRepBatch):
    """Flows every datagram of which arrived (``PlainFlows``), as columns."""

    def __init__(self, ctx: Ctx, p: PlainFlows):
        super().__init__(ctx, "udp", p.creq, p.sreq, p.srep, p.crep)
        self.n_out, self.n_back = p.n_out, p.n_back
        self.c_frames, self.c_cut, self.s_frames, self.s_cut = p.c_frames, p.c_cut, p.s_frames, p.s_cut

    def notes(self) -> tuple[str, str]:
        return _ARRIVED, _ARRIVED

    def explanations(self, idx: np.ndarray) -> list[str]:
        return [W.flow_passed(a, 0, b, 0, 0) for a, b in zip(self.n_out[idx].tolist(), self.n_back[idx].tolist())]

    def datagrams_each(self, idx: np.ndarray) -> list:
        return [Datagrams(a, 0, b, 0) for a, b in zip(self.n_out[idx].tolist(), self.n_back[idx].tolist())]

    def datagram_sums(self, idx: np.ndarray) -> tuple[int, int, int, int]:
        return int(self.n_out[idx].sum()), 0, int(self.n_back[idx].sum()), 0

    def frames_each(self, idx: np.ndarray, cq: Rows, sq: Rows, cp: Rows) -> tuple[list, list]:
        return _slices(self.c_frames, self.c_cut, idx), _slices(self.s_frames, self.s_cut, idx)

    def table_codes(self, idx: np.ndarray) -> TableCodes:
        codes = super().table_codes(idx)  # the explanation reads the counts too
        story = np.column_stack([codes.story, self.n_out[idx], self.n_back[idx]]).astype(np.int64)
        return TableCodes(story, codes.client, codes.seen, codes.server)


def _slices(frames: np.ndarray, cut: np.ndarray, idx: np.ndarray) -> list[tuple[int, ...]]:
    """``tuple(frames[cut[i]:cut[i + 1]])`` for each ``i`` in ``idx``."""
    lo, hi = cut[idx].tolist(), cut[idx + 1].tolist()
    if not len(idx):
        return []
    a, b = min(lo), max(hi)
    flat = frames[a:b].tolist()
    return [tuple(flat[x - a:y - a]) for x, y in zip(lo, hi)]
