"""Whether a point's capture can vouch for an absence that falls into a damaged region.

The reader skips a damaged region of a capture file (``rig.capture.resync``) and records
it as a ``Gap``: the packets whose records were there are not in the table. An outcome
that rests on the absence of packets at that point (a lost request, a lost reply) cannot
stand if they would have been captured within the gap, by time at that point: the
exchange is ``incomplete`` instead. ``api._vouch`` asks ``in_gap``.
"""

from __future__ import annotations

from rig.analysis.context import Draft
from rig.analysis.sides import Side

# around an exchange's first and last request: the replies' travel, retransmissions, and
# the error of the clock offset estimated between the points
GAP_SLACK_NS = 2_000_000_000


def in_gap(d: Draft, sides: dict[str, Side], offset: int | None) -> str | None:
    """Why the absence ``d`` rests on may be a damaged region of a capture (None: it is not)."""
    for name in d.absent_at:
        cap = sides[name].cap
        gaps = getattr(cap, "gaps", ()) if cap is not None else ()
        if not gaps:
            continue
        # the exchange's time in that point's clock (an extra point's offset is not known here)
        shift = 0 if name == "client" else (offset if name == "server" else None)
        last = max(d.t_last, d.server_until) if d.server_until is not None else d.t_last
        for g in gaps:
            if shift is not None:
                lo, hi = d.t_first + shift - GAP_SLACK_NS, last + shift + GAP_SLACK_NS
                if g.ts_after_ns is not None and lo > g.ts_after_ns:
                    continue
                if g.ts_before_ns is not None and hi < g.ts_before_ns:
                    continue
            return (f"the {name} capture is damaged where this exchange's packets would be ({g.skipped} bytes "
                    f"skipped at byte {g.offset}, after frame {g.frame_before})")
    return None
