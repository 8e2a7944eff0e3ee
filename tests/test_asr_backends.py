"""asr backends beyond faster-whisper: transformers Whisper runs end to end on this machine from
a tiny model warmed through the volume; mlx-whisper and OpenVINO are chosen by their profiles,
parse their options, and fail naming what to install where they cannot run."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest

from blocks.volume import Volume
from profiles import StageSpec, load_catalog, load_profile
from tasks.asr.mlx_whisper import MlxWhisperAsr, MlxWhisperOptions
from tasks.asr.openvino import REQUIRED_FILES, OpenVinoWhisperAsr, OpenVinoWhisperOptions
from tasks.asr.transformers import TransformersWhisperAsr, TransformersWhisperOptions
from tasks.extract import SAMPLE_RATE, extract_audio, load_wav
from tasks.registry import backend_class, load_backend, parse_options, resolve, unavailable_reason
from tasks.transcript import SpeechSpan, Transcript, Word
from tasks.warm.loadcheck import run_load_check
from tasks.warm.preflight import ReadyStage, preflight
from tests.tiny_models import build_tiny_whisper
from voxflow.errors import BackendUnavailable, BadInput, ModelNotWarmed, ProfileError

TINY = "tiny-whisper-transformers"
SECONDS = 3.0


# -- a tiny transformers Whisper, warmed from a file:// source ---------------------------------


@pytest.fixture(scope="module")
def tiny_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_whisper(tmp_path_factory.mktemp("tiny-whisper-src"))


@pytest.fixture()
def tiny_catalog(tiny_source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An operator's extra catalog ($VOXFLOW_CATALOG) naming the tiny model by a file:// URL."""
    files = sorted(p.name for p in tiny_source.iterdir())
    catalog = tmp_path / "site-models.yaml"
    catalog.write_text(
        f"{TINY}:\n"
        f"  source: {tiny_source.as_uri()}\n"
        "  revision: random-seed-0\n"
        f"  files: [{', '.join(files)}]\n"
        "  format: transformers\n"
        "  license: MIT\n"
    )
    monkeypatch.setenv("VOXFLOW_CATALOG", str(catalog))
    return catalog


@pytest.fixture()
def tiny_profile(tiny_catalog: Path, tmp_path: Path) -> Path:
    profile = tmp_path / "tiny-transformers.yaml"
    profile.write_text(
        "hardware: cpu\nstages:\n"
        "  vad: {backend: silero, model: silero-vad-v6}\n"
        f"  asr:\n    backend: transformers\n    model: {TINY}\n"
        "    options: {device: cpu, dtype: float32, batch_size: 2, beam_size: 2}\n"
    )
    return profile


@pytest.fixture()
def tiny_store(tiny_catalog: Path, warm_store: Volume) -> Volume:
    warm_store.warm(load_catalog()[TINY])
    return warm_store


