"""Writing a run's bundle: ``BundleWriter`` during the run, ``finish_failed`` and
``append_log`` on a bundle after it.

The writer only ever writes into a directory it made or found empty, and only the
files it hands out or writes itself (``captures/<point>.pcap``, ``logs/<name>``,
``probes.jsonl``, ``verdict.json``, ``report.html``); it lists them in the manifest
(``written``) as it goes, so sealing it — here or, after a killed run, in
``finish_failed`` — sweeps and hashes those files (and what else landed in the
captures/ and logs/ directories it made) and nothing else.

A full disk must not lose the manifest: the writer holds back ``RESERVE`` bytes in a
hidden file from the start and frees it to seal the bundle. Manifest updates during
the run that fail (the disk is full) are retried at the next update; a write the run
depends on (a probe record, the verdict, a log) fails the run with one line (exit 3),
and the bundle is sealed ``failed`` with that reason.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import sys
import time
import datetime as _dt
from pathlib import Path
from typing import Any, Iterator, Mapping

from rig.bundle.credentials import PRIVATE_KEY_NAMES, SecretRefused, looks_like_private_key, scrub_spec, scrub_text, \
    sweep_secrets
from rig.bundle.environment import kernel, tool_versions
from rig.bundle.files import NO_SPACE, bundle_files, check_name, hash_paths, load_manifest, owned_files, save_manifest, write_failed, \
    writing
from rig.bundle.manifest import MANIFEST, PROBES, REPORT, STATUSES, VERDICT, Manifest, Timing
from rig.errors import UsageError

RESERVE = 1 << 20  # held back for sealing: the final manifest (a few KB) and the report
_RESERVE_NAME = ".reserve"


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")


def _as_dict(obj: Any) -> dict:
    if obj is None:
        return {}
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    import dataclasses

    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    return dict(obj)


def _flag(spec: Any, key: str) -> bool:
    from rig.config import run_options

    opts = (spec.get("options") if isinstance(spec, Mapping) else getattr(spec, "options", None)) or {}
    return bool(getattr(run_options({key: str(opts[key])} if key in opts else {}), key))


class BundleWriter:
    """Writes one run's bundle. ``finish()`` must always be called (the pipeline does it
    in ``finally``); until then the manifest says ``running``."""

    def __init__(self, out_dir: Path | str, spec: Any):
        self.root = Path(out_dir)
        self._written: list[str] = []
        self._made: list[Path] = []  # what to remove again if the writer cannot start
        self._flush_error: OSError | None = None
        self._finished = False
        self.archive_path: Path | None = None
        self._redact = _flag(spec, "redact")
        self._archive = _flag(spec, "archive")
        self._t0 = time.monotonic()
        try:
            self._start(spec)
        except BaseException:
            self._undo()
            raise

    def _start(self, spec: Any) -> None:
        try:
            if not self.root.exists():
                self.root.mkdir(parents=True)
                self._made.append(self.root)
            elif any(os.scandir(self.root)):
                raise UsageError(f"{self.root} is not empty: a bundle is written only into a new or empty directory")
            for sub in ("captures", "logs"):
                (self.root / sub).mkdir()
                self._made.append(self.root / sub)
            self._hold_reserve()
        except FileExistsError as exc:
            raise UsageError(f"{self.root} is not a directory a bundle can be written into") from exc
        except OSError as exc:
            if exc.errno in NO_SPACE:
                raise write_failed(exc, self.root) from exc
            raise UsageError(f"cannot write a bundle at {self.root} ({exc.strerror or exc})") from exc
        self.manifest = Manifest(
            id=self.root.name,
            started=now(),
            status="running",
            spec=scrub_spec(spec),
            kernel=kernel(),
            python=sys.version.split()[0],
            host=platform.node(),
        )
        self._flush(strict=True)

    def _hold_reserve(self) -> None:
        path = self.root / _RESERVE_NAME
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self._made.append(path)
        try:
            os.posix_fallocate(fd, 0, RESERVE)
        finally:
            os.close(fd)

    def _release_reserve(self) -> None:
        (self.root / _RESERVE_NAME).unlink(missing_ok=True)

    def _undo(self) -> None:
        """The writer could not start: remove what it made (only that)."""
        with contextlib.suppress(OSError):
            (self.root / MANIFEST).unlink(missing_ok=True)
        for p in reversed(self._made):
            with contextlib.suppress(OSError):
                p.rmdir() if p.is_dir() else p.unlink()

    # -- the files of the bundle (each one the writer hands out is listed)
    def _own(self, rel: str) -> Path:
        if rel not in self._written:
            self._written.append(rel)
            self.manifest = self.manifest.replace(written=tuple(self._written))
            self._flush()
        return self.root / rel

    def capture_path(self, point: str) -> Path:
        """captures/<point>.pcap: tcpdump -w writes here."""
        check_name(point)
        return self._own(f"captures/{point}.pcap")

    def log_path(self, name: str) -> Path:
        """logs/<name> (e.g. access.log, ss-server.txt, ansible-events.jsonl)."""
        check_name(name)
        if PRIVATE_KEY_NAMES.match(name):
            raise SecretRefused(f"refusing to put {name!r} into a bundle: it is named like a private key")
        return self._own(f"logs/{name}")

    def write_log(self, name: str, text: str) -> Path:
        """logs/<name> with ``text``; a failed write (full disk) is one line, exit 3."""
        dst = self.log_path(name)
        with writing(self.root):
            dst.write_text(text)
        return dst

    def add_file(self, src: Path | str, name: str) -> Path:
        """Copy a file into logs/ after checking it is not a key or credential."""
        src = Path(src)
        data = src.read_bytes()
        if looks_like_private_key(data, src.name):
            raise SecretRefused(f"refusing to put {src.name!r} into a bundle: it looks like a private key")
        dst = self.log_path(name)
        with writing(self.root):
            dst.write_bytes(data)
        return dst

    # -- records
    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time one pipeline stage; its outcome (ok / error text) goes into the manifest."""
        i = len(self.manifest.timings)
        rec = Timing(name, now())
        self.manifest = self.manifest.replace(timings=(*self.manifest.timings, rec))
        t = time.monotonic()
        ok, error = True, None
        try:
            yield
        except BaseException as exc:
            ok, error = False, scrub_text(str(exc) or type(exc).__name__)
            raise
        finally:
            done = Timing(name, rec.start, round(time.monotonic() - t, 4), ok, error)
            ts = self.manifest.timings
            self.manifest = self.manifest.replace(timings=(*ts[:i], done, *ts[i + 1:]))
            self._flush()

    def begin_stage(self, name: str):
        """A stage that runs behind the next ones (rig run's configure in a fresh lab): its
        record takes its place now, in the order stages start, still open; the returned
        ``end(seconds, error=None)`` completes it (``seconds`` as the stage measured them)."""
        i = len(self.manifest.timings)
        rec = Timing(name, now())
        self.manifest = self.manifest.replace(timings=(*self.manifest.timings, rec))

        def end(seconds: float, error: str | None = None) -> None:
            done = Timing(name, rec.start, round(seconds, 4), error is None,
                          None if error is None else scrub_text(error))
            ts = self.manifest.timings
            self.manifest = self.manifest.replace(timings=(*ts[:i], done, *ts[i + 1:]))
            self._flush()

        return end

    def add_probe(self, record: Any) -> None:
        """Append one probe result (a dict or an object with to_dict()) to probes.jsonl."""
        line = scrub_text(json.dumps(_as_dict(record), default=str, sort_keys=False))
        with writing(self.root), open(self._own(PROBES), "a") as f:
            f.write(line + "\n")

    def set_facts(
        self,
        backend: Mapping[str, Any] | None = None,
        kernel_drops: Mapping[str, Any] | None = None,
        clock_offset: Mapping[str, Any] | None = None,
        **extra: Any,
    ) -> None:
        """Backend facts (server_addr, region, VM size...), per-point kernel drops, the
        clock-offset estimate between points, and anything else worth keeping."""
        m = self.manifest
        if backend is not None:
            m = m.replace(backend=scrub_spec(dict(backend)))
        if kernel_drops is not None:
            m = m.replace(kernel_drops=dict(kernel_drops))
        if clock_offset is not None:
            m = m.replace(clock_offset=dict(clock_offset))
        if extra:
            m = m.replace(facts={**m.facts, **scrub_spec(extra)})
        self.manifest = m
        self._flush()

    def write_verdict(self, verdict: Any) -> None:
        """verdict.json (the rig.verdict/1 object). The report beside it is rendered once,
        by finish(), so that it shows the final status and timings."""
        from rig.bundle.files import write_text_atomic
        from rig.verdict import Verdict, write_verdict_json

        # the same text as rig run --json / rig diff --json (one writer, rig.verdict)
        vd = verdict if isinstance(verdict, Verdict) else _as_dict(verdict)
        with writing(self.root):
            write_text_atomic(self._own(VERDICT), lambda f: write_verdict_json(vd, f))
        if not self.manifest.clock_offset:  # the analysis estimated it from matched packets
            points = ([c.to_dict() for c in vd.capture_points] if isinstance(vd, Verdict)
                      else vd.get("capture_points", ()))
            est = {c["name"]: c["clock_offset_s"] for c in points
                   if c.get("clock_offset_s") is not None and c.get("name") != "client"}
            if est:
                self.manifest = self.manifest.replace(
                    clock_offset={"seconds_ahead_of_client": est, "source": "analysis"})
        self._flush()

    def _render_report(self) -> None:
        """report.html from verdict.json and the manifest. A report that fails to render
        never fails the run: the error is kept in the manifest (``report_error``) and a
        half-written report removed."""
        if not (self.root / VERDICT).exists():
            return
        dst = self._own(REPORT)
        try:
            from rig.report.html import write_report

            write_report(self.root, verdict=json.loads((self.root / VERDICT).read_text()),
                         manifest=self.manifest.to_json())
            self.manifest = self.manifest.replace(report_error=None)
        except Exception as exc:  # the report is a view; the verdict is the result
            if isinstance(exc, OSError):
                dst.unlink(missing_ok=True)
            self.manifest = self.manifest.replace(report_error=f"{type(exc).__name__}: {exc}")

    def finish(self, status: str, error: str | None = None) -> Path:
        """Seal the bundle: final status, tool versions, credential sweep, file hashes."""
        if status not in STATUSES or status == "running":
            raise ValueError(f"bad bundle status {status!r}")
        self._release_reserve()
        try:
            tools = tool_versions()
        except Exception as exc:  # never let the environment survey lose the bundle
            tools = {"error": str(exc)}
        self.manifest = self.manifest.replace(
            status=status, error=scrub_text(error) if error else None, finished=now(),
            seconds=round(time.monotonic() - self._t0, 3), tools=tools)
        self._render_report()
        self._seal()
        self._finished = True
        # the spec's --redact / --archive (RunSpec.options) are honoured here, after sealing
        if self._redact:
            from rig.bundle.redaction import redact

            try:
                redact(self.root)
                self.manifest = load_manifest(self.root)
                self._render_report()  # the report says it is redacted
                self._seal()
            except Exception as exc:  # keep the bundle; say it is NOT redacted
                self.manifest = self.manifest.replace(redact_error=f"{type(exc).__name__}: {exc}")
                self._flush(strict=True)
        if self._archive:
            from rig.bundle.archive import archive

            self.archive_path = archive(self.root)
        return self.root

    def _seal(self) -> None:
        owned = bundle_files(self.root, self._written)
        removed = sweep_secrets(self.root, owned)
        self.manifest = self.manifest.replace(
            removed=(*removed, *self.manifest.removed), files=hash_paths(self.root, owned))
        self._flush(strict=True)

    def _flush(self, strict: bool = False) -> None:
        """Write the manifest. During the run a failure is kept and retried at the next
        update (a full disk must not abort teardown); ``strict`` (start, sealing) raises
        it as one line."""
        try:
            save_manifest(self.root, self.manifest)
            self._flush_error = None
        except OSError as exc:
            self._flush_error = exc
            if strict:
                raise write_failed(exc, self.root) from exc


