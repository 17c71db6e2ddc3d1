# What the responder has now, in one round trip (run by playbooks/server.yml with the
# server's python3, standard library only). argv[1] is JSON:
#   {"dirs": [...], "files": [...], "addr": "...", "http": 80, "udp": 7}
# Prints JSON: which directories are missing, the sha1 of every file (null if absent),
# and whether Apache (TCP connect) and the UDP echo (its port is bound) are up.
import hashlib
import json
import os
import socket
import sys

want = json.loads(sys.argv[1])
sha1 = {}  # type: dict[str, str | None]
for path in want["files"]:
    try:
        with open(path, "rb") as fh:
            sha1[path] = hashlib.sha1(fh.read()).hexdigest()
    except OSError:
        sha1[path] = None
out = {"missing_dirs": [d for d in want["dirs"] if not os.path.isdir(d)], "sha1": sha1}  # type: dict[str, object]
try:
    socket.create_connection((want["addr"], int(want["http"])), timeout=2).close()
    out["apache"] = "up"
except OSError:
    out["apache"] = "down"
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
try:
    sock.bind((want["addr"], int(want["udp"])))
    out["udp_echo"] = "down"
except OSError:
    out["udp_echo"] = "up"
finally:
    sock.close()
print(json.dumps(out))
