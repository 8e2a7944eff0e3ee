"""The job directory and its stage cache.

A job directory is ``<output>/<media-stem>-<sha8>/``. The user's outputs (``<stem>.srt``, ...)
sit at its top; voxflow's own files sit in its ``records/`` folder (``audio.wav``,
``speech.json``, ``transcript.json``, ``run.json``, ...), so no media name can make the two
collide: an output is always ``<stem>.<ext>``, never a bare folder name. Each finished stage
leaves ``records/stages/<stage>.json`` holding its cache key, its result record and its time.
The key hashes (the media content, the stage's config including model revisions, the upstream
stage's key), so re-running the same file skips finished stages, a changed config reruns from
that stage on, and a run killed mid-flow resumes at the first stage without a record.
A run holds the directory's lock from its start to its end (:func:`prepare_job`), so a second
run of the same file into the same output waits for the first and then finds its stages done.
``run.json`` records the whole run (profile, models, seconds per stage, outputs);
:mod:`tasks.preview` makes the Markdown of its Prefect artifact from it.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import logging
import os
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, BinaryIO

from prefect import task
from prefect.cache_policies import NONE

from tasks.media import OpenMedia, open_media
from voxflow import __version__
from voxflow.atomic import write_json
from voxflow.errors import OutputFull, VoxflowError
from voxflow.memory import give_back_freed, peak_memory

if TYPE_CHECKING:
    from profiles import Profile
    from tasks.warm.preflight import ReadyStage

log = logging.getLogger(__name__)

RECORDS = "records"
"""The job directory's folder for voxflow's own files (outputs are ``<stem>.<ext>`` files)."""

LOCK = "run.lock"
"""The file in ``records/`` that a run holds locked (:func:`hold_job`); it names the holder."""

WAIT_POLL_S = 0.25
"""How often a run waiting for another run of its file tries the lock again."""


@dataclass(frozen=True)
class Job:
    """One media file's working directory.

    Attributes:
        media: The input file.
        directory: ``<output>/<stem>-<sha8>``.
        sha256: The input's content hash.
        stem: The input's file name without its suffix.
        source: The input, opened once (:func:`tasks.media.open_media`): the extract stage
            decodes this open file, never the name again.
        lock: The job directory's lock file while a run holds it (:func:`hold_job`).
    """

    media: str
    directory: str
    sha256: str
    stem: str
    source: OpenMedia = field(repr=False, compare=False)
    lock: BinaryIO | None = field(default=None, repr=False, compare=False)

    def close(self) -> None:
        """Close the media and release the job directory (again is no error)."""
        self.source.close()
        if self.lock is not None:
            self.lock.close()  # closing the last descriptor of a flock releases it

    def __enter__(self) -> Job:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def path(self) -> Path:
        """The directory as a Path."""
        return Path(self.directory)

    @property
    def records(self) -> Path:
        """voxflow's own files: intermediate audio, stage results, ``run.json``."""
        return self.path / RECORDS

    def stage_file(self, stage: str) -> Path:
        """Where a stage's record lives."""
        return self.records / "stages" / f"{stage}.json"


def open_job(
    media: str | os.PathLike[str], output_dir: str | os.PathLike[str], follow_links: bool = True
) -> Job:
    """Open the media once, hash it and create its job directory.

    The job keeps the media open (:attr:`Job.source`): close it (``with``) when done.

    Args:
        media: The media file.
        output_dir: Where job directories go.
        follow_links: False for a file of the inbox, whose entry must be the regular file itself
            (:func:`tasks.media.open_entry`); a command's media may be a link the user made.

    Raises:
        MediaNotFound: The media file does not exist.
        NotRegularFile: ``follow_links`` is False and the entry is a link or a special file.
    """
    source = open_media(media, follow_links)
    try:
        digest, stem = source.sha256(), Path(media).stem
        directory = Path(output_dir) / f"{stem}-{digest[:8]}"
        (directory / RECORDS / "stages").mkdir(parents=True, exist_ok=True)
    except BaseException:
        source.close()
        raise
    # the folder's own links are the operator's; the entry's would be anyone's
    where = source.path if follow_links else source.path.parent.resolve() / source.path.name
    directory = directory.resolve()
    return Job(str(where), str(directory), digest, stem, source)


