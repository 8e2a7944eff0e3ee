"""The job directory and its stage cache.

A job directory is ``<output>/<media-stem>-<sha8>/``. The user's outputs (``<stem>.srt``, ...)
sit at its top; voxflow's own files sit in its ``records/`` folder (``audio.wav``,
``speech.json``, ``transcript.json``, ``run.json``, ...), so no media name can make the two
collide: an output is always ``<stem>.<ext>``, never a bare folder name. Each finished stage
leaves ``records/stages/<stage>.json`` holding its cache key, its result record and its time.
The key hashes (the media content, the stage's config including model revisions, the upstream
stage's key), so re-running the same file skips finished stages, a changed config reruns from
that stage on, and a run killed mid-flow resumes at the first stage without a record.
``run.json`` records the whole run (profile, models, seconds per stage, outputs), and
:func:`transcript_preview` is the Markdown of its Prefect artifact.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import shutil
import stat
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prefect import task
from prefect.cache_policies import NONE

from tasks.extract import check_media_path, content_hash
from voxflow import __version__
from voxflow.atomic import write_json
from voxflow.errors import BadInput, OutputFull
from voxflow.memory import give_back_freed, peak_memory

if TYPE_CHECKING:
    from profiles import Profile
    from tasks.warm.preflight import ReadyStage

log = logging.getLogger(__name__)

RECORDS = "records"
"""The job directory's folder for voxflow's own files (outputs are ``<stem>.<ext>`` files)."""


@dataclass(frozen=True)
class Job:
    """One media file's working directory.

    Attributes:
        media: The input file.
        directory: ``<output>/<stem>-<sha8>``.
        sha256: The input's content hash.
        stem: The input's file name without its suffix.
    """

    media: str
    directory: str
    sha256: str
    stem: str

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


def hash_entry(path: str | os.PathLike[str], listed: os.stat_result | None = None) -> str:
    """sha256 of a regular file read through its own entry, never through a link.

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
    with os.fdopen(fd, "rb") as f:
        opened = os.fstat(fd)
        if not_regular(opened) or (opened.st_dev, opened.st_ino) != (
            listed.st_dev,
            listed.st_ino,
        ):
            raise NotRegularFile(path, "replaced by another file since it was listed")
        return hashlib.file_digest(f, "sha256").hexdigest()


def open_job(
    media: str | os.PathLike[str], output_dir: str | os.PathLike[str], follow_links: bool = True
) -> Job:
    """Hash the media and create its job directory.

    Args:
        media: The media file.
        output_dir: Where job directories go.
        follow_links: False for a file of the inbox, whose entry must be the regular file itself
            (:func:`hash_entry`); a command's media may be a link the user made.

    Raises:
        MediaNotFound: The media file does not exist.
        NotRegularFile: ``follow_links`` is False and the entry is a link or a special file.
    """
    path = check_media_path(media)
    if follow_links:
        digest, where = content_hash(path), path.resolve()
    else:  # the folder's own links are the operator's; the entry's would be anyone's
        digest, where = hash_entry(path), path.parent.resolve() / path.name
    directory = Path(output_dir) / f"{path.stem}-{digest[:8]}"
    (directory / RECORDS / "stages").mkdir(parents=True, exist_ok=True)
    return Job(media=str(where), directory=str(directory.resolve()), sha256=digest, stem=path.stem)


@task(cache_policy=NONE)
def prepare_job(media: str, output_dir: str, follow_links: bool = True) -> Job:
    """Hash the media and create its job directory (:func:`open_job`)."""
    return open_job(media, output_dir, follow_links)


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
    with room_for(job, f"the {stage} stage"), peak_memory() as peak:
        result = compute()
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
) -> dict[str, Any]:
    """Write ``run.json``: profile, models with revisions, seconds per stage, real-time factor.

    The real-time factor counts the work this run did (cached stages cost nothing).
    ``flow_run_id`` links the record to its Prefect flow run (logs, artifacts).
    """
    duration = next(s.result["duration"] for s in stages if s.stage == "extract")
    work = sum(0.0 if s.cached else s.seconds for s in stages)
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
        "real_time_factor": round(work / duration, 4) if duration else None,
        "outputs": outputs,
        "subtitles": subtitles,
        "guard": guard,
        "languages": languages,
    }
    save_json(job, job.records / "run.json", record, "run.json")
    return record


def transcript_preview(job: Job, text: str, record: dict[str, Any], limit: int = 1200) -> str:
    """Markdown for the flow run's artifact: where the files are and how the text begins."""
    shown = text if len(text) <= limit else text[:limit].rsplit(" ", 1)[0] + " …"
    rows = "\n".join(
        f"| {s} | {v['seconds']:.2f} | {'yes' if v['cached'] else 'no'} |"
        for s, v in record["stages"].items()
    )
    return (
        f"# {Path(job.media).name}\n\n"
        f"profile `{record['profile']}`, {record['audio_seconds']:.1f} s of audio, "
        f"real-time factor {record['real_time_factor']}\n\n"
        f"| stage | seconds | cached |\n|---|---|---|\n{rows}\n\n"
        f"{_check_table(record.get('subtitles'))}"
        f"Outputs in `{job.directory}`\n\n> {shown or '(no speech found)'}\n"
    )


def _check_table(check: dict[str, Any] | None) -> str:
    """The subtitle check's figures as Markdown: the rule set, then each broken rule's cues."""
    if not check:
        return ""
    head = (
        f"Subtitle check ({check['rules']}): {check['violations']} violation(s) in "
        f"{check['cues']} cues, {check['per_100_cues']} per 100 cues\n\n"
    )
    if not check["by_rule"]:
        return head
    rows = "\n".join(
        f"| {rule} | {len(cues)} | {', '.join(map(str, cues[:20]))} |"
        for rule, cues in check["by_rule"].items()
    )
    return head + f"| rule | violations | cues |\n|---|---|---|\n{rows}\n\n"
