"""This machine's hardware, the profile ``auto`` picks for it, and whether a profile runs here."""

from __future__ import annotations

import functools
import importlib.util
import platform
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from profiles.files import PROFILES_DIR, list_profiles, read_yaml
from profiles.profile import AUTO, Profile, load_profile, profile_path
from voxflow.errors import ProfileError


@dataclass(frozen=True)
class Hardware:
    """What this machine offers one kind of profile.

    Attributes:
        kind: ``cuda``, ``mlx``, ``openvino`` or ``cpu``.
        runs: Profiles of this kind can run here.
        preferred: ``auto`` may pick this kind: its accelerator is present. It differs from
            ``runs`` for openvino only, whose runtime also runs on a plain CPU, where the cpu
            profile is the better choice: an installed package is not hardware.
        reason: Why, in words fit to show a user.
    """

    kind: str
    runs: bool
    preferred: bool
    reason: str


_INTEL = "0x8086"


def probe_hardware(sys_root: str | Path = "/sys") -> tuple[Hardware, ...]:
    """Look at this machine once per kind of profile, in :data:`HARDWARE_ORDER`.

    Cheap and import-free. cuda: ``nvidia-smi -L`` lists a GPU, or the NVIDIA driver is
    loaded with a device node. mlx: Apple silicon with the ``mlx`` package. openvino: the
    ``openvino`` package runs its profile on any CPU, and ``auto`` prefers it only with an
    Intel GPU (a DRM render node) or NPU (an accel node) whose vendor is Intel.

    Args:
        sys_root: Where sysfs is mounted (the Intel GPU and NPU device nodes are read there).
    """
    cuda = _cuda_device()
    found = [
        Hardware(
            "cuda",
            bool(cuda),
            bool(cuda),
            cuda or "no CUDA device (no NVIDIA driver with a device, no GPU from nvidia-smi)",
        )
    ]
    apple = sys.platform == "darwin" and platform.machine() == "arm64"
    mlx = apple and _findable("mlx")
    if mlx:
        mlx_reason = "Apple silicon with the mlx package"
    elif apple:
        mlx_reason = (
            "Apple silicon, but the mlx package is not installed (pip install 'voxflow[mlx]')"
        )
    else:
        mlx_reason = f"not Apple silicon ({sys.platform} {platform.machine()})"
    found.append(Hardware("mlx", mlx, mlx, mlx_reason))
    ov_package = _findable("openvino")
    devices = _intel_accelerators(Path(sys_root))
    if not ov_package:
        ov_reason = "the openvino package is not installed (pip install 'voxflow[openvino]')"
    elif devices:
        ov_reason = f"openvino with an Intel {' and '.join(devices)}"
    else:
        ov_reason = (
            "openvino is installed but there is no Intel GPU or NPU: on a CPU alone the cpu "
            "profile is the better choice (--profile openvino still runs it)"
        )
    found.append(Hardware("openvino", ov_package, ov_package and bool(devices), ov_reason))
    found.append(Hardware("cpu", True, True, "always"))
    return tuple(found)


@functools.cache
def _probe() -> tuple[Hardware, ...]:
    return probe_hardware()


def detect_hardware() -> tuple[str, ...]:
    """The kinds of profile this machine can run, in :data:`HARDWARE_ORDER`, ending with cpu.

    The machine is probed once per process.
    """
    return tuple(h.kind for h in _probe() if h.runs)


def _findable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _cuda_device() -> str:
    """Why this machine has a CUDA device, or "" when it has none."""
    smi = shutil.which("nvidia-smi")
    if smi is not None:
        try:
            result = subprocess.run(
                [smi, "-L"], capture_output=True, text=True, timeout=10, check=False
            )
        except (OSError, subprocess.SubprocessError):
            result = None
        if result is not None and result.returncode == 0 and "GPU" in result.stdout:
            return "nvidia-smi lists " + result.stdout.strip().splitlines()[0]
    nodes = sorted(p.name for p in Path("/dev").glob("nvidia[0-9]*"))
    if nodes and Path("/proc/driver/nvidia/version").exists():
        return f"NVIDIA driver loaded with /dev/{nodes[0]}"
    return ""


