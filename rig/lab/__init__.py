"""The local lab: the seed's double-NAT network in Linux network namespaces.

topology.py describes the network as data; scenarios.py describes the faults; build.py
makes both real with ip/nft and takes them down; services.py runs sshd, Apache and the
UDP echo service inside it; clean.py sweeps what killed runs left behind. The backend
that ties them together is rig.backends.lab.LabBackend.
"""