@task(cache_policy=NONE)
def prepare_job(media: str, output_dir: str, follow_links: bool = True) -> Job:
    """Open and hash the media, create its job directory (:func:`open_job`) and hold it for
    this run (:func:`hold_job`), so another run of the same file waits and then reuses this
    one's stages. Close the job (``with``) when the run ends."""
    job = open_job(media, output_dir, follow_links)
    try:
        return replace(job, lock=hold_job(job))
    except BaseException:
        job.close()
        raise


def hold_job(job: Job) -> BinaryIO:
    """Hold the job directory's lock for a run, first waiting for a run that holds it.

    One log line says that this run waits and for which process. The lock is ``flock`` on
    ``records/run.lock``: the kernel releases it when its holder's process ends, however it
    ends, so a killed run never wedges the next. A lock file removed while this run waited (the
    extract stage removes the folder of media it cannot decode) is no lock: the run makes the
    folder again and takes the new one.

    Returns:
        The open lock file, holding this process's id; closing it releases the lock.
    """
    waited = False
    while True:
        job.stage_file("extract").parent.mkdir(parents=True, exist_ok=True)
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        lock = os.fdopen(os.open(job.records / LOCK, flags, 0o666), "r+b")
        while not _try_lock(lock):
            if not waited:
                log.info(
                    "%s: waiting for another run of this file (%s) to finish; its finished "
                    "stages are then reused",
                    job.path.name,
                    _holder(lock),
                )
                waited = True
            time.sleep(WAIT_POLL_S)
        if _still_there(lock, job.records / LOCK):
            break
        lock.close()
    lock.truncate(0)
    lock.write(f"process {os.getpid()} on {socket.gethostname()}".encode())
    lock.flush()
    return lock


def _try_lock(lock: BinaryIO) -> bool:
    """Take the lock if no other open file holds it."""
    try:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _holder(lock: BinaryIO) -> str:
    """Who holds the lock, as it wrote itself into the file (``process 123 on host``)."""
    said = os.pread(lock.fileno(), 200, 0).decode("utf-8", "replace").strip()
    return said or "a process that has not yet said which"


def _still_there(lock: BinaryIO, path: Path) -> bool:
    """Whether the locked file is still the one at ``path`` (not removed while waiting)."""
    try:
        there = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    held = os.fstat(lock.fileno())
    return (there.st_dev, there.st_ino) == (held.st_dev, held.st_ino)


