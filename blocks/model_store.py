"""The model volume: every model in the Hugging Face hub cache layout, with an offline manifest.

Every path of a model in the volume comes from :func:`blocks.layout.model_paths` (the hub
cache layout plus manifests, locks and staging folders).

Only :meth:`ModelStore.warm` writes model files, always a per-process temp name -> fsync ->
``os.replace``, under a file lock. The rename is the commit, so even where ``flock`` is not
reliable (some NFS mounts) two warmers can only both write the same bytes under the same name;
an interrupted warm leaves no manifest. ``locate`` and ``status`` only read and work on a
read-only volume; ``verify`` also records its outcome beside the manifest when it can write.

Every name that becomes a path (catalog files, manifest entries, blob hashes) is checked first:
nothing relative with ``..``, nothing absolute, and snapshot links must land in the model's own
``blobs`` folder. Weights are copied, never loaded, here (no pickle is ever opened).
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import re
import shlex
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from filelock import FileLock
from prefect.blocks.core import Block
from pydantic import Field

import voxflow
from blocks.fetch import CHUNK, Progress, fetch_all, has_size, plan_fetch
from blocks.layout import HEX40, REF, ModelPaths, model_paths
from blocks.sources import HubAccess, Source, open_source
from profiles.catalog import ModelSpec
from voxflow.atomic import temp_name as _temp_name
from voxflow.atomic import write_bytes, writer_gone
from voxflow.errors import ModelNotWarmed, SourceError, StoreFull, StoreReadOnly, VoxflowError
from voxflow.settings import load_settings

log = logging.getLogger(__name__)

_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class WarmResult:
    """What :meth:`ModelStore.warm` did for one model."""

    name: str
    status: Literal["warmed", "present"]
    files: int
    bytes: int
    path: Path
    seconds: float


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of :meth:`ModelStore.verify`; each problem names the file and what is wrong."""

    name: str
    ok: bool
    problems: list[str]
    files: int
    bytes: int


@dataclass(frozen=True)
class ModelStatus:
    """A model's state in the volume, from the manifest and a stat of each file."""

    name: str
    state: Literal["warmed", "cold", "corrupt"]
    size_bytes: int
    path: Path | None
    warmed_at: str | None
    problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Inspection:
    """The manifest (None when absent or unusable), what is wrong, and what to re-hash."""

    manifest: dict[str, Any] | None
    problems: list[str]
    bad: list[str]
    suspects: list[str]


