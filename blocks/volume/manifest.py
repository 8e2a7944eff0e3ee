"""A model's manifest: reading it, checking each file against it, and recording a verify
(and the warm's offline load check that followed one).

The manifest is written last by a warm and means "this snapshot is complete". Every name in it
is checked before it becomes a path (nothing absolute, no ``..``) and every snapshot link must
land in the model's own ``blobs`` folder. Reading stats files; only ``verify(deep=True)`` and
the warm's re-hash of suspects read their bytes. Weights are never loaded here.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from blocks.volume.fetch import CHUNK
from blocks.volume.layout import ModelPaths
from profiles.catalog import ModelSpec
from voxflow.atomic import write_json
from voxflow.errors import SourceError

log = logging.getLogger(__name__)

_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of a verify; each problem names the file and what is wrong."""

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
class Inspection:
    """The manifest (None when absent or unusable), what is wrong, and what to re-hash."""

    manifest: dict[str, Any] | None
    problems: list[str]
    bad: list[str]
    suspects: list[str]


def inspect(spec: ModelSpec, paths: ModelPaths, suspects: bool = False) -> Inspection:
    """Read the manifest and stat each file; with ``suspects``, also list files to re-hash.

    A file is a suspect when its bytes changed after the manifest was written (its mtime is
    newer) or the last verify found it bad: cheap signs of a flipped byte that a size check
    cannot see.
    """
    path = paths.manifest
    try:
        raw = path.read_bytes()
        manifest_mtime = path.stat().st_mtime_ns
        manifest = json.loads(raw)
        entries = manifest["files"]
        for entry in entries:
            check_entry(entry)
        sizes = {e["path"]: e["size"] for e in entries}
        pins = {e["path"]: e["sha256"] for e in entries}
    except FileNotFoundError:
        return Inspection(None, ["no manifest"], [], [])
    except SourceError as e:
        return Inspection(None, [f"manifest {path} is refused: {e}"], [], [])
    except (OSError, ValueError, KeyError, TypeError) as e:
        return Inspection(None, [f"manifest {path} is unreadable ({e!r})"], [], [])
    blobs = os.path.realpath(paths.blobs)
    problems = [f"{f} is not in the manifest" for f in spec.files if f not in sizes]
    bad: list[str] = []
    newer: list[str] = []
    for file, size in sizes.items():
        target = paths.snapshot / file
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
        elif spec.pinned_sha256(file) not in (None, pins[file]):
            problems.append(
                f"{file}: the manifest's sha256 {pins[file]} is not the catalog's pin "
                f"{spec.pinned_sha256(file)}"
            )
            bad.append(file)
        elif st.st_mtime_ns > manifest_mtime:
            newer.append(file)
    found: list[str] = []
    if suspects:
        record = last_verified(paths) or {}
        flagged = record.get("bad_files", []) if not record.get("ok", True) else []
        found = sorted({*newer, *(f for f in flagged if f in sizes)} - set(bad))
    return Inspection(manifest, problems, bad, found)


def status(spec: ModelSpec, paths: ModelPaths) -> ModelStatus:
    """Whether ``spec`` is warmed, cold or corrupt, without hashing anything."""
    state = inspect(spec, paths)
    if not paths.manifest.exists():
        return ModelStatus(spec.name, "cold", 0, None, None, tuple(state.problems))
    manifest = state.manifest or {}
    return ModelStatus(
        spec.name,
        "corrupt" if state.problems or state.manifest is None else "warmed",
        int(manifest.get("total_size", 0)),
        paths.snapshot,
        manifest.get("warmed_at"),
        tuple(state.problems),
    )


