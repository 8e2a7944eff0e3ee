"""asr: faster-whisper turns known speech into the right words at plausible times; the registry
picks backends by name and refuses bad profiles helpfully."""

from __future__ import annotations

import wave
from pathlib import Path

import jiwer
import numpy as np
import pytest

from conftest import SPEECH_TEXT, normalise
from profiles import StageSpec, load_catalog
from tasks.asr import AsrBackend, decode_windows, group_spans, speech_language, split_long_spans
from tasks.asr.faster_whisper import FasterWhisperAsr, FasterWhisperOptions, stretches
from tasks.extract import SAMPLE_RATE, Wav, extract_audio, load_wav
from tasks.registry import backend_class, load_backend, parse_options
from tasks.transcript import SpeechSpan, Transcript
from voxflow.errors import BackendUnavailable, BadInput, ProfileError

# -- group_spans: VAD spans into Whisper's 30 s windows ----------------------------------------


def spans(*pairs: tuple[float, float]) -> list[SpeechSpan]:
    return [SpeechSpan(s, e) for s, e in pairs]


def test_spans_within_30_s_of_the_window_start_share_one_window():
    assert group_spans(spans((0, 5), (10, 20), (22, 29.5))) == spans((0, 29.5))


def test_a_span_reaching_past_30_s_starts_a_new_window():
    assert group_spans(spans((0, 5), (10, 31), (32, 38))) == spans((0, 5), (10, 38))


def test_spans_far_apart_stay_separate():
    assert group_spans(spans((0, 5), (100, 104))) == spans((0, 5), (100, 104))


def test_a_span_longer_than_the_window_stays_alone_and_whole():
    assert group_spans(spans((0, 2), (3, 48), (49, 50))) == spans((0, 2), (3, 48), (49, 50))


def test_no_spans_give_no_windows():
    assert group_spans([]) == []


# -- split_long_spans: no window longer than the decoder takes --------------------------------


def tone_with_pauses(seconds: float, pauses: list[float], rate: int = SAMPLE_RATE) -> np.ndarray:
    """A loud noise signal with 300 ms of silence at each pause time."""
    audio = np.random.default_rng(0).uniform(-0.5, 0.5, int(seconds * rate)).astype(np.float32)
    for t in pauses:
        audio[int((t - 0.15) * rate) : int((t + 0.15) * rate)] = 0.0
    return audio


def test_a_long_span_is_cut_at_its_quietest_point():
    audio = tone_with_pauses(50, pauses=[21.0])
    pieces = split_long_spans(audio, spans((0, 50)))
    assert len(pieces) == 2
    assert pieces[0].start == 0 and pieces[-1].end == 50
    assert pieces[0].end == pytest.approx(21.0, abs=0.1)
    assert pieces[0].end == pieces[1].start  # nothing lost between the pieces


def test_continuous_speech_is_cut_into_pieces_no_longer_than_the_window():
    audio = tone_with_pauses(100, pauses=[])
    pieces = split_long_spans(audio, spans((2, 97)))
    assert all(p.end - p.start <= 30 for p in pieces)
    assert all(p.end - p.start >= 15 for p in pieces[:-1])
    assert [pieces[0].start, pieces[-1].end] == [2, 97]
    assert all(a.end == b.start for a, b in zip(pieces, pieces[1:], strict=False))


def test_decode_windows_are_never_longer_than_the_window():
    audio = tone_with_pauses(120, pauses=[40.0, 70.0])
    windows = decode_windows(audio, spans((0, 5), (6, 118)))
    assert all(w.end - w.start <= 30 for w in windows)
    assert windows[0].start == 0 and windows[-1].end == 118
    assert decode_windows(audio, spans((0, 5), (10, 20))) == spans((0, 20))


# -- faster-whisper on speech ------------------------------------------------------------------


@pytest.fixture(scope="module")
def asr(cpu_profile, warm_store) -> AsrBackend:
    spec = cpu_profile.stages["asr"]
    return load_backend(spec, warm_store.locate(load_catalog()[spec.model]))


