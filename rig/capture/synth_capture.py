"""How a capture was taken, for ``synth.Path`` runs: when each tcpdump ran, clocks that
disagree, ``tcpdump -i any`` copies, and a path that rewrites the TOS byte.

``trimmed`` keeps a point's packets inside a capture window (a late start, an early
stop); ``window`` says that window as rig would have recorded it (``CaptureWindow``, on
the client's clock); ``write_any`` writes a point as ``tcpdump -i any`` does when a packet
crosses two interfaces of the host (a bridge and its port): every packet twice, on two
Linux cooked interfaces, microseconds apart. ``TosPath`` is a ``Path`` whose middlebox
clears ECN marks (bleaching) and/or rewrites DSCP, each way. The server's clock is off
by ``Path.server_clock_offset_ns`` (±60 s works as well as the default 3 s).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path as FsPath

from rig.analysis.windows import CaptureWindow
from rig.capture.synth import LINKTYPE_SLL, Path, Pkt, Sent, encoded, frame, write_pcapng


def clock(w: Path, point: str) -> int:
    """The offset of ``point``'s clock from the client's (ns)."""
    return w.server_clock_offset_ns if point == "server" else 0


def frames_of(w: Path, point: str) -> list[Sent]:
    return w.server_frames if point == "server" else w.client_frames


def trimmed(w: Path, point: str, start_ns: int | None = None, stop_ns: int | None = None) -> None:
    """Keep only ``point``'s packets captured in [start_ns, stop_ns] (client clock; None:
    open): its tcpdump started late and/or stopped early."""
    off = clock(w, point)
    w.cuts[point] = (start_ns, stop_ns)
    kept = [(t, p) for t, p in frames_of(w, point)
            if (start_ns is None or t - off >= start_ns) and (stop_ns is None or t - off <= stop_ns)]
    frames_of(w, point)[:] = kept


def window(start_ns: int | None, stop_ns: int | None) -> CaptureWindow:
    """The window rig records for a tcpdump it ran (on its own clock, the client's)."""
    return CaptureWindow(start_ns, stop_ns)


def windows_of(w: Path, after_ns: int = 3_000_000_000) -> dict[str, CaptureWindow]:
    """The windows rig would record had it run both tcpdumps of ``w``: listening from the
    path's start (or where ``trimmed`` cut it), stopped ``after_ns`` after the last event
    (a probe's time-out) or where ``trimmed`` cut it."""
    out = {}
    for point in ("client", "server"):
        start, stop = w.cuts.get(point, (None, None))
        out[point] = CaptureWindow(w.t0_ns if start is None else start, now(w) + after_ns if stop is None else stop)
    return out


def now(w: Path) -> int:
    """The simulated time of the next event, on the client clock."""
    return w.t0_ns + w._now


def write_any(w: Path, directory: str | FsPath, point: str = "server", gap_ns: int = 3_000,
              every: int = 1) -> tuple[FsPath, FsPath]:
    """``Path.write``, but ``point`` as ``tcpdump -i any`` on a host where each packet
    crosses two interfaces: every ``every``-th packet recorded again ``gap_ns`` later on
    a second interface (identical bytes); pcapng with two Linux cooked interfaces."""
    c, s = w.write(directory, linktype=LINKTYPE_SLL)
    path = s if point == "server" else c
    recs = []
    for i, (t, b) in enumerate(encoded(frames_of(w, point))):
        recs.append((0, t, frame(b, LINKTYPE_SLL)))
        if i % every == 0:
            recs.append((1, t + gap_ns, frame(b, LINKTYPE_SLL)))
    recs.sort(key=lambda r: r[1])
    write_pcapng(path, [(LINKTYPE_SLL, "veth0"), (LINKTYPE_SLL, "br0")], recs, tsresol_ns=True)
    return c, s


@dataclass
class TosPath(Path):
    """A ``Path`` whose middlebox rewrites the IP TOS byte: ``bleach_out`` / ``bleach_back``
    clear the ECN bits, ``dscp_out`` / ``dscp_back`` set the DSCP (None: kept)."""

    bleach_out: bool = False
    bleach_back: bool = False
    dscp_out: int | None = None
    dscp_back: int | None = None

    @staticmethod
    def _tos(p: Pkt, bleach: bool, dscp: int | None) -> Pkt:
        tos = p.tos
        if bleach:
            tos &= ~3
        if dscp is not None:
            tos = dscp << 2 | tos & 3
        return replace(p, tos=tos) if tos != p.tos else p

    def nat_out(self, p: Pkt) -> Pkt:
        return self._tos(super().nat_out(p), self.bleach_out, self.dscp_out)

    def nat_back(self, p: Pkt) -> Pkt:
        return self._tos(super().nat_back(p), self.bleach_back, self.dscp_back)
