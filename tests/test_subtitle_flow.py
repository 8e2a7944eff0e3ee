"""The subtitle flow and `voxflow subtitle`: tiny.en transcribes, tiny translation models
(random weights, real formats, warmed from file:// sources) translate."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from translation_models import build_all, catalog_yaml

from blocks.volume import Volume
from conftest import ROOT, SAMPLE, cli_env, run_cli
from flows.subtitle import subtitle
from flows.warm_cache import warm_cache
from profiles import load_catalog, load_profile
from voxflow.errors import BadInput, ModelNotWarmed

pytestmark = pytest.mark.usefixtures("prefect_api")

NLLB_CT2 = "tiny-nllb-ct2-int8"
MARIAN = "tiny-opus-mt-en-de"


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory):
    """$VOXFLOW_CATALOG names the tiny translation models for this module's tests."""
    models = build_all(tmp_path_factory.getbasetemp() / "translation-models")
    path = tmp_path_factory.mktemp("catalog") / "translation-models.yaml"
    path.write_text(catalog_yaml(models))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VOXFLOW_CATALOG", str(path))
        yield path


def cpu_profile_with(folder: Path, name: str, backend: str, model: str, **options) -> Path:
    """The cpu profile, its translate stage (still off, as on cpu) using a tiny model."""
    data = yaml.safe_load((ROOT / "profiles" / "cpu.yaml").read_text())
    data["stages"]["translate"] = {
        "enabled": False,
        "backend": backend,
        "model": model,
        "options": {"batch_size": 4, "beam_size": 2, "max_length": 24, **options},
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def profiles_dir(catalog, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("profiles")
    return {
        "nllb": cpu_profile_with(folder, "cpu-nllb", "ctranslate2", NLLB_CT2, compute_type="int8"),
        "marian": cpu_profile_with(folder, "cpu-marian", "transformers", MARIAN, dtype="float32"),
        "m2m100": cpu_profile_with(folder, "cpu-m2m", "transformers", "tiny-m2m100"),
    }


@pytest.fixture(scope="module")
def store(catalog, warm_store: Volume) -> Volume:
    """The session's cpu volume plus two tiny translation models (tiny-m2m100 stays cold)."""
    specs = load_catalog()
    for name in (NLLB_CT2, MARIAN):
        warm_store.warm(specs[name])
    return warm_store


@pytest.fixture(scope="module")
def subtitle_run(store, profiles_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("subtitle-out")
    record = subtitle(
        str(SAMPLE),
        ["fr", "deu_Latn"],
        profile=str(profiles_dir["nllb"]),
        store=store.root,
        output_dir=str(out),
    )
    return out, record


def test_warm_leaves_a_disabled_translate_stage_alone_unless_asked(profiles_dir, tmp_path):
    assert NLLB_CT2 not in load_profile(str(profiles_dir["nllb"])).models()

    rows = warm_cache(
        profile=str(profiles_dir["nllb"]), store=str(tmp_path / "models"), with_stages=["translate"]
    )

    row = next(r for r in rows if r["model"] == NLLB_CT2)
    assert row["status"] == "warmed"
    assert row["load_check"].startswith("ok"), row["load_check"]


def test_subtitle_writes_each_language_with_the_source_timing(subtitle_run):
    out, record = subtitle_run
    job = Path(record["job"])
    source = json.loads((job / "sample.json").read_text())

    assert set(record["translations"]) == {"fr", "de"}
    for lang, paths in record["translations"].items():
        assert {fmt: Path(p).name for fmt, p in paths.items()} == {
            fmt: f"sample.{lang}.{fmt}" for fmt in ("srt", "vtt", "json")
        }
        translated = json.loads(Path(paths["json"]).read_text())
        assert translated["language"] == lang
        assert [(s["start"], s["end"]) for s in translated["segments"]] == [
            (s["start"], s["end"]) for s in source["segments"]
        ]
        assert all(s["text"] for s in translated["segments"])
        srt = Path(paths["srt"]).read_text()
        starts = re.findall(r"^(\d\d:\d\d:\d\d,\d\d\d) --> ", srt, flags=re.M)
        assert len(starts) >= len(source["segments"]) > 0
        assert Path(paths["vtt"]).read_text().startswith("WEBVTT")
    # The source-language files are there too, and run.json tells the whole story.
    assert Path(record["outputs"]["srt"]).name == "sample.srt"
    on_disk = json.loads((job / "records" / "run.json").read_text())
    assert on_disk["models"]["translate"]["model"] == NLLB_CT2
    assert {"asr", "translate.fr", "translate.de"} <= set(on_disk["stages"])
    assert on_disk["translations"] == record["translations"]


def test_a_second_run_reuses_the_translation(subtitle_run, store, profiles_dir):
    out, first = subtitle_run
    again = subtitle(
        str(SAMPLE),
        ["fra"],
        profile=str(profiles_dir["nllb"]),
        store=store.root,
        output_dir=str(out),
    )
    assert again["stages"]["translate.fr"]["cached"] is True
    assert again["stages"]["translate.fr"]["key"] == first["stages"]["translate.fr"]["key"]


def test_an_unsupported_pair_is_refused_before_any_audio_is_decoded(store, profiles_dir, tmp_path):
    with pytest.raises(BadInput, match=r"does not translate English \(en\) to Japanese.*en->de"):
        subtitle(
            str(SAMPLE),
            ["ja"],
            source_language="en",
            profile=str(profiles_dir["marian"]),
            store=store.root,
            output_dir=str(tmp_path),
        )
    assert list(tmp_path.iterdir()) == []


def test_a_cold_translation_model_names_the_warm_command(store, profiles_dir, tmp_path):
    with pytest.raises(ModelNotWarmed, match=r"tiny-m2m100.*--with translate"):
        subtitle(
            str(SAMPLE),
            ["fr"],
            profile=str(profiles_dir["m2m100"]),
            store=store.root,
            output_dir=str(tmp_path),
        )


# -- the command ------------------------------------------------------------------------------


@pytest.fixture
def env(prefect_api, catalog, tmp_path):
    return cli_env(prefect_api, tmp_path / "netguard.log", VOXFLOW_CATALOG=str(catalog))


@pytest.mark.e2e
def test_cli_subtitle_translates_and_lists_the_files(env, store, profiles_dir, tmp_path):
    result = run_cli(
        ["subtitle", str(SAMPLE), "--to", "fr", "--from", "en", "--profile",
         str(profiles_dir["nllb"]), "--store", store.root, "--output", str(tmp_path)],
        env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert re.search(r"fr srt\s+\S+sample\.fr\.srt", result.stdout), result.stdout
    assert list(tmp_path.glob("sample-*/sample.fr.vtt"))


@pytest.mark.e2e
def test_cli_subtitle_refuses_bad_languages_with_exit_code_2(env, store, profiles_dir, tmp_path):
    common = ["--store", store.root, "--output", str(tmp_path)]
    not_a_code = run_cli(["subtitle", str(SAMPLE), "--to", "french!", *common], env)
    assert not_a_code.returncode == 2 and "not a language code" in not_a_code.stderr

    unsupported = run_cli(
        ["subtitle", str(SAMPLE), "--to", "ja", "--profile", str(profiles_dir["marian"]), *common],
        env,
    )
    assert unsupported.returncode == 2, unsupported.stderr[-3000:]
    assert "en->de" in unsupported.stderr


@pytest.mark.e2e
def test_cli_subtitle_on_a_cold_volume_says_to_warm_translation(env, tmp_path):
    cold = tmp_path / "cold"
    result = run_cli(
        ["subtitle", str(SAMPLE), "--to", "fr", "--profile", "cpu", "--store", str(cold)], env
    )
    assert result.returncode == 2
    assert "nllb-200-distilled-600M-ct2-int8" in result.stderr
    assert f"voxflow warm --profile cpu --store {cold} --with translate" in result.stderr
