"""separate: Demucs loads from a local repository folder in the volume (tiny random models in
the library's own checkpoint format, warmed from a file:// source), writes the voice stem as a
16 kHz mono WAV that the next stages read, and keeps memory bounded on long recordings."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import wave
from pathlib import Path

import numpy as np
import pytest

from blocks.volume import Volume
from conftest import ROOT, SAMPLE
from profiles import StageSpec, load_catalog, load_profile
from tasks.extract import load_wav
from tasks.registry import backend_class, load_backend
from tasks.separate import stream_windows, wav_stats, windows
from tasks.separate.demucs import DemucsOptions, DemucsSeparator, load_repository, save_repository
from tasks.warm.loadcheck import run_load_check
from tasks.warm.preflight import ReadyStage, preflight
from voxflow.errors import BadModel, ModelNotWarmed, ProfileError

SOURCES = ["drums", "bass", "other", "vocals"]
RATE = 16_000


def tiny_htdemucs():
    """HTDemucs, the architecture of the catalog's htdemucs, at a few thousand parameters."""
    import torch
    from demucs.htdemucs import HTDemucs

    torch.manual_seed(0)
    return HTDemucs(
        sources=SOURCES, channels=4, depth=2, nfft=1024, t_layers=0, dconv_mode=0, segment=4
    )


def tiny_demucs():
    """The time-domain Demucs, smallest and fastest: for the long-recording memory test."""
    import torch
    from demucs.demucs import Demucs

    torch.manual_seed(0)
    return Demucs(
        sources=SOURCES, channels=2, depth=1, lstm_layers=0, resample=False, dconv_mode=0, segment=4
    )