@pytest.fixture(scope="module")
def speech(speech_wav: Path, tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    wav = extract_audio(speech_wav, tmp_path_factory.mktemp("asr") / "speech.wav").path
    return load_wav(wav)


@pytest.fixture(scope="module")
def transcript(asr, speech) -> Transcript:
    return asr.transcribe(speech, [SpeechSpan(0.0, len(speech) / SAMPLE_RATE)], language=None)


def test_the_profile_names_faster_whisper(asr):
    assert isinstance(asr, FasterWhisperAsr)


def test_known_speech_is_transcribed_with_a_low_word_error_rate(transcript):
    wer = jiwer.wer(normalise(SPEECH_TEXT), normalise(transcript.text))

    assert wer < 0.35, f"WER {wer:.2f}: {transcript.text!r}"
    assert transcript.language == "en"


def test_words_are_timed_in_order_within_the_audio(transcript, speech):
    duration = len(speech) / SAMPLE_RATE
    words = [w for seg in transcript.segments for w in seg.words]

    assert transcript.duration == pytest.approx(duration)
    assert len(words) >= 20
    assert all(w.start < w.end for w in words), [w for w in words if w.start >= w.end]
    assert all(a.start <= b.start for a, b in zip(words, words[1:], strict=False))
    assert all(0 <= w.start and w.end <= duration + 0.05 for w in words)
    assert all(0 <= w.probability <= 1 for w in words)


def test_segments_are_in_time_order(transcript):
    starts = [s.start for s in transcript.segments]

    assert starts == sorted(starts)
    assert all(s.start <= s.end for s in transcript.segments)


def test_no_speech_spans_give_an_empty_transcript_that_knows_the_duration(asr):
    audio = np.zeros(3 * SAMPLE_RATE, dtype=np.float32)

    result = asr.transcribe(audio, [], language=None)

    assert result.segments == ()
    assert result.text == ""
    assert result.duration == pytest.approx(3.0)


@pytest.fixture(scope="module")
def english_asr(tmp_path_factory) -> AsrBackend:
    """The cpu-en profile's English-only tiny.en, warmed into a volume of its own."""
    from blocks.volume import Volume
    from profiles import load_profile

    spec = load_profile("cpu-en").stages["asr"]
    store = Volume(root=str(tmp_path_factory.mktemp("english")))
    store.warm(load_catalog()[spec.model])
    return load_backend(spec, store.locate(load_catalog()[spec.model]))


def test_asking_an_english_only_model_for_french_is_refused(english_asr, speech):
    with pytest.raises(BadInput, match="English-only") as e:
        english_asr.transcribe(speech, [SpeechSpan(0.0, 1.0)], language="fr")

    assert "'fr'" in str(e.value)
    assert "faster-whisper-tiny.en" in str(e.value), "named by the model, not its snapshot id"
    assert e.value.exit_code == 2


@pytest.mark.parametrize(
    ("given", "code"),
    [
        ("fr", "fr"),
        ("FRA", "fr"),
        ("fre", "fr"),
        ("fra_Latn", "fr"),
        ("fr-CA", "fr"),
        ("French", "fr"),
        ("english", "en"),
        ("zh-Hant", "zh"),
        ("jv", "jw"),  # Whisper's own code for Javanese
        ("", None),
        (None, None),
    ],
)
def test_spoken_language_is_accepted_in_every_common_form(given, code):
    assert speech_language(given) == code


@pytest.mark.parametrize("given", ["xx", "ast", "Klingon", "f r"])
def test_a_language_whisper_does_not_know_is_refused_saying_what_it_knows(given):
    with pytest.raises(BadInput, match=r"not a language code|recognise 100 languages"):
        speech_language(given)


def test_asking_it_for_english_explicitly_works(asr):
    audio = np.zeros(SAMPLE_RATE, dtype=np.float32)

    assert asr.transcribe(audio, [], language="en").language == "en"


# -- the registry ------------------------------------------------------------------------------


def test_an_unknown_backend_is_refused_listing_the_known_ones():
    with pytest.raises(ProfileError, match="unknown backend 'nope'") as e:
        backend_class("asr", "nope")

    assert e.value.key_path == "stages.asr.backend"
    assert "faster-whisper" in e.value.allowed
    assert "faster-whisper" in str(e.value)


def test_an_unknown_stage_is_refused():
    with pytest.raises(ProfileError, match="unknown stage 'transcode'"):
        backend_class("transcode", "ffmpeg")


def test_a_declared_but_unimplemented_backend_is_unavailable(monkeypatch):
    import dataclasses

    from profiles import backends

    unbuilt = tuple(  # every declared backend exists now: pretend demucs were not built yet
        dataclasses.replace(e, implementation=None) if e.stage == "separate" else e
        for e in backends.BACKENDS
    )
    monkeypatch.setattr(backends, "BACKENDS", unbuilt)
    with pytest.raises(BackendUnavailable, match="not implemented") as e:
        backend_class("separate", "demucs")

    assert isinstance(e.value, ImportError)
    assert (e.value.stage, e.value.backend, e.value.exit_code) == ("separate", "demucs", 2)


def test_implemented_backends_are_found_by_name():
    assert backend_class("asr", "faster-whisper") is FasterWhisperAsr
    assert backend_class("vad", "silero").__name__ == "SileroVad"


def test_an_unknown_option_is_refused_with_its_key_path_and_the_allowed_keys():
    spec = StageSpec("asr", "faster-whisper", "faster-whisper-tiny.en", options={"beem_size": 5})

    with pytest.raises(ProfileError, match="unknown option 'beem_size'") as e:
        load_backend(spec, None)

    assert e.value.key_path == "stages.asr.options.beem_size"
    assert "beam_size" in e.value.allowed and "batch_size" in e.value.allowed
    assert "stages.asr.options.beem_size" in str(e.value)


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [("batch_size", "8", "int"), ("word_timestamps", 1, "bool"), ("beam_size", True, "int")],
)
def test_an_option_of_the_wrong_type_is_refused(key, value, expected):
    with pytest.raises(ProfileError, match=f"expected {expected}") as e:
        parse_options(FasterWhisperOptions, {key: value}, "stages.asr.options")

    assert e.value.key_path == f"stages.asr.options.{key}"