def verify(spec: ModelSpec, paths: ModelPaths, deep: bool = False) -> VerifyResult:
    """Check a warmed model against its manifest, offline, and record the outcome.

    The record beside the manifest serves ``voxflow cache report`` and makes the next warm
    fetch again the files a deep verify found bad; on a read-only volume it is only returned.
    """
    state = inspect(spec, paths)
    manifest, problems, bad = state.manifest, list(state.problems), list(state.bad)
    if manifest is None:
        return VerifyResult(
            spec.name, False, ["not warmed"] if problems == ["no manifest"] else problems, 0, 0
        )
    entries = manifest["files"]
    if deep:
        # Files with a wrong size are already reported; hash the rest.
        sized = [e for e in entries if e["path"] not in bad]
        for entry, digest in zip(sized, hash_all(paths.snapshot, sized), strict=True):
            if digest != entry["sha256"]:
                problems.append(
                    f"{entry['path']}: sha256 is {digest}, manifest says {entry['sha256']}"
                )
                bad.append(entry["path"])
    _record_verify(paths, deep, problems, bad)
    return VerifyResult(
        spec.name, not problems, problems, len(entries), sum(e["size"] for e in entries)
    )


def last_verified(paths: ModelPaths) -> dict[str, Any] | None:
    """The record of the last verify (``verified_at``, ``deep``, ``ok``, ``bad_files``)."""
    try:
        record = json.loads(paths.verified.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _record_verify(paths: ModelPaths, deep: bool, problems: list[str], bad: list[str]) -> None:
    record = {
        "verified_at": now(),
        "deep": deep,
        "ok": not problems,
        "problems": problems,
        "bad_files": sorted(set(bad)),
    }
    try:
        paths.verified.parent.mkdir(parents=True, exist_ok=True)
        write_json(paths.verified, record, indent=2)
    except OSError as e:  # a read-only volume: verify still answers, it just cannot note it
        log.debug("cannot record the verify of %s: %s", paths.repo_folder, e)


def record_load_check(paths: ModelPaths, check: str) -> bool:
    """Note on the last verify's record that the model then passed an offline load check.

    A warm's load check loads what inference loads; noting it right after the verify that
    preceded it makes the next ``voxflow cache report`` (and the warm's artifact) show the
    model as verified, when, and that it loads. A record that is missing or not ``ok`` is left
    as it is: a load check never lifts a failed verify.

    Args:
        paths: The model's paths in the volume.
        check: What passed, in words (``asr/faster-whisper in 1.2 s``).

    Returns:
        Whether the note was written (False on a read-only volume or without an ok verify).
    """
    record = last_verified(paths)
    if record is None or record.get("ok") is not True:
        return False
    record |= {"load_check": check, "load_checked_at": now()}
    try:
        write_json(paths.verified, record, indent=2)
    except OSError as e:  # a read-only volume: the check passed, it just cannot be noted
        log.debug("cannot record the load check of %s: %s", paths.repo_folder, e)
        return False
    return True


def hash_all(snapshot: Path, entries: list[dict[str, Any]]) -> list[str]:
    """The sha256 of each entry's file; hashlib releases the GIL, so threads use every core."""
    workers = max(1, min(len(entries), os.cpu_count() or 2))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda e: sha256(snapshot / e["path"]), entries))


def sha256(path: Path) -> str:
    """The sha256 of one file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def safe_name(file: object) -> bool:
    """True for a relative POSIX path with no ``..`` (a name that stays inside the volume)."""
    if not isinstance(file, str) or not file or "\\" in file or "\x00" in file:
        return False
    path = PurePosixPath(file)
    return not path.is_absolute() and ".." not in path.parts and path.parts != ()


def check_entry(entry: Any) -> None:
    """A manifest entry names a safe relative path, a sha256 and a size; else SourceError."""
    if not isinstance(entry, dict) or not safe_name(entry.get("path")):
        path = entry.get("path") if isinstance(entry, dict) else entry
        raise SourceError(f"it lists {path!r}, which would escape the model volume")
    if not isinstance(entry.get("sha256"), str) or not _HEX64.fullmatch(entry["sha256"]):
        raise SourceError(f"{entry['path']!r} has no valid sha256 ({entry.get('sha256')!r})")
    if not isinstance(entry.get("size"), int) or entry["size"] < 0:
        raise SourceError(f"{entry['path']!r} has no valid size ({entry.get('size')!r})")


def now() -> str:
    """The current UTC time as the manifests write it."""
    return datetime.now(UTC).isoformat(timespec="seconds")