def write_wav(path: Path, audio: np.ndarray) -> Path:
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(RATE)
        f.writeframes((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes())
    return path


def wav_format(path: Path) -> tuple[int, int, int, int]:
    with wave.open(str(path), "rb") as f:
        return f.getframerate(), f.getnchannels(), f.getsampwidth(), f.getnframes()


def noise(seconds: float, seed: int = 0) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    rng = np.random.default_rng(seed)
    return (0.2 * np.sin(2 * np.pi * 330 * t) + 0.05 * rng.standard_normal(t.size)).astype(
        np.float32
    )


def catalog_entry(source: Path, files: list[Path], revision: str) -> str:
    names = ", ".join(f.name for f in files)
    return (
        "htdemucs:\n"
        f"  source: {source.as_uri()}\n"
        f"  revision: {revision}\n"
        f"  files: [{names}]\n"
        "  format: demucs\n"
    )


@pytest.fixture(scope="module")
def tiny_source(tmp_path_factory) -> tuple[Path, list[Path]]:
    """A Demucs repository folder: tiny.yaml + <sig>-<sha>.th, as a model source."""
    folder = tmp_path_factory.mktemp("demucs-source")
    return folder, save_repository(folder, "tiny", [tiny_htdemucs()])


@pytest.fixture(scope="module")
def tiny_store(warm_store, tiny_source, tmp_path_factory):
    """The session's volume with the tiny Demucs warmed as ``htdemucs`` from a file:// URL
    (through an extra catalog, as an operator would add a model); yields its snapshot."""
    folder, files = tiny_source
    catalog = tmp_path_factory.mktemp("catalog") / "models.yaml"
    catalog.write_text(catalog_entry(folder, files, "tiny-1"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VOXFLOW_CATALOG", str(catalog))
        result = warm_store.warm(load_catalog()["htdemucs"])
        yield warm_store, result.path


@pytest.fixture(scope="module")
def separator(tiny_store) -> DemucsSeparator:
    _, snapshot = tiny_store
    spec = StageSpec("separate", "demucs", "htdemucs", options={"window_s": 10, "crossfade_s": 1})
    return load_backend(spec, snapshot)


# -- windows: bounded pieces with exact overlaps ---------------------------------------------------


def test_windows_cover_the_input_and_overlap_by_the_crossfade():
    ranges = list(windows(100, 30, 5))

    assert ranges[0][0] == 0 and ranges[-1][1] == 100
    assert all(end - start <= 30 for start, end in ranges)
    assert all(b[0] == a[1] - 5 for a, b in zip(ranges, ranges[1:], strict=False))
    assert ranges[-1][1] - ranges[-1][0] > 5


def test_a_short_input_is_one_window_and_an_empty_one_none():
    assert list(windows(10, 30, 5)) == [(0, 10)]
    assert list(windows(0, 30, 5)) == []


def test_crossfading_windows_of_an_identity_gives_back_the_input(tmp_path):
    audio = noise(7.3)
    source = write_wav(tmp_path / "in.wav", audio)

    seconds, count = stream_windows(source, tmp_path / "out.wav", lambda w: w, 2.0, 0.5)

    assert count == 5 and seconds == pytest.approx(7.3)
    assert np.abs(load_wav(tmp_path / "out.wav") - load_wav(source)).max() <= 2 / 32768


def test_track_statistics_are_read_block_by_block(tmp_path):
    audio = noise(25.0) + 0.01
    source = write_wav(tmp_path / "in.wav", audio)
    exact = load_wav(source).astype(np.float64)

    mean, std, count = wav_stats(source, block_s=4.0)

    assert count == len(audio)
    assert mean == pytest.approx(exact.mean(), abs=1e-7)
    assert std == pytest.approx(exact.std(), rel=1e-6)


def test_options_are_checked_where_the_profile_sets_them():
    with pytest.raises(ProfileError, match="window_s"):
        DemucsOptions(window_s=3, crossfade_s=2)
    with pytest.raises(ProfileError, match="overlap"):
        DemucsOptions(overlap=1.0)
    with pytest.raises(ProfileError, match="shifts"):
        DemucsOptions(shifts=-1)


# -- loading from the volume -----------------------------------------------------------------------


def test_demucs_is_registered_for_the_separate_stage():
    assert backend_class("separate", "demucs") is DemucsSeparator


def test_the_tiny_model_is_warmed_as_a_demucs_repository(tiny_store, tiny_source):
    store, snapshot = tiny_store
    _, files = tiny_source

    assert sorted(p.name for p in snapshot.iterdir()) == sorted(f.name for f in files)
    name, bag = load_repository(snapshot)
    assert name == "tiny" and list(bag.sources) == SOURCES and bag.samplerate == 44_100


def test_the_vocals_stem_is_a_16k_mono_wav_as_long_as_the_input(separator, tmp_path):
    audio = noise(12.5)
    source = write_wav(tmp_path / "audio.wav", audio)

    result = separator.separate_file(source, tmp_path / "vocals.wav")

    rate, channels, width, frames = wav_format(tmp_path / "vocals.wav")
    assert (rate, channels, width) == (RATE, 1, 2)
    assert abs(frames - len(audio)) <= RATE // 100  # within 10 ms
    assert result.stem == "vocals" and result.duration == pytest.approx(12.5, abs=0.01)
    assert result.windows == 2  # 10 s windows with a 1 s crossfade
    vocals = load_wav(tmp_path / "vocals.wav")
    assert not np.allclose(vocals, load_wav(source), atol=1e-3)  # a random net, not a copy
    assert np.isfinite(vocals).all()


def test_an_unknown_stem_is_refused_listing_the_models_sources(tiny_store):
    _, snapshot = tiny_store

    with pytest.raises(ProfileError, match="no stem 'voice'") as e:
        DemucsSeparator(snapshot, DemucsOptions(stem="voice"))
    assert e.value.allowed == SOURCES


def test_a_checkpoint_that_needs_arbitrary_code_is_refused(tmp_path):
    import subprocess as sp

    import torch

    folder = tmp_path / "repo"
    save_repository(folder, "tiny", [tiny_htdemucs()])
    checkpoint = next(folder.glob("*.th"))
    package = torch.load(checkpoint, weights_only=False)
    package["klass"] = sp.Popen  # what a malicious checkpoint would smuggle in
    torch.save(package, checkpoint.with_name(checkpoint.stem.split("-")[0] + ".th"))
    checkpoint.unlink()

    with pytest.raises(BadModel, match="Popen"):
        load_repository(folder)


def test_a_checkpoint_with_the_wrong_checksum_is_refused(tmp_path):
    folder = tmp_path / "repo"
    save_repository(folder, "tiny", [tiny_htdemucs()])
    checkpoint = next(folder.glob("*.th"))
    checkpoint.rename(checkpoint.with_name(checkpoint.stem.split("-")[0] + "-00000000.th"))

    with pytest.raises(BadModel, match="checksum"):
        load_repository(folder)


def test_a_lone_checkpoint_is_a_bag_of_one_named_by_its_signature(tmp_path):
    folder = tmp_path / "repo"
    _, checkpoint = save_repository(folder, "tiny", [tiny_htdemucs()])
    (folder / "tiny.yaml").unlink()

    name, bag = load_repository(folder)

    assert name == checkpoint.stem.split("-")[0] and len(bag.models) == 1


def test_checkpoints_without_their_bag_descriptor_are_refused(tmp_path):
    folder = tmp_path / "repo"
    save_repository(folder, "pair", [tiny_htdemucs(), tiny_demucs()])
    (folder / "pair.yaml").unlink()

    with pytest.raises(BadModel, match="bag-of-models .yaml"):
        load_repository(folder)


def test_a_bag_of_two_models_averages_them(tmp_path):
    folder = tmp_path / "repo"
    save_repository(folder, "pair", [tiny_htdemucs(), tiny_demucs()])

    name, bag = load_repository(folder)

    assert name == "pair" and len(bag.models) == 2


def test_the_load_check_separates_offline(tiny_store):
    _, snapshot = tiny_store

    spec = StageSpec("separate", "demucs", "htdemucs", options={})
    check = run_load_check(
        spec, ReadyStage("separate", "demucs", "htdemucs", "test", str(snapshot))
    )

    assert check.ok, check.detail
    assert "vocals stem" in check.detail


# -- profiles and preflight ------------------------------------------------------------------------


def test_separation_is_on_for_cuda_and_mlx_and_off_by_default_on_cpu():
    assert load_profile("cuda").stages["separate"].enabled
    assert load_profile("mlx").stages["separate"].enabled
    cpu = load_profile("cpu")
    assert not cpu.stages["separate"].enabled
    assert "htdemucs" in cpu.with_stages("separate").models()


def test_the_cpu_profile_runs_no_separation_unless_asked(warm_store):
    assert "separate" not in preflight(load_profile("cpu"), warm_store)


def test_a_cold_volume_names_the_warm_command_with_separation(warm_store, tmp_path):
    profile = load_profile("cpu").with_stages("separate")
    store = Volume(root=str(tmp_path / "cold"))

    with pytest.raises(ModelNotWarmed, match="--with separate") as e:
        preflight(profile, store)
    assert "htdemucs" in str(e.value)


def test_the_cli_flag_reaches_the_flow_parameter():
    from flows.cli.main import _parser

    def parsed(*flags: str) -> str:
        return _parser().parse_args(["transcribe", "talk.mp4", *flags]).separate

    assert (parsed(), parsed("--separate"), parsed("--no-separate")) == ("profile", "on", "off")


# -- bounded memory on a long recording ------------------------------------------------------------

_CHILD = textwrap.dedent(
    """
    import json, resource, sys
    from pathlib import Path
    from tasks.separate.demucs import DemucsOptions, DemucsSeparator

    repo, short, long, out = map(Path, sys.argv[1:5])
    sep = DemucsSeparator(repo, DemucsOptions(window_s=10.0, crossfade_s=1.0))
    sep.separate_file(short, out)  # one full window: the steady state's allocations
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = sep.separate_file(long, out)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"before_kb": before, "after_kb": after, "windows": result.windows}))
    """
)


@pytest.mark.slow
def test_a_long_recording_is_separated_in_bounded_memory(tmp_path):
    minutes = 4
    repo = tmp_path / "repo"
    save_repository(repo, "tiny", [tiny_demucs()])
    short = write_wav(tmp_path / "short.wav", noise(10.0))
    long = tmp_path / "long.wav"
    with wave.open(str(long), "wb") as f:  # written a minute at a time
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(RATE)
        for minute in range(minutes):
            f.writeframes((noise(60.0, seed=minute) * 0.2 * 32767).astype("<i2").tobytes())

    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, str(repo), str(short), str(long), str(tmp_path / "o.wav")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    usage = json.loads(proc.stdout.strip().splitlines()[-1])

    full_stereo_44k = minutes * 60 * 44_100 * 2 * 4  # the whole mix as demucs would load it
    growth = (usage["after_kb"] - usage["before_kb"]) * 1024
    assert usage["windows"] == 27
    assert growth < full_stereo_44k / 4, f"peak RSS grew {growth / 1e6:.1f} MB"
    assert wav_format(tmp_path / "o.wav")[3] == minutes * 60 * RATE


# -- the transcribe flow ---------------------------------------------------------------------------


@pytest.mark.usefixtures("prefect_api")
def test_transcribe_with_separation_feeds_the_vocals_to_vad_and_asr(tiny_store, tmp_path):
    from flows.transcribe import transcribe

    store, _ = tiny_store
    record = transcribe(
        str(SAMPLE), profile="cpu", store=store.root, output_dir=str(tmp_path), separate=True
    )

    job = Path(record["outputs"]["json"]).parent
    stage = {
        s: json.loads((job / "records" / "stages" / f"{s}.json").read_text())
        for s in record["stages"]
    }
    # The sample has a video stream: its shots stage runs after extract.
    assert list(record["stages"]) == ["extract", "shots", "separate", "vad", "asr", "guard"]
    assert stage["separate"]["upstream"] == stage["extract"]["key"]
    assert stage["vad"]["upstream"] == stage["separate"]["key"]  # VAD read the vocals
    assert stage["separate"]["result"]["path"] == str(job / "records" / "vocals.wav")
    rate, channels, _, frames = wav_format(job / "records" / "vocals.wav")
    assert (rate, channels) == (RATE, 1)
    assert abs(frames - wav_format(job / "records" / "audio.wav")[3]) <= RATE // 100
    on_disk = json.loads((job / "records" / "run.json").read_text())
    assert on_disk["models"]["separate"] == {
        "backend": "demucs",
        "model": "htdemucs",
        "revision": "tiny-1",
    }
    assert "separate" in on_disk["stages"]