def append_log(root: Path | str, name: str, text: str) -> Path:
    """Add (or extend) logs/<name> in a finished bundle, scrubbed, and re-hash it."""
    root = Path(root)
    check_name(name)
    rel = f"logs/{name}"
    try:
        (root / "logs").mkdir(exist_ok=True)
        with open(root / rel, "a") as f:
            f.write(scrub_text(text))
        if (root / MANIFEST).exists():
            m = load_manifest(root)
            owned = sorted({*owned_files(root, m), rel})
            save_manifest(root, m.replace(written=tuple(owned), files=hash_paths(root, owned)))
    except OSError as exc:
        raise write_failed(exc, root) from exc
    return root / rel


def finish_failed(root: Path | str, error: str) -> None:
    """Seal a bundle whose run died before ``finish`` (manifest still ``running``) or
    record a failure on top of it: status ``failed``, the error, hashes. Only the files
    the bundle owns (``written``) are swept and hashed."""
    root = Path(root)
    m = load_manifest(root)
    (root / _RESERVE_NAME).unlink(missing_ok=True)  # a killed writer's reserve
    owned = owned_files(root, m)
    try:
        removed = sweep_secrets(root, owned)
        save_manifest(root, m.replace(
            status="failed",
            error=scrub_text(error if not m.error else f"{error} (the run said: {m.error})"),
            finished=m.finished or now(),
            removed=(*removed, *m.removed),
            written=tuple(owned),
            files=hash_paths(root, owned),
        ))
    except OSError as exc:
        raise write_failed(exc, root) from exc



