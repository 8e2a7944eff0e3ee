"""vad on OpenVINO: the openvino profile runs the same Silero ONNX file on the OpenVINO runtime,
and finds the same speech as ONNX Runtime does."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from profiles import load_catalog, load_profile
from tasks.extract import SAMPLE_RATE, extract_audio, load_wav
from tasks.registry import load_backend, parse_options, resolve, unavailable_reason
from tasks.vad.silero import SileroOptions, SileroVad
from voxflow.errors import BackendUnavailable, ProfileError

needs_openvino = pytest.mark.skipif(
    importlib.util.find_spec("openvino") is None,
    reason="the openvino package is not installed (pip install openvino)",
)


@pytest.fixture(scope="module")
def silero_path(warm_store) -> Path:
    return warm_store.locate(load_catalog()["silero-vad-v6"])


@pytest.fixture(scope="module")
def padded_speech(speech_wav: Path, tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    wav = extract_audio(speech_wav, tmp_path_factory.mktemp("vad-ov") / "speech.wav").path
    silence = np.zeros(2 * SAMPLE_RATE, dtype=np.float32)
    return np.concatenate([silence, load_wav(wav), silence])


@needs_openvino
def test_both_runtimes_find_the_same_speech(silero_path, padded_speech):
    onnx = SileroVad(silero_path, SileroOptions(runtime="onnxruntime"))
    spec = load_profile("openvino").stages["vad"]
    openvino = load_backend(spec, silero_path)

    assert openvino.options.runtime == "openvino"
    np.testing.assert_allclose(
        openvino.probabilities(padded_speech), onnx.probabilities(padded_speech), atol=1e-4
    )
    spans = openvino.speech_spans(padded_speech, SAMPLE_RATE)
    assert spans and spans == onnx.speech_spans(padded_speech, SAMPLE_RATE)


def test_frame_probabilities_match_faster_whispers_silero_loop(silero_path, padded_speech):
    from faster_whisper.vad import SileroVADModel

    ours = SileroVad(silero_path, SileroOptions()).probabilities(padded_speech)
    padded = np.pad(padded_speech, (0, (-len(padded_speech)) % 512 or 512))
    theirs = SileroVADModel(str(silero_path / "silero_vad_v6.onnx"))(padded).reshape(-1)

    # faster-whisper zeroes the last 64 samples of the final frame in place; ours does not.
    np.testing.assert_allclose(ours[:-1], theirs[:-1], atol=1e-5)


def test_an_unknown_runtime_is_refused_listing_the_runtimes():
    with pytest.raises(ProfileError) as err:
        parse_options(SileroOptions, {"runtime": "tensorrt"}, "stages.vad.options")
    assert "stages.vad.options.runtime" in str(err.value) and "openvino" in str(err.value)


def test_onnxruntime_only_runs_on_the_cpu():
    with pytest.raises(ProfileError, match="runtime: openvino"):
        SileroOptions(device="GPU")


def test_without_openvino_the_openvino_runtime_is_refused_naming_the_package(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "openvino" else real(name)
    )
    spec = load_profile("openvino").stages["vad"]

    with pytest.raises(BackendUnavailable, match="pip install openvino"):
        resolve(spec)
    assert unavailable_reason(spec) == "pip install openvino"
    assert unavailable_reason(load_profile("cpu").stages["vad"]) is None
