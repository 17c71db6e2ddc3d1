"""rig: find out where packets die between a client behind NATs and a server.

Where things live:
  rig.capture   reading pcap/pcapng into a packet table (fast numpy path + reference decoder)
  rig.analysis  matching packets across capture points, exchanges, outcomes, diagnosis
  rig.verdict   the `rig.verdict/1` records and their JSON
  rig.lab       the double-NAT network in Linux network namespaces, with fault scenarios
  rig.backends  lab / azure / ssh responders behind one interface
  rig.cli       the thin command line
"""

__version__ = "0.1.0"
