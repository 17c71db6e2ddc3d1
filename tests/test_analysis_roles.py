"""Who initiates (rig.analysis.roles): a server's answer from a new port of its own is
no initiation toward the client."""

from __future__ import annotations

import numpy as np

from rig.analysis.roles import client_hosts, initiations
from rig.analysis.sides import Side
from rig.analysis.summary import addr_texts
from rig.capture import read_capture

from tests._analysis_scenarios import Path, Pkt


def test_an_answer_from_another_port_initiates_nothing(tmp_path):
    """A TFTP read request to port 69 answered from the server's port 40123, the host's
    only exchange: the host is the client, the server initiated nothing."""
    w = Path()
    q = w.out(Pkt(w.client, w.server, 17, sport=50000, dport=69, payload=b"\x00\x01boot\x00octet\x00", ip_id=1))
    w.back(Pkt(q.dst, q.src, 17, sport=40123, dport=q.sport, payload=b"\x00\x03\x00\x01" + bytes(512), ip_id=2))
    c, _ = w.write(tmp_path)
    side = Side("client", read_capture(str(c)))
    src, dst = initiations(side)
    assert list(zip(addr_texts(src, side.addrs), addr_texts(dst, side.addrs))) == [(w.client, w.server)]
    client = side.addr_keys("src", np.array([0]))
    assert client_hosts(side) == set(client.tolist())
