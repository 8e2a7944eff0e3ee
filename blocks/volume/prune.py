"""Pruning the volume, as huggingface_hub does its cache (scan -> plan -> execute): a plan lists
what no kept model needs, with sizes, and changes nothing; executing it deletes exactly that,
each model's part under its warm lock, so a warm running meanwhile never loses a file."""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from blocks.volume import Volume
from blocks.volume.layout import ModelPaths, lock_path
from profiles.catalog import ModelSpec
from voxflow.atomic import writer_gone
from voxflow.errors import SourceError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PrunePlan:
    """What a prune would delete.

    Attributes:
        root: The volume.
        items: (path, bytes) pairs, in the order they were found.
    """

    root: str
    items: tuple[tuple[Path, int], ...]

    @property
    def total(self) -> int:
        """Bytes the plan would free."""
        return sum(size for _, size in self.items)


def plan_prune(store: Volume, keep: list[ModelSpec]) -> PrunePlan:
    """Everything on the volume that none of ``keep`` needs, with its size in bytes.

    That is: repos of models not in ``keep``, other snapshots (and their manifests) of the
    kept ones, blobs no kept manifest lists, and temp files of warms that are surely gone.
    A kept model that is not warmed keeps nothing (its next warm fetches again).
    """
    wanted: dict[str, dict[str, ModelSpec]] = {}
    for spec in keep:
        wanted.setdefault(spec.repo_folder, {})[store.paths(spec).snapshot_id] = spec
    root = Path(store.root)
    found: list[tuple[Path, int]] = []
    for repo in sorted((root / "hub").glob("models--*")):
        paths = ModelPaths(root, repo.name, "")
        if repo.name not in wanted:
            found.append((repo, disk_usage(repo)))
            if paths.manifests.exists():
                found.append((paths.manifests, disk_usage(paths.manifests)))
            continue
        snaps = wanted[repo.name]
        blobs: set[str] = set()
        for spec in snaps.values():
            manifest = store.manifest(spec)
            if manifest is not None:
                blobs |= {e["sha256"] for e in manifest["files"]}
        for snap in sorted(paths.snapshots.glob("*")):
            if snap.name not in snaps:
                found.append((snap, 0))
        for manifest_file in sorted(paths.manifests.glob("*.json")):
            if manifest_file.name.split(".")[0] not in snaps:
                found.append((manifest_file, manifest_file.stat().st_size))
        for blob in sorted(paths.blobs.glob("*")):
            temp = blob.name.startswith(".")
            name = blob.name.removesuffix(".incomplete")
            if (temp and writer_gone(name, blob.lstat().st_mtime)) or (
                not temp and blob.name not in blobs
            ):
                found.append((blob, blob.lstat().st_size))
    for staging in sorted((root / ".staging").glob("*/*")):
        if writer_gone(staging.name, staging.lstat().st_mtime):
            found.append((staging, disk_usage(staging)))
    return PrunePlan(store.root, tuple(found))


def execute_prune(store: Volume, plan: PrunePlan) -> int:
    """Delete what ``plan`` lists, each model's part under its warm lock.

    Returns:
        Bytes freed.

    Raises:
        StoreReadOnly: The volume cannot be written.
        SourceError: A path of the plan is not inside the volume (nothing is deleted).
    """
    store.check_writable()
    root = Path(store.root).resolve()
    by_repo: dict[str, list[Path]] = {}
    for path, _ in plan.items:
        if not path.resolve().is_relative_to(root) or path.resolve() == root:
            raise SourceError(f"refusing to delete {path}: it is not inside {root}")
        rel = path.resolve().relative_to(root).parts
        repo = rel[1] if len(rel) > 1 else ""
        by_repo.setdefault(repo, []).append(path)
    freed = 0
    for repo, items in by_repo.items():
        with FileLock(lock_path(Path(store.root), repo), mode=0o664):
            for path in items:
                size = disk_usage(path)
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink(missing_ok=True)
                freed += size
                log.info("pruned %s (%d bytes)", path, size)
    return freed


def volume_usage(store: Volume) -> tuple[int, int, int]:
    """(bytes the volume's files use, disk size, disk free)."""
    root = Path(store.root)
    used = sum(p.lstat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())
    disk = shutil.disk_usage(root if root.exists() else root.parent)
    return used, disk.total, disk.free


def disk_usage(path: Path) -> int:
    """Bytes under ``path`` (links count as themselves, not what they point at)."""
    if path.is_symlink() or path.is_file():
        return path.lstat().st_size
    return sum(p.lstat().st_size for p in path.rglob("*") if not p.is_dir() or p.is_symlink())
