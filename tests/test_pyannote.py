"""pyannote segmentation VAD and speaker diarization, from the model volume only.

The models are tiny random-weight ones built here in pyannote's own checkpoint format (a
``pytorch_model.bin`` Lightning checkpoint with pyannote's architecture and specifications
metadata): PyanNet in segmentation-3.0's powerset set-up, and WeSpeaker ResNet34. The pipeline is
speaker-diarization-3.1's ``config.yaml`` as published, naming its sub-models by hub id. They
are served from ``file://`` sources through a catalog given in ``$VOXFLOW_CATALOG`` and warmed
into a store like real models. Random weights cannot tell voices apart, so the tests assert
structure (labels everywhere, counts respected, files written) and that everything loads and
runs with the network gone and no token, not accuracy.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from tiny_models import (
    EMBEDDING,
    PIPELINE,
    PIPELINE_3_1,
    SEGMENTATION,
    build_embedding,
    build_segmentation,
)

from blocks.volume import Volume
from conftest import cli_env, run_cli, speak, write_wav
from profiles import StageSpec, load_catalog, load_profile
from tasks.diarize import Diarization, SpeakerCount
from tasks.extract import SAMPLE_RATE, extract_audio, load_wav
from tasks.registry import load_backend, parse_options
from tasks.transcript import SpeechSpan
from tasks.warm.loadcheck import run_load_check
from tasks.warm.preflight import ReadyStage
from voxflow.errors import ProfileError

torch = pytest.importorskip("torch")
pytest.importorskip("pyannote.audio")


SPEAKER_LABEL = re.compile(r"SPEAKER_\d\d")


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("pyannote-sources")
    pipeline = root / "speaker-diarization-3.1"
    pipeline.mkdir()
    (pipeline / "config.yaml").write_text(yaml.safe_dump(PIPELINE_3_1, sort_keys=False))
    return {
        SEGMENTATION: build_segmentation(root / "segmentation-3.0"),
        EMBEDDING: build_embedding(root / "wespeaker-voxceleb-resnet34-LM"),
        PIPELINE: pipeline,
        "speech-everywhere": build_segmentation(root / "speech-everywhere", favour=1),
        "never-speech": build_segmentation(root / "never-speech", favour=0),
    }


@pytest.fixture(scope="module")
def pyannote_store(tiny_models, tmp_path_factory) -> Volume:
    """A catalog (``$VOXFLOW_CATALOG``) serving the tiny models from file://, warmed."""
    shipped = load_catalog()
    entries = {}
    for name in (SEGMENTATION, EMBEDDING, PIPELINE):
        entries[name] = {
            "source": tiny_models[name].as_uri(),
            "revision": "tiny-1",
            "files": list(shipped[name].files),
            "format": "pyannote",
            "size_mb": 1,
        }
    catalog = tmp_path_factory.mktemp("catalog") / "models.yaml"
    catalog.write_text(yaml.safe_dump(entries))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VOXFLOW_CATALOG", str(catalog))
        patch.delenv("HF_TOKEN", raising=False)
        patch.setenv("HF_HUB_OFFLINE", "1")
        store = Volume(root=str(tmp_path_factory.mktemp("pyannote-store")))
        for name in entries:
            store.warm(load_catalog()[name])
        yield store


