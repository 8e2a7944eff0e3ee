"""vad: Silero finds the speech in real audio, and the span logic obeys its options."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest

from profiles import load_catalog
from tasks.extract import SAMPLE_RATE, Wav, extract_audio, load_wav
from tasks.transcript import SpeechSpan
from tasks.vad.silero import CONTEXT, WINDOW, SileroOptions, SileroVad, spans_from_probabilities
from voxflow.errors import ProfileError

FRAME_S = WINDOW / SAMPLE_RATE  # one Silero frame is 32 ms
OPTIONS = SileroOptions(min_silence_ms=500)  # threshold 0.5, min speech 250 ms, pad 200 ms
PAD = 6  # frames: 200 ms of padding rounds to 6 frames of 32 ms
QUIET = 3.0  # seconds of silence around the speech


@pytest.fixture(scope="module")
def vad(warm_store) -> SileroVad:
    return SileroVad(warm_store.locate(load_catalog()["silero-vad-v6"]), SileroOptions())


@pytest.fixture(scope="module")
def padded_speech(speech_wav: Path, tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    """The espeak speech at 16 kHz with QUIET seconds of digital silence on both sides."""
    wav = extract_audio(speech_wav, tmp_path_factory.mktemp("vad") / "speech.wav").path
    silence = np.zeros(int(QUIET * SAMPLE_RATE), dtype=np.float32)
    return np.concatenate([silence, load_wav(wav), silence])


# -- Silero on audio ---------------------------------------------------------------------------


def test_speech_between_silences_is_found_and_the_silence_left_out(vad, padded_speech):
    total = len(padded_speech) / SAMPLE_RATE
    loud = np.flatnonzero(np.abs(padded_speech) > 0.02) / SAMPLE_RATE  # where espeak spoke

    spans = vad.speech_spans(padded_speech, SAMPLE_RATE)

    assert spans, "no speech found in clear speech"
    assert spans[0].start > QUIET - 0.5
    assert spans[-1].end < total - QUIET + 0.5
    assert spans[0].start <= loud[0] and spans[-1].end >= loud[-1]
    inside = [any(s.start <= t <= s.end for s in spans) for t in loud[::160]]  # every 10 ms
    assert np.mean(inside) > 0.95


def test_spans_are_in_order_and_do_not_overlap(vad, padded_speech):
    spans = vad.speech_spans(padded_speech, SAMPLE_RATE)

    assert all(s.start < s.end for s in spans)
    assert all(a.end <= b.start for a, b in zip(spans, spans[1:], strict=False))


@pytest.mark.parametrize(
    "audio",
    [
        np.zeros(5 * SAMPLE_RATE, dtype=np.float32),
        np.random.default_rng(0).normal(0, 1e-3, 5 * SAMPLE_RATE).astype(np.float32),
        np.zeros(0, dtype=np.float32),
        np.zeros(3, dtype=np.float32),
    ],
    ids=["silence", "faint-noise", "empty", "three-samples"],
)
def test_no_speech_gives_no_spans(vad, audio):
    assert vad.speech_spans(audio, SAMPLE_RATE) == []


def test_audio_at_another_sample_rate_is_refused(vad):
    with pytest.raises(ValueError, match="expects 16 kHz audio, found 44100 Hz"):
        vad.speech_spans(np.zeros(44_100, dtype=np.float32), 44_100)


def test_a_span_never_ends_after_the_audio(vad, padded_speech):
    cut = padded_speech[: int((QUIET + 2.0) * SAMPLE_RATE)]  # speech runs to the very end

    spans = vad.speech_spans(cut, SAMPLE_RATE)

    assert spans and spans[-1].end == pytest.approx(len(cut) / SAMPLE_RATE, abs=FRAME_S)
    assert spans[-1].end <= len(cut) / SAMPLE_RATE


# -- spans_from_probabilities: the hysteresis, in 32 ms frames ---------------------------------


def probs(length: int, *bursts: tuple[int, int, float]) -> np.ndarray:
    """Frame probabilities: 0.02 everywhere, and `value` over each [start, end)."""
    p = np.full(length, 0.02)
    for start, end, value in bursts:
        p[start:end] = value
    return p


def test_two_bursts_apart_by_more_than_min_silence_are_two_padded_spans():
    p = probs(200, (20, 60, 0.9), (120, 160, 0.9))

    assert spans_from_probabilities(p, OPTIONS) == [(20 - PAD, 60 + PAD), (120 - PAD, 160 + PAD)]


def test_a_dip_shorter_than_min_silence_does_not_split_a_span():
    p = probs(200, (20, 100, 0.9), (50, 60, 0.0))  # 320 ms of silence < 500 ms

    assert spans_from_probabilities(p, OPTIONS) == [(20 - PAD, 100 + PAD)]


def test_probabilities_just_under_threshold_keep_a_span_open():
    # Between threshold - 0.15 and threshold is neither speech nor silence: the span holds.
    p = probs(300, (20, 60, 0.9), (60, 200, 0.4), (200, 220, 0.9))

    assert spans_from_probabilities(p, OPTIONS) == [(20 - PAD, 220 + PAD)]


def test_they_do_not_open_a_span_either():
    assert spans_from_probabilities(probs(200, (20, 150, 0.45)), OPTIONS) == []


def test_speech_shorter_than_min_speech_is_dropped():
    blip = probs(200, (50, 55, 0.9))  # 160 ms < 250 ms
    word = probs(200, (50, 58, 0.9))  # 256 ms

    assert spans_from_probabilities(blip, OPTIONS) == []
    assert spans_from_probabilities(word, OPTIONS) == [(50 - PAD, 58 + PAD)]


def test_speech_running_to_the_end_is_closed_at_the_last_frame():
    assert spans_from_probabilities(probs(100, (40, 100, 0.9)), OPTIONS) == [(40 - PAD, 100)]


def test_a_span_longer_than_max_speech_is_cut_into_pieces_that_fit():
    options = SileroOptions(max_speech_s=30.0)
    max_frames = 30.0 / FRAME_S
    p = probs(2200, (10, 2100, 0.95), (700, 701, 0.55))  # least speech-like frame at 700

    spans = spans_from_probabilities(p, options)

    assert len(spans) >= 3
    assert all(e - s <= max_frames for s, e in spans)
    assert spans[0] == (10 - PAD, 700)  # cut where the speech was weakest
    # Nothing is lost: the pieces butt up against each other from the first frame to the last.
    assert spans[0][0] == 10 - PAD and spans[-1][1] == 2100 + PAD
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:], strict=False))


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize(
    "options",
    [
        OPTIONS,
        SileroOptions(min_silence_ms=100, speech_pad_ms=400, max_speech_s=3.0),
        SileroOptions(threshold=0.3, min_speech_ms=0, min_silence_ms=32, speech_pad_ms=30),
    ],
    ids=["default", "wide-pad-short-max", "twitchy"],
)
def test_padded_spans_are_sorted_disjoint_in_bounds_and_within_max_speech(seed, options):
    rng = np.random.default_rng(seed)
    # Runs of speech and silence of random lengths, with jitter.
    runs = rng.integers(1, 120, size=60)
    levels = np.repeat(rng.choice([0.05, 0.4, 0.95], size=len(runs)), runs)
    p = np.clip(levels + rng.normal(0, 0.1, size=len(levels)), 0, 1)

    spans = spans_from_probabilities(p, options)

    assert all(0 <= s < e <= len(p) for s, e in spans)
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:], strict=False))
    assert all((e - s) * FRAME_S <= options.max_speech_s for s, e in spans)


def test_no_probabilities_give_no_spans():
    assert spans_from_probabilities(np.zeros(0), OPTIONS) == []


def test_a_max_speech_that_the_padding_fills_is_refused():
    with pytest.raises(ProfileError) as err:
        SileroOptions(max_speech_s=1.0, speech_pad_ms=500)
    assert "max_speech_s" in str(err.value) and "speech_pad_ms" in str(err.value)


def test_speech_spans_are_seconds_on_the_frame_grid(vad, padded_speech):
    spans = vad.speech_spans(padded_speech, SAMPLE_RATE)

    assert all(isinstance(s, SpeechSpan) for s in spans)
    assert all(round(s.start / FRAME_S, 6).is_integer() for s in spans)


def test_a_recording_longer_than_one_block_is_read_a_block_at_a_time_with_the_same_result(
    vad, padded_speech, tmp_path
):
    """Streaming carries the LSTM state and each frame's context across blocks: the
    probabilities are those of the whole signal in one piece."""
    rng = np.random.default_rng(1)
    audio = (0.01 * rng.standard_normal(int(400 * SAMPLE_RATE))).astype(np.float32)
    for at in (10, 314, 390):  # speech from 317 s, across the first block's end (320 s)
        start = int(at * SAMPLE_RATE)
        audio[start : start + len(padded_speech)] += padded_speech[: len(audio) - start]
    path = tmp_path / "long.wav"
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1), f.setsampwidth(2), f.setframerate(SAMPLE_RATE)
        f.writeframes((np.clip(audio, -1, 1) * 32767).astype(np.int16).tobytes())
    samples = load_wav(path)

    # The whole signal at once, framed as Silero v6 frames it.
    padded = np.pad(samples, (0, (-len(samples)) % WINDOW or WINDOW)).reshape(-1, WINDOW)
    context = np.zeros((len(padded), CONTEXT), dtype=np.float32)
    context[1:] = padded[:-1, -CONTEXT:]
    batch = np.concatenate([context, padded], axis=1)
    h = c = np.zeros((1, 1, 128), dtype=np.float32)
    whole = []
    for i in range(0, len(batch), 10_000):
        p, h, c = vad._run(batch[i : i + 10_000], h, c)
        whole.append(np.asarray(p).reshape(-1))

    streamed = vad.probabilities(Wav(path))

    np.testing.assert_allclose(streamed, np.concatenate(whole), atol=1e-6)
    spans = vad.speech_spans(Wav(path), SAMPLE_RATE)
    assert vad.speech_spans(samples, SAMPLE_RATE) == spans
    assert any(s.start < 320 < s.end for s in spans), "the speech over the block's end is one span"
