"""docker/: checked statically (no Docker engine runs here): the files parse, what they
reference exists, services and volumes agree, workers read the model volume read-only."""

from __future__ import annotations

import re

import pytest
import yaml

from conftest import ROOT

DOCKER = ROOT / "docker"
COMPOSE = yaml.safe_load((DOCKER / "compose.yaml").read_text())
SERVICES = COMPOSE["services"]
WORKERS = [name for name in SERVICES if name.startswith("worker-")]


def mounts(service: dict) -> dict[str, str]:
    """Volume name -> mode ("rw" or "ro") for a service's named volumes."""
    out = {}
    for spec in service.get("volumes", []):
        source, _, rest = spec.partition(":")
        out[source] = "ro" if rest.endswith(":ro") else "rw"
    return out


@pytest.mark.parametrize("profile", ["cpu", "cuda", "openvino"])
def test_an_image_per_profile_copies_files_that_exist_and_runs_offline(profile):
    text = (DOCKER / f"{profile}.Dockerfile").read_text()
    assert re.search(r"^FROM \S+", text, re.M)
    assert "HF_HUB_OFFLINE=1" in text and "VOXFLOW_STORE=/models" in text
    for line in re.findall(r"^COPY (.+)$", text, re.M):
        *sources, _dest = line.split()
        for source in sources:
            assert (ROOT / source).exists(), f"{profile}.Dockerfile copies missing {source}"


def test_every_build_names_an_existing_dockerfile():
    for name, service in SERVICES.items():
        if "build" in service:
            context = (DOCKER / service["build"]["context"]).resolve()
            assert (context / service["build"]["dockerfile"]).is_file(), name


def test_named_volumes_are_declared_and_used():
    used = {v for s in SERVICES.values() for v in mounts(s)}
    assert used == set(COMPOSE["volumes"])


def test_workers_mount_the_model_volume_read_only_and_only_warm_writes_it():
    assert WORKERS == ["worker-cpu", "worker-gpu"]
    writers = sorted(n for n, s in SERVICES.items() if mounts(s).get("models") == "rw")
    assert writers == ["warm", "warm-gpu"]
    for name in WORKERS:
        assert mounts(SERVICES[name])["models"] == "ro", name
        assert SERVICES[name]["environment"]["HF_HUB_OFFLINE"] == "1"


def test_workers_start_only_after_a_successful_warm():
    for name in WORKERS:
        deps = SERVICES[name]["depends_on"]
        warm = [d for d in deps if d.startswith("warm")]
        assert warm and all(
            deps[d]["condition"] == "service_completed_successfully" for d in warm
        ), name


def test_gpu_services_sit_behind_the_gpu_profile_and_reserve_a_device():
    for name in ("worker-gpu", "warm-gpu"):
        service = SERVICES[name]
        assert service["profiles"] == ["gpu"]
        assert service["deploy"]["resources"]["reservations"]["devices"][0]["driver"] == "nvidia"
    assert "profiles" not in SERVICES["worker-cpu"]


def test_long_running_services_have_healthchecks_and_dependencies_exist():
    for name, service in SERVICES.items():
        if service.get("restart") != "no":
            assert "healthcheck" in service, name
        for dep in service.get("depends_on", {}):
            assert dep in SERVICES, f"{name} depends on unknown {dep}"
    assert (
        "postgresql+asyncpg://"
        in SERVICES["server"]["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"]
    )