@pytest.fixture(scope="module")
def two_voices(tmp_path_factory) -> Path:
    """Two espeak voices one after the other, 16 kHz mono WAV."""
    folder = tmp_path_factory.mktemp("voices")
    parts = []
    for i, (voice, text) in enumerate(
        [
            ("en-us", "The quick brown fox jumps over the lazy dog."),
            ("en-gb+f3", "She sells sea shells by the sea shore, said the lady."),
        ]
    ):
        raw = speak(text, folder / f"raw{i}.wav", voice=voice)
        parts.append(load_wav(extract_audio(str(raw), folder / f"part{i}.wav").path))
        parts.append(np.zeros(SAMPLE_RATE // 2, dtype=np.float32))
    audio = np.concatenate(parts)
    return write_wav(folder / "two-voices.wav", audio, SAMPLE_RATE)


def _located(store: Volume, name: str) -> Path:
    return store.locate(load_catalog()[name])


def _diarizer(store: Volume, **options):
    profile = load_profile("cpu")
    spec = profile.stages["diarize"]
    spec = StageSpec(
        stage="diarize",
        backend="pyannote",
        model=PIPELINE,
        options={**spec.options, **options},
    )
    submodels = {
        "segmentation_model": str(_located(store, SEGMENTATION)),
        "embedding_model": str(_located(store, EMBEDDING)),
    }
    return load_backend(spec, _located(store, PIPELINE), submodels)


def _vad(folder: Path, **options):
    spec = StageSpec(stage="vad", backend="pyannote", model=SEGMENTATION, options=options)
    return load_backend(spec, folder)


# ----------------------------------------------------------------------------- pyannote VAD


def test_pyannote_vad_spans_are_sorted_and_within_the_audio(pyannote_store, two_voices):
    audio = load_wav(two_voices)
    spans = _vad(_located(pyannote_store, SEGMENTATION)).speech_spans(audio, SAMPLE_RATE)
    duration = len(audio) / SAMPLE_RATE
    assert all(isinstance(s, SpeechSpan) for s in spans)
    assert all(0.0 <= s.start < s.end <= duration for s in spans)
    assert all(a.end <= b.start for a, b in zip(spans, spans[1:], strict=False))


def test_pyannote_vad_covers_audio_the_model_calls_speech(tiny_models, two_voices):
    audio = load_wav(two_voices)
    duration = len(audio) / SAMPLE_RATE
    spans = _vad(tiny_models["speech-everywhere"]).speech_spans(audio, SAMPLE_RATE)
    assert len(spans) == 1
    assert spans[0].start <= 0.1 and spans[0].end >= duration - 0.1


def test_pyannote_vad_finds_nothing_where_the_model_hears_nobody(tiny_models, two_voices):
    assert _vad(tiny_models["never-speech"]).speech_spans(load_wav(two_voices), SAMPLE_RATE) == []


def test_pyannote_vad_drops_regions_shorter_than_min_duration_on(tiny_models):
    audio = np.zeros(SAMPLE_RATE * 3, dtype=np.float32)
    vad = _vad(tiny_models["speech-everywhere"], min_duration_on=5.0)
    assert vad.speech_spans(audio, SAMPLE_RATE) == []


def test_pyannote_vad_options_are_checked_with_their_key_path():
    from tasks.vad.pyannote import PyannoteVadOptions

    with pytest.raises(ProfileError, match=r"stages\.vad\.options\.offset"):
        parse_options(PyannoteVadOptions, {"onset": 0.3, "offset": 0.6}, "stages.vad.options")
    with pytest.raises(ProfileError, match="unknown option 'threshold'"):
        parse_options(PyannoteVadOptions, {"threshold": 0.5}, "stages.vad.options")
    cuda = load_profile("cuda").stages["vad"]
    assert parse_options(PyannoteVadOptions, cuda.options, "stages.vad.options").batch_size == 32


def test_pyannote_telemetry_is_switched_off_before_any_model_loads(monkeypatch):
    from pyannote.audio.telemetry.metrics import is_metrics_enabled

    from tasks.diarize.pyannote_local import import_pyannote

    monkeypatch.setenv("PYANNOTE_METRICS_ENABLED", "1")
    import_pyannote("vad")
    assert not is_metrics_enabled()


# ids that are not hardware marker names: a bare "mlx" id would skip the case off Apple silicon
@pytest.mark.parametrize("profile", ["cpu", "cuda", "mlx", "openvino"], ids=lambda p: f"{p}.yaml")
def test_every_profiles_pyannote_options_parse(profile):
    from tasks.diarize.pyannote import PyannoteDiarizeOptions
    from tasks.vad.pyannote import PyannoteVadOptions

    stages = load_profile(profile).stages
    options = parse_options(PyannoteDiarizeOptions, stages["diarize"].options, "stages.diarize")
    assert options.segmentation_model == SEGMENTATION and options.embedding_model == EMBEDDING
    if stages["vad"].backend == "pyannote":
        parse_options(PyannoteVadOptions, stages["vad"].options, "stages.vad.options")


# ------------------------------------------------------------------- the pipeline's config


def test_pipeline_config_is_rewritten_to_local_checkpoints(pyannote_store):
    from tasks.diarize.pyannote import PyannoteDiarizeOptions, local_pipeline_config

    seg, emb = _located(pyannote_store, SEGMENTATION), _located(pyannote_store, EMBEDDING)
    options = PyannoteDiarizeOptions(
        segmentation_model=str(seg), embedding_model=str(emb), embedding_batch_size=4
    )
    config = local_pipeline_config(PIPELINE_3_1, Path("/nowhere"), options)
    params = config["pipeline"]["params"]
    assert params["segmentation"] == {"checkpoint": str(seg / "pytorch_model.bin")}
    assert params["embedding"] == {"checkpoint": str(emb / "pytorch_model.bin")}
    assert params["embedding_batch_size"] == 4
    # 3.1 clusters without PLDA, but pyannote 4 loads one anyway (from the hub by default).
    assert not isinstance(params["plda"], str | dict)
    assert PIPELINE_3_1["pipeline"]["params"]["segmentation"] == "pyannote/segmentation-3.0"
    assert "pyannote/" not in json.dumps(params, default=lambda o: "<object>")


def test_pipeline_config_naming_a_hub_model_without_a_local_one_is_refused():
    from tasks.diarize.pyannote import PyannoteDiarizeOptions, local_pipeline_config

    with pytest.raises(ProfileError, match=r"stages\.diarize\.options\.segmentation_model"):
        local_pipeline_config(PIPELINE_3_1, Path("/nowhere"), PyannoteDiarizeOptions())


def test_community_layout_resolves_model_folders_inside_the_snapshot(tmp_path):
    from tasks.diarize.pyannote import PyannoteDiarizeOptions, local_pipeline_config

    for sub in ("segmentation", "embedding"):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "pytorch_model.bin").write_bytes(b"")
    (tmp_path / "plda").mkdir()
    for name in ("plda.npz", "xvec_transform.npz"):
        (tmp_path / "plda" / name).write_bytes(b"")
    config = {
        "pipeline": {
            "name": "pyannote.audio.pipelines.SpeakerDiarization",
            "params": {
                "clustering": "VBxClustering",
                "segmentation": "$model/segmentation",
                "embedding": "$model/embedding",
                "plda": "$model/plda",
            },
        }
    }
    params = local_pipeline_config(config, tmp_path, PyannoteDiarizeOptions())["pipeline"]["params"]
    assert params["segmentation"]["checkpoint"] == str(tmp_path / "segmentation/pytorch_model.bin")
    assert params["plda"] == str(tmp_path / "plda")

    del config["pipeline"]["params"]["plda"]
    with pytest.raises(ProfileError, match=r"needs a PLDA.*plda_model"):
        local_pipeline_config(config, tmp_path, PyannoteDiarizeOptions())


# ---------------------------------------------------------------------- the diarize backend


def test_diarization_loads_offline_without_a_token_and_labels_speakers(pyannote_store, two_voices):
    audio = load_wav(two_voices)
    result = _diarizer(pyannote_store).diarize(audio, SAMPLE_RATE, SpeakerCount(num=2))
    duration = len(audio) / SAMPLE_RATE
    assert result.turns, "random weights still mark some speech with forced speakers"
    assert 1 <= len(result.speakers) <= 2
    assert all(SPEAKER_LABEL.fullmatch(s) for s in result.speakers)
    assert result.turns[0].speaker == "SPEAKER_00"
    for turns in (result.turns, result.exclusive):
        assert all(0.0 <= t.start < t.end <= duration for t in turns)
        assert list(turns) == sorted(turns, key=lambda t: (t.start, t.end))
    for a, b in zip(result.exclusive, result.exclusive[1:], strict=False):
        assert a.end <= b.start + 1e-6, "exclusive turns never overlap"


def test_max_speakers_caps_the_number_of_labels(pyannote_store, two_voices):
    audio = load_wav(two_voices)
    result = _diarizer(pyannote_store).diarize(audio, SAMPLE_RATE, SpeakerCount(min=1, max=1))
    assert result.speakers == ("SPEAKER_00",)


def test_profile_speaker_count_applies_unless_the_run_gives_one(pyannote_store, two_voices):
    backend = _diarizer(pyannote_store, max_speakers=1)
    audio = load_wav(two_voices)
    assert len(backend.diarize(audio, SAMPLE_RATE, SpeakerCount()).speakers) == 1
    assert len(backend.diarize(audio, SAMPLE_RATE, SpeakerCount(num=2)).speakers) <= 2


@pytest.mark.gpu
def test_vad_and_diarization_run_on_cuda(pyannote_store, two_voices):
    audio = load_wav(two_voices)
    spans = _vad(_located(pyannote_store, SEGMENTATION), device="cuda").speech_spans(
        audio, SAMPLE_RATE
    )
    assert all(0.0 <= s.start < s.end for s in spans)
    result = _diarizer(pyannote_store, device="cuda").diarize(
        audio, SAMPLE_RATE, SpeakerCount(num=2)
    )
    assert 1 <= len(result.speakers) <= 2


def test_diarize_load_check_passes_in_an_offline_child(pyannote_store):
    spec = load_profile("cpu").stages["diarize"]
    submodels = {
        "segmentation_model": str(_located(pyannote_store, SEGMENTATION)),
        "embedding_model": str(_located(pyannote_store, EMBEDDING)),
    }
    ready = ReadyStage(
        "diarize", "pyannote", PIPELINE, "test", str(_located(pyannote_store, PIPELINE)), submodels
    )
    check = run_load_check(spec, ready)
    assert check.ok, check.detail
    assert "speaker turn" in check.detail


# ------------------------------------------------------------------- the transcribe flow


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api")
def test_transcribe_with_speakers_labels_every_output(
    warm_store, pyannote_store, two_voices, tmp_path
):
    from flows.transcribe import transcribe

    # The session's cpu volume plus the pyannote models ($VOXFLOW_CATALOG is set by
    # pyannote_store for this module).
    for name in (SEGMENTATION, EMBEDDING, PIPELINE):
        warm_store.warm(load_catalog()[name])
    record = transcribe(
        str(two_voices), profile="cpu", store=warm_store.root, output_dir=str(tmp_path), speakers=2
    )
    job = Path(record["outputs"]["srt"]).parent

    assert "diarize" in record["stages"] and record["models"]["diarize"]["model"] == PIPELINE
    assert (
        json.loads((job / "records" / "run.json").read_text())["stages"]["diarize"]["cached"]
        is False
    )
    diarization = Diarization.load(job / "records" / "diarization.json")
    assert 1 <= len(diarization.speakers) <= 2

    data = json.loads(Path(record["outputs"]["json"]).read_text())
    assert data["segments"], "the two voices were transcribed"
    labels = {s["speaker"] for s in data["segments"]}
    labels |= {w["speaker"] for s in data["segments"] for w in s["words"]}
    assert labels <= set(diarization.speakers)
    assert all(SPEAKER_LABEL.fullmatch(label) for label in labels)

    srt = Path(record["outputs"]["srt"]).read_text()
    cue_text = [b.splitlines()[2] for b in srt.strip().split("\n\n")]
    assert cue_text and all(SPEAKER_LABEL.match(line) for line in cue_text)
    assert "<v SPEAKER_" in Path(record["outputs"]["vtt"]).read_text()
    # transcript.json stays as ASR wrote it; the diarized copy feeds the writers
    assert all(
        s["speaker"] is None
        for s in json.loads((job / "records" / "transcript.json").read_text())["segments"]
    )

    again = transcribe(
        str(two_voices), profile="cpu", store=warm_store.root, output_dir=str(tmp_path), speakers=2
    )
    assert again["stages"]["diarize"]["cached"] is True


# -------------------------------------------------------------------------------- the CLI


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--no-diarize", "--speakers", "2"], "diarization is switched off"),
        (["--speakers", "2", "--max-speakers", "3"], "not both"),
        (["--min-speakers", "3", "--max-speakers", "2"], "exceeds"),
    ],
)
def test_cli_refuses_contradictory_speaker_options_before_any_work(two_voices, args, message):
    # Refused before a Prefect server is needed: the API URL points nowhere.
    env = cli_env("http://127.0.0.1:9/api")
    done = run_cli(["transcribe", str(two_voices), "--profile", "cpu", *args], env, timeout=120)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr
