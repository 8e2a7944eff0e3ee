"""A damaged model on the user's path: a deep verify names it, inference refuses it, a model
that does not load or decodes garbage is named with what to run, and a warm repairs it.

The damage is what a bad disk or a partial copy leaves: bytes of the warmed ``model.bin``
overwritten in place, its size and mtime kept, so nothing a stat sees has changed.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path

import jiwer
import pytest
from test_model_store import fake_model, spec_for

from blocks.volume import Volume
from conftest import SPEECH_TEXT, normalise, run_cli
from profiles import load_catalog, load_profile
from tasks.asr import AsrBackend
from tasks.asr.garbage import garbage_reason
from tasks.registry import POOL, load_backend
from tasks.transcript import Segment, Transcript
from tasks.warm.loadcheck import check_asr_output
from tasks.warm.preflight import ReadyStage, preflight
from voxflow.errors import ModelDamaged, ModelLoadFailed, ModelNotWarmed

PROFILE = load_profile("cpu")
ASR = PROFILE.stages["asr"]  # whatever model the cpu profile ships with
MIB = 1 << 20


@pytest.fixture(scope="module")
def volume(tmp_path_factory: pytest.TempPathFactory) -> Volume:
    """The cpu profile's models, warmed once for this module (the tests repair what they
    damage; :func:`store` checks that before each)."""
    store = Volume(root=str(tmp_path_factory.mktemp("damaged") / "models"))
    catalog = load_catalog()
    for name in PROFILE.models():
        store.warm(catalog[name])
    return store


@pytest.fixture
def store(volume: Volume) -> Iterator[Volume]:
    """The module's volume with a healthy ASR model (repaired if an earlier test failed)."""
    spec = load_catalog()[ASR.model]
    if not volume.verify(spec, deep=True).ok:
        volume.warm(spec)
    assert volume.verify(spec, deep=True).ok
    POOL.release()
    yield volume
    POOL.release()


def model_bin(store: Volume) -> Path:
    """The ASR model's ``model.bin`` in the volume (a snapshot link to its blob)."""
    return store.locate(load_catalog()[ASR.model]) / "model.bin"


def overwrite(file: Path, offset: int | None, size: int) -> None:
    """Overwrite ``size`` bytes of ``file``'s blob with noise at ``offset`` (None: the
    middle), keeping its size and mtime."""
    blob = file.resolve()  # the snapshot's file is a link: the bytes live in the blob
    st = blob.stat()
    at = (st.st_size - size) // 2 if offset is None else offset
    os.chmod(blob, st.st_mode | 0o200)
    with blob.open("r+b") as f:
        f.seek(at)
        f.write(random.Random(17).randbytes(size))
    os.chmod(blob, st.st_mode)
    os.utime(blob, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert blob.stat().st_size == st.st_size


def cli(store: Volume) -> list[str]:
    """The flags that point a command at the cpu profile and this volume."""
    return ["--profile", "cpu", "--store", store.root]


def transcribe(store: Volume, media: Path, out: Path) -> list[str]:
    return ["transcribe", str(media), *cli(store), "--output", str(out)]


def error_lines(stderr: str) -> list[str]:
    """What the command said was wrong: its ``voxflow: error:`` lines."""
    return [line for line in stderr.splitlines() if line.startswith("voxflow: error:")]


# -- garbage -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "",
        "you",
        "Thank you.",
        "Thank you for watching!",
        "謝謝觀看",
        # what a random-weight test model says: made up, but no loop
        "Eh More More consecutivehesion------------- hed KhamreportingThirty Kru",
    ],
)
def test_what_whisper_hears_in_a_second_of_tone_is_not_garbage(text):
    assert garbage_reason(text, 1.0) is None


@pytest.mark.parametrize(
    ("text", "why"),
    [
        (")" * 224, "zlib compression ratio 18.7 above 2.4"),
        ("which it I it I it it I " * 20, "160 words for 1.0 s of audio"),
        ("The quick brown fox jumps over the lazy dog. " * 2, "18 words for 1.0 s"),
    ],
)
def test_a_long_run_or_loop_for_one_second_is_garbage(text, why):
    assert why in garbage_reason(text, 1.0)


