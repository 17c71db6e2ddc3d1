"""The bundle: the directory one run leaves behind, written even when the run fails.

Layout (format ``rig.bundle/1``)::

    <out>/manifest.json     format, rig version, spec, backend facts, timings per stage,
                            tool versions, kernel, clock-offset estimate, status, the
                            files the writer created, sha256 of every other file
    <out>/captures/<point>.pcap
    <out>/probes.jsonl      one ProbeResult.to_dict() per line
    <out>/logs/...          Apache access log, socket states, ansible events
    <out>/verdict.json      the rig.verdict/1 object (DESIGN.md §3)
    <out>/report.html       the self-contained report (rig.report.html)

One module per job:

- ``manifest``    the typed ``Manifest`` (same JSON keys), format versions, upgrades
- ``outdir``      where a run's bundle goes (``rig run --out``: new or empty only)
- ``writer``      ``BundleWriter`` during a run; ``finish_failed``, ``append_log`` after
- ``files``       hashes, atomic writes, which files a bundle owns
- ``credentials`` keys and tokens kept out: detection, the spec scrub, the sweep
- ``environment`` tool versions and kernel, recorded in every manifest
- ``archive``     ``<bundle>.tar.gz``; ``redaction`` private addresses replaced
- ``reader``      ``open_bundle`` / ``read_bundle``: upgrade old, refuse newer, verify
- ``show``        ``rig show``: re-analysis with the current rig

No credential ever enters a bundle: files that look like private keys or carry tokens
are refused when added and swept again when the bundle is sealed (removed and listed in
the manifest under ``removed``); spec values whose key names a secret are dropped. The
sweep, hashing and redaction visit only the files the writer created.

The reader, ``show`` and the redaction are imported on first use (PEP 562): they pull in
the capture readers and numpy, which a run needs only once its captures are taken, not
to make its bundle directory and writer before the lab exists.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from rig.bundle.archive import archive
from rig.bundle.credentials import (
    REDACTED,
    SecretRefused,
    looks_like_private_key,
    scrub_spec,
    scrub_text,
    sweep_secrets,
)
from rig.bundle.environment import kernel, tool_versions
from rig.bundle.files import hash_files, load_manifest, save_manifest, sha256_file
from rig.bundle.manifest import (
    BUNDLE_FORMAT,
    BUNDLE_VERSION,
    MANIFEST,
    PROBES,
    REPORT,
    STATUSES,
    UPGRADES,
    VERDICT,
    FileHash,
    Manifest,
    ManifestError,
    Removed,
    Timing,
)
from rig.bundle.outdir import OutDir, prepare_out
from rig.bundle.writer import BundleWriter, append_log, finish_failed

if TYPE_CHECKING:
    from rig.bundle.reader import SOFT_FILES, Bundle, open_bundle, read_bundle, read_manifest, verify_files
    from rig.bundle.redaction import redact
    from rig.bundle.show import cli_show, outcome_signature, reanalyse

# the names imported on first use -> the module of this package that holds them
_LAZY = {
    **dict.fromkeys(("SOFT_FILES", "Bundle", "open_bundle", "read_bundle", "read_manifest", "verify_files"), "reader"),
    "redact": "redaction",
    **dict.fromkeys(("cli_show", "outcome_signature", "reanalyse"), "show"),
}


def __getattr__(name: str) -> Any:
    home = _LAZY.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value  # the next look-up is a plain one
    return value


__all__ = [
    "BUNDLE_FORMAT", "BUNDLE_VERSION", "MANIFEST", "PROBES", "REDACTED", "REPORT", "SOFT_FILES", "STATUSES",
    "UPGRADES", "VERDICT", "Bundle", "BundleWriter", "FileHash", "Manifest", "ManifestError", "OutDir", "Removed",
    "SecretRefused", "Timing", "append_log", "archive", "cli_show", "finish_failed", "hash_files", "kernel",
    "load_manifest", "looks_like_private_key", "open_bundle", "outcome_signature", "prepare_out", "read_bundle",
    "read_manifest", "reanalyse", "redact", "save_manifest", "scrub_spec", "scrub_text", "sha256_file",
    "sweep_secrets", "tool_versions", "verify_files",
]
