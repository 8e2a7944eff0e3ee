"""The GPU check's parts; ``bench/gpu_check.py`` is the entry script (main and its arguments).

* :mod:`bench.gpu.packages`: the modules the stages import, installed from a wheels folder
  when missing;
* :mod:`bench.gpu.memory`: the device's used memory, read by NVML or nvidia-smi and sampled
  while a stage runs;
* :mod:`bench.gpu.models`: the production models' architectures built with random weights;
* :mod:`bench.gpu.recording`: the speech-like recording the stages run on;
* :mod:`bench.gpu.stages`: separate -> vad -> asr -> diarize through voxflow's backends,
  timed and measured;
* :mod:`bench.gpu.report`: the stage table, the memory figures' meanings, versions.

Every module imports only the standard library (and its siblings) at import time: the packages
the stages need may be missing until :func:`bench.gpu.packages.ensure_packages` has installed
them.
"""

from __future__ import annotations

from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent
"""The ``bench/`` folder (``long_text.txt`` is read from it)."""
PROFILE = "cuda"
SAMPLE_RATE = 16_000
