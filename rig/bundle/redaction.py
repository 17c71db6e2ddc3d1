"""Redacting a bundle for sharing: every private address in the bundle's own files
(captures and text files) replaced by a stable stand-in (``rig.redact``), then the
files re-hashed in the manifest, which says it is redacted."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

from rig.bundle.credentials import BINARY_SUFFIXES
from rig.bundle.files import hash_paths, load_manifest, owned_files, save_manifest
from rig.bundle.manifest import Manifest
from rig.redact import AddressMap, add_private_network, rewrite_pcap


def redact(out_dir: Path | str, extra_private: tuple[str, ...] = ()) -> dict[str, str]:
    """Replace every private address (RFC 1918, RFC 6598 shared, ULA, link-local) in
    the bundle's files by a stable stand-in. Returns {"stand-in": "v4"|"v6"} (never the
    originals); a bundle already redacted is left alone (a second pass would re-map the
    stand-ins)."""
    root = Path(out_dir)
    m = load_manifest(root)
    if m.redacted:
        return {}
    for cidr in extra_private:
        add_private_network(cidr)
    owned = owned_files(root, m)
    amap = AddressMap()
    caps = [r for r in owned if r.startswith("captures/") and Path(r).suffix in (".pcap", ".pcapng")]
    # client capture first, so the client's addresses get the first stand-ins
    caps.sort(key=lambda r: (Path(r).stem != "client", r))
    stats = {}
    for rel in caps:
        cap = root / rel
        if not cap.is_file() or cap.is_symlink():
            continue
        new, st = rewrite_pcap(cap.read_bytes(), amap)
        cap.write_bytes(new)
        stats[cap.name] = st
    for rel in owned:
        p = root / rel
        if not p.is_file() or p.is_symlink() or p.suffix in BINARY_SUFFIXES:
            continue
        try:
            text = p.read_text()
        except UnicodeDecodeError:
            continue
        new_text = amap.sub_text(text)
        if new_text != text:
            p.write_text(new_text)
    # the manifest's own text (spec, backend facts) gets the same substitution
    m = Manifest.from_json(json.loads(amap.sub_text(json.dumps(m.to_json()))), str(root))
    save_manifest(root, m.replace(
        redacted={
            "what": "private addresses (RFC 1918, RFC 6598, link-local, ULA) replaced by stand-ins",
            "stand_ins": len(amap.map),
            "captures": stats,
        },
        files=hash_paths(root, owned),
    ))
    return {str(ipaddress.ip_address(v)): "v4" if len(v) == 4 else "v6" for v in amap.map.values()}
