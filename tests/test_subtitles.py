"""Subtitle layout and the files a user gets: SRT, WebVTT, plain text, JSON."""

from __future__ import annotations

import json
import random
import re

import pytest

from tasks.subtitles import (
    FORMATS,
    Cue,
    RuleSet,
    format_timestamp,
    make_cues,
    parse_formats,
    rule_set,
    to_json,
    to_srt,
    to_txt,
    to_vtt,
    write_outputs,
)
from tasks.transcript import Segment, Transcript, Word
from voxflow.errors import BadInput

VOCABULARY = (
    "a the of to and in is it you that he was for on are with as I his they be at one have "
    "this from or had by word but what some we can out other were all there when up use your "
    "how said an each she which do their time if will way about many then them write would "
    "like so these her long make thing see him two has look more day could go come did number "
    "sound no most people my over know water than call first who may down side been now find "
    "extraordinary telecommunications notwithstanding responsibilities"
).split()


def words_from(texts: list[str], start: float = 0.0, step: float = 0.5) -> tuple[Word, ...]:
    """Words as faster-whisper gives them: leading space, back to back, ``step`` seconds each."""
    return tuple(
        Word(start + i * step, start + i * step + step * 0.8, f" {text}")
        for i, text in enumerate(texts)
    )


def segment_of(words: tuple[Word, ...], speaker: str | None = None) -> Segment:
    text = "".join(w.text for w in words)
    return Segment(words[0].start, words[-1].end, text, words, speaker)


def transcript_of(*segments: Segment) -> Transcript:
    return Transcript("en", 60.0, segments, {"name": "tiny.en", "backend": "test"})


@pytest.fixture
def small() -> Transcript:
    return transcript_of(
        Segment(
            1.25,
            2.5,
            " Hello there.",
            (Word(1.25, 1.75, " Hello", 0.9), Word(1.875, 2.5, " there.", 0.8)),
        ),
        Segment(3.0, 4.125, " Bye.", (Word(3.0, 4.125, " Bye.", 0.95),)),
    )


@pytest.fixture
def paragraph() -> Transcript:
    """About 600 seeded random words, with punctuation, in segments of 10 to 60 words."""
    rng = random.Random(20240611)
    segments, clock = [], 0.0
    while sum(len(s.words) for s in segments) < 600:
        texts = [rng.choice(VOCABULARY) for _ in range(rng.randint(10, 60))]
        texts = [t + rng.choice(("", "", "", "", ",", ".", "?")) for t in texts]
        words = []
        for text in texts:
            length = rng.uniform(0.1, 0.9)
            words.append(Word(round(clock, 3), round(clock + length, 3), f" {text}"))
            clock += length + rng.uniform(0.0, 0.3)
        segments.append(segment_of(tuple(words)))
        clock += 1.0
    return transcript_of(*segments)


def parse_srt(text: str) -> list[tuple[float, float, list[str]]]:
    """A tiny SRT reader: (start, end, lines) per cue."""

    def seconds(stamp: str) -> float:
        h, m, s, ms = map(int, re.split("[:,]", stamp))
        return h * 3600 + m * 60 + s + ms / 1000

    cues = []
    for number, block in enumerate(text.strip("\n").split("\n\n"), 1):
        index, times, *lines = block.split("\n")
        assert index == str(number)
        start, end = times.split(" --> ")
        cues.append((seconds(start), seconds(end), lines))
    return cues


def test_srt_of_a_small_transcript_is_exact(small: Transcript) -> None:
    assert to_srt(small) == (
        "1\n00:00:01,250 --> 00:00:02,500\nHello there.\n\n2\n00:00:03,000 --> 00:00:04,125\nBye.\n"
    )


def test_vtt_of_a_small_transcript_is_exact(small: Transcript) -> None:
    assert to_vtt(small) == (
        "WEBVTT\n\n"
        "00:00:01.250 --> 00:00:02.500\nHello there.\n\n"
        "00:00:03.000 --> 00:00:04.125\nBye.\n"
    )


def test_cue_times_come_from_word_times(small: Transcript) -> None:
    assert make_cues(small) == [
        Cue(1.25, 2.5, ("Hello there.",)),
        Cue(3.0, 4.125, ("Bye.",)),
    ]


@pytest.mark.parametrize(
    ("seconds", "stamp"),
    [
        (0, "00:00:00,000"),
        (1.25, "00:00:01,250"),
        (59.9996, "00:01:00,000"),
        (3725.5, "01:02:05,500"),
        (360000.0, "100:00:00,000"),
    ],
)
def test_timestamps_round_to_the_millisecond_and_hours_grow(seconds: float, stamp: str) -> None:
    assert format_timestamp(seconds) == stamp
    assert format_timestamp(seconds, ".") == stamp.replace(",", ".")