@pytest.fixture(scope="module")
def speech(speech_wav: Path, tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    """The first SECONDS of the espeak speech, at 16 kHz."""
    wav = extract_audio(speech_wav, tmp_path_factory.mktemp("asr-backends") / "speech.wav").path
    return load_wav(wav)[: int(SECONDS * SAMPLE_RATE)]


def assert_well_formed(transcript: Transcript, duration: float, windows: list[SpeechSpan]):
    assert transcript.duration == pytest.approx(duration)
    assert transcript.language == "en"
    for seg in transcript.segments:
        assert any(w.start <= seg.start <= seg.end <= w.end for w in windows), seg
        times = [t for word in seg.words for t in (word.start, word.end)]
        assert times == sorted(times), f"word times go backwards: {seg.words}"
        assert all(seg.start <= t <= seg.end for t in times)
    starts = [s.start for s in transcript.segments]
    assert starts == sorted(starts)


def test_transformers_whisper_runs_end_to_end_from_the_volume(tiny_profile, tiny_store, speech):
    profile = load_profile(str(tiny_profile))
    ready = preflight(profile, tiny_store)["asr"]
    asr = load_backend(profile.stages["asr"], Path(ready.path))
    spans = [SpeechSpan(0.1, 1.4), SpeechSpan(1.6, 2.9)]

    transcript = asr.transcribe(speech, spans, language=None)

    assert isinstance(asr, TransformersWhisperAsr)
    assert ready.model == TINY and ready.revision == "random-seed-0"
    assert transcript.segments, "a random model still decodes some tokens"
    assert any(seg.words for seg in transcript.segments), "word timestamps were asked for"
    assert_well_formed(transcript, SECONDS, [SpeechSpan(0.1, 2.9)])


def test_windows_far_apart_are_batched_and_timed_from_the_start_of_the_audio(tiny_source):
    asr = TransformersWhisperAsr(tiny_source, TransformersWhisperOptions(batch_size=2, beam_size=1))
    audio = np.random.default_rng(0).normal(0, 0.1, 70 * SAMPLE_RATE).astype(np.float32)
    windows = [SpeechSpan(1.0, 3.0), SpeechSpan(60.0, 62.5)]

    transcript = asr.transcribe(audio, windows, language="en")

    assert_well_formed(transcript, 70.0, windows)
    assert {any(w.start <= s.start <= w.end for s in transcript.segments) for w in windows} == {
        True
    }, "each window yields its own segments"


def test_segment_timestamps_only_when_word_timing_is_off(tiny_source, speech):
    options = TransformersWhisperOptions(word_timestamps=False, beam_size=1)
    transcript = TransformersWhisperAsr(tiny_source, options).transcribe(
        speech, [SpeechSpan(0.0, SECONDS)], language=None
    )

    assert all(seg.words == () for seg in transcript.segments)
    assert_well_formed(transcript, SECONDS, [SpeechSpan(0.0, SECONDS)])


@pytest.fixture(scope="module")
def confident_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with its decoder's output sharpened, so greedy tokens are likely ones."""
    from transformers import WhisperForConditionalGeneration

    folder = build_tiny_whisper(tmp_path_factory.mktemp("confident-whisper"), seed=3)
    model = WhisperForConditionalGeneration.from_pretrained(folder)
    model.model.decoder.layer_norm.weight.data *= 40
    model.save_pretrained(folder)
    return folder


def test_word_probabilities_come_from_the_model(confident_source, speech):
    asr = TransformersWhisperAsr(
        confident_source, TransformersWhisperOptions(beam_size=1, batch_size=1)
    )
    transcript = asr.transcribe(speech, [SpeechSpan(0.0, SECONDS)], language="en")
    probabilities = [w.probability for seg in transcript.segments for w in seg.words]

    assert probabilities, "the sharpened model decodes some words"
    assert all(0.0 <= p <= 1.0 for p in probabilities), probabilities
    assert max(probabilities) > 0.5, "a confident model gives likely words high probability"
    assert len(set(probabilities)) > 1, "one probability per word, not a constant"


def test_word_probability_is_the_mean_of_its_tokens_as_generate_scores_them(
    confident_source, speech
):
    """Whisper's definition (openai-whisper, faster-whisper): each text token's probability
    given the audio, the no-timestamps prompt and the tokens before it, averaged per word.
    Greedy decoding by the library's own generate() scores exactly those tokens."""
    import torch

    asr = TransformersWhisperAsr(
        confident_source, TransformersWhisperOptions(beam_size=1, batch_size=2)
    )
    features = asr.processor.feature_extractor(
        speech, sampling_rate=SAMPLE_RATE, return_tensors="pt"
    ).input_features
    with torch.inference_mode():
        out = asr.model.generate(
            features,
            num_beams=1,
            do_sample=False,
            max_new_tokens=12,
            return_dict_in_generate=True,
            output_logits=True,
        )
    tokens = out.sequences[0, -len(out.logits) :].tolist()
    probs = [
        float(torch.softmax(s[0].float(), -1)[t]) for s, t in zip(out.logits, tokens, strict=True)
    ]
    assert max(probs) > 0.5, "the sharpened model is confident"
    tokenizer = asr.processor.tokenizer
    # one "word" per token; and two-token words over the first 8 (a shorter row, padded)
    texts = [tokenizer.decode([t]) for t in tokens]
    assert [tokenizer.encode(x, add_special_tokens=False) for x in texts] == [[t] for t in tokens]
    words = [Word(0.0, 1.0, x) for x in texts]
    pairs = [Word(0.0, 1.0, tokenizer.decode(tokens[i : i + 2])) for i in range(0, 8, 2)]

    scored, paired = asr._with_probabilities([speech, speech], [words, pairs], "en")

    assert [w.probability for w in scored] == pytest.approx(probs, abs=1e-4)
    expected = [np.mean(probs[i : i + 2]) for i in range(0, 8, 2)]
    assert [w.probability for w in paired] == pytest.approx(expected, abs=1e-4)


def test_no_speech_gives_an_empty_transcript(tiny_source, speech):
    asr = TransformersWhisperAsr(tiny_source, TransformersWhisperOptions())
    assert asr.transcribe(speech, [], language=None) == Transcript(language="en", duration=SECONDS)


def test_an_english_only_model_refuses_another_language(tiny_source, speech):
    asr = TransformersWhisperAsr(tiny_source, TransformersWhisperOptions())
    with pytest.raises(BadInput, match="English-only"):
        asr.transcribe(speech, [SpeechSpan(0.0, 1.0)], language="fr")


def test_the_offline_load_check_passes_for_the_transformers_backend(tiny_store, tiny_catalog):
    path = tiny_store.locate(load_catalog()[TINY])

    spec = StageSpec("asr", "transformers", TINY, options={"beam_size": 1, "batch_size": 1})
    check = run_load_check(spec, ReadyStage("asr", "transformers", TINY, "test", str(path)), 300)

    assert check.ok, check.detail
    assert "decoded 1 s of test audio" in check.detail


@pytest.mark.parametrize(
    "options, key",
    [({"dtype": "float64"}, "dtype"), ({"batch_size": 0}, "batch_size"), ({"beams": 2}, "beams")],
)
def test_bad_transformers_options_are_refused_with_the_key_path(options, key):
    with pytest.raises(ProfileError, match=rf"stages\.asr\.options\.{key}"):
        parse_options(TransformersWhisperOptions, options, "stages.asr.options")


# -- mlx-whisper: chosen by the mlx profile, refused here naming the package ------------------


def test_the_mlx_profile_selects_mlx_whisper_with_its_options():
    spec = load_profile("mlx").stages["asr"]

    cls = backend_class("asr", spec.backend)
    options = parse_options(cls.Options, spec.options, "stages.asr.options")

    assert cls is MlxWhisperAsr
    assert options == MlxWhisperOptions(dtype="float16", word_timestamps=True)
    with pytest.raises(ProfileError, match="beam_size"):
        parse_options(cls.Options, {"beam_size": 5}, "stages.asr.options")  # no beam search


@pytest.mark.skipif(
    importlib.util.find_spec("mlx_whisper") is not None, reason="mlx-whisper is installed here"
)
def test_without_mlx_whisper_the_backend_is_refused_naming_the_package():
    spec = load_profile("mlx").stages["asr"]

    with pytest.raises(BackendUnavailable) as err:
        resolve(spec)

    assert err.value.package == "mlx-whisper"
    assert "pip install mlx-whisper" in str(err.value)
    assert unavailable_reason(spec) == "pip install mlx-whisper"


@pytest.mark.mlx
def test_mlx_whisper_transcribes_speech_on_apple_silicon(warm_store, speech):
    from flows.warm_cache import warm_cache

    warm_cache(profile="mlx", store=warm_store.root, load_checks=False)
    spec = load_profile("mlx").stages["asr"]
    asr = load_backend(spec, warm_store.locate(load_catalog()[spec.model]))

    transcript = asr.transcribe(speech, [SpeechSpan(0.0, SECONDS)], language="en")

    assert "quick" in transcript.text.lower()
    assert_well_formed(transcript, SECONDS, [SpeechSpan(0.0, SECONDS)])


# -- OpenVINO Whisper (openvino-genai) ---------------------------------------------------------


def test_the_openvino_profile_selects_the_openvino_whisper_backend():
    spec = load_profile("openvino").stages["asr"]

    cls = backend_class("asr", spec.backend)
    options = parse_options(cls.Options, spec.options, "stages.asr.options")

    assert cls is OpenVinoWhisperAsr
    assert options == OpenVinoWhisperOptions(device="CPU", beam_size=1)
    assert set(REQUIRED_FILES) <= set(load_catalog()[spec.model].files)


def test_without_openvino_genai_the_backend_is_refused_naming_the_package(monkeypatch):
    real = importlib.util.find_spec
    hidden = {"openvino_genai"}
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name in hidden else real(name)
    )
    spec = load_profile("openvino").stages["asr"]

    with pytest.raises(BackendUnavailable, match="pip install openvino-genai"):
        resolve(spec)
    assert unavailable_reason(spec) == "pip install openvino-genai"


