"""Where everything of one model lives in a volume: every path from one dataclass.

The layout is the Hugging Face hub cache's, so huggingface_hub, transformers and faster-whisper
read the volume as their own cache, plus voxflow's manifests, locks and staging folders::

    hub/models--org--name/blobs/<sha256>                      file contents
    hub/models--org--name/snapshots/<snapshot_id>/<file>      relative symlink to its blob
    hub/models--org--name/refs/<revision>                     the snapshot id a ref resolved to
    manifests/models--org--name/<snapshot_id>.json            written last: "this is complete"
    manifests/models--org--name/<snapshot_id>.verified.json   the last verify: when, deep, bad files
    .locks/models--org--name.lock                             one warmer per model at a time
    .staging/models--org--name/<host>-<pid>-<hex>/            hub downloads before their rename
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from profiles.catalog import ModelSpec

HEX40 = re.compile(r"[0-9a-f]{40}")
"""A full git commit id."""
REF = re.compile(r"[A-Za-z0-9._-]+")
"""A ref name the volume records under ``refs/`` (a branch or tag, never a path)."""


@dataclass(frozen=True)
class ModelPaths:
    """Every path of one model in one volume (as ``get_local_download_paths`` gives one file's).

    Attributes:
        root: The volume's root.
        repo_folder: ``models--org--name``.
        snapshot_id: The snapshot folder's name (a commit for hub models).
    """

    root: Path
    repo_folder: str
    snapshot_id: str

    @property
    def repo(self) -> Path:
        return self.root / "hub" / self.repo_folder

    @property
    def blobs(self) -> Path:
        return self.repo / "blobs"

    @property
    def snapshots(self) -> Path:
        return self.repo / "snapshots"

    @property
    def snapshot(self) -> Path:
        """The folder a backend loads the model from."""
        return self.snapshots / self.snapshot_id

    def ref(self, name: str) -> Path:
        return self.repo / "refs" / name

    @property
    def manifests(self) -> Path:
        return self.root / "manifests" / self.repo_folder

    @property
    def manifest(self) -> Path:
        """Present only when the snapshot is completely warmed."""
        return self.manifests / f"{self.snapshot_id}.json"

    @property
    def verified(self) -> Path:
        """The record of the last verify."""
        return self.manifests / f"{self.snapshot_id}.verified.json"

    @property
    def lock(self) -> Path:
        return lock_path(self.root, self.repo_folder)

    @property
    def staging(self) -> Path:
        """The parent of this model's staging folders, one per warming process."""
        return self.root / ".staging" / self.repo_folder

    def with_snapshot(self, snapshot_id: str) -> ModelPaths:
        return ModelPaths(self.root, self.repo_folder, snapshot_id)


def lock_path(root: Path, repo_folder: str) -> Path:
    """The warm lock of one model (``volume`` for work on the volume as a whole)."""
    return root / ".locks" / f"{repo_folder or 'volume'}.lock"


def model_paths(root: str | Path, spec: ModelSpec) -> ModelPaths:
    """The paths of ``spec`` in the volume at ``root``.

    A pinned model's snapshot is fixed by the catalog; a hub model with a moving revision
    (``pinned: false``) uses the commit its last warm resolved, recorded in
    ``refs/<revision>`` as the hub cache does.
    """
    paths = ModelPaths(Path(root), spec.repo_folder, spec.snapshot_id)
    if spec.scheme == "hf" and not HEX40.fullmatch(spec.revision) and REF.fullmatch(spec.revision):
        try:
            commit = paths.ref(spec.revision).read_text().strip()
        except OSError:
            commit = ""
        if HEX40.fullmatch(commit):
            return paths.with_snapshot(commit)
    return paths
