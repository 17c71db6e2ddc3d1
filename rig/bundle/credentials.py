"""Keeping credentials out of a bundle: what a private key or a token looks like, the
spec with secret values dropped, and the sweep that seals a bundle.

The sweep is given the files to visit (the ones the bundle's writer created, listed in
the manifest's ``written``); it never walks a directory, so nothing the writer did not
create is ever opened, changed or removed.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any, Iterable, Mapping

from rig.bundle.manifest import MANIFEST, Removed
from rig.errors import UsageError

# Content that must never be written into a bundle.
_PRIVATE_KEY_RE = re.compile(
    rb"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----|PuTTY-User-Key-File-\d|-----BEGIN PGP PRIVATE KEY BLOCK-----"
)
# Token-like strings inside text files (logs, ansible events): replaced, not dropped.
_TOKEN_RES = [
    re.compile(r"(?i)\b(authorization\s*[:=]\s*)(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"),  # JWT
    # "password": "x" (JSON, quoted key) and PASSWORD=x / --password=x (env, flags)
    re.compile(
        r"(?i)(\"[A-Z0-9_.-]*(?:password|passwd|secret|token|api_?key|access_?key|sas)[A-Z0-9_.-]*\"\s*:\s*\")"
        r"([^\"]{3,})"
    ),
    re.compile(r"(?i)(\b[A-Z0-9_.-]*(?:password|passwd|secret|token|api_?key|access_?key|sas)[A-Z0-9_.-]*=)([^\s\"',}]{3,})"),
    # key: value (YAML-ish) only when the value looks generated (has a digit, 8+ chars)
    re.compile(
        r"(?i)(\b[A-Z0-9_.-]*(?:password|passwd|secret|token|api_?key|access_?key)[A-Z0-9_.-]*:\s*)"
        r"(?=[^\s\"',}]*\d)([^\s\"',}]{8,})"
    ),
]
# A word every token pattern needs in its match (each pattern names one of these, with
# the same flags), so a text holding none is returned without running them: their
# leading [A-Z0-9_.-]* makes them slow on long text (30 ms for a run's 100 KB verdict,
# ~0.1 s for the whole seal of a bundle), where the look-up below takes microseconds.
_TOKEN_WORDS = ("authorization", "password", "passwd", "secret", "token", "apikey", "api_key", "accesskey",
                "access_key", "sas")
_TOKEN_WORDS_RE = re.compile("(?i)" + "|".join(_TOKEN_WORDS))
# the private key pattern's literals: no file is searched with it that holds neither
_PRIVATE_KEY_WORDS = (b"PRIVATE KEY", b"PuTTY-User-Key-File-")
_SECRET_NAME_RE = re.compile(r"(?i)(password|passwd|secret|token|credential|api_?key|access_?key|private_?key)")
PRIVATE_KEY_NAMES = re.compile(r"(?i)^(id_(rsa|dsa|ecdsa|ed25519)(_sk)?|.*\.(pem|key|p12|pfx|ppk))$")

REDACTED = "[redacted]"
# captures are binary: never scrubbed as text (redaction rewrites their addresses)
BINARY_SUFFIXES = (".pcap", ".pcapng", ".gz")


class SecretRefused(UsageError):
    """A file that looks like a private key or credential was offered to a bundle."""


def looks_like_private_key(data: bytes, name: str = "") -> bool:
    """True for the bytes of a private key (PEM/OpenSSH/PuTTY/PGP) or a key-like file name."""
    if any(word in data for word in _PRIVATE_KEY_WORDS) and _PRIVATE_KEY_RE.search(data):
        return True
    return bool(PRIVATE_KEY_NAMES.match(name))


def _may_hold_token(text: str) -> bool:
    """False only when no token pattern can match ``text`` (see _TOKEN_WORDS)."""
    if "eyJ" in text:  # a JWT's two segments
        return True
    if text.isascii():  # (?i) on ASCII is lower(): plain substring look-ups
        low = text.lower()
        return any(word in low for word in _TOKEN_WORDS)
    return _TOKEN_WORDS_RE.search(text) is not None  # Unicode case folding, as the patterns do


def scrub_text(text: str) -> str:
    """Replace token-like values (bearer tokens, JWTs, password=/secret= values) in text."""
    if not _may_hold_token(text):
        return text
    text = _TOKEN_RES[0].sub(lambda m: m.group(1) + REDACTED, text)
    text = _TOKEN_RES[1].sub(REDACTED, text)
    for rx in _TOKEN_RES[2:]:
        text = rx.sub(lambda m: m.group(1) + REDACTED, text)
    return text


def scrub_spec(obj: Any) -> Any:
    """The spec as plain JSON data, with values under secret-sounding keys dropped."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        obj = dataclasses.asdict(obj)
    if isinstance(obj, Mapping):
        out = {}
        for k, v in obj.items():
            if _SECRET_NAME_RE.search(str(k)) and v not in (None, "", False):
                out[str(k)] = REDACTED
            else:
                out[str(k)] = scrub_spec(v)
        return out
    if isinstance(obj, (list, tuple)):
        return [scrub_spec(v) for v in obj]
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return str(obj)


def sweep_secrets(root: Path, paths: Iterable[str]) -> list[Removed]:
    """Visit the bundle files ``paths`` (relative to ``root``; the writer's own): remove
    the ones that are or contain private keys, or that are symlinks; scrub tokens out of
    text files (a file that cannot be scrubbed, e.g. on a full disk, is removed rather
    than left with a token). Returns what was removed, for the manifest."""
    removed = []
    for rel in sorted(set(paths)):
        p = root / rel
        if Path(rel).name == MANIFEST:
            continue
        if p.is_symlink():
            p.unlink()
            removed.append(Removed(rel, "symlink"))
            continue
        if not p.is_file():
            continue
        data = p.read_bytes()
        if looks_like_private_key(data, p.name):
            p.unlink()
            removed.append(Removed(rel, "looks like a private key"))
            continue
        if p.suffix in BINARY_SUFFIXES:
            continue
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            continue
        clean = scrub_text(text)
        if clean != text:
            try:
                p.write_text(clean)
            except OSError as exc:
                p.unlink()
                removed.append(Removed(rel, f"held a token and could not be scrubbed ({exc.strerror})"))
    return removed