class ModelStore(Block):
    """The model volume every flow loads from; only the warm flow writes to it.

    Attributes:
        root: Root folder of the volume (a local path or a mounted NFS/EFS volume).
        mirrors: Folder URLs tried before a model's own source, as ``<mirror>/<repo_id>/<file>``;
            a mirror that fails is skipped with a warning.
        hub_endpoint: Hub URL for ``hf://`` sources; ``$HF_ENDPOINT`` or huggingface.co if empty.
        hf_token_secret: Name of a Prefect ``Secret`` block holding the hub token (for gated or
            private models); ``$HF_TOKEN`` when empty. The token itself is never stored here.
        max_workers: Files fetched at once.
    """

    _block_type_name = "Voxflow Model Store"

    root: str = Field(default="models", description="Root folder of the model volume.")
    mirrors: list[str] = Field(
        default_factory=list,
        description="Folder URLs tried before the model's source, as <mirror>/<repo_id>/<file>.",
    )
    hub_endpoint: str | None = Field(
        default=None, description="Hub URL for hf:// sources ($HF_ENDPOINT when empty)."
    )
    hf_token_secret: str | None = Field(
        default=None,
        description="Prefect Secret block holding the hub token ($HF_TOKEN when empty).",
    )
    max_workers: int = Field(default=4, ge=1, description="Files fetched at once.")

    # -- layout ------------------------------------------------------------------------------

    def paths(self, spec: ModelSpec) -> ModelPaths:
        """Every path of ``spec`` in this volume (:mod:`blocks.layout`)."""
        return model_paths(self.root, spec)

    def snapshot_id(self, spec: ModelSpec) -> str:
        """The snapshot folder name of ``spec`` in this volume."""
        return self.paths(spec).snapshot_id

    def snapshot_dir(self, spec: ModelSpec) -> Path:
        """Return the folder a backend loads ``spec`` from (whether or not it is warmed)."""
        return self.paths(spec).snapshot

    def manifest_path(self, spec: ModelSpec) -> Path:
        """Return the manifest whose presence means ``spec`` is completely warmed."""
        return self.paths(spec).manifest

    def verified_path(self, spec: ModelSpec) -> Path:
        """Return the record of the last :meth:`verify` of ``spec``."""
        return self.paths(spec).verified

    # -- reading -----------------------------------------------------------------------------

    def locate(self, spec: ModelSpec, warm_command: str | None = None) -> Path:
        """Return the snapshot folder of a warmed model, checking the manifest's sizes.

        Args:
            spec: The catalog entry.
            warm_command: The exact command the user should run when it is not warmed
                (e.g. with ``--profile``); defaults to ``voxflow warm --store <root>``.

        Returns:
            The snapshot folder, to pass to the backend as a local path.

        Raises:
            ModelNotWarmed: No manifest, or a file is missing or has the wrong size.
        """
        state = self._inspect(spec)
        if state.manifest is None or state.problems:
            command = warm_command or f"voxflow warm --store {shlex.quote(self.root)}"
            detail = ", ".join(state.problems)
            raise ModelNotWarmed(spec.name, str(self.snapshot_dir(spec)), detail, command)
        return self.snapshot_dir(spec)

    def status(self, spec: ModelSpec) -> ModelStatus:
        """Return whether ``spec`` is warmed, cold or corrupt, without hashing anything."""
        state = self._inspect(spec)
        if not self.manifest_path(spec).exists():
            return ModelStatus(spec.name, "cold", 0, None, None, tuple(state.problems))
        manifest = state.manifest or {}
        return ModelStatus(
            spec.name,
            "corrupt" if state.problems or state.manifest is None else "warmed",
            int(manifest.get("total_size", 0)),
            self.snapshot_dir(spec),
            manifest.get("warmed_at"),
            tuple(state.problems),
        )

    def manifest(self, spec: ModelSpec) -> dict[str, Any] | None:
        """The manifest of ``spec``'s snapshot when it is there and trusted, else None."""
        return self._inspect(spec).manifest

    def last_verified(self, spec: ModelSpec) -> dict[str, Any] | None:
        """The record of the last verify (``verified_at``, ``deep``, ``ok``, ``bad_files``)."""
        try:
            record = json.loads(self.verified_path(spec).read_text())
        except (OSError, ValueError):
            return None
        return record if isinstance(record, dict) else None

    def verify(self, spec: ModelSpec, deep: bool = False) -> VerifyResult:
        """Check a warmed model against its manifest, offline.

        The outcome is recorded beside the manifest (for ``voxflow cache report``, and so that
        the next warm re-fetches the files a deep verify found bad); on a read-only volume it
        is only returned.

        Args:
            spec: The catalog entry.
            deep: Also recompute each file's sha256 (reads every byte, both cores).

        Returns:
            The result; ``ok`` is false when the model is not warmed or any file differs.
        """
        state = self._inspect(spec)
        manifest, problems, bad = state.manifest, list(state.problems), list(state.bad)
        if manifest is None:
            return VerifyResult(
                spec.name, False, ["not warmed"] if problems == ["no manifest"] else problems, 0, 0
            )
        entries = manifest["files"]
        if deep:
            snapshot = self.snapshot_dir(spec)
            # Files with a wrong size are already reported; hash the rest.
            sized = [e for e in entries if e["path"] not in bad]
            for entry, digest in zip(sized, self._hash_all(snapshot, sized), strict=True):
                if digest != entry["sha256"]:
                    problems.append(
                        f"{entry['path']}: sha256 is {digest}, manifest says {entry['sha256']}"
                    )
                    bad.append(entry["path"])
        total = sum(e["size"] for e in entries)
        self._record_verify(spec, deep, problems, bad)
        return VerifyResult(spec.name, not problems, problems, len(entries), total)

    def _hash_all(self, snapshot: Path, entries: list[dict[str, Any]]) -> list[str]:
        # hashlib releases the GIL on large buffers, so threads use every core.
        workers = max(1, min(len(entries), os.cpu_count() or 2))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(lambda e: _sha256(snapshot / e["path"]), entries))

    def _record_verify(self, spec: ModelSpec, deep: bool, problems: list[str], bad: list[str]):
        record = {
            "verified_at": _now(),
            "deep": deep,
            "ok": not problems,
            "problems": problems,
            "bad_files": sorted(set(bad)),
        }
        try:
            _atomic_write(self.verified_path(spec), json.dumps(record, indent=2).encode())
        except OSError as e:  # a read-only volume: verify still answers, it just cannot note it
            log.debug("cannot record the verify of %s: %s", spec.name, e)

    def _inspect(self, spec: ModelSpec, suspects: bool = False) -> _Inspection:
        """Read the manifest and stat each file; with ``suspects``, also list files to re-hash.

        A file is a suspect when its bytes changed after the manifest was written (its mtime is
        newer) or the last verify found it bad: cheap signs of a flipped byte that a size check
        cannot see.
        """
        path = self.manifest_path(spec)
        try:
            raw = path.read_bytes()
            manifest_mtime = path.stat().st_mtime_ns
            manifest = json.loads(raw)
            entries = manifest["files"]
            for entry in entries:
                _check_entry(entry)
            sizes = {e["path"]: e["size"] for e in entries}
        except FileNotFoundError:
            return _Inspection(None, ["no manifest"], [], [])
        except SourceError as e:
            return _Inspection(None, [f"manifest {path} is refused: {e}"], [], [])
        except (OSError, ValueError, KeyError, TypeError) as e:
            return _Inspection(None, [f"manifest {path} is unreadable ({e!r})"], [], [])
        snapshot = self.snapshot_dir(spec)
        blobs = os.path.realpath(self.paths(spec).blobs)
        problems = [f"{f} is not in the manifest" for f in spec.files if f not in sizes]
        bad: list[str] = []
        newer: list[str] = []
        for file, size in sizes.items():
            target = snapshot / file
            try:
                st = target.stat()
            except FileNotFoundError:
                problems.append(f"{file} is missing")
                bad.append(file)
                continue
            except OSError as e:
                problems.append(f"{file} cannot be read ({e.strerror})")
                bad.append(file)
                continue
            if os.path.commonpath([blobs, os.path.realpath(target)]) != blobs:
                problems.append(f"{file} points outside the model's blobs")
                bad.append(file)
            elif st.st_size != size:
                problems.append(f"{file} is {st.st_size} bytes, manifest says {size}")
                bad.append(file)
            elif st.st_mtime_ns > manifest_mtime:
                newer.append(file)
        found: list[str] = []
        if suspects:
            record = self.last_verified(spec) or {}
            flagged = record.get("bad_files", []) if not record.get("ok", True) else []
            found = sorted({*newer, *(f for f in flagged if f in sizes)} - set(bad))
        return _Inspection(manifest, problems, bad, found)

    # -- writing -----------------------------------------------------------------------------

    def warm(
        self, spec: ModelSpec, progress: Progress | None = None, force: bool = False
    ) -> WarmResult:
        """Copy a model's files into the volume, unless they are already there.

        A model that is present costs a stat per file. Files whose bytes changed since the
        manifest was written, or that the last ``verify --deep`` found bad, are re-hashed and
        fetched again if they differ, so a plain warm repairs a flipped byte.

        Args:
            spec: The catalog entry.
            progress: Called as ``progress(file, bytes_done, file_size)`` while copying.
            force: Copy every file again, trusting nothing on the volume.

        Returns:
            ``status="present"`` when everything already matched (nothing written), else
            ``"warmed"``.

        Raises:
            SourceError: The source cannot deliver a file, is at another revision, or a file
                name would escape the volume.
            StoreReadOnly: The volume cannot be written.
            StoreFull: The volume ran out of space.
        """
        started = time.monotonic()
        for file in spec.files:
            _check_name(spec, file)
        outcome: Literal["warmed", "present"] = "present"
        state = self._inspect(spec, suspects=True)
        manifest = state.manifest
        if not (force or manifest is None or state.problems or state.suspects):
            pass  # the common case: one stat per file, nothing written
        elif not (force or manifest is None or state.problems) and not self._writable():
            # A read-only volume with only suspects: answer without writing if they hash right.
            if self._rehash(spec, manifest, state.suspects):
                raise StoreReadOnly(self.root, "files differ from their manifest")
        else:
            self.check_writable()
            lock = self.paths(spec).lock
            try:
                with FileLock(lock, mode=0o664):
                    state = self._inspect(spec, suspects=True)  # another warmer may be done
                    manifest = state.manifest
                    bad = set(state.bad)
                    if manifest is not None and state.suspects and not force:
                        bad |= self._rehash(spec, manifest, state.suspects)
                    if force or manifest is None or bad or state.problems:
                        manifest = self._fill(spec, manifest, progress, force, bad)
                        outcome = "warmed"
                    elif state.suspects:
                        self._settle(spec, state.suspects)
            except VoxflowError:
                raise
            except OSError as e:
                if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
                    raise StoreReadOnly(self.root, e.strerror or str(e)) from e
                raise
        assert manifest is not None
        result = WarmResult(
            spec.name,
            outcome,
            len(manifest["files"]),
            manifest["total_size"],
            self.snapshot_dir(spec),
            round(time.monotonic() - started, 3),
        )
        log.info("%s %s: %d files, %d bytes", outcome, spec.name, result.files, result.bytes)
        return result

    def _writable(self) -> bool:
        return os.access(self.root, os.W_OK)

    def _rehash(self, spec: ModelSpec, manifest: dict[str, Any], files: list[str]) -> set[str]:
        """Return the files among ``files`` whose sha256 differs from the manifest."""
        entries = [e for e in manifest["files"] if e["path"] in files]
        digests = self._hash_all(self.snapshot_dir(spec), entries)
        bad = {e["path"] for e, d in zip(entries, digests, strict=True) if d != e["sha256"]}
        for file in sorted(bad):
            log.warning("%s: %s differs from its manifest; fetching it again", spec.name, file)
        return bad

    def _settle(self, spec: ModelSpec, files: list[str]) -> None:
        """Suspects hashed right: mark the manifest current so the next warm is a stat again."""
        snapshot = self.snapshot_dir(spec)
        newest = max((snapshot / f).stat().st_mtime_ns for f in files)
        stamp = max(time.time_ns(), newest + 1)
        os.utime(self.manifest_path(spec), ns=(stamp, stamp))
        self.verified_path(spec).unlink(missing_ok=True)

    def check_writable(self) -> None:
        """Raise :class:`StoreReadOnly` unless this process can write the volume."""
        root = Path(self.root)
        try:
            (root / ".locks").mkdir(parents=True, exist_ok=True)
        except OSError as e:
            if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
                raise StoreReadOnly(self.root, e.strerror or str(e)) from e
            raise
        if not os.access(root, os.W_OK):
            raise StoreReadOnly(self.root, "no write permission")

    def hub_access(self) -> HubAccess:
        """Endpoint and token for ``hf://`` sources: this block's fields, else the settings.

        Raises:
            SourceError: ``hf_token_secret`` names a Secret block that cannot be loaded.
        """
        settings = load_settings()
        token = settings.hf_token
        if self.hf_token_secret:
            from prefect.blocks.system import Secret

            try:
                token = str(Secret.load(self.hf_token_secret).get())
            except Exception as e:  # Prefect raises ValueError, httpx errors, ...
                raise SourceError(
                    f"cannot load the Prefect Secret block {self.hf_token_secret!r} named by the "
                    f"model store's hf_token_secret ({type(e).__name__}); create it (Blocks > "
                    "Secret in the UI, or Secret(value=...).save(name)) or fix the name"
                ) from e
        return HubAccess(endpoint=self.hub_endpoint or settings.hf_endpoint, token=token)

    def _fill(
        self,
        spec: ModelSpec,
        old: dict[str, Any] | None,
        progress: Progress | None,
        force: bool,
        bad: set[str],
    ) -> dict[str, Any]:
        """Fetch what is missing or bad, link the snapshot, then write manifest and refs."""
        # A stale manifest must go first: an interrupted repair must not look complete.
        self.manifest_path(spec).unlink(missing_ok=True)
        self.verified_path(spec).unlink(missing_ok=True)
        paths = self.paths(spec)
        blobs = paths.blobs
        source = open_source(spec, self.hub_access() if spec.scheme == "hf" else None)
        known = {} if force else {e["path"]: e for e in (old or {}).get("files", [])}
        reuse = {
            f: known[f]
            for f in spec.files
            if f in known
            and f not in bad
            and has_size(blobs / known[f]["sha256"], known[f]["size"])
        }
        jobs = [f for f in spec.files if f not in reuse]
        staging = paths.staging / _temp_name()
        needed = sum(e["size"] for e in reuse.values())
        try:
            blobs.mkdir(parents=True, exist_ok=True)
            _clean_stale(blobs, staging.parent)
            plan = plan_fetch(spec, source, jobs, self.mirrors)
            needed += sum(size or 0 for _, cands in plan for _, size in cands[:1])
            fetched = fetch_all(
                spec, source, plan, blobs, staging, progress, force or bad, self.max_workers
            )
            entries = [reuse.get(f) or fetched[f] for f in spec.files]
            snapshot_id = self._resolved_snapshot(spec, source)
            resolved = paths.with_snapshot(snapshot_id)
            snapshot = resolved.snapshot
            for entry in entries:
                _link(snapshot / entry["path"], blobs / entry["sha256"])
            manifest = {
                "name": spec.name,
                "repo_id": spec.repo_id,
                "source": spec.source,
                "revision": spec.revision,
                "snapshot_id": snapshot_id,
                "format": spec.format,
                "files": entries,
                "total_size": sum(e["size"] for e in entries),
                "warmed_at": _now(),
                "voxflow": voxflow.__version__,
            }
            _atomic_write(resolved.manifest, json.dumps(manifest, indent=2).encode())
            _atomic_write(paths.ref("main"), snapshot_id.encode())
            if spec.revision != "main" and spec.scheme == "hf" and REF.fullmatch(spec.revision):
                if not HEX40.fullmatch(spec.revision):
                    _atomic_write(paths.ref(spec.revision), snapshot_id.encode())
        except OSError as e:
            if e.errno == errno.ENOSPC and not isinstance(e, VoxflowError):
                free = shutil.disk_usage(self.root).free
                raise StoreFull(self.root, spec.name, needed, free) from e
            raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return manifest

    def _resolved_snapshot(self, spec: ModelSpec, source: Source) -> str:
        if spec.scheme == "hf" and not HEX40.fullmatch(spec.revision):
            commit = source.commit()  # type: ignore[attr-defined]
            log.info("%s: revision %s is commit %s", spec.name, spec.revision, commit)
            return commit
        return spec.snapshot_id


