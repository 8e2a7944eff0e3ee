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
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from tasks.extract import content_hash
from voxflow.atomic import write_json, write_text
from voxflow.errors import BadInput, NoAudioStream, NothingHeard, NotMedia, VoxflowError

log = logging.getLogger(__name__)

LEDGER_NAME = "inbox-ledger.json"
DONE = "done"
QUARANTINED = "quarantined"
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


def pending_files(
    inbox: Path,
    ledger: Ledger,
    min_age_s: float = 0.0,
    run_state: Callable[[str], str | None] = lambda run: None,
) -> list[InboxFile]:
    """Media files in ``inbox`` (not hidden, not in sub-folders, with a suffix in
    :data:`MEDIA_SUFFIXES`) whose content is neither done nor held by a claim.

    Args:
        inbox: The folder to look in.
        ledger: What was done before, and the claims.
        min_age_s: Skip files modified less than this many seconds ago (still being copied).
        run_state: Batch run id -> state type, for :func:`claim_holds`.

    Returns:
        New files, by name; a file whose content appears twice is returned once.

    Raises:
        BadInput: The inbox folder does not exist.
    """
    if not inbox.is_dir():
        raise BadInput(f"inbox folder {inbox} does not exist")
    now = time.time()
    found: dict[str, InboxFile] = {}
    for path in sorted(inbox.iterdir()):
        if path.name.startswith(".") or not path.is_file():
            continue
        if path.suffix.lower() not in MEDIA_SUFFIXES:
            log.debug("inbox: %s is not an audio or video file name; leaving it", path.name)
            continue
        stat = path.stat()
        if now - stat.st_mtime < min_age_s:
            log.info("inbox: %s is still changing; leaving it for the next run", path.name)
            continue
        sha = ledger.known_hash(path, stat.st_size, stat.st_mtime_ns) or content_hash(path)
        if ledger.is_done(sha) or claim_holds(ledger.entries.get(sha, {}), now, run_state):
            continue
        if sha in found:
            log.info("inbox: %s has the same content as %s", path.name, found[sha].path.name)
            continue
        found[sha] = InboxFile(path, sha, stat.st_size, stat.st_mtime_ns)
    return list(found.values())


def quarantine(item: InboxFile, folder: Path, error: BaseException) -> Path:
    """Move a failed file into ``folder`` beside ``<name>.error.txt`` saying why.

    Returns:
        Where the file now is (the name gets a hash suffix if the folder already has one).
    """
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / item.path.name
    if dest.exists():
        dest = folder / f"{item.path.stem}-{item.sha256[:8]}{item.path.suffix}"
    note = dest.with_name(dest.name + ".error.txt")
    text = (
        f"{item.path.name} failed at {datetime.now(UTC).isoformat(timespec='seconds')}\n"
        f"sha256: {item.sha256}\n\n{type(error).__name__}: {error}\n\n"
        + "".join(traceback.format_exception(error))
        + "\nMove the file back into the inbox to try again.\n"
    )
    write_text(note, text)
    shutil.move(item.path, dest)
    return dest
