"""The hallucination guard: what ASR wrote outside speech, in loops, or scored as made up."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tasks.guard import GuardOptions, collapse_loops, compression_ratio, guard
from tasks.subtitles import make_cues, to_json, to_txt
from tasks.transcript import Segment, SpeechSpan, Transcript, Word

SPEECH = [SpeechSpan(0.0, 4.0), SpeechSpan(10.0, 14.0)]


def said(text: str, start: float, step: float = 0.4, **scores) -> Segment:
    words = tuple(
        Word(start + i * step, start + i * step + step * 0.9, f" {w}", 0.9)
        for i, w in enumerate(text.split())
    )
    return Segment(words[0].start, words[-1].end, text, words, **scores)


def transcript(*segments: Segment) -> Transcript:
    return Transcript("en", 20.0, segments, {"name": "test"})


def test_text_outside_the_speech_is_flagged_and_leaves_the_subtitles():
    real = said("The weather today is cold.", 0.5)
    ghost = said("Thank you for watching.", 6.0)  # in the gap between two speech spans
    guarded, report = guard(transcript(real, ghost), SPEECH)
    assert guarded.segments[0].flag is None
    assert guarded.segments[1].flag.startswith("outside speech")
    assert report.flagged == {"outside speech": 1}
    assert "watching" not in to_txt(guarded)
    assert all("watching" not in line for cue in make_cues(guarded) for line in cue.lines)
    assert '"flag": "outside speech' in to_json(guarded)  # kept in the JSON, with the reason


def test_words_that_spill_past_the_speech_are_dropped():
    spill = said("We stop here and then some noise words", 2.0, step=0.5)  # 2.0 to 5.9 s
    guarded, report = guard(transcript(spill), SPEECH)
    assert guarded.segments[0].flag is None
    assert guarded.segments[0].text == "We stop here and then"
    assert report.dropped_words == 3


def test_a_loop_is_collapsed_to_one_phrase():
    loop = said("I am here. " + "Thank you. " * 6 + "Goodbye.", 10.0, step=0.25)
    guarded, report = guard(transcript(loop), SPEECH)
    assert guarded.segments[0].text == "I am here. Thank you. Goodbye."
    assert report.collapsed_loops == 1
    same, none = collapse_loops(said("no no no", 0.0))  # three of one word is speech
    assert none == 0 and same.text == "no no no"


def test_text_that_compresses_too_well_or_scores_as_silence_is_flagged():
    looped = Segment(0.5, 3.5, "la " * 40)  # no words: cannot be collapsed word by word
    silent = said("Subtitles by the community.", 10.5, avg_logprob=-1.2, no_speech_prob=0.8)
    unlikely = said("Purple elephants sing.", 12.0, avg_logprob=-2.0, no_speech_prob=0.1)
    fine = said("A clear sentence.", 1.0, avg_logprob=-0.3, no_speech_prob=0.01)
    assert compression_ratio("la " * 40) > 2.4
    guarded, report = guard(transcript(looped, silent, unlikely, fine), SPEECH)
    flags = [s.flag for s in guarded.segments]
    assert flags[0] is None  # the loop was collapsed first: "la" once is not made up
    assert flags[1].startswith("no speech") and flags[2].startswith("low log-probability")
    assert flags[3] is None
    assert report.flagged == {"no speech": 1, "low log-probability": 1}


def test_a_segment_of_words_the_decoder_was_unsure_of_is_flagged():
    unsure = said("Oh my god I want to hear my little bit yes", 10.5)
    unsure = Segment(
        unsure.start,
        unsure.end,
        unsure.text,
        tuple(Word(w.start, w.end, w.text, 0.3) for w in unsure.words),
    )
    guarded, report = guard(transcript(said("A clear sentence here.", 0.5), unsure), SPEECH)
    assert [s.flag is None for s in guarded.segments] == [True, False]
    assert report.flagged == {"unsure words": 1}


def test_a_silent_vocals_stem_flags_what_was_heard_in_the_music():
    rate = 16_000
    vocals = np.zeros(20 * rate, dtype=np.float32)
    t = np.arange(4 * rate) / rate
    vocals[: 4 * rate] = 0.3 * np.sin(2 * np.pi * 220 * t)  # a voice in the first span only
    sung = said("La la la over the music.", 10.5)
    guarded, _ = guard(transcript(said("Hello there.", 0.5), sung), SPEECH, vocals, rate)
    assert guarded.segments[0].flag is None
    assert guarded.segments[1].flag.startswith("silent vocals")


def test_keeping_flagged_text_keeps_it_in_the_subtitles():
    ghost = said("Thank you for watching.", 6.0)
    kept, _ = guard(transcript(ghost), SPEECH, options=GuardOptions(keep_flagged=True))
    assert kept.segments[0].flag and "watching" in to_txt(kept)
    assert kept.model["guard"]["keep_flagged"] is True


@pytest.mark.parametrize("text", ["", "Hello."])
def test_compression_ratio_of_short_text_is_low(text):
    assert compression_ratio(text) < 2.4


@pytest.mark.usefixtures("prefect_api")
def test_speech_between_tones_noise_and_silence_gives_no_words_in_those_stretches(
    warm_store, tmp_path
):
    """A real recording through the transcribe flow: sentences with 12 s of a melody, noise
    and silence between them, encoded to AAC in an .m4a."""
    import subprocess

    import jiwer

    from bench.gapped import make
    from conftest import normalise
    from flows.transcribe import transcribe

    recording = make(tmp_path / "gapped.wav", 75, gap=12.0, kinds=("melody", "noise", "silence"))
    media = tmp_path / "gapped.m4a"
    subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-i", str(recording.wav), "-c:a", "aac", str(media)],
        check=True,
    )
    record = transcribe(str(media), profile="cpu", store=warm_store.root, output_dir=str(tmp_path))
    data = json.loads(Path(record["outputs"]["json"]).read_text())
    shown = [s for s in data["segments"] if "flag" not in s]
    words = [(w["start"], w["end"]) for s in shown for w in s["words"]]
    assert words and recording.words_in_nonspeech(words) == 0
    srt_words = " ".join(c for c in Path(record["outputs"]["txt"]).read_text().split())
    assert jiwer.wer(normalise(recording.speech_text), normalise(srt_words)) < 0.3
    assert record["guard"]["segments"] == len(data["segments"])
