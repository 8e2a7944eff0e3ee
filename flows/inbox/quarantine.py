"""The inbox's quarantine: a real folder inside the inbox, walked from the inbox without
following a link, into which a file that cannot be transcribed is moved by one rename that
never replaces a name, with a note of why beside it. Nothing leaves the inbox folder.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import logging
import os
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from flows.inbox.files import InboxFile
from tasks.media import NotRegularFile, not_regular
from voxflow.errors import BadInput

log = logging.getLogger(__name__)


class QuarantineRefused(BadInput):
    """The quarantine is not a real folder inside the inbox; no file may be moved there."""


def quarantine_folder(inbox: Path, quarantine_dir: str | os.PathLike[str] | None) -> Path:
    """The inbox's quarantine: ``quarantine_dir`` (relative to the inbox, or a path inside it),
    by default ``<inbox>/quarantine``.

    Raises:
        QuarantineRefused: ``quarantine_dir`` is not inside the inbox.
    """
    if quarantine_dir is None:
        return inbox / "quarantine"
    within = Path(os.path.relpath(os.path.abspath(inbox / quarantine_dir), os.path.abspath(inbox)))
    if not within.parts or within.parts[0] == "..":
        raise QuarantineRefused(
            f"the quarantine {quarantine_dir} is not a folder inside the inbox {inbox}; files "
            f"never leave the inbox: name one inside it, such as {inbox / 'quarantine'}"
        )
    return inbox / within


@contextmanager
def _folder_fd(path: Path) -> Iterator[int]:
    """A descriptor of the folder ``path``; it, and not the name, is what later calls use."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield fd
    finally:
        os.close(fd)


@contextmanager
def _quarantine_fd(inbox_fd: int, inbox: Path, folder: Path, create: bool) -> Iterator[int | None]:
    """The quarantine's descriptor, walked down from the inbox's one name at a time without
    following a link, each missing folder made when ``create``; None if missing otherwise.

    Raises:
        QuarantineRefused: A part of the way is a link or not a folder.
    """
    fd = os.dup(inbox_fd)
    try:
        here = inbox
        for part in folder.relative_to(inbox).parts:
            here = here / part
            try:
                inner = _open_subfolder(fd, part, create)
            except OSError as e:
                if e.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                what = not_regular(os.stat(part, dir_fd=fd, follow_symlinks=False))
                fix = "remove the link" if what == "symlink" else "move it aside"
                raise QuarantineRefused(
                    f"the inbox's quarantine {here} is {_kind(what)}, not a folder inside the "
                    f"inbox; {fix} and run again (files never leave the inbox)"
                ) from e
            os.close(fd)
            fd = inner
            if fd is None:
                break
        yield fd
    finally:
        if fd is not None:
            os.close(fd)


def _kind(reason: str | None) -> str:
    """``a symlink``, ``a regular file``, ``a FIFO`` from :func:`tasks.media.not_regular`."""
    return "a " + (reason or "regular file").removeprefix("not a regular file: ")


def _open_subfolder(fd: int, name: str, create: bool) -> int | None:
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        return os.open(name, flags, dir_fd=fd)
    except FileNotFoundError:
        if not create:
            return None
    try:
        os.mkdir(name, dir_fd=fd)
    except FileExistsError:
        pass  # another batch made it meanwhile (or a link was planted: the open says which)
    return os.open(name, flags, dir_fd=fd)


def check_quarantine(inbox: Path, folder: Path) -> None:
    """Refuse a quarantine that is a link or not a folder before anything is claimed; a
    missing one is fine (it is made when a file first needs it).

    Raises:
        BadInput: The inbox folder does not exist.
        QuarantineRefused: The quarantine (or a folder on its way) is a link or not a folder.
    """
    if not inbox.is_dir():
        raise BadInput(f"inbox folder {inbox} does not exist")
    folder = quarantine_folder(inbox, folder)
    with _folder_fd(inbox) as inbox_fd, _quarantine_fd(inbox_fd, inbox, folder, create=False):
        pass


def quarantine(item: InboxFile, folder: Path, error: BaseException) -> Path:
    """Move a failed file into ``folder`` beside ``<name>.error.txt`` saying why.

    The move is one rename from the inbox's descriptor to the quarantine's, which never replaces
    a name: a taken name, whatever is there (a planted link, another failed file of that name),
    is left as it is and the next of ``name (2).mp4``, ``name (3).mp4``, ... is used. The note is
    created, never opened through a link or over a file (``O_EXCL | O_NOFOLLOW``).

    Returns:
        Where the file now is.

    Raises:
        QuarantineRefused: The quarantine is a link or not a folder.
        NotRegularFile: The file in the inbox is a link or a special file by now (not moved).
    """
    inbox, name = item.path.parent, item.path.name
    folder = quarantine_folder(inbox, folder)
    text = (
        f"{name} failed at {datetime.now(UTC).isoformat(timespec='seconds')}\n"
        f"sha256: {item.sha256}\n\n{type(error).__name__}: {error}\n\n"
        + "".join(traceback.format_exception(error))
        + "\nMove the file back into the inbox to try again.\n"
    ).encode()
    with _folder_fd(inbox) as inbox_fd, _quarantine_fd(inbox_fd, inbox, folder, True) as q_fd:
        assert q_fd is not None  # made when missing
        if reason := not_regular(os.stat(name, dir_fd=inbox_fd, follow_symlinks=False)):
            raise NotRegularFile(item.path, reason)
        for dest in free_names(name):
            note = dest + ".error.txt"
            if not _write_new(q_fd, note, text):
                continue
            try:
                move_without_replacing(inbox_fd, name, q_fd, dest)
            except FileExistsError:
                os.unlink(note, dir_fd=q_fd)
                continue
            except BaseException:
                os.unlink(note, dir_fd=q_fd)
                raise
            return folder / dest
    raise AssertionError("unreachable: free_names never ends")


def free_names(name: str) -> Iterator[str]:
    """``talk.mp4``, then ``talk (2).mp4``, ``talk (3).mp4``, ... for a taken name."""
    yield name
    stem, suffix = os.path.splitext(name)
    n = 2
    while True:
        yield f"{stem} ({n}){suffix}"
        n += 1


def _write_new(dir_fd: int, name: str, data: bytes) -> bool:
    """Create ``name`` in the folder with ``data``, synced; False if the name is taken."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(name, flags, 0o666, dir_fd=dir_fd)
    except FileExistsError:
        return False
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        os.unlink(name, dir_fd=dir_fd)
        raise
    return True


RENAME_NOREPLACE = 1
"""renameat2's flag: fail with EEXIST rather than replace the destination."""


def _load_renameat2() -> Callable[..., int] | None:
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2  # glibc 2.28+, Linux 3.15+
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_RENAMEAT2 = _load_renameat2()
UNSUPPORTED = frozenset({errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM})
"""What a filesystem answers for a kind of rename or link it does not do."""


def move_without_replacing(src_fd: int, src: str, dst_fd: int, dst: str) -> None:
    """Rename ``src`` (in folder ``src_fd``) to ``dst`` (in ``dst_fd``) exactly, never replacing.

    Raises:
        FileExistsError: ``dst`` is taken, by anything (a dangling link too); nothing moved.
    """
    if _RENAMEAT2 is not None:
        if _RENAMEAT2(src_fd, os.fsencode(src), dst_fd, os.fsencode(dst), RENAME_NOREPLACE) == 0:
            return
        code = ctypes.get_errno()
        if code not in UNSUPPORTED:
            raise OSError(code, os.strerror(code), dst)  # EEXIST: a FileExistsError
    # No renameat2 (macOS, NFS, an old kernel): a hard link is as exclusive (EEXIST on a taken
    # name, links not followed), then the inbox's name goes. A crash in between leaves the file
    # under both names; the inbox's is quarantined again on its next run, nothing is lost.
    try:
        os.link(src, dst, src_dir_fd=src_fd, dst_dir_fd=dst_fd, follow_symlinks=False)
    except FileExistsError:
        raise
    except OSError as e:
        if e.errno not in UNSUPPORTED:
            raise
    else:
        os.unlink(src, dir_fd=src_fd)
        return
    # No hard links either (FAT, some SMB and FUSE mounts): look, then rename, holding a lock
    # on the quarantine folder itself (flock on its descriptor: no lock file a link could be
    # planted as), so two batches never pick one free name. A name planted by someone else
    # between the look and the rename is replaced: the rename replaces that entry, never what
    # a link points at, so the file still stays inside the quarantine.
    fcntl.flock(dst_fd, fcntl.LOCK_EX)
    try:
        try:
            os.stat(dst, dir_fd=dst_fd, follow_symlinks=False)
        except FileNotFoundError:
            os.rename(src, dst, src_dir_fd=src_fd, dst_dir_fd=dst_fd)
            return
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), dst)
    finally:
        fcntl.flock(dst_fd, fcntl.LOCK_UN)
