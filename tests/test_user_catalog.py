"""Operators add models through extra catalogs ($VOXFLOW_CATALOG) without editing the package."""

from __future__ import annotations

from profiles import load_catalog, load_profile


def test_an_extra_catalog_adds_and_overrides_models(tmp_path, monkeypatch):
    extra = tmp_path / "site-models.yaml"
    extra.write_text(
        "my-whisper:\n"
        "  source: file:///mnt/models/my-whisper\n"
        "  revision: '2026-11-01'\n"
        "  files: [model.bin, config.json, tokenizer.json, vocabulary.txt]\n"
        "  format: ctranslate2\n"
        "silero-vad-v6:\n"
        "  source: file:///mnt/mirror/silero\n"
        "  revision: mirror-1\n"
        "  files: [silero_vad_v6.onnx]\n"
        "  format: onnx\n"
    )
    monkeypatch.setenv("VOXFLOW_CATALOG", str(extra))

    catalog = load_catalog()
    assert catalog["my-whisper"].repo_id == "voxflow/my-whisper"
    assert catalog["silero-vad-v6"].source == "file:///mnt/mirror/silero"
    assert "faster-whisper-tiny.en" in catalog  # the shipped entries stay

    profile = tmp_path / "mine.yaml"
    profile.write_text(
        "hardware: cpu\nstages:\n"
        "  vad: {backend: silero, model: silero-vad-v6}\n"
        "  asr: {backend: faster-whisper, model: my-whisper}\n"
    )
    assert load_profile(str(profile)).models() == ["silero-vad-v6", "my-whisper"]
