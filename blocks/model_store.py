"""The model volume: every model in the Hugging Face hub cache layout, with an offline manifest.

Layout under ``root``::

    hub/models--org--name/blobs/<sha256>                      file contents
    hub/models--org--name/snapshots/<snapshot_id>/<file>      relative symlink to its blob
    hub/models--org--name/refs/main                           the snapshot id
    manifests/models--org--name/<snapshot_id>.json            written last: "this is complete"
    .locks/models--org--name.lock                             one warmer per model at a time

Only :meth:`ModelStore.warm` writes, always temp file -> fsync -> ``os.replace`` under the lock,
so an interrupted warm leaves no manifest. ``locate``, ``verify`` and ``status`` only read and
work on a read-only volume.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import secrets
import shlex
import shutil
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from filelock import FileLock
from prefect.blocks.core import Block
from pydantic import Field

import voxflow
from blocks.sources import Source, open_source, source_for_url
from profiles.catalog import ModelSpec
from voxflow.errors import ModelNotWarmed, SourceError, StoreFull, StoreReadOnly, VoxflowError

log = logging.getLogger(__name__)

CHUNK = 1 << 20
Progress = Callable[[str, int, int], None]
"""Called as ``progress(file, bytes_done, file_size)`` after each chunk copied."""


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


class ModelStore(Block):
    """The model volume every flow loads from; only the warm flow writes to it.

    Attributes:
        root: Root folder of the volume (a local path or a mounted NFS/EFS volume).
        mirrors: Folder URLs tried before a model's own source, as ``<mirror>/<repo_id>/<file>``.
    """

    _block_type_name = "Voxflow Model Store"

    root: str = Field(default="models", description="Root folder of the model volume.")
    mirrors: list[str] = Field(
        default_factory=list,
        description="Folder URLs tried before the model's source, as <mirror>/<repo_id>/<file>.",
    )

    # -- layout ------------------------------------------------------------------------------

    def snapshot_dir(self, spec: ModelSpec) -> Path:
        """Return the folder a backend loads ``spec`` from (whether or not it is warmed)."""
        return self._repo(spec) / "snapshots" / spec.snapshot_id

    def manifest_path(self, spec: ModelSpec) -> Path:
        """Return the manifest whose presence means ``spec`` is completely warmed."""
        return Path(self.root) / "manifests" / spec.repo_folder / f"{spec.snapshot_id}.json"

    def _repo(self, spec: ModelSpec) -> Path:
        return Path(self.root) / "hub" / spec.repo_folder

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
        manifest, problems = self._inspect(spec)
        if manifest is None or problems:
            command = warm_command or f"voxflow warm --store {shlex.quote(self.root)}"
            detail = ", ".join(problems)
            raise ModelNotWarmed(spec.name, str(self.snapshot_dir(spec)), detail, command)
        return self.snapshot_dir(spec)

    def status(self, spec: ModelSpec) -> ModelStatus:
        """Return whether ``spec`` is warmed, cold or corrupt, without hashing anything."""
        manifest, problems = self._inspect(spec)
        if not self.manifest_path(spec).exists():
            return ModelStatus(spec.name, "cold", 0, None, None)
        manifest = manifest or {}
        return ModelStatus(
            spec.name,
            "corrupt" if problems else "warmed",
            int(manifest.get("total_size", 0)),
            self.snapshot_dir(spec),
            manifest.get("warmed_at"),
        )

    def verify(self, spec: ModelSpec, deep: bool = False) -> VerifyResult:
        """Check a warmed model against its manifest, offline.

        Args:
            spec: The catalog entry.
            deep: Also recompute each file's sha256 (reads every byte).

        Returns:
            The result; ``ok`` is false when the model is not warmed or any file differs.
        """
        manifest, problems = self._inspect(spec)
        if manifest is None:
            return VerifyResult(
                spec.name, False, ["not warmed"] if problems == ["no manifest"] else problems, 0, 0
            )
        entries = manifest["files"]
        if deep:
            snapshot = self.snapshot_dir(spec)
            # Files with a wrong size are already reported; hash the rest.
            sized = [e for e in entries if _has_size(snapshot / e["path"], e["size"])]
            with ThreadPoolExecutor(max_workers=2) as pool:  # hashlib releases the GIL
                digests = pool.map(lambda e: _sha256(snapshot / e["path"]), sized)
                for entry, digest in zip(sized, digests, strict=True):
                    if digest != entry["sha256"]:
                        problems.append(
                            f"{entry['path']}: sha256 is {digest}, manifest says {entry['sha256']}"
                        )
        total = sum(e["size"] for e in entries)
        return VerifyResult(spec.name, not problems, problems, len(entries), total)

    def _inspect(self, spec: ModelSpec) -> tuple[dict[str, Any] | None, list[str]]:
        """Read the manifest and stat each file; return it (None if absent) and the problems."""
        path = self.manifest_path(spec)
        try:
            manifest = json.loads(path.read_text())
            sizes = {e["path"]: e["size"] for e in manifest["files"]}
        except FileNotFoundError:
            return None, ["no manifest"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            return None, [f"manifest {path} is unreadable ({e!r})"]
        snapshot = self.snapshot_dir(spec)
        problems = [f"{f} is not in the manifest" for f in spec.files if f not in sizes]
        for file, size in sizes.items():
            try:
                actual = (snapshot / file).stat().st_size
            except FileNotFoundError:
                problems.append(f"{file} is missing")
                continue
            except OSError as e:
                problems.append(f"{file} cannot be read ({e.strerror})")
                continue
            if actual != size:
                problems.append(f"{file} is {actual} bytes, manifest says {size}")
        return manifest, problems

    # -- writing -----------------------------------------------------------------------------

    def warm(
        self, spec: ModelSpec, progress: Progress | None = None, force: bool = False
    ) -> WarmResult:
        """Copy a model's files into the volume, unless they are already there.

        Args:
            spec: The catalog entry.
            progress: Called as ``progress(file, bytes_done, file_size)`` while copying.
            force: Copy every file again even when sizes match, e.g. to repair a corruption
                only ``verify(deep=True)`` sees.

        Returns:
            ``status="present"`` when the manifest and file sizes already matched (nothing
            written), else ``"warmed"``.

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
        manifest, problems = self._inspect(spec)
        if force or manifest is None or problems:
            self._make_writable()
            lock = Path(self.root) / ".locks" / f"{spec.repo_folder}.lock"
            try:
                with FileLock(lock, mode=0o664):
                    manifest, problems = self._inspect(spec)  # another warmer may have finished
                    if force or manifest is None or problems:
                        manifest, outcome = self._fill(spec, manifest, progress, force), "warmed"
            except VoxflowError:
                raise
            except OSError as e:
                if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
                    raise StoreReadOnly(self.root, e.strerror or str(e)) from e
                raise
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

    def _make_writable(self) -> None:
        root = Path(self.root)
        try:
            (root / ".locks").mkdir(parents=True, exist_ok=True)
        except OSError as e:
            if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
                raise StoreReadOnly(self.root, e.strerror or str(e)) from e
            raise
        if not os.access(root, os.W_OK):
            raise StoreReadOnly(self.root, "no write permission")

    def _fill(
        self,
        spec: ModelSpec,
        old: dict[str, Any] | None,
        progress: Progress | None,
        force: bool,
    ) -> dict[str, Any]:
        """Copy what is missing, link the snapshot, then write the manifest and refs/main."""
        # A stale manifest must go first: an interrupted repair must not look complete.
        self.manifest_path(spec).unlink(missing_ok=True)
        plan = self._plan(spec)
        needed = sum(size for _, _, size in plan)
        known = {} if force else {e["path"]: e for e in (old or {}).get("files", [])}
        repo = self._repo(spec)
        blobs = repo / "blobs"
        try:
            blobs.mkdir(parents=True, exist_ok=True)
            entries = []
            for file, reader, size in plan:
                entry = known.get(file)  # a repair keeps blobs that still have their size
                if not (
                    entry and entry["size"] == size and _has_size(blobs / entry["sha256"], size)
                ):
                    entry = self._fetch(spec, reader, file, size, blobs, progress, force)
                _link(self.snapshot_dir(spec) / file, blobs / entry["sha256"])
                entries.append(entry)
            manifest = {
                "name": spec.name,
                "repo_id": spec.repo_id,
                "source": spec.source,
                "revision": spec.revision,
                "snapshot_id": spec.snapshot_id,
                "format": spec.format,
                "files": entries,
                "total_size": sum(e["size"] for e in entries),
                "warmed_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "voxflow": voxflow.__version__,
            }
            _atomic_write(self.manifest_path(spec), json.dumps(manifest, indent=2).encode())
            _atomic_write(repo / "refs" / "main", spec.snapshot_id.encode())
        except OSError as e:
            if e.errno == errno.ENOSPC and not isinstance(e, VoxflowError):
                free = shutil.disk_usage(self.root).free
                raise StoreFull(self.root, spec.name, needed, free) from e
            raise
        return manifest

    def _plan(self, spec: ModelSpec) -> list[tuple[str, Source, int]]:
        """Pick where each file comes from (a mirror first) and learn its size."""
        mirrors = [source_for_url(f"{m.rstrip('/')}/{spec.repo_id}") for m in self.mirrors]
        source = open_source(spec)
        plan: list[tuple[str, Source, int]] = []
        pending: list[str] = []
        for file in spec.files:
            for mirror in mirrors:
                with _reading(spec, mirror, file):
                    try:
                        plan.append((file, mirror, mirror.size(file)))
                        break
                    except FileNotFoundError:
                        continue
            else:
                pending.append(file)
        if pending:
            source.check_revision()
        for file in pending:
            with _reading(spec, source, file):
                plan.append((file, source, source.size(file)))
        return plan

    def _fetch(
        self,
        spec: ModelSpec,
        reader: Source,
        file: str,
        size: int,
        blobs: Path,
        progress: Progress | None,
        force: bool,
    ) -> dict[str, Any]:
        """Stream one file into a blob, hashing as it goes; return its manifest entry."""
        tmp = blobs / f".{os.getpid()}.{secrets.token_hex(6)}.incomplete"
        digest = hashlib.sha256()
        done = 0
        log.debug("copying %s of %s from %s", file, spec.name, reader.url)
        try:
            with _reading(spec, reader, file):
                src = reader.open(file)
            with src, open(tmp, "wb") as dst:
                while True:
                    with _reading(spec, reader, file):
                        chunk = src.read(CHUNK)
                    if not chunk:
                        break
                    digest.update(chunk)
                    dst.write(chunk)
                    done += len(chunk)
                    if progress:
                        progress(file, done, size)
                dst.flush()
                os.fsync(dst.fileno())
            blob = blobs / digest.hexdigest()
            if force or not _has_size(blob, done):  # an equal blob is kept untouched
                os.replace(tmp, blob)
        finally:
            tmp.unlink(missing_ok=True)
        return {"path": file, "size": done, "sha256": digest.hexdigest()}


@contextmanager
def _reading(spec: ModelSpec, reader: Source, file: str) -> Iterator[None]:
    """Turn any failure of a source into a SourceError naming model, source and file."""
    try:
        yield
    except SourceError:
        raise
    except Exception as e:
        raise SourceError(
            f"cannot read {file!r} of model {spec.name!r} from {reader.url}: {e}"
        ) from e


def _check_name(spec: ModelSpec, file: str) -> None:
    path = PurePosixPath(file)
    if not file or path.is_absolute() or ".." in path.parts or "\\" in file:
        raise SourceError(
            f"model {spec.name!r} lists file {file!r}, which would escape the model volume; "
            "file names must be relative paths without '..'"
        )


def _has_size(path: Path, size: int) -> bool:
    try:
        return path.stat().st_size == size
    except FileNotFoundError:
        return False


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
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.{secrets.token_hex(6)}.tmp")
    os.symlink(target, tmp)
    try:
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(6)}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
