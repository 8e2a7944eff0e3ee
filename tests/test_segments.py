"""Batched ASR windows are split into sentences for transcripts and JSON."""

from __future__ import annotations

from tasks.asr import split_sentences
from tasks.transcript import Segment, Word


def words(*items: tuple[str, float, float]) -> tuple[Word, ...]:
    return tuple(Word(start=s, end=e, text=t) for t, s, e in items)


def test_a_window_splits_after_each_sentence_end():
    seg = Segment(
        0.0,
        4.0,
        "Hello there. How are you? Fine",
        words(
            ("Hello", 0.0, 0.4),
            (" there.", 0.5, 0.9),
            (" How", 1.2, 1.4),
            (" are", 1.5, 1.6),
            (" you?", 1.7, 2.0),
            (" Fine", 3.0, 3.5),
        ),
    )
    parts = split_sentences(seg)
    assert [p.text for p in parts] == ["Hello there.", "How are you?", "Fine"]
    assert [(p.start, p.end) for p in parts] == [(0.0, 0.9), (1.2, 2.0), (3.0, 3.5)]
    assert sum(len(p.words) for p in parts) == len(seg.words)


def test_a_segment_without_words_is_kept_whole():
    seg = Segment(1.0, 2.0, "No word timings. Here.")
    assert split_sentences(seg) == [seg]


def test_speaker_labels_are_kept():
    seg = Segment(
        0.0, 1.0, "Yes. No.", words(("Yes.", 0.0, 0.3), (" No.", 0.5, 0.8)), speaker="SPEAKER_01"
    )
    assert {p.speaker for p in split_sentences(seg)} == {"SPEAKER_01"}
