"""The model volume under faults: failing mirrors, hostile names, kill -9, a full disk, a
read-only mount, and models whose files no longer match their manifest."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_model_store import FILES, fake_model, spec_for

from blocks.volume import Volume
from conftest import ROOT
from profiles import load_catalog, load_profile
from tasks.warm.preflight import preflight
from voxflow.errors import ModelNotWarmed, SourceError, StoreFull, StoreReadOnly


@pytest.fixture
def store(tmp_path: Path) -> Volume:
    return Volume(root=str(tmp_path / "models"))


def mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True)


def can_mount(tmp_path: Path) -> bool:
    probe = tmp_path / "probe"
    probe.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(probe)])
    if done.returncode == 0:
        subprocess.run(["umount", str(probe)], check=True)
    return done.returncode == 0


# -- mirrors ---------------------------------------------------------------------------------


def test_failing_mirrors_fall_back_to_the_next_with_a_warning(store, tmp_path, caplog):
    broken = fake_model(tmp_path / "broken" / "voxflow" / "tiny-test")
    (broken / "model.bin").unlink()
    (broken / "model.bin").mkdir()  # listed, but reading it fails
    fake_model(tmp_path / "good" / "voxflow" / "tiny-test")
    mirrors = [
        f"file://{tmp_path / 'empty'}",  # lacks every file: skipped quietly
        "nosuchproto://bucket/models",  # fsspec cannot even open it
        f"file://{tmp_path / 'broken'}",
        f"file://{tmp_path / 'good'}",
    ]
    spec = spec_for(f"file://{tmp_path / 'nowhere'}")  # the source itself is gone
    store = Volume(root=store.root, mirrors=mirrors)

    with caplog.at_level(logging.WARNING, logger="blocks.volume"):
        assert store.warm(spec).status == "warmed"

    assert store.verify(spec, deep=True).ok
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("nosuchproto://" in w for w in warnings)
    assert any("broken" in w and "model.bin" in w and "trying the next" in w for w in warnings)
    assert not any(str(tmp_path / "empty") in w for w in warnings)


def test_when_every_mirror_and_the_source_fail_the_error_names_the_source(store, tmp_path):
    spec = spec_for(f"file://{tmp_path / 'nowhere'}")
    store = Volume(root=store.root, mirrors=[f"file://{tmp_path / 'empty'}"])
    with pytest.raises(SourceError, match=r"of model 'tiny-test' from file://.*nowhere"):
        store.warm(spec)
    assert not store.paths(spec).manifest.exists()


@pytest.fixture
def s3(monkeypatch):
    moto_server = pytest.importorskip(
        "moto.server", reason="moto[server] is not installed (pip install 'moto[server]' s3fs)"
    )
    pytest.importorskip("s3fs", reason="s3fs is not installed")
    import boto3

    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    for key, value in {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    client.create_bucket(Bucket="models")
    try:
        yield client
    finally:
        server.stop()


def test_an_s3_mirror_on_a_local_s3_server_serves_the_model(store, tmp_path, s3):
    import fsspec

    for name, data in FILES.items():
        s3.put_object(Bucket="models", Key=f"mirror/voxflow/tiny-test/{name}", Body=data)
    fsspec.config.conf.pop("s3", None)
    spec = spec_for(f"file://{tmp_path / 'nowhere'}")
    store = Volume(root=store.root, mirrors=["s3://models/mirror"])

    assert store.warm(spec).status == "warmed"
    assert store.verify(spec, deep=True).ok
    assert store.locate(spec).joinpath("model.bin").read_bytes() == FILES["model.bin"]


# -- names that would escape the volume ------------------------------------------------------


def test_a_source_symlink_pointing_outside_its_folder_is_refused(store, tmp_path):
    src = fake_model(tmp_path / "src")
    (src / "config.json").unlink()
    (src / "config.json").symlink_to("/etc/passwd")
    spec = spec_for(f"file://{src}")

    with pytest.raises(SourceError, match=r"'config.json' resolves to /etc/passwd, outside"):
        store.warm(spec)
    assert not store.paths(spec).manifest.exists()


def test_a_source_symlink_inside_its_folder_is_copied_as_content(store, tmp_path):
    src = fake_model(tmp_path / "src")
    (src / "real").mkdir()
    (src / "model.bin").rename(src / "real" / "model.bin")
    (src / "model.bin").symlink_to("real/model.bin")
    spec = spec_for(f"file://{src}")

    path = store.warm(spec).path / "model.bin"
    assert path.read_bytes() == FILES["model.bin"]
    assert not os.readlink(path).startswith(str(src))  # a blob of the volume, not the source


@pytest.mark.parametrize(
    "field,value",
    [("path", "../../../../escape.bin"), ("path", "/etc/passwd"), ("sha256", "../../../x")],
)
def test_a_tampered_manifest_cannot_point_outside_the_volume(store, spec_src, field, value):
    spec = spec_src
    store.warm(spec)
    manifest = json.loads(store.paths(spec).manifest.read_text())
    manifest["files"][0][field] = value
    store.paths(spec).manifest.write_text(json.dumps(manifest))

    with pytest.raises(ModelNotWarmed, match="would escape the model volume|no valid sha256"):
        store.locate(spec)
    assert not store.verify(spec, deep=True).ok
    assert store.warm(spec).status == "warmed"  # refused manifests are rebuilt, not trusted
    assert store.verify(spec, deep=True).ok
    assert not Path("/etc/escape.bin").exists()


def test_a_snapshot_link_redirected_outside_the_volume_is_refused_and_repaired(store, spec_src):
    link = store.warm(spec_src).path / "config.json"
    link.unlink()
    link.symlink_to("/etc/hostname")

    with pytest.raises(ModelNotWarmed, match="config.json points outside the model's blobs"):
        store.locate(spec_src)
    assert store.warm(spec_src).status == "warmed"
    assert store.locate(spec_src).joinpath("config.json").read_bytes() == FILES["config.json"]


@pytest.fixture
def spec_src(tmp_path: Path):
    return spec_for(f"file://{fake_model(tmp_path / 'src')}")


# -- kill -9, full disk, read-only -----------------------------------------------------------

WARM_ONE = """
import sys
from blocks.volume import Volume
from profiles.catalog import ModelSpec
spec = ModelSpec(name="huge", source=sys.argv[2], revision="1", files=("huge.bin",),
                 format="raw", repo_id="voxflow/huge")