def test_a_decoder_whose_arithmetic_broke_is_garbage_whatever_it_says():
    assert garbage_reason("you", 1.0, [-1.5]) is None  # unsure, as Whisper is of a tone
    assert garbage_reason("you", 1.0, [float("nan")]) == "log-probability nan"
    assert garbage_reason(")", 1.0, [None, float("-inf")]) == "log-probability -inf"


class _Parrot(AsrBackend):
    """A recogniser that always says the same thing, as a damaged one does."""

    name = "parrot"
    Options = dict

    def transcribe(self, audio, spans, language):
        del audio, language
        said = Segment(start=0.0, end=spans[-1].end, text=self.options["says"])
        return Transcript(language="en", duration=1.0, segments=(said,))


def test_the_load_check_refuses_a_recogniser_that_decodes_garbage_naming_it(tmp_path):
    ready = ReadyStage("asr", "parrot", ASR.model, "1", str(tmp_path / "model"))
    check_asr_output(ASR, ready, _Parrot(tmp_path, {"says": "Thank you."}))  # healthy

    with pytest.raises(ModelLoadFailed) as caught:
        check_asr_output(ASR, ready, _Parrot(tmp_path, {"says": ")" * 224}))
    message = str(caught.value)
    assert message.startswith(f"model {ASR.model!r} in {tmp_path / 'model'} decodes 1 s")
    assert "garbage (')))))" in message and "compression ratio" in message
    assert "`voxflow verify --deep` to find them, then `voxflow warm` to fetch" in message
    assert "\n" not in message


# -- the volume's record of a failed verify -------------------------------------------------


def test_a_model_whose_deep_verify_failed_is_refused_until_a_warm_repairs_it(tmp_path):
    store = Volume(root=str(tmp_path / "models"))
    spec = spec_for(f"file://{fake_model(tmp_path / 'src')}")
    overwrite(store.warm(spec).path / "model.bin", None, MIB)
    assert store.locate(spec)  # nothing a stat can see

    verified = store.verify(spec, deep=True)
    assert not verified.ok
    with pytest.raises(ModelDamaged) as caught:
        store.locate(spec, warm_command="voxflow warm --profile cpu --store models")
    e = caught.value
    assert isinstance(e, ModelNotWarmed) and isinstance(e, FileNotFoundError)
    assert (e.model, e.bad_files, e.exit_code) == ("tiny-test", ("model.bin",), 2)
    assert e.path == str(store.paths(spec).snapshot)
    assert e.verified_at == store.last_verified(spec)["verified_at"]
    assert str(e) == (
        f"model 'tiny-test' is damaged: the deep verify of {e.verified_at} found model.bin not "
        f"matching its manifest (in {e.path}); inference refuses it until a warm fetches it "
        "again: run `voxflow warm --profile cpu --store models`"
    )

    # A plain verify cannot lift it: it hashes again what the last one found bad.
    assert not store.verify(spec).ok
    with pytest.raises(ModelDamaged):
        store.locate(spec)

    assert store.warm(spec).status == "warmed"
    assert store.last_verified(spec) is None
    assert store.locate(spec) == store.paths(spec).snapshot
    assert store.verify(spec).ok


def test_preflight_names_the_damaged_model_and_the_warm_of_the_profile(store):
    spec = load_catalog()[ASR.model]
    overwrite(model_bin(store), None, MIB)
    assert not store.verify(spec, deep=True).ok

    with pytest.raises(ModelDamaged) as caught:
        preflight(PROFILE, store)
    assert caught.value.model == ASR.model
    assert str(caught.value).endswith(f"run `voxflow warm --profile cpu --store {store.root}`")


def test_a_run_that_may_warm_repairs_the_damaged_model_and_goes_on(store, prefect_api):
    from flows import runtime

    spec = load_catalog()[ASR.model]
    overwrite(model_bin(store), None, MIB)
    assert not store.verify(spec, deep=True).ok

    ready = runtime.ready_or_warm(PROFILE, store, "warm")  # on_cold_cache=warm

    assert ready["asr"].model == ASR.model
    # the failed verify's record is gone: the repair's load check left an ok one in its place
    assert store.last_verified(spec)["ok"] is True and store.verify(spec, deep=True).ok


def test_under_a_deployment_the_refusal_names_the_warm_deployment(store, prefect_api, monkeypatch):
    from flows import runtime

    monkeypatch.setattr(runtime, "under_deployment", lambda: True)
    overwrite(model_bin(store), None, MIB)
    assert not store.verify(load_catalog()[ASR.model], deep=True).ok

    with pytest.raises(ModelNotWarmed) as caught:
        runtime.ready_or_warm(PROFILE, store, "fail")
    message = str(caught.value)
    assert f"{ASR.model!r}" in message and "found model.bin damaged" in message
    assert "prefect deployment run warm-cache/cpu" in message


# -- loading ---------------------------------------------------------------------------------


def test_a_model_with_a_bad_header_fails_to_load_naming_it(store):
    overwrite(model_bin(store), 0, 64)
    path = model_bin(store).parent

    with pytest.raises(ModelLoadFailed) as caught:
        load_backend(ASR, path)
    e = caught.value
    assert e.model == ASR.model and e.path == str(path)
    assert e.__cause__ is not None
    assert f"failed to load ({type(e.__cause__).__name__}: " in str(e)
    assert f"`voxflow verify --deep --store {store.root}`" in str(e)
    assert f"`voxflow warm --store {store.root}`" in str(e)
    assert "\n" not in str(e)


def test_a_repaired_model_is_loaded_again_not_taken_from_the_pool(store):
    spec = load_catalog()[ASR.model]
    path = model_bin(store).parent
    first = load_backend(ASR, path)
    assert load_backend(ASR, path) is first  # a batch loads each model once

    store.warm(spec, force=True)  # what a repair does: new files renamed into place
    assert load_backend(ASR, path) is not first


# -- the user's path, through `voxflow` ------------------------------------------------------


@pytest.mark.e2e
def test_deep_verify_names_the_model_transcribe_refuses_it_and_a_warm_repairs_it(
    store, env, speech_wav, tmp_path
):
    overwrite(model_bin(store), None, MIB)

    done = run_cli(["verify", "--deep", *cli(store)], env)
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"FAILED  {ASR.model}: model.bin: sha256 is" in done.stdout

    done = run_cli(transcribe(store, speech_wav, tmp_path / "out"), env)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    [line] = error_lines(done.stderr)
    assert line.startswith(f"voxflow: error: model {ASR.model!r} is damaged: the deep verify of ")
    assert "found model.bin not matching its manifest" in line
    assert line.endswith(f"run `voxflow warm --profile cpu --store {store.root}`")

    done = run_cli(["verify", *cli(store)], env)  # a plain verify does not wave it through
    assert done.returncode == 1, done.stdout + done.stderr

    done = run_cli(["warm", *cli(store)], env)
    assert done.returncode == 0, done.stdout + done.stderr

    done = run_cli(transcribe(store, speech_wav, tmp_path / "out"), env)
    assert done.returncode == 0, done.stdout + done.stderr
    text = next((tmp_path / "out").glob("speech-*/speech.txt")).read_text()
    assert jiwer.wer(normalise(SPEECH_TEXT), normalise(text)) < 0.3, text


@pytest.mark.e2e
def test_a_bad_header_is_one_line_naming_the_model_in_transcribe_and_in_the_warm(
    store, env, speech_wav, tmp_path
):
    overwrite(model_bin(store), 0, 64)

    done = run_cli(transcribe(store, speech_wav, tmp_path / "out"), env)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    [line] = error_lines(done.stderr)
    assert line.startswith(f"voxflow: error: model {ASR.model!r} in {model_bin(store).parent}")
    assert "failed to load (" in line
    assert f"`voxflow verify --deep --store {store.root}`" in line

    # The warm finds the files the right size, and its load check names the model.
    done = run_cli(["warm", *cli(store)], env)
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"asr/faster-whisper ({ASR.model}) does not load offline" in done.stderr
    assert "failed to load (" in done.stderr and "voxflow verify --deep" in done.stderr


@pytest.mark.e2e
def test_the_warm_load_check_fails_on_a_model_that_decodes_garbage(store, env):
    # A quarter in: weights, not the names the loader reads (that is a load error); Whisper
    # then hears ")))))..." in anything.
    overwrite(model_bin(store), model_bin(store).stat().st_size // 4, MIB)

    done = run_cli(["warm", *cli(store)], env)
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"asr/faster-whisper ({ASR.model}) does not load offline" in done.stderr
    assert "decodes 1 s of test audio into garbage" in done.stderr
    assert f"`voxflow verify --deep --store {store.root}`" in done.stderr