def test_a_folder_that_is_not_an_openvino_export_is_refused_naming_the_files(tmp_path):
    (tmp_path / "openvino_encoder_model.xml").write_text("<net/>")

    with pytest.raises(ModelNotWarmed) as err:
        OpenVinoWhisperAsr(tmp_path, OpenVinoWhisperOptions())

    assert "openvino_decoder_model.xml" in str(err.value)
    assert "openvino_encoder_model.xml" not in str(err.value).split("missing")[-1]
    assert "voxflow warm --profile openvino" in str(err.value)


OV_WHISPER = os.environ.get("VOXFLOW_TEST_OV_WHISPER")


@pytest.mark.skipif(
    not OV_WHISPER,
    reason="needs a Whisper exported to OpenVINO IR (`optimum-cli export openvino`); "
    "optimum-intel pins transformers below what this environment runs, so the test cannot "
    "build one: set VOXFLOW_TEST_OV_WHISPER to such a folder to run it",
)
def test_openvino_whisper_transcribes_speech(speech):
    asr = OpenVinoWhisperAsr(Path(str(OV_WHISPER)), OpenVinoWhisperOptions(max_new_tokens=40))

    transcript = asr.transcribe(speech, [SpeechSpan(0.1, 1.4), SpeechSpan(1.6, 2.9)], "en")

    assert_well_formed(transcript, SECONDS, [SpeechSpan(0.1, 2.9)])


# -- what `voxflow profiles` reports per stage -------------------------------------------------


def test_unavailable_reason_says_what_is_missing(monkeypatch):
    import dataclasses

    from profiles import backends

    transformers_spec = StageSpec("asr", "transformers", TINY, options={"device": "cpu"})
    bad = StageSpec("asr", "transformers", TINY, options={"dtype": "float64"})
    unbuilt = tuple(
        dataclasses.replace(e, implementation=None)
        if (e.stage, e.name) == ("asr", "openvino")
        else e
        for e in backends.BACKENDS
    )
    monkeypatch.setattr(backends, "BACKENDS", unbuilt)

    assert unavailable_reason(transformers_spec) is None
    assert unavailable_reason(bad).startswith("bad options:")
    assert unavailable_reason(load_profile("openvino").stages["asr"]) == "not implemented yet"