def _check_name(spec: ModelSpec, file: str) -> None:
    if not _safe_name(file):
        raise SourceError(
            f"model {spec.name!r} lists file {file!r}, which would escape the model volume; "
            "file names must be relative paths without '..'"
        )


def _safe_name(file: object) -> bool:
    if not isinstance(file, str) or not file or "\\" in file or "\x00" in file:
        return False
    path = PurePosixPath(file)
    return not path.is_absolute() and ".." not in path.parts and path.parts != ()


def _check_entry(entry: Any) -> None:
    """A manifest entry names a safe relative path, a sha256 and a size; else SourceError."""
    if not isinstance(entry, dict) or not _safe_name(entry.get("path")):
        path = entry.get("path") if isinstance(entry, dict) else entry
        raise SourceError(f"it lists {path!r}, which would escape the model volume")
    if not isinstance(entry.get("sha256"), str) or not _HEX64.fullmatch(entry["sha256"]):
        raise SourceError(f"{entry['path']!r} has no valid sha256 ({entry.get('sha256')!r})")
    if not isinstance(entry.get("size"), int) or entry["size"] < 0:
        raise SourceError(f"{entry['path']!r} has no valid size ({entry.get('size')!r})")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _clean_stale(blobs: Path, staging: Path) -> None:
    """Remove temp files and staging folders left by killed warmers (called under the lock)."""
    for path in [*blobs.glob(".*.incomplete"), *(staging.iterdir() if staging.is_dir() else [])]:
        name = path.name.removesuffix(".incomplete")
        try:
            if writer_gone(name, path.lstat().st_mtime):
                log.info("removing %s, left by an interrupted warm", path)
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
        except FileNotFoundError:
            continue


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _link(dest: Path, blob: Path) -> None:
    """Point ``dest`` at ``blob`` with a relative symlink, replacing atomically."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    target = os.path.relpath(blob, dest.parent)
    if dest.is_symlink() and os.readlink(dest) == target:
        return
    tmp = dest.with_name(f".{dest.name}.{_temp_name()}.tmp")
    os.symlink(target, tmp)
    try:
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes(path, data)
