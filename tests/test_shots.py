"""Cues follow the picture: shot changes found in a real video, cue edges kept out of Netflix's
frame zones around them, audio-only media as before, an undecodable video a warning."""

from __future__ import annotations

import json
import logging
import subprocess
from pathlib import Path

import pytest

from conftest import SAMPLE
from flows.transcribe import transcribe
from tasks.media import open_media
from tasks.shots import ShotOptions, detect_shots
from tasks.subtitles import make_cues, to_srt
from tasks.subtitles.check import read_subtitles
from tasks.subtitles.rules import rule_set
from tasks.transcript import Transcript

pytestmark = pytest.mark.usefixtures("prefect_api")

FPS = 24
RULES = rule_set("netflix-en").with_options({"fps": FPS})
ZONE = RULES.shot_zone_frames  # 12


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", *args], check=True)


def frames(seconds: float) -> int:
    return round(seconds * FPS)


def cut_video(dest: Path, cuts: list[float], duration: float) -> Path:
    """The sample's speech over solid-colour shots that change at ``cuts`` (H.264, 24 fps)."""
    edges = [0.0, *cuts, duration]
    colours = ["red", "blue", "green", "white", "black", "yellow", "navy", "gray"]
    inputs: list[str] = []
    for i, (a, b) in enumerate(zip(edges, edges[1:], strict=False)):
        frame_count = frames(b) - frames(a)
        colour = colours[i % len(colours)]
        inputs += [
            "-f",
            "lavfi",
            "-i",
            f"color={colour}:s=320x240:r={FPS},trim=end_frame={frame_count}",
        ]
    n = len(edges) - 1
    chain = "".join(f"[{i}]" for i in range(n)) + f"concat=n={n}:v=1:a=0,format=yuv420p[v]"
    maps = ["-map", "[v]", "-map", f"{n}:a", "-c:v", "libx264", "-c:a", "aac"]
    ffmpeg(
        *inputs, "-i", str(SAMPLE), "-filter_complex", chain, *maps, "-t", str(duration), str(dest)
    )
    return dest


@pytest.fixture(scope="module")
def audio_run(warm_store, tmp_path_factory):
    """The sample's audio alone (no video stream), transcribed."""
    folder = tmp_path_factory.mktemp("audio")
    audio = folder / "speech.m4a"
    ffmpeg("-i", str(SAMPLE), "-vn", "-c:a", "copy", str(audio))
    out = folder / "out"
    record = transcribe(str(audio), profile="cpu", store=warm_store.root, output_dir=str(out))
    return record


@pytest.fixture(scope="module")
def words(audio_run):
    """The words the sample says, with their times."""
    text = Transcript.load(Path(audio_run["outputs"]["json"]).parent / "records/transcript.json")
    return [w for s in text.shown() for w in s.words]


@pytest.fixture(scope="module")
def cuts(words):
    """Cuts 0.2-0.3 s from speech edges: just after a start, just before and after an end, and
    one inside a long sentence, between two words."""
    starts = [w.start for w in words]
    ends = [w.end for w in words]
    chosen = [starts[0] + 0.25, ends[len(ends) // 3] + 0.2, starts[len(starts) // 2] - 0.3]
    gaps = [
        (b.start - a.end, (a.end + b.start) / 2) for a, b in zip(words, words[1:], strict=False)
    ]
    chosen.append(max(gaps[len(gaps) * 3 // 4 :])[1])
    return sorted(frames(c) / FPS for c in chosen)


@pytest.fixture(scope="module")
def video_run(warm_store, tmp_path_factory, cuts, audio_run):
    folder = tmp_path_factory.mktemp("video")
    video = cut_video(folder / "cuts.mp4", cuts, audio_run["audio_seconds"])
    out = folder / "out"
    record = transcribe(str(video), profile="cpu", store=warm_store.root, output_dir=str(out))
    return video, record


def test_detection_finds_each_hard_cut_within_a_frame(video_run, cuts):
    video, _ = video_run
    with open_media(video) as media:
        found = detect_shots(media, ShotOptions())
    assert found.fps == FPS
    assert len(found.cuts) == len(cuts)
    assert all(abs(a - b) <= 1 / FPS + 1e-6 for a, b in zip(found.cuts, cuts, strict=True))


def test_no_cue_edge_falls_in_a_cut_zone(video_run):
    _, record = video_run
    assert record["shots"]["timed"] and record["shots"]["subtitle_fps"] == FPS
    cues = read_subtitles(record["outputs"]["srt"])
    for cut in record["shots"]["cuts"]:
        for number, cue in enumerate(cues, 1):
            after_cut = frames(cue.start - cut)
            assert not 0 < after_cut < ZONE, f"cue {number} starts {after_cut} frames after {cut}"
            to_cut = frames(cut - cue.end)
            assert to_cut == 2 or not -ZONE < to_cut < ZONE, f"cue {number} ends {to_cut} before"


def test_no_cue_crosses_a_cut_its_words_could_be_split_at(video_run, words):
    _, record = video_run
    cues = read_subtitles(record["outputs"]["srt"])
    for cut in record["shots"]["cuts"]:
        for cue in cues:
            if cue.start < cut < cue.end:
                inside = [w for w in words if cue.start <= w.start and w.end <= cue.end + 0.01]
                split_before = [w for w in inside if w.end <= cut]
                split_after = [w for w in inside if w.start >= cut]
                assert not (split_before and split_after), (cue, cut)


def test_an_audio_only_file_is_timed_as_before(audio_run):
    assert audio_run["shots"] is None and "shots" not in audio_run["stages"]
    srt = Path(audio_run["outputs"]["srt"])
    text = Transcript.load(srt.parent / "records/transcript.json")
    assert srt.read_text() == to_srt(text, rule_set("netflix-en"), make_cues(text))


def test_an_undecodable_video_is_a_warning_and_run_json_says_so(
    warm_store, tmp_path, video_run, caplog
):
    video, _ = video_run
    broken = tmp_path / "broken.mkv"
    ffmpeg("-i", str(video), "-c", "copy", "-bsf:v", "noise=amount=1", str(broken))
    caplog.set_level(logging.WARNING, logger="tasks")
    out = tmp_path / "out"
    record = transcribe(str(broken), profile="cpu", store=warm_store.root, output_dir=str(out))
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("shots:" in line and "without shot changes" in line for line in said), said
    assert all("\n" not in line for line in said)
    on_disk = json.loads((Path(record["job"]) / "records" / "run.json").read_text())
    assert on_disk["shots"]["timed"] is False and "decode" in on_disk["shots"]["problem"]
    assert Path(record["outputs"]["srt"]).read_text().strip()
