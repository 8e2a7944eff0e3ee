"""Profiles for hardware this machine may lack: refused clearly here, exercised where present."""

from __future__ import annotations

import pytest

from blocks.model_store import ModelStore
from profiles import detect_hardware, load_profile, resolve_profile
from tasks.preflight import preflight
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
        preflight(load_profile(name), ModelStore(root=str(tmp_path)))
    assert f"profile {name!r} cannot run on this machine" in str(err.value)
    assert "--profile" in str(err.value)


@pytest.mark.gpu
@pytest.mark.usefixtures("prefect_api")
def test_cuda_profile_preflight_passes_after_a_warm(tmp_path):
    from flows.warm_cache import warm_cache

    warm_cache(profile="cuda", store=str(tmp_path))
    assert set(preflight(load_profile("cuda"), ModelStore(root=str(tmp_path)))) >= {"asr"}


@pytest.mark.mlx
@pytest.mark.usefixtures("prefect_api")
def test_mlx_profile_preflight_passes_after_a_warm(tmp_path):
    from flows.warm_cache import warm_cache

    warm_cache(profile="mlx", store=str(tmp_path))
    assert set(preflight(load_profile("mlx"), ModelStore(root=str(tmp_path)))) >= {"asr"}
