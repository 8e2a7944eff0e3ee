"""The media a run is given: its path checked, its content hashed, opened once.

A user's media path is a trust boundary. :func:`check_media_path` says in one line what is
wrong with a path before any work (a folder, a FIFO, a link loop, a name voxflow cannot name
outputs after). :func:`open_media` then opens the file once, without following a link at the
last step, and what was opened is an :class:`OpenMedia`: the run hashes it and the extract
stage decodes it through that same open file, so a name swapped for a link after the check
cannot redirect what is read. An inbox entry must be the regular file itself
(:func:`open_entry`, :func:`hash_entry`).
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from voxflow.errors import BadInput, MediaNotFound, NotMedia

MAX_NAME_BYTES = 200
"""The longest media file name voxflow takes: its outputs (``<stem>.<lang>.vtt``) and job
folder (``<stem>-<sha8>``) must fit the 255 bytes a file system allows a name."""

_KINDS = {
    stat.S_IFIFO: "a named pipe (FIFO)",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
}


def check_media_path(media: str | os.PathLike[str]) -> Path:
    """Return the media path if it is an existing regular file voxflow can name its outputs
    after, else say exactly what it is.

    Raises:
        MediaNotFound: Nothing is there (a dangling link says where it points).
        BadInput: A folder, a FIFO, a socket or a device, a symbolic link loop, a name that
            is not valid UTF-8 or is longer than :data:`MAX_NAME_BYTES`.
        NotMedia: An empty file.
    """
    path = Path(media)
    _check_name(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        if path.is_symlink():
            raise BadInput(
                f"{path} is a symbolic link to {os.readlink(path)}, which does not exist; "
                "expected an audio or video file"
            ) from None
        raise MediaNotFound(str(path)) from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise BadInput(
                f"{path} is a symbolic link loop (it points back at itself); expected an audio "
                "or video file"
            ) from None
        raise BadInput(
            f"{path} cannot be read ({e.strerror}); expected an audio or video file"
        ) from e
    if stat.S_ISDIR(info.st_mode):
        raise BadInput(
            f"{path} is a folder; expected an audio or video file (pass its files, e.g. "
            f"`voxflow transcribe {path}/*.mp4`, or let the inbox flow watch it)"
        )
    if not stat.S_ISREG(info.st_mode):
        kind = _KINDS.get(stat.S_IFMT(info.st_mode), "not a regular file")
        raise BadInput(
            f"{path} is {kind}, not a file; voxflow reads audio or video files it can seek in "
            "(save the stream to a file first, e.g. with ffmpeg)"
        )
    if info.st_size == 0:
        raise NotMedia(str(path), "the file is empty: 0 bytes")
    return path


def _check_name(path: Path) -> None:
    """Refuse a file name voxflow cannot write outputs for, before any work."""
    name = path.name
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        shown = os.fsencode(name).decode("utf-8", "backslashreplace")
        raise BadInput(
            f"the file name {shown} is not valid UTF-8, and voxflow names its outputs and "
            "records after it; rename the file and run again"
        ) from None
    if size > MAX_NAME_BYTES:
        raise BadInput(
            f"the file name {name[:40]}... is {size} bytes, and voxflow names its outputs "
            f"after it (<name>.<language>.vtt); at most {MAX_NAME_BYTES} bytes: rename the "
            "file and run again"
        )


def content_hash(source: str | os.PathLike[str] | BinaryIO, chunk: int = 1 << 20) -> str:
    """sha256 hex digest of a file's bytes (the job directory and stage caches key on it).

    Args:
        source: A path, or a file open for binary reading (read from its start).
        chunk: How many bytes are read at a time.
    """
    if isinstance(source, str | os.PathLike):
        with open(source, "rb") as f:
            return content_hash(f, chunk)
    digest = hashlib.sha256()
    source.seek(0)
    while block := source.read(chunk):
        digest.update(block)
    return digest.hexdigest()


# -- opened once ------------------------------------------------------------------------------


class NotRegularFile(BadInput):
    """An entry that must be a regular file itself (an inbox's) is a link or something else.

    Attributes:
        path: The entry.
        reason: What it is instead: ``symlink``, ``not a regular file: FIFO``, ...
    """

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path, self.reason = str(path), reason
        super().__init__(f"{self.path}: {reason}; links and special files are never read")


ENTRY_KINDS = {
    stat.S_IFLNK: "symlink",
    stat.S_IFDIR: "not a regular file: folder",
    stat.S_IFIFO: "not a regular file: FIFO",
    stat.S_IFSOCK: "not a regular file: socket",
    stat.S_IFCHR: "not a regular file: character device",
    stat.S_IFBLK: "not a regular file: block device",
}


def not_regular(entry: os.stat_result) -> str | None:
    """Why an entry (its ``lstat``) is not a regular file, or None when it is one."""
    kind = stat.S_IFMT(entry.st_mode)
    return None if kind == stat.S_IFREG else ENTRY_KINDS.get(kind, "not a regular file")


class OpenMedia:
    """A media file opened once: hashed and decoded through this open file, never its name.

    A plain class, not a dataclass, so that Prefect passes it through a task's inputs as it
    is. Closing it is the caller's (``with``).

    Attributes:
        path: The name it was opened by (for messages).
        file: The open file, read from its start by each use.
    """

    def __init__(self, path: Path, file: BinaryIO) -> None:
        self.path, self.file = path, file

    def sha256(self, chunk: int = 1 << 20) -> str:
        """The content hash of what was opened (:func:`content_hash`)."""
        return content_hash(self.file, chunk)

    def rewound(self) -> BinaryIO:
        """The open file at its start, for a decoder to read (PyAV takes a file object)."""
        self.file.seek(0)
        return self.file

    def close(self) -> None:
        """Close the file (again is no error)."""
        self.file.close()

    def __enter__(self) -> OpenMedia:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def open_media(media: str | os.PathLike[str], follow_links: bool = True) -> OpenMedia:
    """Check the media path (:func:`check_media_path`) and open the file once.

    Args:
        media: The media file.
        follow_links: False for an inbox entry, which must be the regular file itself; a
            command's media may be a link the user made, resolved once, here.

    Raises:
        MediaNotFound, BadInput, NotMedia: As :func:`check_media_path` says.
        NotRegularFile: The entry (or, following links, what they led to) is a link or a
            special file by the time it is opened.
    """
    path = check_media_path(media)
    return open_entry(path.resolve() if follow_links else path)


def open_entry(path: str | os.PathLike[str], listed: os.stat_result | None = None) -> OpenMedia:
    """Open a regular file through its own entry, never through a link.

    The entry is checked with ``lstat`` (or ``listed``, the ``lstat`` it was listed with) and
    only then opened: a device or a FIFO is never opened at all. What is in the folder can change
    between the check and the open, so the open refuses a link (``O_NOFOLLOW``), cannot block on
    a FIFO (``O_NONBLOCK``), and what it opened must be the inode that was checked.

    Raises:
        NotRegularFile: The entry is a link, not a regular file, or another file than listed.
        FileNotFoundError: It is gone.
    """
    listed = listed or os.lstat(path)
    if reason := not_regular(listed):
        raise NotRegularFile(path, reason)
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except OSError as e:
        if e.errno == errno.ELOOP:  # what O_NOFOLLOW answers for a link
            raise NotRegularFile(path, "symlink") from e
        raise
    file = os.fdopen(fd, "rb")
    opened = os.fstat(fd)
    if not_regular(opened) or (opened.st_dev, opened.st_ino) != (listed.st_dev, listed.st_ino):
        file.close()
        raise NotRegularFile(path, "replaced by another file since it was listed")
    return OpenMedia(Path(path), file)


def hash_entry(path: str | os.PathLike[str], listed: os.stat_result | None = None) -> str:
    """sha256 of a regular file read through its own entry, never through a link
    (:func:`open_entry`).

    Raises:
        NotRegularFile: The entry is a link, not a regular file, or another file than listed.
        FileNotFoundError: It is gone.
    """
    with open_entry(path, listed) as opened:
        return opened.sha256()
