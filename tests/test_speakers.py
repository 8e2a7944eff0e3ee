"""Speakers onto the transcript, and a run switching diarization on: no model needed."""

from __future__ import annotations

import json

import pytest
from tiny_models import EMBEDDING, PIPELINE, SEGMENTATION

from blocks.volume import Volume
from flows.request import with_diarization
from profiles import load_profile
from tasks.diarize import Diarization, SpeakerCount, SpeakerTurn
from tasks.diarize.assign import assign_speakers
from tasks.transcript import Segment, Transcript, Word
from tasks.warm.preflight import warm_command
from voxflow.errors import BadInput

# -------------------------------------------------------------- speakers onto the transcript


def _words(*spec: tuple[float, float, str]) -> tuple[Word, ...]:
    return tuple(Word(start, end, f" {text}") for start, end, text in spec)


def _transcript(*segments: Segment) -> Transcript:
    return Transcript(language="en", duration=10.0, segments=segments)


def test_words_take_the_speaker_they_overlap_most_and_segments_follow():
    words = _words((0.0, 0.5, "hello"), (0.6, 1.0, "there"), (1.2, 1.6, "friend"))
    diarization = Diarization(
        exclusive=(SpeakerTurn(0.0, 0.7, "SPEAKER_00"), SpeakerTurn(0.7, 5.0, "SPEAKER_01"))
    )
    out = assign_speakers(_transcript(Segment(0.0, 1.6, " hello there friend", words)), diarization)
    assert [w.speaker for s in out.segments for w in s.words] == [
        "SPEAKER_00",
        "SPEAKER_01",
        "SPEAKER_01",
    ]
    assert [(s.speaker, s.text, s.start, s.end) for s in out.segments] == [
        ("SPEAKER_00", " hello", 0.0, 0.5),
        ("SPEAKER_01", " there friend", 0.6, 1.6),
    ]


def test_a_word_in_a_gap_takes_the_nearest_speaker_and_a_lone_word_joins_its_neighbours():
    words = _words((0.0, 0.4, "a"), (0.5, 0.6, "b"), (0.7, 1.0, "c"), (3.0, 3.2, "d"))
    diarization = Diarization(
        turns=(
            SpeakerTurn(0.0, 0.45, "SPEAKER_00"),
            SpeakerTurn(0.45, 0.65, "SPEAKER_01"),
            SpeakerTurn(0.65, 1.0, "SPEAKER_00"),
            SpeakerTurn(4.0, 5.0, "SPEAKER_01"),
        )
    )
    out = assign_speakers(_transcript(Segment(0.0, 3.2, " a b c d", words)), diarization)
    assert [(s.speaker, [w.text for w in s.words]) for s in out.segments] == [
        ("SPEAKER_00", [" a", " b", " c"]),
        ("SPEAKER_01", [" d"]),
    ]


def test_segments_without_words_and_empty_diarizations():
    segment = Segment(1.0, 2.0, " hi")
    diarization = Diarization(turns=(SpeakerTurn(0.0, 3.0, "SPEAKER_00"),))
    assert assign_speakers(_transcript(segment), diarization).segments[0].speaker == "SPEAKER_00"
    assert assign_speakers(_transcript(segment), Diarization()).segments == (segment,)


def test_diarization_round_trips_through_json(tmp_path):
    diarization = Diarization(
        turns=(SpeakerTurn(0.0, 1.0, "SPEAKER_00"), SpeakerTurn(0.5, 2.0, "SPEAKER_01")),
        exclusive=(SpeakerTurn(0.0, 1.0, "SPEAKER_00"), SpeakerTurn(1.0, 2.0, "SPEAKER_01")),
    )
    path = diarization.save(tmp_path / "diarization.json")
    assert Diarization.load(path) == diarization
    assert json.loads(path.read_text())["speakers"] == ["SPEAKER_00", "SPEAKER_01"]


# ------------------------------------------------------------- switching the stage on a run


@pytest.mark.parametrize(
    ("count", "message"),
    [
        (dict(num=0), "at least 1"),
        (dict(num=2, max=3), "not both"),
        (dict(min=3, max=2), "exceeds"),
    ],
)
def test_bad_speaker_counts_are_refused(count, message):
    with pytest.raises(BadInput, match=message):
        SpeakerCount(**count)


def test_a_speaker_count_switches_diarization_on_and_warming_names_it():
    cpu = load_profile("cpu")
    assert not cpu.stages["diarize"].enabled
    assert with_diarization(cpu, None, SpeakerCount()) is cpu
    on = with_diarization(cpu, None, SpeakerCount(num=2))
    assert on.stages["diarize"].enabled and on.switched_on == ("diarize",)
    assert set(on.models()) >= {PIPELINE, SEGMENTATION, EMBEDDING}
    assert warm_command(on, Volume(root="m")).endswith("--with diarize")
    off = with_diarization(load_profile("cuda"), False, SpeakerCount())
    assert not off.stages["diarize"].enabled and off.switched_on == ()
    with pytest.raises(BadInput, match="switched off"):
        with_diarization(cpu, False, SpeakerCount(num=2))
