"""The Internet checksum (RFC 1071), for the packets rig builds: probes' ICMP echoes and
the synthetic captures of tests and benchmarks. (Rewriting an address in a captured
packet updates checksums incrementally instead: rig.redact, RFC 1624.)"""

from __future__ import annotations

import struct


def internet_checksum(data: bytes) -> int:
    """One's complement of the one's complement sum of 16-bit words; 0 when ``data``
    already carries a correct checksum."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF
