"""Around inference: refusing or warming a cold volume, and the GPU concurrency slot."""

from __future__ import annotations

import dataclasses
import uuid

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate

from blocks.volume import Volume
from conftest import SAMPLE
from flows import runtime
from flows.transcribe import transcribe
from voxflow.errors import BadInput, ModelNotWarmed
from voxflow.settings import load_settings

pytestmark = pytest.mark.usefixtures("prefect_api")


def test_cold_volume_under_a_deployment_names_the_warm_deployment(
    cpu_profile, tmp_path, monkeypatch
):
    monkeypatch.setattr(runtime, "under_deployment", lambda: True)
    with pytest.raises(ModelNotWarmed) as err:
        runtime.ready_or_warm(cpu_profile, Volume(root=str(tmp_path)), "fail")
    assert "prefect deployment run warm-cache/cpu" in str(err.value)
    assert "on_cold_cache=warm" in str(err.value)


def test_on_cold_cache_warm_outside_a_deployment_warms_in_process_and_goes_on(tmp_path):
    store = tmp_path / "models"
    record = transcribe(
        str(SAMPLE), profile="cpu", store=str(store), output_dir=str(tmp_path / "out"),
        formats=["txt"], on_cold_cache="warm",
    )  # fmt: skip
    assert record["outputs"]["txt"] and list(store.glob("manifests/*/*.json"))


def test_unfilled_deployment_placeholder_is_refused():
    with pytest.raises(BadInput, match="prefect deploy"):
        load_settings({"VOXFLOW_STORE": "{{ $VOXFLOW_STORE }}"})


def _active_slots(name: str) -> int:
    with get_client(sync_client=True) as client:
        return client.read_global_concurrency_limit_by_name(name).active_slots


def test_gpu_profiles_hold_the_hosts_gpu_slot_under_a_deployment(cpu_profile, monkeypatch):
    name = f"gpu-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("VOXFLOW_GPU_LIMIT", name)
    monkeypatch.setattr(runtime, "under_deployment", lambda: True)
    with get_client(sync_client=True) as client:
        client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))
    cuda_like = dataclasses.replace(cpu_profile, hardware="cuda")

    with runtime.gpu_slot(cuda_like):
        assert _active_slots(name) == 1
    assert _active_slots(name) == 0
    with runtime.gpu_slot(cpu_profile):  # a CPU profile takes no slot
        assert _active_slots(name) == 0


def test_missing_gpu_limit_says_how_to_create_it(cpu_profile, monkeypatch):
    monkeypatch.setenv("VOXFLOW_GPU_LIMIT", f"absent-{uuid.uuid4().hex[:8]}")
    monkeypatch.setattr(runtime, "under_deployment", lambda: True)
    with pytest.raises(BadInput, match="prefect gcl create absent-"):
        with runtime.gpu_slot(dataclasses.replace(cpu_profile, hardware="cuda")):
            pass
