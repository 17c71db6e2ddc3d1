# What the responder has now, in one round trip (run by playbooks/server.yml with the
# server's python3, standard library only). argv[1] is JSON:
#   {"dirs": [...], "files": {"path": "wanted sha1", ...}, "addr": "...", "http": 80, "udp": 7}
# Prints JSON: the directories that are missing, the files that are absent or differ
# from the wanted sha1, whether Apache (TCP connect) and the UDP echo (its port is
# bound) are up, and "in_place": nothing to change.
import hashlib
import json
import os
import socket
import sys

want = json.loads(sys.argv[1])
differ = []
for path, sha1 in sorted(want["files"].items()):
    try:
        with open(path, "rb") as fh:
            if hashlib.sha1(fh.read()).hexdigest() == sha1:
                continue
    except OSError:
        pass
    differ.append(path)
out = {"missing_dirs": [d for d in want["dirs"] if not os.path.isdir(d)], "differ": differ}  # type: dict[str, object]
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
out["in_place"] = not out["missing_dirs"] and not differ and out["apache"] == "up" and out["udp_echo"] == "up"
print(json.dumps(out))
