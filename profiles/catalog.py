"""The model catalog (``profiles/models.yaml``, plus ``$VOXFLOW_CATALOG``): what each model is,
where it comes from, which files it needs; loaded and validated here."""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from types import MappingProxyType
from typing import Any
from urllib.parse import urlparse

from profiles.files import CATALOG_FILE, PROFILES_DIR, check_keys, flag, read_yaml
from voxflow.errors import ProfileError


@dataclass(frozen=True)
class FileParts:
    """A model file the catalog joins from parts, in order (one file split across packages).

    Attributes:
        sources: The parts' URLs (``pkg://module/subdir/file``, ``file://``, fsspec URLs).
        sha256: The joined file's sha256, checked by the warm and by ``voxflow verify``.
    """

    sources: tuple[str, ...]
    sha256: str


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
        parts: Files made of parts (one file split across packages): (file, its parts and
            the whole file's pinned sha256) pairs.
        languages: The only languages a speech model hears (``[en]`` for an English-only
            Whisper); empty: every language of its kind.
    """

    name: str
    source: str
    revision: str
    files: tuple[str, ...]
    format: str
    repo_id: str
    license: str = ""
    size_mb: float = 0.0
    parts: tuple[tuple[str, FileParts], ...] = ()
    languages: tuple[str, ...] = ()

    def joined(self, file: str) -> FileParts | None:
        """The parts ``file`` is joined from, when the catalog makes it of parts."""
        return dict(self.parts).get(file)

    def pinned_sha256(self, file: str) -> str | None:
        """The sha256 the catalog pins for ``file`` (a file made of parts), else None."""
        joined = self.joined(file)
        return joined.sha256 if joined else None

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
        """The hub cache folder name, ``models--org--name`` (:func:`repo_label` reverses it)."""
        return "models--" + self.repo_id.replace("/", "--")


def repo_label(path: str | Path) -> str:
    """A model folder's name for messages and for what its name tells (a Marian pair):
    ``org/name`` for a folder inside ``models--org--name``, else the folder's own name."""
    for part in reversed(Path(path).parts):
        if part.startswith("models--"):
            return part.removeprefix("models--").replace("--", "/")
    return Path(path).name


CATALOG_KEYS = (
    "source",
    "revision",
    "files",
    "format",
    "repo_id",
    "license",
    "size_mb",
    "pinned",
    "parts",
    "languages",
)
PARTS_KEYS = ("from", "sha256")
CATALOG_REQUIRED = ("source", "revision", "files", "format")
SOURCE_SCHEMES = (
    "hf",
    "pkg",
    "file",
    "s3",
    "gs",
    "gcs",
    "az",
    "abfs",
    "http",
    "https",
    "sftp",
    "hdfs",
    "memory",
)
"""Source URL schemes the catalog accepts: the hub, Python packages, and common fsspec protocols."""

_HEX40 = re.compile(r"[0-9a-f]{40}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")


def load_catalog(path: str | Path | None = None) -> dict[str, ModelSpec]:
    """Load and validate the model catalog.

    Parsed catalogs are cached per (file, modification time), so an edited file is re-read.

    Args:
        path: The catalog file; defaults to ``models.yaml`` in :data:`PROFILES_DIR` with the
            extra catalogs of ``$VOXFLOW_CATALOG`` merged over it (later entries win).

    Returns:
        Catalog name -> :class:`ModelSpec`, in file order (a fresh dict each call).

    Raises:
        ProfileError: The file is missing, not YAML, or an entry is invalid; the message names
            the file, the key path (``<model>.<key>``) and the allowed values.
    """
    if path is None:
        from voxflow.settings import load_settings

        merged: dict[str, ModelSpec] = {}
        for extra in (PROFILES_DIR / CATALOG_FILE, *load_settings().catalogs):
            merged.update(load_catalog(extra))
        return merged
    file = Path(path).resolve()
    try:
        mtime = file.stat().st_mtime_ns
    except OSError as e:
        raise ProfileError(f"model catalog not found: {e.strerror or e}", file=str(file)) from e
    return dict(_load_catalog_cached(str(file), mtime))


@functools.lru_cache(maxsize=16)
def _load_catalog_cached(file: str, mtime_ns: int) -> Mapping[str, ModelSpec]:
    del mtime_ns  # part of the cache key only
    data = read_yaml(Path(file))
    if not isinstance(data, Mapping):
        raise ProfileError("the model catalog must be a mapping of model name to entry", file=file)
    specs = {}
    for name, entry in data.items():
        if not isinstance(name, str):
            raise ProfileError(f"model names must be strings, found {name!r}", file=file)
        specs[name] = _model_spec(name, entry, file)
    return MappingProxyType(specs)


def _model_spec(name: str, entry: Any, file: str) -> ModelSpec:
    if not isinstance(entry, Mapping):
        raise ProfileError(
            "a catalog entry must be a mapping", file=file, key_path=name, allowed=CATALOG_KEYS
        )
    check_keys(entry, CATALOG_KEYS, file, f"{name}.", "catalog key")
    for key in CATALOG_REQUIRED:
        if key not in entry:
            raise ProfileError(
                f"missing required key {key!r}",
                file=file,
                key_path=f"{name}.{key}",
                allowed=CATALOG_KEYS,
            )
    for key in ("source", "revision", "format", "repo_id", "license"):
        if key in entry and not isinstance(entry[key], str):
            raise ProfileError(
                f"expected a string, found {entry[key]!r} (quote it in the YAML)",
                file=file,
                key_path=f"{name}.{key}",
            )
    pinned = flag(entry.get("pinned", True), file, f"{name}.pinned")
    size_mb = entry.get("size_mb", 0.0)
    if isinstance(size_mb, bool) or not isinstance(size_mb, int | float) or size_mb < 0:
        raise ProfileError(
            f"expected a size in MB (a number >= 0), found {size_mb!r}",
            file=file,
            key_path=f"{name}.size_mb",
        )

    source, revision = entry["source"], entry["revision"]
    scheme = urlparse(source).scheme
    if scheme and scheme not in SOURCE_SCHEMES:
        raise ProfileError(
            f"unknown source scheme {scheme!r} in {source!r}",
            file=file,
            key_path=f"{name}.source",
            allowed=SOURCE_SCHEMES,
        )
    if not revision:
        raise ProfileError("the revision must not be empty", file=file, key_path=f"{name}.revision")
    repo_id = entry.get("repo_id")
    if scheme == "hf":
        hub_id = source.removeprefix("hf://").strip("/")
        if "@" in hub_id:
            raise ProfileError(
                f"put the revision in the 'revision' key, not in the source {source!r}",
                file=file,
                key_path=f"{name}.source",
            )
        if not _REPO_ID.fullmatch(hub_id):
            raise ProfileError(
                f"a hub source is hf://org/name, found {source!r}",
                file=file,
                key_path=f"{name}.source",
            )
        if pinned and not _HEX40.fullmatch(revision):
            raise ProfileError(
                f"a hub model must pin its revision to a 40-hex commit, found {revision!r}; "
                "copy the commit from the model's 'Files and versions' page, or set "
                "'pinned: false' to accept a moving revision",
                file=file,
                key_path=f"{name}.revision",
                allowed=("<40-hex commit>",),
            )
        repo_id = repo_id or hub_id
    repo_id = repo_id or f"voxflow/{name}"
    if not _REPO_ID.fullmatch(repo_id):
        raise ProfileError(
            f"a repo_id is org/name, found {repo_id!r}", file=file, key_path=f"{name}.repo_id"
        )

    files = entry["files"]
    if not isinstance(files, list) or not files:
        raise ProfileError(
            "expected a non-empty list of file paths", file=file, key_path=f"{name}.files"
        )
    for i, item in enumerate(files):
        parts = PurePosixPath(item).parts if isinstance(item, str) else ()
        if not parts or item.startswith("/") or ".." in parts or "\\" in item:
            raise ProfileError(
                f"expected a relative path inside the model folder, found {item!r}",
                file=file,
                key_path=f"{name}.files[{i}]",
            )
    return ModelSpec(
        name=name,
        source=source,
        revision=revision,
        files=tuple(files),
        format=entry["format"],
        repo_id=repo_id,
        license=entry.get("license", ""),
        size_mb=float(size_mb),
        parts=_parts(name, entry.get("parts", {}), files, file),
        languages=_languages(name, entry.get("languages", []), file),
    )


def _languages(name: str, languages: Any, file: str) -> tuple[str, ...]:
    if not isinstance(languages, list) or not all(isinstance(x, str) for x in languages):
        raise ProfileError(
            "expected a list of language codes, e.g. [en]",
            file=file,
            key_path=f"{name}.languages",
        )
    return tuple(languages)


def _parts(name: str, parts: Any, files: list[str], file: str) -> tuple[tuple[str, FileParts], ...]:
    """The ``parts`` of a catalog entry: ``{file: {from: [URL, ...], sha256: HEX}}``."""
    if not isinstance(parts, Mapping):
        raise ProfileError(
            "expected a mapping of file name to {from: [part URLs], sha256: ...}",
            file=file,
            key_path=f"{name}.parts",
        )
    out: list[tuple[str, FileParts]] = []
    for target, entry in parts.items():
        where = f"{name}.parts.{target}"
        if target not in files:
            raise ProfileError(
                f"{target!r} is not one of the entry's files",
                file=file,
                key_path=where,
                allowed=files,
            )
        if not isinstance(entry, Mapping):
            raise ProfileError("expected {from: [...], sha256: ...}", file=file, key_path=where)
        check_keys(entry, PARTS_KEYS, file, f"{where}.", "parts key")
        urls, digest = entry.get("from"), entry.get("sha256")
        if not isinstance(urls, list) or not urls or not all(isinstance(u, str) for u in urls):
            raise ProfileError(
                "expected a non-empty list of part URLs", file=file, key_path=f"{where}.from"
            )
        for i, url in enumerate(urls):
            scheme = urlparse(url).scheme or "file"
            if scheme == "hf" or scheme not in SOURCE_SCHEMES or not PurePosixPath(url).name:
                raise ProfileError(
                    f"expected the URL of a part file (pkg://module/subdir/file, file:// or an "
                    f"fsspec URL), found {url!r}",
                    file=file,
                    key_path=f"{where}.from[{i}]",
                )
        if not isinstance(digest, str) or not _HEX64.fullmatch(digest):
            raise ProfileError(
                f"expected the joined file's sha256 (64 hex digits), found {digest!r}",
                file=file,
                key_path=f"{where}.sha256",
            )
        out.append((target, FileParts(tuple(urls), digest)))
    return tuple(out)
