"""Warming one model: copy what is missing or bad into blobs, link the snapshot, write the
manifest last.

Model files are only ever written here, always a per-process temp name -> fsync ->
``os.replace``, under the model's file lock. The rename is the commit, so even where ``flock``
is not reliable (some NFS mounts) two warmers can only both write the same bytes under the
same name; an interrupted warm leaves no manifest.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from filelock import FileLock

import voxflow
from blocks.volume.fetch import Progress, fetch_all, has_size, plan_fetch
from blocks.volume.layout import HEX40, REF, ModelPaths, model_paths
from blocks.volume.manifest import hash_all, inspect, now, safe_name
from blocks.volume.sources import HubAccess, Source, open_source
from profiles.catalog import ModelSpec
from voxflow.atomic import temp_name, write_json, write_text, writer_gone
from voxflow.errors import SourceError, StoreFull, StoreReadOnly, VoxflowError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WarmResult:
    """What a warm did for one model."""

    name: str
    status: Literal["warmed", "present"]
    files: int
    bytes: int
    path: Path
    seconds: float


@dataclass(frozen=True)
class WarmSource:
    """Where a warm may fetch from: mirrors first, then the model's own source."""

    mirrors: tuple[str, ...]
    hub_access: Callable[[], HubAccess]
    max_workers: int


def warm(
    spec: ModelSpec,
    paths: ModelPaths,
    origin: WarmSource,
    progress: Progress | None = None,
    force: bool = False,
) -> WarmResult:
    """Copy a model's files into the volume, unless they are already there.

    A model that is present costs a stat per file. Files whose bytes changed since the
    manifest was written, or that the last ``verify --deep`` found bad, are re-hashed and
    fetched again if they differ, so a plain warm repairs a flipped byte.

    Raises:
        SourceError: The source cannot deliver a file, is at another revision, or a file
            name would escape the volume.
        StoreReadOnly: The volume cannot be written.
        StoreFull: The volume ran out of space.
    """
    started = time.monotonic()
    for file in spec.files:
        _check_name(spec, file)
    root = str(paths.root)
    outcome: Literal["warmed", "present"] = "present"
    state = inspect(spec, paths, suspects=True)
    manifest = state.manifest
    if not (force or manifest is None or state.problems or state.suspects):
        pass  # the common case: one stat per file, nothing written
    elif not (force or manifest is None or state.problems) and not os.access(root, os.W_OK):
        # A read-only volume with only suspects: answer without writing if they hash right.
        if _rehash(spec, paths, manifest, state.suspects):
            raise StoreReadOnly(root, "files differ from their manifest")
    else:
        check_writable(root)
        try:
            with FileLock(paths.lock, mode=0o664):
                state = inspect(spec, paths, suspects=True)  # another warmer may be done
                manifest = state.manifest
                bad = set(state.bad)
                if manifest is not None and state.suspects and not force:
                    bad |= _rehash(spec, paths, manifest, state.suspects)
                if force or manifest is None or bad or state.problems:
                    manifest = _fill(spec, paths, origin, manifest, progress, force, bad)
                    outcome = "warmed"
                elif state.suspects:
                    _settle(paths, state.suspects)
        except VoxflowError:
            raise
        except OSError as e:
            if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
                raise StoreReadOnly(root, e.strerror or str(e)) from e
            raise
    assert manifest is not None
    result = WarmResult(
        spec.name,
        outcome,
        len(manifest["files"]),
        manifest["total_size"],
        model_paths(paths.root, spec).snapshot,  # a moving revision resolves on the warm
        round(time.monotonic() - started, 3),
    )
    log.info("%s %s: %d files, %d bytes", outcome, spec.name, result.files, result.bytes)
    return result


def check_writable(root: str) -> None:
    """Raise :class:`StoreReadOnly` unless this process can write the volume at ``root``."""
    try:
        (Path(root) / ".locks").mkdir(parents=True, exist_ok=True)
    except OSError as e:
        if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            raise StoreReadOnly(root, e.strerror or str(e)) from e
        raise
    if not os.access(root, os.W_OK):
        raise StoreReadOnly(root, "no write permission")


def _rehash(
    spec: ModelSpec, paths: ModelPaths, manifest: dict[str, Any], files: list[str]
) -> set[str]:
    """Return the files among ``files`` whose sha256 differs from the manifest."""
    entries = [e for e in manifest["files"] if e["path"] in files]
    digests = hash_all(paths.snapshot, entries)
    bad = {e["path"] for e, d in zip(entries, digests, strict=True) if d != e["sha256"]}
    for file in sorted(bad):
        log.warning("%s: %s differs from its manifest; fetching it again", spec.name, file)
    return bad


