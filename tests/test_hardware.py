"""Profiles for hardware this machine may lack: refused clearly here, exercised where present."""

from __future__ import annotations

import os
from pathlib import Path

import jiwer
import pytest

from blocks.volume import Volume
from conftest import SPEECH_TEXT, bare_faster_whisper, no_network_used, normalise, run_cli
from profiles import detect_hardware, load_catalog, load_profile, resolve_profile
from tasks.warm.preflight import preflight
from voxflow.errors import BadInput


def test_auto_picks_the_best_profile_this_machine_can_run():
    chosen = load_profile(resolve_profile("auto"))
    assert chosen.hardware in detect_hardware()
    if "cuda" not in detect_hardware() and "mlx" not in detect_hardware():
        assert chosen.name in {"cpu", "openvino"}


@pytest.mark.parametrize("name, hardware", [("cuda", "cuda"), ("mlx", "mlx")])
def test_a_profile_for_absent_hardware_is_refused_at_preflight(name, hardware, tmp_path):
    if hardware in detect_hardware():
        pytest.skip(f"{hardware} is present here")
    with pytest.raises(BadInput) as err:
        preflight(load_profile(name), Volume(root=str(tmp_path)))
    assert f"profile {name!r} cannot run on this machine" in str(err.value)
    assert "--profile" in str(err.value)


MIRROR_VARIABLE = "VOXFLOW_TEST_MIRROR"
"""A folder holding ``<repo_id>/<file>`` for a profile's production models (a mirror, as
``voxflow warm --mirror`` reads one): no hub is reachable from the tests."""


def mirror_for(profile) -> Path:
    """The mirror folder holding every file of the profile's models, or skip saying which."""
    catalog = load_catalog()
    needed = [
        (catalog[name].repo_id, file) for name in profile.models() for file in catalog[name].files
    ]
    repos = ", ".join(dict.fromkeys(repo for repo, _ in needed))
    folder = os.environ.get(MIRROR_VARIABLE)
    if not folder:
        pytest.skip(
            f"set {MIRROR_VARIABLE} to a folder holding <repo_id>/<file> of the {profile.name} "
            f"profile's models ({repos}); no hub is reachable from the tests"
        )
    missing = [
        f"{repo}/{file}" for repo, file in needed if not (Path(folder) / repo / file).is_file()
    ]
    if missing:
        pytest.skip(f"{MIRROR_VARIABLE}={folder} lacks {', '.join(missing)}")
    return Path(folder)


@pytest.mark.parametrize(
    "name",
    [pytest.param("cuda", marks=pytest.mark.gpu), pytest.param("mlx", marks=pytest.mark.mlx)],
)
def test_a_gpu_profile_warms_from_a_mirror_and_transcribes_speech(name, env, speech_wav, tmp_path):
    """The whole path on the hardware: warm the production models from a local mirror (offline),
    transcribe generated speech, and recognise it at least as well as bare tiny.en on CPU."""
    mirror = mirror_for(load_profile(name))
    store, out = tmp_path / "models", tmp_path / "out"
    warm = run_cli(
        ["warm", "--profile", name, "--store", str(store), "--mirror", f"file://{mirror}"], env
    )
    assert warm.returncode == 0, warm.stderr
    args = ["transcribe", str(speech_wav), "--profile", name, "--store", str(store)]
    done = run_cli([*args, "--output", str(out), "--language", "en", "--format", "txt"], env)
    assert done.returncode == 0, done.stderr
    assert no_network_used(tmp_path)
    ours = next(out.glob("speech-*/speech.txt")).read_text()

    bare = bare_faster_whisper(speech_wav, tmp_path)
    reference = normalise(SPEECH_TEXT)
    ours_wer, bare_wer = (
        jiwer.wer(reference, normalise(ours)),
        jiwer.wer(reference, normalise(bare)),
    )
    assert ours_wer <= bare_wer + 0.05, (ours, bare)
