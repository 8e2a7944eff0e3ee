"""The model catalog: what each model is, where it comes from, which files it needs."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from urllib.parse import urlparse


@dataclass(frozen=True)
class ModelSpec:
    """One catalog entry of ``profiles/models.yaml``.

    Attributes:
        name: Catalog name, e.g. ``faster-whisper-tiny.en``.
        source: Where the files come from: ``hf://org/name``, ``pkg://module/subdir``,
            ``file:///path`` or any fsspec URL.
        revision: A hub commit for ``hf://``; for ``pkg://`` the package version; for other
            sources a label the operator pins (a date, a tag).
        files: The files the backend needs, relative to the model folder.
        format: On-disk format (``ctranslate2``, ``onnx``, ``demucs``, ``pyannote``, ...).
        repo_id: Name in the store's hub layout (``org/name``); derived from an ``hf://`` source,
            else ``voxflow/<name>``.
        license: Licence and gating note.
        size_mb: Approximate size, for planning a volume.
    """

    name: str
    source: str
    revision: str
    files: tuple[str, ...]
    format: str
    repo_id: str
    license: str = ""
    size_mb: float = 0.0

    @property
    def scheme(self) -> str:
        """The source's URL scheme (``hf``, ``pkg``, ``file``, ``s3``, ...)."""
        return urlparse(self.source).scheme or "file"

    @property
    def snapshot_id(self) -> str:
        """Folder name of this revision under ``snapshots/``.

        A hub commit is used as is; any other source gets a stable 40-hex id derived from
        (source, revision), so the layout looks like the hub's and a new pin gets a new folder.
        """
        if self.scheme == "hf":
            return self.revision
        return hashlib.sha1(f"{self.source}@{self.revision}".encode()).hexdigest()

    @property
    def repo_folder(self) -> str:
        """The hub cache folder name, ``models--org--name``."""
        return "models--" + self.repo_id.replace("/", "--")
