"""GPU memory: the device's used memory (every process, every allocator), and its peak over a
block, sampled in a thread."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import threading
from collections.abc import Iterator
from typing import Any


class DeviceMemory:
    """The GPU's used memory in MiB (every process, every allocator), read by NVML or nvidia-smi.

    Args:
        index: The GPU's index as NVML and nvidia-smi count (0 on a one-GPU machine).
    """

    def __init__(self, index: int = 0) -> None:
        self.index = index
        self.source = "none"
        self._handle: Any = None
        self._nvml: Any = None
        try:
            import pynvml  # nvidia-ml-py

            pynvml.nvmlInit()
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            self._nvml = pynvml
            self.source = "nvml"
        except Exception:  # no pynvml, or no driver it can talk to: try nvidia-smi
            if shutil.which("nvidia-smi") and self._smi() is not None:
                self.source = "nvidia-smi"

    @property
    def interval(self) -> float:
        """Seconds between samples: NVML is cheap, nvidia-smi a process each time."""
        return 0.05 if self.source == "nvml" else 0.5

    def _smi(self) -> float | None:
        proc = subprocess.run(
            [
                "nvidia-smi",
                "--query-gpu=memory.used",
                "--format=csv,noheader,nounits",
                "-i",
                str(self.index),
            ],
            capture_output=True,
            text=True,
        )
        try:
            return float(proc.stdout.strip().splitlines()[0])
        except (IndexError, ValueError):
            return None

    def used_mib(self) -> float | None:
        """Memory in use on the device now, or None when it cannot be read."""
        if self.source == "nvml":
            return self._nvml.nvmlDeviceGetMemoryInfo(self._handle).used / 2**20
        if self.source == "nvidia-smi":
            return self._smi()
        return None

    def describe(self) -> dict[str, Any]:
        """The GPU's name, total memory and driver, as NVML or nvidia-smi report them."""
        if self.source == "nvml":
            nvml = self._nvml
            name = nvml.nvmlDeviceGetName(self._handle)
            return {
                "name": name.decode() if isinstance(name, bytes) else name,
                "total_mib": round(nvml.nvmlDeviceGetMemoryInfo(self._handle).total / 2**20),
                "driver": _text(nvml.nvmlSystemGetDriverVersion()),
            }
        if self.source == "nvidia-smi":
            proc = subprocess.run(
                [
                    "nvidia-smi",
                    "--query-gpu=name,memory.total,driver_version",
                    "--format=csv,noheader,nounits",
                    "-i",
                    str(self.index),
                ],
                capture_output=True,
                text=True,
            )
            name, total, driver = (proc.stdout.strip().split(", ") + ["", "", ""])[:3]
            return {"name": name, "total_mib": total, "driver": driver}
        return {}


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@contextlib.contextmanager
def sampled_peak(memory: DeviceMemory | None) -> Iterator[dict[str, float | None]]:
    """Sample the device's used memory in a thread while the block runs.

    Yields:
        A dict whose ``before``, ``peak`` and ``after`` (MiB) are filled in when the block ends.
    """
    figures: dict[str, float | None] = {"before": None, "peak": None, "after": None}
    if memory is None or memory.source == "none":
        yield figures
        return
    figures["before"] = figures["peak"] = memory.used_mib()
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(memory.interval):
            used = memory.used_mib()
            if used is not None:
                figures["peak"] = max(figures["peak"] or 0.0, used)

    thread = threading.Thread(target=sample, name="gpu-memory", daemon=True)
    thread.start()
    try:
        yield figures
    finally:
        stop.set()
        thread.join()
        figures["after"] = memory.used_mib()
        if figures["after"] is not None:
            figures["peak"] = max(figures["peak"] or 0.0, figures["after"])
