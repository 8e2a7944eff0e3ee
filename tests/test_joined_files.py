"""A file made of parts: the catalog joins several files (one model.bin split across two
packages) into one, pinned by its sha256, which the warm and `voxflow verify` check."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from blocks.volume import Volume
from profiles import load_catalog
from profiles.catalog import load_catalog as load_file
from voxflow.errors import ProfileError, SourceError


def parted_catalog(tmp_path: Path, digest: str | None = None) -> tuple[Path, bytes]:
    """A catalog entry whose weights.bin is two parts in two folders, as two packages ship it."""
    whole = bytes(range(256)) * 4096 + b"tail"
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    (tmp_path / "one" / "weights.bin.part1").write_bytes(whole[:400_000])
    (tmp_path / "two" / "weights.bin.part2").write_bytes(whole[400_000:])
    (tmp_path / "one" / "config.json").write_text("{}")
    pin = digest or hashlib.sha256(whole).hexdigest()
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(
        "parted:\n"
        f"  source: file://{tmp_path / 'one'}\n"
        '  revision: "1"\n'
        "  files: [weights.bin, config.json]\n"
        "  parts:\n"
        "    weights.bin:\n"
        "      from:\n"
        f"        - file://{tmp_path / 'one' / 'weights.bin.part1'}\n"
        f"        - file://{tmp_path / 'two' / 'weights.bin.part2'}\n"
        f'      sha256: "{pin}"\n'
        "  format: test\n"
    )
    return catalog, whole


def test_the_warm_joins_the_parts_into_one_file_and_checks_the_pin(tmp_path):
    catalog, whole = parted_catalog(tmp_path)
    spec = load_file(catalog)["parted"]
    store = Volume(root=str(tmp_path / "models"))

    result = store.warm(spec)

    assert result.status == "warmed" and result.bytes == len(whole) + 2
    assert (store.locate(spec) / "weights.bin").read_bytes() == whole
    assert store.verify(spec, deep=True).ok


def test_parts_that_do_not_join_into_the_pinned_file_are_refused_and_nothing_is_kept(tmp_path):
    catalog, _ = parted_catalog(tmp_path, digest="0" * 64)
    spec = load_file(catalog)["parted"]
    store = Volume(root=str(tmp_path / "models"))

    with pytest.raises(SourceError, match="the catalog pins 0000") as e:
        store.warm(spec)

    assert "weights.bin" in str(e.value) and "parted" in str(e.value)
    assert store.status(spec).state == "cold", "no manifest: the model is not warmed"


def test_verify_refuses_a_manifest_whose_file_is_not_the_pinned_one(tmp_path):
    catalog, _ = parted_catalog(tmp_path)
    spec = load_file(catalog)["parted"]
    store = Volume(root=str(tmp_path / "models"))
    store.warm(spec)
    repinned = catalog.read_text().replace(spec.pinned_sha256("weights.bin"), "1" * 64)
    catalog.write_text(repinned)

    result = store.verify(load_file(catalog)["parted"])

    assert not result.ok
    assert any("weights.bin" in p and "pin" in p for p in result.problems)


def test_the_shipped_multilingual_base_is_joined_from_its_two_packages(tmp_path):
    spec = load_catalog()["faster-whisper-base"]
    store = Volume(root=str(tmp_path / "models"))

    store.warm(spec)

    path = store.locate(spec)
    from faster_whisper import WhisperModel

    model = WhisperModel(str(path), device="cpu", compute_type="int8", local_files_only=True)
    assert model.model.is_multilingual
    assert store.verify(spec, deep=True).ok


@pytest.mark.parametrize(
    ("parts", "message"),
    [
        ("    other.bin: {from: [file:///a], sha256: x}\n", "not one of the entry's files"),
        ("    weights.bin: {from: [], sha256: x}\n", "non-empty list of part URLs"),
        ("    weights.bin: {from: [hf://org/name/file], sha256: x}\n", "URL of a part file"),
        ("    weights.bin: {from: [file:///a], sha256: abc}\n", "64 hex digits"),
        ("    weights.bin: {from: [file:///a], sha265: abc}\n", "sha265"),
    ],
)
def test_a_bad_parts_entry_is_refused_naming_its_key(tmp_path, parts, message):
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(
        "parted:\n  source: file:///x\n  revision: '1'\n  files: [weights.bin]\n"
        "  format: test\n  parts:\n" + parts
    )
    with pytest.raises(ProfileError, match=message) as e:
        load_file(catalog)
    assert "parted.parts" in str(e.value)