def test_long_paragraph_respects_line_and_cue_limits(paragraph: Transcript) -> None:
    options = rule_set("netflix-en")
    cues = make_cues(paragraph, options)
    assert len(cues) > 20
    for cue in cues:
        assert 1 <= len(cue.lines) <= options.max_lines
        assert all(0 < len(line) <= options.max_line_chars for line in cue.lines), cue
        assert all(line == line.strip() and "  " not in line for line in cue.lines)
        assert cue.end - cue.start <= options.max_duration


def test_no_word_is_split_lost_or_reordered(paragraph: Transcript) -> None:
    cue_words = [w for cue in make_cues(paragraph) for line in cue.lines for w in line.split(" ")]
    assert cue_words == [w.text.strip() for s in paragraph.segments for w in s.words]


def test_cues_are_ordered_and_never_overlap(paragraph: Transcript) -> None:
    cues = make_cues(paragraph, RuleSet("gappy", min_gap_frames=5, fps=100.0))
    for cue, following in zip(cues, cues[1:], strict=False):
        assert cue.start < cue.end <= following.start - 0.05 + 1e-9


def test_overlapping_word_times_are_clamped() -> None:
    first = Segment(0.0, 3.0, " one two", (Word(0.0, 1.0, " one"), Word(1.0, 3.0, " two")))
    second = Segment(2.0, 4.0, " three", (Word(2.0, 4.0, " three"),))
    zero = Segment(5.0, 5.0, " blip", (Word(5.0, 5.0, " blip"),))
    cues = make_cues(transcript_of(first, second, zero))
    rules = rule_set("netflix-en")
    # Each cue ends 2 frames before the next starts; the zero-length word stays 5/6 s.
    expected = [(0.0, 2.0 - rules.min_gap), (2.0, 4.0), (5.0, 5.0 + rules.min_duration)]
    assert [t for c in cues for t in (c.start, c.end)] == pytest.approx(sum(expected, ()))


def test_long_cues_are_split_by_duration() -> None:
    slow = words_from(["slowly", "spoken", "words", "here"], step=2.0)  # 7.6 s in all
    cues = make_cues(transcript_of(segment_of(slow)), rule_set("netflix-en"))
    assert len(cues) == 2
    assert all(c.end - c.start <= 7.0 for c in cues)
    assert " ".join(line for c in cues for line in c.lines) == "slowly spoken words here"


def test_a_word_longer_than_a_line_stands_alone_uncut() -> None:
    giant = "x" * 50
    words = words_from(["before", "it", giant, "after", "it"])
    cues = make_cues(transcript_of(segment_of(words)))
    lines = [line for cue in cues for line in cue.lines]
    assert giant in lines
    assert " ".join(lines) == f"before it {giant} after it"


def test_two_lines_break_before_a_conjunction_and_are_bottom_heavy() -> None:
    texts = "we went down to the river and then walked all the way back home".split()
    (cue,) = make_cues(transcript_of(segment_of(words_from(texts, step=0.3))))
    assert cue.lines == ("we went down to the river", "and then walked all the way back home")


def test_two_lines_are_balanced_where_no_word_calls_for_a_break() -> None:
    texts = "seven brave sailors rowed quickly toward distant islands yesterday evening".split()
    (cue,) = make_cues(transcript_of(segment_of(words_from(texts, step=0.3))))
    assert len(cue.lines) == 2
    assert abs(len(cue.lines[0]) - len(cue.lines[1])) <= 8
    assert len(cue.lines[0]) <= len(cue.lines[1])  # a bottom-heavy pyramid


def test_an_overflowing_cue_breaks_at_a_sentence_end() -> None:
    texts = (
        "the meeting starts at nine tomorrow morning sharp. please bring the "
        "quarterly numbers and the new slides for review"
    ).split()
    cues = make_cues(transcript_of(segment_of(words_from(texts))))
    assert cues[0].lines[-1].endswith("sharp.")


def test_segment_without_words_spreads_its_text_over_its_time() -> None:
    text = " this segment came without any word timestamps so its times are interpolated here"
    cues = make_cues(transcript_of(Segment(10.0, 20.0, text)))
    assert len(cues) == 2
    assert cues[0].start == 10.0 and cues[-1].end == 20.0
    assert all(10.0 <= c.start < c.end <= 20.0 for c in cues)
    assert " ".join(line for c in cues for line in c.lines) == text.strip()


def test_empty_transcript_has_no_cues() -> None:
    empty = transcript_of()
    assert make_cues(empty) == []
    assert to_srt(empty) == ""
    assert to_vtt(empty) == "WEBVTT\n"
    assert to_txt(empty) == ""


def test_speaker_labels_appear_in_every_format() -> None:
    transcript = transcript_of(
        segment_of(words_from(["Good", "morning."]), "SPEAKER_00"),
        segment_of(words_from(["Hi!"], start=2.0), "SPEAKER_01"),
    )
    assert "SPEAKER_00: Good morning.\n" in to_srt(transcript)
    vtt = to_vtt(transcript)
    assert "<v SPEAKER_00>Good morning.\n" in vtt and "<v SPEAKER_01>Hi!\n" in vtt
    assert to_txt(transcript) == "SPEAKER_00: Good morning.\nSPEAKER_01: Hi!\n"
    assert [s["speaker"] for s in json.loads(to_json(transcript))["segments"]] == [
        "SPEAKER_00",
        "SPEAKER_01",
    ]


def test_speaker_prefix_counts_toward_the_line_length(paragraph: Transcript) -> None:
    labelled = transcript_of(*(segment_of(s.words, "SPEAKER_07") for s in paragraph.segments))
    for _, _, lines in parse_srt(to_srt(labelled)):
        assert lines[0].startswith("SPEAKER_07: ")
        assert all(len(line) <= 42 for line in lines)


def test_vtt_escapes_markup_characters() -> None:
    transcript = transcript_of(segment_of(words_from(["1", "<", "2", "&", "3"])))
    assert "1 &lt; 2 &amp; 3\n" in to_vtt(transcript)


def test_json_keeps_the_transcript(small: Transcript) -> None:
    data = json.loads(to_json(small))
    assert set(data) == {"language", "languages", "duration", "text", "model", "segments"}
    assert data["languages"] == {"en": 1.25 + 1.125}  # seconds of its segments
    assert data["text"] == "Hello there. Bye."
    assert data["model"] == {"name": "tiny.en", "backend": "test"}
    assert data["segments"][0] == {
        "start": 1.25,
        "end": 2.5,
        "text": "Hello there.",
        "speaker": None,
        "words": [
            {"start": 1.25, "end": 1.75, "text": "Hello", "probability": 0.9},
            {"start": 1.875, "end": 2.5, "text": "there.", "probability": 0.8},
        ],
        "language": "en",
        "language_probability": None,
    }


def test_json_keeps_non_ascii_text_readable() -> None:
    transcript = transcript_of(segment_of(words_from(["Grüße", "日本"])))
    assert "Grüße 日本" in to_json(transcript)


def test_srt_parses_back_to_the_same_cue_times(paragraph: Transcript) -> None:
    cues = make_cues(paragraph)
    parsed = parse_srt(to_srt(paragraph))
    times = [t for start, end, _ in parsed for t in (start, end)]
    assert times == pytest.approx([t for c in cues for t in (c.start, c.end)], abs=5e-4)
    assert [lines for _, _, lines in parsed] == [list(c.lines) for c in cues]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("srt", ("srt",)),
        ("srt,vtt", ("srt", "vtt")),
        (" VTT , srt,vtt ", ("vtt", "srt")),
        (["json", "txt", "json"], ("json", "txt")),
        (["srt,vtt", "txt"], ("srt", "vtt", "txt")),
    ],
)
def test_parse_formats_accepts_strings_and_lists(value: object, expected: tuple) -> None:
    assert parse_formats(value) == expected


@pytest.mark.parametrize("value", ["", " , ", [], "srt,docx"])
def test_parse_formats_rejects_empty_and_unknown(value: object) -> None:
    with pytest.raises(BadInput) as caught:
        parse_formats(value)
    assert all(fmt in str(caught.value) for fmt in FORMATS)
    assert isinstance(caught.value, ValueError)


def test_unknown_format_is_named_in_the_error() -> None:
    with pytest.raises(BadInput, match="'docx'"):
        parse_formats("srt,docx")


def test_bad_options_are_refused() -> None:
    with pytest.raises(BadInput):
        RuleSet("bad", max_line_chars=0)
    with pytest.raises(BadInput):
        RuleSet("bad", max_duration=0)


def test_write_outputs_writes_every_format(small: Transcript, tmp_path) -> None:
    out = tmp_path / "out"
    paths = write_outputs(small, out, "talk", ",".join(FORMATS))
    assert list(paths) == list(FORMATS)
    assert paths == {fmt: out / f"talk.{fmt}" for fmt in FORMATS}
    assert sorted(p.name for p in out.iterdir()) == [f"talk.{fmt}" for fmt in sorted(FORMATS)]
    assert json.loads(paths["json"].read_text(encoding="utf-8"))["language"] == "en"
    assert paths["srt"].read_text(encoding="utf-8") == to_srt(small)
    assert paths["vtt"].read_text(encoding="utf-8").startswith("WEBVTT\n\n")
    assert paths["txt"].read_text(encoding="utf-8") == "Hello there.\nBye.\n"
    assert [len(c[2]) for c in parse_srt(paths["srt"].read_text(encoding="utf-8"))] == [1, 1]


def test_write_outputs_replaces_old_files_and_checks_formats_first(
    small: Transcript, tmp_path
) -> None:
    (tmp_path / "talk.srt").write_text("stale", encoding="utf-8")
    write_outputs(small, tmp_path, "talk", ["srt"])
    assert (tmp_path / "talk.srt").read_text(encoding="utf-8") == to_srt(small)
    with pytest.raises(BadInput):
        write_outputs(small, tmp_path, "other", "srt,pdf")
    assert not list(tmp_path.glob("other*"))
