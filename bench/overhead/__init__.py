"""The transcribe-overhead benchmark's parts; ``bench/transcribe_overhead.py`` is the entry
script (its environment, arguments and main).

* :mod:`bench.overhead.recording`: the long English recording, spoken by espeak-ng and cached;
* :mod:`bench.overhead.measure`: a timed call, a timing row, word error rate;
* :mod:`bench.overhead.compare`: bare faster-whisper against voxflow's vad and asr stages;
* :mod:`bench.overhead.flow`: the whole transcribe flow once, under a temporary Prefect server;
* :mod:`bench.overhead.report`: the tables printed.

The paths and the sample rate they share are here.
"""

from __future__ import annotations

from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent
"""The ``bench/`` folder."""
ROOT = BENCH.parent

OUT = BENCH / "out"
TEXT_FILE = BENCH / "long_text.txt"
MEDIA = OUT / "long_speech.m4a"
MEDIA_META = OUT / "long_speech.json"
DECODED = OUT / "long_speech.16k.wav"
STORE = OUT / "models"
FLOW_OUTPUT = OUT / "flow-output"
RESULT = OUT / "transcribe_overhead.json"
SR = 16_000
