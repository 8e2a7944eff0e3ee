"""The inbox: which files in a folder are new, a ledger of those done, and a quarantine.

A file is identified by its content (sha256), not its name: renaming or copying a finished file
back into the inbox does nothing, and a changed file under an old name is new. The ledger
(``<output>/inbox-ledger.json``) is rewritten atomically (temp file, fsync, rename) under a file
lock that is held only while it is read and written, never while a file is transcribed. A stat
index (name, size, mtime) spares re-hashing files the ledger has already seen.

Many runs share one inbox through **claims**. An inbox run claims new files for a batch (a
random token, the time it lapses) and hands the batch to a flow run of its own; that run renews
the claim while it works and checks, before each file, that the claim is still its own. A claim
holds while its batch run waits to start, and otherwise only until it lapses: a run whose
worker was killed stops renewing, so a later inbox run claims its files again, and their
finished stages are reused from the job folder. A claim whose run ended without doing the file
is void at once.

The inbox is a **trust boundary**: whoever may drop files there may also plant links, FIFOs and
names. Only regular files are read, each through its own entry (:func:`tasks.media.hash_entry`);
links of every kind and special files are left alone and reported as skipped. Quarantine moves
a file by one rename that never replaces a name, into a real folder inside the inbox, walked
from the inbox without following a link: nothing leaves the inbox folder.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from tasks.media import NotRegularFile, hash_entry, not_regular
from voxflow.atomic import write_json
from voxflow.errors import BadInput, NoAudioStream, NothingHeard, NotMedia, VoxflowError

log = logging.getLogger(__name__)

LEDGER_NAME = "inbox-ledger.json"
DONE = "done"
QUARANTINED = "quarantined"
SKIPPED = "skipped"
CLAIMED = "claimed"

WAITING_STATES = frozenset({"SCHEDULED"})
"""States of a batch run in which its claims hold however old they are: it has not started."""
ENDED_STATES = frozenset({"COMPLETED", "FAILED", "CRASHED", "CANCELLED"})
"""States of a batch run after which its claims on files it did not finish are void."""

MEDIA_SUFFIXES = frozenset(
    ".3gp .aac .aif .aiff .amr .ape .avi .caf .flac .flv .m2ts .m4a .m4b .m4v .mka .mkv .mov "
    ".mp2 .mp3 .mp4 .mpeg .mpg .mts .mxf .oga .ogg .ogv .opus .ts .vob .wav .weba .webm .wma "
    ".wmv .wv".split()
)
"""Suffixes of the audio and video files the inbox takes; anything else is left where it is."""

FILE_FAULTS: tuple[type[BaseException], ...] = (NotMedia, NoAudioStream, NothingHeard)
"""Failures of a file itself, which send it to quarantine (with a note of why): it cannot be
decoded, or it holds speech the profile kept no words of (another language for an English-only
model, babble). Anything else (a full disk, a cold or damaged volume, GPU memory, a bug) is
the machine's: it fails the run and leaves the file in the inbox for the next run."""


def is_file_fault(error: BaseException) -> bool:
    """Whether ``error`` is the file's own fault (it cannot be decoded or has no audio)."""
    return isinstance(error, FILE_FAULTS)


class InboxBusy(VoxflowError):
    """Another inbox run holds the ledger; this one has nothing to do."""


@dataclass(frozen=True)
class InboxFile:
    """A file waiting in the inbox, with the key the ledger knows it by."""

    path: Path
    sha256: str
    size: int
    mtime_ns: int


class Ledger:
    """Content hash -> what became of that file; only ``done`` entries are skipped later.

    Attributes:
        path: The ledger file.
        entries: sha256 -> entry (``status``, ``file``, ``size``, ``mtime_ns``, ``at``, ...).
    """

    def __init__(self, path: Path, entries: dict[str, dict[str, Any]]) -> None:
        self.path = path
        self.entries = entries

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Ledger:
        """Read the ledger, or start an empty one where there is none.

        Raises:
            BadInput: The file exists but is not a ledger (it is left for a human to look at).
        """
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return cls(path, {})
        except (OSError, ValueError) as e:
            raise BadInput(f"inbox ledger {path} is unreadable ({e}); move it aside") from e
        if not isinstance(data, dict) or not isinstance(data.get("files"), dict):
            raise BadInput(f"inbox ledger {path} has no 'files' mapping; move it aside")
        return cls(path, data["files"])

    def is_done(self, sha256: str) -> bool:
        return self.entries.get(sha256, {}).get("status") == DONE

    def known_hash(self, path: Path, size: int, mtime_ns: int) -> str | None:
        """The hash recorded for a file with this name, size and mtime, if any."""
        for sha, entry in self.entries.items():
            if (entry.get("file"), entry.get("size"), entry.get("mtime_ns")) == (
                path.name,
                size,
                mtime_ns,
            ):
                return sha
        return None

    def claim(self, item: InboxFile, token: str, until: float, **details: Any) -> None:
        """Mark ``item`` claimed by ``token`` until ``until`` (epoch seconds); not yet saved."""
        self.entries[item.sha256] = {
            "status": CLAIMED,
            "file": item.path.name,
            "path": str(item.path),
            "size": item.size,
            "mtime_ns": item.mtime_ns,
            "claim": token,
            "until": until,
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
            **details,
        }

    def claimed_by(self, token: str) -> dict[str, dict[str, Any]]:
        """sha256 -> entry, for the files ``token`` still holds a claim on."""
        return {
            sha: entry
            for sha, entry in self.entries.items()
            if entry.get("status") == CLAIMED and entry.get("claim") == token
        }

    def renew(self, token: str, until: float, **details: Any) -> int:
        """Push the lapse time of ``token``'s claims to ``until``; how many it holds."""
        held = self.claimed_by(token)
        for entry in held.values():
            entry.update(until=until, **details)
        return len(held)

    def record(self, item: InboxFile, status: str, **details: Any) -> None:
        """Note what became of ``item`` and write the ledger atomically."""
        self.entries[item.sha256] = {
            "status": status,
            "file": item.path.name,
            "size": item.size,
            "mtime_ns": item.mtime_ns,
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
            **details,
        }
        self.save()

    def file(self, sha256: str) -> InboxFile | None:
        """The claimed or recorded file under ``sha256`` as an :class:`InboxFile`."""
        entry = self.entries.get(sha256)
        if entry is None or "path" not in entry:
            return None
        return InboxFile(Path(entry["path"]), sha256, entry["size"], entry["mtime_ns"])

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_json(self.path, {"files": self.entries}, indent=2, sort_keys=True)


def claim_holds(entry: dict[str, Any], now: float, run_state: Callable[[str], str | None]) -> bool:
    """Whether a ledger entry is a claim that still keeps other runs off its file.

    Args:
        entry: The ledger entry.
        now: The time, epoch seconds.
        run_state: Batch run id -> its state type (``SCHEDULED``, ``RUNNING``, ...), or None
            when the server does not know it or cannot be asked.
    """
    if entry.get("status") != CLAIMED:
        return False
    run = entry.get("batch_run")
    state = run_state(run) if run else None
    if state in ENDED_STATES:
        return False
    if state in WAITING_STATES:
        return True
    return now < float(entry.get("until", 0))


@contextmanager
def locked_ledger(path: str | os.PathLike[str], timeout: float = 60.0) -> Iterator[Ledger]:
    """Load the ledger under its lock, for one read-and-write (not for a whole run).

    Args:
        path: The ledger file.
        timeout: Seconds to wait for another run's read-and-write to end.

    Raises:
        InboxBusy: The lock was not free within ``timeout``.
        BadInput: The ledger is unreadable.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path) + ".lock", timeout=timeout)
    try:
        lock.acquire()
    except Timeout as e:
        raise InboxBusy(
            f"the inbox ledger {path} stayed locked for {timeout:.0f} s; if no inbox run is "
            f"alive, remove {path}.lock"
        ) from e
    try:
        yield Ledger.load(path)
    finally:
        lock.release()


@dataclass(frozen=True)
class InboxScan:
    """What one look at the inbox found.

    Attributes:
        pending: New media files, by name; a content that appears twice is there once.
        skipped: Name -> why it was left alone: a link of any kind (``symlink``), or something
            that is not a regular file (``not a regular file: FIFO``). Plain sub-folders are not
            listed (they are not scanned, and the quarantine is one); one named like media is.
    """

    pending: list[InboxFile] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)


def scan_inbox(
    inbox: Path,
    ledger: Ledger,
    min_age_s: float = 0.0,
    run_state: Callable[[str], str | None] = lambda run: None,
) -> InboxScan:
    """Media files in ``inbox`` (not hidden, not in sub-folders, with a suffix in
    :data:`MEDIA_SUFFIXES`) whose content is neither done nor held by a claim, and the entries
    left alone because they are links or special files (never opened, read or hashed).

    Args:
        inbox: The folder to look in.
        ledger: What was done before, and the claims.
        min_age_s: Skip files modified less than this many seconds ago (still being copied).
        run_state: Batch run id -> state type, for :func:`claim_holds`.

    Raises:
        BadInput: The inbox folder does not exist.
    """
    if not inbox.is_dir():
        raise BadInput(f"inbox folder {inbox} does not exist")
    now = time.time()
    scan = InboxScan()
    found: dict[str, InboxFile] = {}
    for path in sorted(inbox.iterdir()):
        if path.name.startswith("."):
            continue
        try:
            entry = os.lstat(path)  # the entry itself: a link is a link, whatever it points at
        except FileNotFoundError:
            continue  # gone since the folder was listed
        media_name = path.suffix.lower() in MEDIA_SUFFIXES
        if reason := not_regular(entry):
            if stat.S_ISDIR(entry.st_mode) and not media_name:
                continue
            log.info("inbox: leaving %s alone: %s", path.name, reason)
            scan.skipped[path.name] = reason
            continue
        if not media_name:
            log.debug("inbox: %s is not an audio or video file name; leaving it", path.name)
            continue
        if now - entry.st_mtime < min_age_s:
            log.info("inbox: %s is still changing; leaving it for the next run", path.name)
            continue
        sha = ledger.known_hash(path, entry.st_size, entry.st_mtime_ns)
        if sha is None:
            try:
                sha = hash_entry(path, entry)
            except NotRegularFile as e:  # replaced by a link or a FIFO since the lstat
                log.info("inbox: leaving %s alone: %s", path.name, e.reason)
                scan.skipped[path.name] = e.reason
                continue
            except FileNotFoundError:
                continue
        if ledger.is_done(sha) or claim_holds(ledger.entries.get(sha, {}), now, run_state):
            continue
        if sha in found:
            log.info("inbox: %s has the same content as %s", path.name, found[sha].path.name)
            continue
        found[sha] = InboxFile(path, sha, entry.st_size, entry.st_mtime_ns)
    scan.pending.extend(found.values())
    return scan


def pending_files(
    inbox: Path,
    ledger: Ledger,
    min_age_s: float = 0.0,
    run_state: Callable[[str], str | None] = lambda run: None,
) -> list[InboxFile]:
    """The new media files of :func:`scan_inbox`, by name."""
    return scan_inbox(inbox, ledger, min_age_s, run_state).pending


def entry_problem(path: Path) -> str | None:
    """Why the inbox must leave ``path`` alone now (a link, a special file), or None.

    A batch runs minutes after its inbox run listed the file, maybe on another host: the name
    may be a link by then, so it is looked at again right before the file is handed on.

    Raises:
        FileNotFoundError: It is gone.
    """
    return not_regular(os.lstat(path))
