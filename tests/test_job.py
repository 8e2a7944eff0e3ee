"""The job directory and its stage cache: finished work is skipped, changed work is redone."""

from __future__ import annotations

import errno
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tasks.job import Job, open_job, room_for, run_stage, stage_key
from tasks.media import content_hash
from voxflow.errors import MediaNotFound, OutputFull

CONFIG = {"backend": "silero", "threshold": 0.5, "model": {"revision": "1.2.1"}}


@pytest.fixture
def media(tmp_path: Path) -> Path:
    path = tmp_path / "interview.final.mp4"
    path.write_bytes(b"not really a video, but the job only hashes it" * 100)
    return path


@pytest.fixture
def job(media: Path, tmp_path: Path) -> Iterator[Job]:
    with open_job(media, tmp_path / "out") as job:
        yield job


class Counter:
    """A stage's compute function that counts its calls and writes an output file."""

    def __init__(self, job: Job, name: str = "spans.json") -> None:
        self.calls = 0
        self.output = job.path / name

    def __call__(self) -> dict:
        self.calls += 1
        self.output.write_text(json.dumps({"run": self.calls}))
        return {"path": str(self.output), "run": self.calls}


def run(job: Job, compute: Counter, config: dict = CONFIG, upstream: str | None = "up-1"):
    return run_stage(job, "vad", config, upstream, compute, outputs=lambda r: [r["path"]])


# -- the job directory -------------------------------------------------------------------------


def test_a_job_directory_is_named_after_the_stem_and_the_content_hash(job, media, tmp_path):
    sha = content_hash(media)
    expected = (tmp_path / "out" / f"interview.final-{sha[:8]}").resolve()
    assert job.path == expected
    assert (expected / "records" / "stages").is_dir()
    assert (job.sha256, job.stem, job.media) == (sha, "interview.final", str(media.resolve()))
    assert job.stage_file("asr") == expected / "records" / "stages" / "asr.json"


def test_opening_the_same_media_again_reuses_its_directory(job, media, tmp_path):
    (job.path / "keep.txt").write_text("earlier work")

    with open_job(media, tmp_path / "out") as again:
        assert again == job
    assert (again.path / "keep.txt").read_text() == "earlier work"


def test_a_missing_media_file_opens_no_job(tmp_path):
    with pytest.raises(MediaNotFound):
        open_job(tmp_path / "gone.mp4", tmp_path / "out")

    assert not (tmp_path / "out").exists()


# -- the stage cache ---------------------------------------------------------------------------


def test_a_finished_stage_is_not_computed_again(job):
    compute = Counter(job)

    first = run(job, compute)
    second = run(job, compute)

    assert compute.calls == 1
    assert (first.cached, second.cached) == (False, True)
    assert second.result == first.result
    assert second.key == first.key
    assert second.seconds == first.seconds  # the recorded cost of the original run
    record = json.loads(job.stage_file("vad").read_text())
    assert (record["key"], record["result"], record["config"]) == (first.key, first.result, CONFIG)


def test_a_changed_config_recomputes(job):
    compute = Counter(job)
    run(job, compute)

    again = run(job, compute, config={**CONFIG, "threshold": 0.6})

    assert (compute.calls, again.cached) == (2, False)
    assert run(job, compute, config={**CONFIG, "threshold": 0.6}).cached  # and is then cached


def test_a_changed_model_revision_recomputes(job):
    compute = Counter(job)
    run(job, compute)

    run(job, compute, config={**CONFIG, "model": {"revision": "1.3.0"}})

    assert compute.calls == 2


def test_a_changed_upstream_recomputes(job):
    compute = Counter(job)
    run(job, compute, upstream="up-1")

    again = run(job, compute, upstream="up-2")

    assert (compute.calls, again.cached) == (2, False)


def test_a_record_whose_output_file_was_deleted_recomputes(job):
    compute = Counter(job)
    first = run(job, compute)
    Path(first.result["path"]).unlink()

    again = run(job, compute)

    assert (compute.calls, again.cached) == (2, False)
    assert Path(again.result["path"]).exists()


def test_an_unreadable_record_is_ignored_and_the_stage_recomputed(job):
    compute = Counter(job)
    run(job, compute)
    job.stage_file("vad").write_text('{"key": "trunc')  # a half-written record

    again = run(job, compute)

    assert (compute.calls, again.cached) == (2, False)
    assert json.loads(job.stage_file("vad").read_text())["key"] == again.key  # repaired


@pytest.mark.parametrize(
    "garbage", [b"\xff\xfe\x00garbage\x89PNG", b"null", b"[1, 2]"], ids=["binary", "null", "list"]
)
def test_a_record_of_other_garbage_is_ignored_and_the_stage_recomputed(job, garbage):
    compute = Counter(job)
    run(job, compute)
    job.stage_file("vad").write_bytes(garbage)

    again = run(job, compute)

    assert (compute.calls, again.cached) == (2, False)


def test_no_temporary_record_is_left_behind(job):
    run(job, Counter(job))

    assert sorted(p.name for p in (job.records / "stages").iterdir()) == ["vad.json"]


def test_the_stage_key_depends_on_the_media_content(tmp_path):
    a, b = tmp_path / "a" / "talk.wav", tmp_path / "b" / "talk.wav"
    for path, data in ((a, b"first take"), (b, b"second take")):
        path.parent.mkdir()
        path.write_bytes(data)

    with open_job(a, tmp_path / "out") as job_a, open_job(b, tmp_path / "out") as job_b:
        assert job_a.path != job_b.path
        assert stage_key(job_a, "vad", CONFIG, None) != stage_key(job_b, "vad", CONFIG, None)


def test_the_stage_key_is_stable_and_ignores_config_key_order(job):
    reordered = dict(reversed(list(CONFIG.items())))

    assert stage_key(job, "vad", CONFIG, "u") == stage_key(job, "vad", reordered, "u")
    assert stage_key(job, "vad", CONFIG, "u") != stage_key(job, "asr", CONFIG, "u")


def test_a_full_disk_in_a_stage_is_output_full_and_leaves_no_record(job):
    def compute():
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OutputFull, match=r"while writing the asr stage \(\d+\.\d MB free\)"):
        run_stage(job, "asr", {}, None, compute)
    assert not job.stage_file("asr").exists()


def test_other_os_errors_pass_through_room_for(job):
    with pytest.raises(PermissionError), room_for(job, "the asr stage"):
        raise PermissionError(errno.EACCES, "Permission denied")