Volume(root=sys.argv[1], max_workers=1).warm(spec)
"""


def test_kill_9_mid_copy_leaves_no_manifest_and_the_next_warm_finishes(store, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    with open(src / "huge.bin", "wb") as f:  # 256 MB, sparse: cheap to make, slow enough to copy
        f.truncate(256 << 20)
    child = subprocess.Popen(
        [sys.executable, "-c", WARM_ONE, store.root, f"file://{src}"],
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    blobs = Path(store.root) / "hub" / "models--voxflow--huge" / "blobs"
    deadline = time.monotonic() + 60
    try:
        while not list(blobs.glob(".*.incomplete")):
            assert child.poll() is None, child.stderr.read()
            assert time.monotonic() < deadline, "the warm never started copying"
            time.sleep(0.005)
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait()
    assert child.returncode == -signal.SIGKILL
    spec = spec_for(
        f"file://{src}",
        ("huge.bin",),
        name="huge",
        revision="1",
        format="raw",
        repo_id="voxflow/huge",
    )

    assert not store.paths(spec).manifest.exists()
    assert store.status(spec).state == "cold"
    with pytest.raises(ModelNotWarmed):
        store.locate(spec)

    assert store.warm(spec).status == "warmed"
    assert store.locate(spec).joinpath("huge.bin").stat().st_size == 256 << 20
    assert not list(blobs.glob(".*.incomplete"))  # the killed warm's temp file is cleaned up


def test_a_full_disk_gives_store_full_and_no_manifest(tmp_path):
    if not can_mount(tmp_path):
        pytest.skip("mount is not permitted here; test_full_volume_reports_sizes_... injects it")
    small = tmp_path / "small"
    small.mkdir()
    mount("-t", "tmpfs", "-o", "size=20m", "tmpfs", str(small))
    try:
        src = tmp_path / "src"
        src.mkdir()
        (src / "big.bin").write_bytes(os.urandom(30 << 20))
        (src / "config.json").write_text("{}")
        spec = spec_for(f"file://{src}", files=("config.json", "big.bin"))
        store = Volume(root=str(small / "models"))

        with pytest.raises(StoreFull, match=r"is full: needed 31 MB for tiny-test, \d+ MB free"):
            store.warm(spec)

        assert not store.paths(spec).manifest.exists()
        assert not list((small / "models").rglob("*.incomplete"))
        assert store.status(spec).state == "cold"
    finally:
        subprocess.run(["umount", str(small)], check=True)


def test_a_read_only_mount_serves_inference_and_warm_says_read_only(tmp_path):
    if not can_mount(tmp_path):
        pytest.skip("mount is not permitted here; the chmod-based read-only test covers it")
    faster_whisper = pytest.importorskip("faster_whisper")
    catalog = load_catalog()
    tiny, other = catalog["faster-whisper-tiny.en"], catalog["silero-vad-v6"]
    Volume(root=str(tmp_path / "rw")).warm(tiny)
    ro = tmp_path / "ro"
    ro.mkdir()
    mount("--bind", str(tmp_path / "rw"), str(ro))
    try:
        mount("-o", "remount,bind,ro", str(ro))
        store = Volume(root=str(ro))

        path = store.locate(tiny)
        model = faster_whisper.WhisperModel(str(path), device="cpu", compute_type="int8")
        assert not model.model.is_multilingual
        assert store.verify(tiny, deep=True).ok
        assert store.warm(tiny).status == "present"
        with pytest.raises(StoreReadOnly, match=f"the model volume {ro} is read-only"):
            store.warm(other)
        with pytest.raises(StoreReadOnly):
            store.warm(tiny, force=True)
    finally:
        subprocess.run(["umount", str(ro)], check=True)


# -- preflight -------------------------------------------------------------------------------


def test_preflight_refuses_a_model_whose_files_do_not_match_and_says_how_to_repair(tmp_path):
    store = Volume(root=str(tmp_path / "models"))
    catalog = load_catalog()
    profile = load_profile("cpu")
    for name in profile.models():
        store.warm(catalog[name])
    asr = profile.stages["asr"].model
    tokenizer = store.locate(catalog[asr]) / "tokenizer.json"
    tokenizer.resolve().write_bytes(b"{}")

    with pytest.raises(ModelNotWarmed) as caught:
        preflight(profile, store)

    message = str(caught.value)
    assert asr in message and "tokenizer.json is 2 bytes" in message
    assert f"voxflow warm --profile cpu --store {store.root}" in message
    assert store.warm(catalog[asr]).status == "warmed"
    assert set(preflight(profile, store)) >= {"vad", "asr"}
