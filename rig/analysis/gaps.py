"""Whether a point's capture can vouch for an absence that falls into a damaged region.

The reader skips a damaged region of a capture file (``rig.capture.resync``) and records
it as a ``Gap``: the packets whose records were there are not in the table. An outcome
that rests on the absence of packets at a point (a lost request, a lost reply) cannot
stand if they would have been captured within the gap, by time at that point: the
exchange is ``incomplete`` instead. The analysis asks ``in_gap`` after ``windows.vouch``.
"""

from __future__ import annotations

import numpy as np

from rig.analysis.context import Draft
from rig.analysis.sides import Side

# around an exchange's packets: the one-way travel of what went missing (the clock offset
# between the points is estimated with the latency cancelled) and the offset's error
GAP_SLACK_NS = 500_000_000


def _span(d: Draft, sides: dict[str, Side], offset: int | None) -> tuple[int, int]:
    """First and last time of the exchange's packets at either point, in the client's clock."""
    lo, hi = d.t_first, d.t_last if d.server_until is None else max(d.t_last, d.server_until)
    for point, frames in d.frames.items():
        if not frames or point not in ("client", "server") or (point == "server" and offset is None):
            continue
        ts = sides[point].t["ts_ns"][np.asarray(frames, np.int64) - 1]
        shift = offset if (point == "server" and offset is not None) else 0
        lo, hi = min(lo, int(ts.min()) - shift), max(hi, int(ts.max()) - shift)
    return lo, hi


def in_gap(d: Draft, sides: dict[str, Side], offset: int | None) -> str | None:
    """Why the absence ``d`` rests on may be a damaged region of a capture, as a short fact
    (``Exchange.undecided_because``, as ``windows.vouch`` words its); None: it is not.

    Every point counts, not only those in ``d.absent_at``: a packet missing from one
    point's capture changes what the packets at the others seem to say (a SYN-ACK missing
    at the server makes the client's look like a middlebox's, or the server's next
    answer like one to an older connection)."""
    for name in sorted(sides, key=lambda n: n not in d.absent_at):
        cap = sides[name].cap
        gaps = getattr(cap, "gaps", ()) if cap is not None else ()
        if not gaps:
            continue
        # the exchange's time in that point's clock (an extra point's offset is not known here:
        # any gap there counts)
        shift = 0 if name == "client" else (offset if name == "server" else None)
        lo, hi = _span(d, sides, offset)
        for g in gaps:
            if shift is not None:
                if g.ts_after_ns is not None and lo + shift - GAP_SLACK_NS > g.ts_after_ns:
                    continue
                if g.ts_before_ns is not None and hi + shift + GAP_SLACK_NS < g.ts_before_ns:
                    continue
            return (f"{name} capture is damaged where this exchange's packets would be ({g.skipped} bytes "
                    f"skipped at byte {g.offset}, after frame {g.frame_before})")
    return None