def test_valid_options_override_the_defaults():
    options = parse_options(FasterWhisperOptions, {"beam_size": 1}, "stages.asr.options")

    assert options == FasterWhisperOptions(beam_size=1)


def test_the_same_stage_loads_its_model_once(cpu_profile, warm_store, asr):
    spec = cpu_profile.stages["asr"]
    path = warm_store.locate(load_catalog()[spec.model])

    assert load_backend(spec, path) is asr
    assert load_backend(spec, path) is asr


# -- long recordings, a stretch at a time --------------------------------------------------------


def test_windows_are_grouped_a_batch_at_a_time_and_at_most_ten_minutes_of_audio():
    windows = [SpeechSpan(40.0 * i, 40.0 * i + 30) for i in range(21)]  # 21 x 30 s, gaps between
    assert stretches(windows, most=100) == [windows[:20], windows[20:]]
    assert stretches(windows) == [windows[:8], windows[8:16], windows[16:]]  # a batch a call
    assert stretches([SpeechSpan(0, 10), SpeechSpan(3000, 3010)]) == [
        [SpeechSpan(0, 10), SpeechSpan(3000, 3010)]  # far apart, but only 20 s to hold
    ]
    assert stretches([]) == []


def test_a_long_recording_is_read_a_stretch_at_a_time_and_timed_from_its_start(
    asr, speech, tmp_path
):
    later = 700.0  # the same speech again, past the first stretch
    seconds = len(speech) / SAMPLE_RATE
    audio = np.zeros(int((later + seconds + 1) * SAMPLE_RATE), dtype=np.float32)
    audio[: len(speech)] = speech
    audio[int(later * SAMPLE_RATE) : int(later * SAMPLE_RATE) + len(speech)] = speech
    path = tmp_path / "long.wav"
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1), f.setsampwidth(2), f.setframerate(SAMPLE_RATE)
        f.writeframes((audio * 32767).astype(np.int16).tobytes())
    wav = ReadCountingWav(path)

    transcript = asr.transcribe(
        wav, [SpeechSpan(0.0, seconds), SpeechSpan(later, later + seconds)], language=None
    )

    first = [s for s in transcript.segments if s.end <= seconds + 0.1]
    second = [s for s in transcript.segments if s.start >= later - 0.1]
    assert len(first) + len(second) == len(transcript.segments)
    assert normalise(" ".join(s.text for s in second)) == normalise(" ".join(s.text for s in first))
    assert all(later <= w.start for s in second for w in s.words)
    assert transcript.language == "en" and transcript.duration == pytest.approx(len(audio) / 16e3)
    assert max(wav.reads) < 60 * SAMPLE_RATE  # never more than a stretch of speech at once


class ReadCountingWav(Wav):
    """A :class:`Wav` that notes how many samples each read asked for."""

    def __init__(self, path) -> None:
        super().__init__(path)
        self.reads: list[int] = []

    def __getitem__(self, where: slice) -> np.ndarray:
        out = super().__getitem__(where)
        self.reads.append(len(out))
        return out


def test_speech_from_the_first_sample_to_past_the_last_is_decoded_not_refused(asr, speech):
    """A VAD span rounded to the millisecond may end a fraction past the audio; with speech
    from the very start, faster-whisper would count more speech than audio and stop."""
    seconds = len(speech) / SAMPLE_RATE

    transcript = asr.transcribe(speech, [SpeechSpan(0.0, round(seconds + 0.0004, 3))], None)

    assert transcript.segments and transcript.segments[-1].end <= seconds + 0.05