def _intel_accelerators(sys_root: Path) -> list[str]:
    """Intel GPUs (DRM render nodes) and NPUs (accel nodes) sysfs lists under sys_root."""
    found = []
    for label, pattern in (("GPU", "class/drm/renderD*"), ("NPU", "class/accel/accel*")):
        for node in sorted(sys_root.glob(pattern)):
            try:
                vendor = (node / "device" / "vendor").read_text().strip().lower()
            except OSError:
                continue
            if vendor == _INTEL:
                found.append(f"{label} ({node.name})")
                break
    return found


def _profile_hardware(path: Path) -> str | None:
    """The ``hardware`` a profile file declares, or None when it cannot be read."""
    try:
        data = read_yaml(path)
    except ProfileError:
        return None
    return data.get("hardware") if isinstance(data, Mapping) else None


def auto_profile(
    directory: str | Path | None = None, hardware: Iterable[Hardware] | None = None
) -> tuple[str, str]:
    """The profile ``auto`` picks here, and why, in one sentence.

    The first kind in :data:`HARDWARE_ORDER` whose accelerator is present (cpu at the end)
    gives the profile named after it when its ``hardware`` matches, else the first profile
    (by name) whose ``hardware`` is that kind.

    Args:
        directory: Where profiles live; defaults to :data:`PROFILES_DIR`.
        hardware: What :func:`probe_hardware` found; this machine's when omitted.

    Raises:
        ProfileError: No profile in the folder matches this machine's hardware.
    """
    folder = Path(directory) if directory is not None else PROFILES_DIR
    names = list_profiles(folder)
    probed = tuple(hardware) if hardware is not None else _probe()
    passed: list[str] = []
    for kind in probed:
        if not kind.preferred:
            passed.append(f"not {kind.kind}: {kind.reason}")
            continue
        candidates = [kind.kind] if kind.kind in names else []
        candidates += [n for n in names if n != kind.kind]
        for candidate in candidates:
            if _profile_hardware(folder / f"{candidate}.yaml") == kind.kind:
                why = f"{kind.kind}: {kind.reason}" if kind.kind != "cpu" else ""
                return candidate, "; ".join([*passed, why] if why else passed)
        passed.append(f"not {kind.kind}: no profile in {folder} declares it")
    raise ProfileError(
        f"no profile in {folder} matches this machine's hardware "
        f"({', '.join(h.kind for h in probed if h.preferred)})",
        allowed=names,
    )


def resolve_profile(name: str, directory: str | Path | None = None) -> str:
    """Turn ``auto`` into a concrete profile name (see :func:`auto_profile`); check any other
    name exists.

    Args:
        name: ``auto``, a profile name, or a path to a profile YAML file.
        directory: Where profiles live; defaults to :data:`PROFILES_DIR`.

    Returns:
        A profile name or path that :func:`load_profile` accepts.

    Raises:
        ProfileError: The name is unknown, or no profile matches this machine's hardware.
    """
    if name != AUTO:
        profile_path(name, Path(directory) if directory is not None else PROFILES_DIR)
        return name
    return auto_profile(directory)[0]


def can_run(profile: Profile | str) -> tuple[bool, str]:
    """Whether this machine has the hardware a profile needs.

    Args:
        profile: A loaded profile, or a name or path :func:`load_profile` accepts.

    Returns:
        ``(ok, reason)``, the reason fit to show a user.
    """
    if not isinstance(profile, Profile):
        profile = load_profile(profile)
    present = detect_hardware()
    if profile.hardware in present:
        return True, f"profile {profile.name!r} needs {profile.hardware}, which is present"
    return False, (
        f"profile {profile.name!r} needs {profile.hardware}, but this machine has only "
        f"{', '.join(present)}; choose --profile auto or one of those"
    )