def _settle(paths: ModelPaths, files: list[str]) -> None:
    """Suspects hashed right: mark the manifest current so the next warm is a stat again."""
    newest = max((paths.snapshot / f).stat().st_mtime_ns for f in files)
    stamp = max(time.time_ns(), newest + 1)
    os.utime(paths.manifest, ns=(stamp, stamp))
    paths.verified.unlink(missing_ok=True)


def _fill(
    spec: ModelSpec,
    paths: ModelPaths,
    origin: WarmSource,
    old: dict[str, Any] | None,
    progress: Progress | None,
    force: bool,
    bad: set[str],
) -> dict[str, Any]:
    """Fetch what is missing or bad, link the snapshot, then write manifest and refs."""
    # A stale manifest must go first: an interrupted repair must not look complete.
    paths.manifest.unlink(missing_ok=True)
    paths.verified.unlink(missing_ok=True)
    blobs = paths.blobs
    source = open_source(spec, origin.hub_access() if spec.scheme == "hf" else None)
    known = {} if force else {e["path"]: e for e in (old or {}).get("files", [])}
    reuse = {
        f: known[f]
        for f in spec.files
        if f in known and f not in bad and has_size(blobs / known[f]["sha256"], known[f]["size"])
    }
    jobs = [f for f in spec.files if f not in reuse]
    staging = paths.staging / temp_name()
    needed = sum(e["size"] for e in reuse.values())
    try:
        blobs.mkdir(parents=True, exist_ok=True)
        _clean_stale(blobs, staging.parent)
        plan = plan_fetch(spec, source, jobs, list(origin.mirrors))
        needed += sum(size or 0 for _, cands in plan for _, size in cands[:1])
        fetched = fetch_all(
            spec, source, plan, blobs, staging, progress, force or bad, origin.max_workers
        )
        entries = [reuse.get(f) or fetched[f] for f in spec.files]
        snapshot_id = _resolved_snapshot(spec, source)
        resolved = paths.with_snapshot(snapshot_id)
        for entry in entries:
            _link(resolved.snapshot / entry["path"], blobs / entry["sha256"])
        manifest = {
            "name": spec.name,
            "repo_id": spec.repo_id,
            "source": spec.source,
            "revision": spec.revision,
            "snapshot_id": snapshot_id,
            "format": spec.format,
            "files": entries,
            "total_size": sum(e["size"] for e in entries),
            "warmed_at": now(),
            "voxflow": voxflow.__version__,
        }
        _write(resolved.manifest, manifest)
        _write(paths.ref("main"), snapshot_id)
        if spec.revision != "main" and spec.scheme == "hf" and REF.fullmatch(spec.revision):
            if not HEX40.fullmatch(spec.revision):
                _write(paths.ref(spec.revision), snapshot_id)
    except OSError as e:
        if e.errno == errno.ENOSPC and not isinstance(e, VoxflowError):
            free = shutil.disk_usage(paths.root).free
            raise StoreFull(str(paths.root), spec.name, needed, free) from e
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest


def _resolved_snapshot(spec: ModelSpec, source: Source) -> str:
    if spec.scheme == "hf" and not HEX40.fullmatch(spec.revision):
        commit = source.commit()  # type: ignore[attr-defined]
        log.info("%s: revision %s is commit %s", spec.name, spec.revision, commit)
        return commit
    return spec.snapshot_id


def _check_name(spec: ModelSpec, file: str) -> None:
    if not safe_name(file):
        raise SourceError(
            f"model {spec.name!r} lists file {file!r}, which would escape the model volume; "
            "file names must be relative paths without '..'"
        )


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


def _link(dest: Path, blob: Path) -> None:
    """Point ``dest`` at ``blob`` with a relative symlink, replacing atomically."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    target = os.path.relpath(blob, dest.parent)
    if dest.is_symlink() and os.readlink(dest) == target:
        return
    tmp = dest.with_name(f".{dest.name}.{temp_name()}.tmp")
    os.symlink(target, tmp)
    try:
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def _write(path: Path, record: dict[str, Any] | str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(record, str):
        write_text(path, record)
    else:
        write_json(path, record, indent=2)