def stage_key(job: Job, stage: str, config: dict[str, Any], upstream: str | None) -> str:
    """The cache key of a stage run: content hash, stage config, upstream key."""
    blob = json.dumps(
        {"media": job.sha256, "stage": stage, "config": config, "upstream": upstream},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class StageResult:
    """What a stage returned, whether it came from the cache, and what it cost."""

    stage: str
    key: str
    result: dict[str, Any]
    seconds: float
    cached: bool
    peak_mib: float = 0.0
    """The process's peak resident memory while the stage ran (MiB; as recorded, if cached)."""


def run_stage(
    job: Job,
    stage: str,
    config: dict[str, Any],
    upstream: str | None,
    compute: Callable[[], dict[str, Any]],
    outputs: Callable[[dict[str, Any]], list[str]] = lambda r: [],
) -> StageResult:
    """Run a stage, or return its recorded result if the same work was finished before.

    Args:
        job: The job directory.
        stage: Stage name (the record's file name).
        config: Everything that changes the stage's output (options, model revisions).
        upstream: The key of the stage whose output this one reads.
        compute: Does the work; returns a JSON-able record.
        outputs: The files a record promises; a record whose files are gone is not trusted.
    """
    key = stage_key(job, stage, config, upstream)
    record_file = job.stage_file(stage)
    if record_file.exists():
        try:
            record = json.loads(record_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:  # ValueError covers bad JSON and bad UTF-8
            log.warning("%s: ignoring unreadable stage record %s (%s)", stage, record_file, e)
            record = {}
        if not isinstance(record, dict):
            log.warning("%s: ignoring stage record %s: not a JSON object", stage, record_file)
            record = {}
        if record.get("key") == key and all(Path(p).exists() for p in outputs(record["result"])):
            log.info("%s: cached (key %s), skipping", stage, key)
            peak = record.get("peak_mib", 0.0)
            return StageResult(stage, key, record["result"], record["seconds"], True, peak)
    started = time.perf_counter()
    try:
        with room_for(job, f"the {stage} stage"), peak_memory() as peak:
            result = compute()
    except VoxflowError as e:
        e.stage = e.stage or stage  # what a failed run's report names
        raise
    give_back_freed()  # the stage's buffers are gone: the next stage starts from less
    seconds = round(time.perf_counter() - started, 3)
    record = {
        "stage": stage,
        "key": key,
        "config": config,
        "upstream": upstream,
        "result": result,
        "seconds": seconds,
        "peak_mib": peak.mib,
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    save_json(job, record_file, record, f"the {stage} stage's record")
    log.info("%s: done in %.2f s (peak %.0f MiB)", stage, seconds, peak.mib)
    return StageResult(stage, key, result, seconds, cached=False, peak_mib=peak.mib)


def save_json(job: Job, path: Path, record: dict[str, Any], doing: str) -> None:
    """Write a JSON record into the job directory atomically (:mod:`voxflow.atomic`).

    Args:
        job: The job whose directory holds ``path``.
        path: Where the record goes (``records/stages/<stage>.json``, ``records/run.json``).
        record: A JSON-able record; other values are written as their ``str``.
        doing: What is being written, for a full disk's message.
    """
    with room_for(job, doing):
        write_json(path, record, indent=1, default=str)


@contextmanager
def room_for(job: Job, doing: str) -> Iterator[None]:
    """Turn a full disk under the job directory into :class:`OutputFull`, saying what to do.

    Args:
        job: The job whose directory is being written.
        doing: What is being written, for the message (``the asr stage``).
    """
    try:
        yield
    except OutputFull:
        raise
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        try:
            free = shutil.disk_usage(job.path).free
        except OSError:
            free = 0
        raise OutputFull(job.directory, doing, free) from e


# -- the run record ---------------------------------------------------------------------


def write_run_record(
    job: Job,
    profile: Profile,
    ready: dict[str, ReadyStage],
    stages: list[StageResult],
    outputs: dict[str, str],
    wall_seconds: float,
    flow_run_id: str | None = None,
    subtitles: dict[str, Any] | None = None,
    guard: dict[str, Any] | None = None,
    languages: dict[str, float] | None = None,
    shots: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write ``run.json``: profile, models with revisions, seconds per stage, real-time factor,
    and what the shots stage found (None for audio only).

    The real-time factor counts the work this run did (cached stages cost nothing), except in
    a run whose every stage was cached (``"cached": true``): there it is the figure of the runs
    that did the work, from their stage records, since 0.0 would say the file costs nothing.
    ``flow_run_id`` links the record to its Prefect flow run (logs, artifacts).
    """
    duration = next(s.result["duration"] for s in stages if s.stage == "extract")
    work = sum(0.0 if s.cached else s.seconds for s in stages)
    reused = all(s.cached for s in stages)
    costed = sum(s.seconds for s in stages) if reused else work
    record = {
        "voxflow": __version__,
        "media": job.media,
        "sha256": job.sha256,
        "job": job.directory,
        "profile": profile.name,
        "flow_run_id": flow_run_id,
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "models": {
            name: {"backend": r.backend, "model": r.model, "revision": r.revision}
            for name, r in ready.items()
        },
        "stages": {
            s.stage: {
                "seconds": s.seconds,
                "cached": s.cached,
                "peak_mib": s.peak_mib,
                "key": s.key,
            }
            for s in stages
        },
        "audio_seconds": round(duration, 3),
        "stage_seconds": round(work, 3),
        "wall_seconds": round(wall_seconds, 3),
        "real_time_factor": round(costed / duration, 4) if duration else None,
        "cached": reused,
        "outputs": outputs,
        "subtitles": subtitles,
        "guard": guard,
        "languages": languages,
        "shots": shots,
    }
    save_json(job, job.records / "run.json", record, "run.json")
    return record
