"""The guard repairs: a window whose text failed is cut at its pauses and decoded again with
temperature fallback, and the real sentence hidden between babble comes back."""

from __future__ import annotations

import json
from pathlib import Path

import jiwer
import numpy as np
import pytest

from conftest import normalise, read_wav, speak, write_wav
from tasks.guard import GuardOptions
from tasks.guard.repair import cut_at_pauses, needs_repair
from tasks.transcript import Segment, SpeechSpan, Word

SENTENCE = "Please call Stella and ask her to bring these things with her from the store."
BABBLE = (
    "Many people walk along the river every evening while the lights come on over the bridge "
    "and the water",
    "Nobody remembers exactly when the old market closed but the square is still full of "
    "stalls on Sunday",
)


@pytest.fixture(scope="module")
def hidden(tmp_path_factory) -> Path:
    """A real sentence between two stretches of reversed speech (babble the VAD takes for
    speech), 0.12 s apart, so the VAD joins them into one span; 16-bit PCM WAV."""
    folder = tmp_path_factory.mktemp("hidden")
    first, rate = read_wav(speak(BABBLE[0], folder / "b1.wav"))
    sentence, _ = read_wav(speak(SENTENCE, folder / "s.wav"))
    second, _ = read_wav(speak(BABBLE[1], folder / "b2.wav"))
    gap = np.zeros(int(0.12 * rate), np.float32)
    audio = np.concatenate([first[::-1] * 0.9, gap, sentence, gap, second[::-1] * 0.9])
    return write_wav(folder / "hidden.wav", audio, rate)


@pytest.mark.usefixtures("prefect_api")
def test_the_sentence_hidden_between_babble_comes_back(hidden, warm_store, tmp_path):
    from flows.transcribe import transcribe

    record = transcribe(str(hidden), profile="cpu", store=warm_store.root, output_dir=str(tmp_path))

    data = json.loads(Path(record["outputs"]["json"]).read_text())
    shown = " ".join(s["text"] for s in data["segments"] if "flag" not in s)
    found = normalise(shown)
    start = found.find("please call")
    assert start >= 0, shown
    heard = " ".join(found[start:].split()[: len(SENTENCE.split())])
    assert jiwer.wer(normalise(SENTENCE), heard) < 0.25, shown
    repair = record["guard"]["repair"]
    assert repair["windows"] >= 1, "the babble's window was not tried again"
    asr = json.loads((Path(record["job"]) / "records" / "transcript.json").read_text())
    if "please call" in normalise(" ".join(s["text"] for s in asr["segments"])):
        # This machine's batched decode kept the sentence itself (CTranslate2's float results
        # and espeak's voice differ between machines): the repair tried the window and kept
        # the better of the two, which still holds the sentence, as asserted above.
        return
    # The batched decode alone lost it: the repair is what brought it back.
    assert repair["repaired"] >= 1 and repair["pieces"] >= 2, repair
    assert any("repair" in s for s in data["segments"]), "the JSON says what was decoded again"


# -- what the repair tries, and where it cuts -----------------------------------------------


def words(text: str, start: float, step: float = 0.4) -> tuple[Word, ...]:
    return tuple(
        Word(start + i * step, start + i * step + step * 0.9, f" {w}", 0.9)
        for i, w in enumerate(text.split())
    )


def test_a_window_with_a_flagged_segment_is_repaired():
    window = SpeechSpan(0, 10)
    flagged = Segment(0, 3, "uh", words("uh", 0), flag="unsure words (mean word probability 0.2)")
    fine = Segment(3, 6, "a fine sentence here", words("a fine sentence here", 3))

    assert needs_repair([flagged, fine], window, [window], GuardOptions()) == "unsure words"


def test_a_loop_split_across_sentences_is_repaired():
    text = "They remember one of us. They are lovely out in the area."
    loop = [Segment(i * 2, i * 2 + 2, text, words(text, i * 2, 0.15)) for i in range(4)]
    window = SpeechSpan(0, 8)

    assert needs_repair(loop, window, [window], GuardOptions()) == "repetition across segments"


def test_far_too_few_words_for_the_speech_is_repaired_and_a_good_window_is_not():
    window = SpeechSpan(0, 12)
    few = [Segment(0, 1, "Hello.", words("Hello.", 0))]
    many = [Segment(0, 12, "one two three four five six seven", words("one " * 7, 0, 1.6))]

    assert needs_repair(few, window, [window], GuardOptions()) == "too few words"
    assert needs_repair(many, window, [window], GuardOptions()) is None


def test_a_window_is_cut_at_its_pauses_and_between_its_speech_spans():
    rate = 16_000
    rng = np.random.default_rng(1)
    audio = rng.uniform(-0.5, 0.5, 12 * rate).astype(np.float32)
    audio[int(3.0 * rate) : int(3.3 * rate)] = 0.0  # a pause inside the first span
    spans = [SpeechSpan(0.0, 6.0), SpeechSpan(7.0, 12.0)]

    pieces = cut_at_pauses(audio, SpeechSpan(0.0, 12.0), spans, GuardOptions(), rate)

    assert [(p.start, p.end) for p in pieces] == [(0.0, 3.15), (3.15, 6.0), (7.0, 12.0)]
