"""Port sets: the public ports a NAT may use, as MAP-E assigns them and as rig infers them.

A MAP-E customer edge (RFC 7597 §5.1) owns the ports whose PSID bits equal its PSID:

    port = A << (16 - a)  |  PSID << m  |  j        m = 16 - a - k

with ``a`` the PSID offset, ``k`` the PSID length, ``A`` in 1 .. 2**a - 1 (the ports
below ``2**(16 - a)`` are excluded) and ``j`` in 0 .. 2**m - 1. v6plus and OCN's IPoE
use a = 4, k = 8: 15 blocks of 16 ports, 240 ports.

One module for both sides of the question, so the lab's ground truth and the analysis
cannot drift apart: the lab builds its customer edge's NAT ranges from ``PortSet`` and
the analysis and the NAT profile estimate a ``PortSet`` from the public ports a server
saw (``infer``), then ask which other ports fall outside it.

Inference works on the bits all observed ports share. Ports drawn from a MAP-E set agree
on the k PSID bits and differ above (A) and below (j) them; the longest run of shared
bits that stops below bit 15 is the PSID field. A run that reaches bit 15 means the ports
share their top bits: a contiguous block (a port-block allocation, or samples that all
fell in one block of a set) — reported as a range, not as a set. How sure rig is, is
the chance that ports drawn uniformly from all 65536 would share that many bits by
accident: 16 positions · 2^-k(n-1). Infer from the ports of connections that worked,
then test the failing ones with ``contains``: a failing connection's port outside the
set is exactly what a border relay drops.
No numpy here: the lab and the CLI import this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

# Smallest PSID that counts as a port set: fewer shared bits is what random ports from a
# high range (pf's 50001-65535 share the top two bits) look like.
MIN_PSID_BITS = 4
# A set is reported only when a chance agreement is less likely than this.
MAX_CHANCE = 0.01


@dataclass(frozen=True)
class PortSet:
    """The ports of one PSID: ``offset`` = a, ``length`` = k, ``psid`` the value."""

    offset: int
    length: int
    psid: int

    def __post_init__(self) -> None:
        if not (0 <= self.offset and 1 <= self.length and self.offset + self.length <= 16):
            raise ValueError(f"PSID offset {self.offset} + length {self.length} must fit 16 bits")
        if not 0 <= self.psid < (1 << self.length):
            raise ValueError(f"PSID {self.psid} does not fit {self.length} bits")

    @property
    def block_bits(self) -> int:
        """m: the bits below the PSID, the width of one contiguous block."""
        return 16 - self.offset - self.length

    @property
    def block_size(self) -> int:
        return 1 << self.block_bits

    @property
    def blocks(self) -> int:
        """How many blocks: A runs 1 .. 2**a - 1, or the one block when a = 0."""
        return max(1, (1 << self.offset) - 1)

    @property
    def size(self) -> int:
        return self.blocks * self.block_size

    def ranges(self) -> list[tuple[int, int]]:
        """The set as inclusive (low, high) port ranges, lowest first."""
        m = self.block_bits
        first_a = 1 if self.offset else 0
        out = []
        for a_value in range(first_a, max(1, 1 << self.offset)):
            low = (a_value << (16 - self.offset)) | (self.psid << m) if self.offset else self.psid << m
            out.append((low, low + self.block_size - 1))
        return out

    def contains(self, port: int) -> bool:
        m = self.block_bits
        if (port >> m) & ((1 << self.length) - 1) != self.psid:
            return False
        return self.offset == 0 or port >> (16 - self.offset) != 0


@dataclass(frozen=True)
class PortSetEstimate:
    """What the observed ports say: a set (a PSID field found), a range, or neither.

    ``kind`` is ``"port-set"``, ``"range"`` or ``"undecided"``; ``port_set`` is the set
    for a port-set (and the aligned block for a range whose ports share their top bits);
    ``low``/``high`` the smallest and largest port seen; ``samples`` how many distinct
    ports; ``chance`` the probability that random ports would agree this well by
    accident (smaller is surer); ``reason`` says why a set was not decided.
    """

    kind: str
    samples: int
    low: int
    high: int
    port_set: PortSet | None = None
    chance: float = 1.0
    reason: str | None = None

    def outside(self, ports: Iterable[int]) -> list[int]:
        """The given ports that fall outside the estimated set (none without a set)."""
        if self.port_set is None:
            return []
        return sorted({p for p in ports if not self.port_set.contains(p)})


def _shared_run(ports: list[int]) -> tuple[int, int]:
    """(low bit, length) of the longest run of bit positions on which all ports agree;
    ties go to the lower run (the PSID sits below bits that may agree by chance)."""
    differ = 0
    for p in ports[1:]:
        differ |= p ^ ports[0]
    best = (0, 0)
    bit = 0
    while bit < 16:
        if differ >> bit & 1:
            bit += 1
            continue
        start = bit
        while bit < 16 and not differ >> bit & 1:
            bit += 1
        if bit - start > best[1]:
            best = (start, bit - start)
    return best


def infer(ports: Iterable[int]) -> PortSetEstimate:
    """Estimate the port set the given public ports were allocated from."""
    seen = sorted({int(p) for p in ports})
    if any(not 0 <= p <= 65535 for p in seen):
        raise ValueError("ports must be 0..65535")
    n = len(seen)
    if n < 3:
        return PortSetEstimate(
            "undecided", n, seen[0] if seen else 0, seen[-1] if seen else 0,
            reason=f"{n} distinct port(s) seen; at least 3 are needed",
        )
    low, length = _shared_run(seen)
    chance = min(1.0, 16 * 2.0 ** (-length * (n - 1)))
    top = low + length == 16
    if length < MIN_PSID_BITS or chance > MAX_CHANCE:
        return PortSetEstimate(
            "range", n, seen[0], seen[-1], chance=chance,
            reason=f"the ports share {length} bit(s): no port set",
        )
    if top:
        # All ports share their top bits: one aligned block, a = 0.
        block = PortSet(0, length, seen[0] >> low)
        return PortSetEstimate("range", n, seen[0], seen[-1], port_set=block, chance=chance)
    offset = 16 - (low + length)
    psid = (seen[0] >> low) & ((1 << length) - 1)
    return PortSetEstimate(
        "port-set", n, seen[0], seen[-1], port_set=PortSet(offset, length, psid), chance=chance
    )
