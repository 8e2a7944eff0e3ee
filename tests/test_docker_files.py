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
WARMS = [name for name in SERVICES if name.startswith("warm")]
DEPLOYMENTS = yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]
LOCK = {
    line.split("==")[0].lower().replace("_", "-"): line.split("==")[1].split(";")[0].strip()
    for line in (ROOT / "requirements.lock").read_text().splitlines()
    if "==" in line and not line.startswith("#")
}


def mounts(service: dict) -> dict[str, str]:
    """Volume name -> mode ("rw" or "ro") for a service's named volumes."""
    out = {}
    for spec in service.get("volumes", []):
        source, _, rest = spec.partition(":")
        out[source] = "ro" if rest.endswith(":ro") else "rw"
    return out


@pytest.mark.parametrize("profile", ["cpu", "cuda", "openvino"])
def test_an_image_per_profile_copies_files_that_exist_and_leaves_the_network_to_its_service(
    profile,
):
    """One image serves warms and inference: the service or deployment sets HF_HUB_OFFLINE."""
    text = (DOCKER / f"{profile}.Dockerfile").read_text()
    assert re.search(r"^FROM \S+", text, re.M)
    assert "VOXFLOW_STORE=/models" in text and "HF_HUB_OFFLINE" not in text
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


def test_inference_workers_mount_the_model_volume_read_only_and_only_warms_write_it():
    assert WORKERS == ["worker-cpu", "worker-gpu"]
    writers = sorted(n for n, s in SERVICES.items() if mounts(s).get("models") == "rw")
    assert writers == sorted(WARMS) == ["warm", "warm-gpu", "warm-worker-cpu", "warm-worker-gpu"]
    for name in WORKERS:
        assert mounts(SERVICES[name])["models"] == "ro", name
        assert SERVICES[name]["environment"]["HF_HUB_OFFLINE"] == "1"
    for name in WARMS:  # warms reach the models' sources
        assert SERVICES[name]["environment"]["HF_HUB_OFFLINE"] == "0", name


def pool_of(service: dict) -> str:
    command = service["command"]
    return command[command.index("--pool") + 1]


def test_warm_deployments_land_on_warm_workers_and_inference_on_read_only_ones():
    warm_pools = {pool_of(SERVICES[n]) for n in WARMS if "worker" in n}
    inference_pools = {pool_of(SERVICES[n]) for n in WORKERS}
    assert warm_pools == {"cpu-warm", "cuda-warm"} and inference_pools == {"cpu", "cuda"}
    created = re.search(r"for pool in ([^;]+);", SERVICES["setup"]["command"][-1]).group(1).split()
    for d in DEPLOYMENTS:
        pool, env = d["work_pool"]["name"], d["work_pool"]["job_variables"]["env"]
        if d["entrypoint"].startswith("flows/warm_cache.py"):
            assert pool == f"{d['name']}-warm" and env["HF_HUB_OFFLINE"] == "0", d["name"]
        else:
            assert pool == d["name"] and env["HF_HUB_OFFLINE"] == "1", d["name"]
        assert pool in created, f"setup does not create the pool {pool}"


@pytest.mark.parametrize("profile", ["cpu", "cuda", "openvino"])
def test_each_image_installs_only_what_the_lock_pins(profile):
    """Every package an image's pip installs is the lock's (so the image resolves as the lock
    does, and what resolves there is checked by scripts/check-lock.sh); nothing else on top."""
    text = (DOCKER / f"{profile}.Dockerfile").read_text()
    assert "optimum" not in text
    for command in re.findall(r"pip install ([^&\n]+)", text):
        words = command.split()
        for i, word in enumerate(words):
            if word.startswith("-") or (i and words[i - 1] == "-r"):
                continue
            if word == ".":
                continue
            name = re.split(r"[<>=\[ ]", word.strip("'\""))[0].lower()
            assert name in LOCK, f"{profile}.Dockerfile installs {word}, which the lock lacks"
        assert "-r requirements.lock" in command or "--no-deps -e ." in command


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


# -- the server answers only its users --------------------------------------------------------


def env_of(service: dict) -> dict[str, str]:
    env = service.get("environment", {})
    return env if isinstance(env, dict) else {}


def test_the_compose_server_requires_a_credential_with_no_default_and_every_client_sends_it():
    server = env_of(SERVICES["server"])
    required = server["PREFECT_SERVER_API_AUTH_STRING"]
    assert re.fullmatch(r"\$\{PREFECT_AUTH_STRING:\?[^}]+\}", required), "no default: required"
    clients = [name for name in SERVICES if name not in ("server", "postgres")]
    assert clients
    for name in clients:
        assert env_of(SERVICES[name]).get("PREFECT_API_URL", "").startswith("http://server:")
        assert env_of(SERVICES[name])["PREFECT_API_AUTH_STRING"].startswith(
            "${PREFECT_AUTH_STRING:?"
        ), f"{name} must send the server's credential"
    example = (DOCKER / "env.example").read_text()
    assert re.search(r"^PREFECT_AUTH_STRING=$", example, re.M), "the example sets no credential"


def test_the_compose_server_is_published_on_loopback_only():
    for name, service in SERVICES.items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"
    assert SERVICES["server"]["ports"] == ["127.0.0.1:4200:4200"]


def test_the_operators_guide_says_how_to_put_tls_in_front():
    guide = (ROOT / "docs" / "operators.md").read_text()
    assert "PREFECT_SERVER_API_AUTH_STRING" in guide and "PREFECT_API_AUTH_STRING" in guide
    assert "TLS" in guide and "reverse_proxy 127.0.0.1:4200" in guide
    assert "--host 0.0.0.0" not in guide


def test_every_run_environment_is_the_one_table_in_settings():
    """prefect.yaml's run environments, the compose file's and the images carry what
    voxflow/settings.py says a run gets: no hub for inference, no telemetry for any run."""
    from voxflow.settings import QUIET, run_environment

    def holds(env: dict[str, str], table: dict[str, str]) -> dict[str, tuple]:
        return {k: (env.get(k), v) for k, v in table.items() if str(env.get(k)) != v}

    for d in DEPLOYMENTS:
        env = d["work_pool"]["job_variables"]["env"]
        table = run_environment(warm=d["entrypoint"].startswith("flows/warm_cache.py"))
        assert holds(env, table) == {}, d["name"]
    for name, service in SERVICES.items():
        if name in WORKERS or name in WARMS:
            env = service["environment"]
            assert holds(env, run_environment(warm=name in WARMS)) == {}, name
    for dockerfile in DOCKER.glob("*.Dockerfile"):
        text = dockerfile.read_text()
        missing = [f"{k}={v}" for k, v in QUIET.items() if f"{k}={v}" not in text]
        assert missing == [], dockerfile.name


def test_the_switches_have_one_parser():
    """VOXFLOW_DEBUG and VOXFLOW_RUNNER read alike; a value that is neither is refused."""
    from voxflow.errors import BadInput
    from voxflow.settings import load_settings

    assert load_settings({"VOXFLOW_DEBUG": "Yes", "VOXFLOW_RUNNER": "off"}).debug is True
    assert load_settings({"VOXFLOW_RUNNER": "0"}).runner is False
    assert load_settings({}).runner is True and load_settings({}).debug is False
    with pytest.raises(BadInput, match="VOXFLOW_DEBUG is 'maybe'"):
        load_settings({"VOXFLOW_DEBUG": "maybe"})
