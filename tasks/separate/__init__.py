"""separate: isolate the voice (a source-separation stem) before VAD and ASR.

The stage reads the extracted 16 kHz mono WAV and writes the chosen stem as another 16 kHz mono
WAV in the job directory. Long recordings are processed window by window, reading and writing
the WAV incrementally and crossfading neighbouring windows, so memory stays bounded however long
the input is; a backend only ever sees one window of audio.
"""

from __future__ import annotations

import wave
from abc import abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tasks import progress
from tasks.backend import Backend, test_audio
from tasks.extract import SAMPLE_RATE
from voxflow.atomic import atomic_file

__all__ = ["SeparateBackend", "Separated", "stream_windows", "wav_stats", "windows"]


@dataclass(frozen=True)
class Separated:
    """The stem a separation wrote.

    Attributes:
        path: The 16 kHz mono WAV.
        stem: Which source it holds (``vocals``).
        duration: Seconds of audio (the same as the input's).
        windows: How many windows the input was processed in.
    """

    path: str
    stem: str
    duration: float
    windows: int


class SeparateBackend(Backend):
    """A source separator that keeps one stem."""

    stage = "separate"

    @property
    @abstractmethod
    def stem(self) -> str:
        """The source it keeps (``vocals``); its output file is ``<stem>.wav``."""

    @abstractmethod
    def separate(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        """The chosen stem of 1-D float32 audio, as float32 of the same length and rate."""

    @abstractmethod
    def separate_file(self, source: Path, dest: Path) -> Separated:
        """Write the chosen stem of a 16 kHz mono 16-bit WAV to ``dest`` (same format).

        Implementations must keep memory bounded by their window size, not the file's length
        (see :func:`stream_windows`).
        """

    def self_check(self) -> str:
        stem = self.separate(test_audio(), SAMPLE_RATE)
        return f"separated the {self.stem} stem of 1 s of test audio ({stem.size} samples)"


def windows(total: int, window: int, crossfade: int) -> Iterator[tuple[int, int]]:
    """``[start, end)`` sample ranges covering ``total`` samples.

    Each range is at most ``window`` long and overlaps the previous one by exactly
    ``crossfade`` samples; the last one is longer than ``crossfade``.

    Raises:
        ValueError: ``window`` is not longer than ``crossfade``.
    """
    if window <= crossfade or crossfade < 0:
        raise ValueError(f"a window ({window}) must be longer than its crossfade ({crossfade})")
    start = 0
    while start < total:
        end = min(start + window, total)
        yield start, end
        if end == total:
            return
        start = end - crossfade


def _check_format(reader: wave.Wave_read, path: Path) -> None:
    if reader.getframerate() != SAMPLE_RATE or reader.getnchannels() != 1:
        raise ValueError(
            f"{path}: expected 16 kHz mono 16-bit PCM, found {reader.getframerate()} Hz, "
            f"{reader.getnchannels()} channel(s), {8 * reader.getsampwidth()}-bit"
        )
    if reader.getsampwidth() != 2:
        raise ValueError(f"{path}: expected 16-bit PCM, found {8 * reader.getsampwidth()}-bit")


def _read(reader: wave.Wave_read, start: int, count: int) -> np.ndarray:
    reader.setpos(start)
    raw = reader.readframes(count)
    return np.frombuffer(raw, dtype=np.int16).astype(np.float32) / 32768.0


def _pcm16(audio: np.ndarray) -> bytes:
    return (np.clip(audio, -1.0, 1.0) * 32767.0).round().astype("<i2").tobytes()


def wav_stats(path: Path, block_s: float = 10.0) -> tuple[float, float, int]:
    """Mean, standard deviation and sample count of a 16 kHz mono WAV, read block by block."""
    block = int(block_s * SAMPLE_RATE)
    total, s1, s2 = 0, 0.0, 0.0
    with wave.open(str(path), "rb") as reader:
        _check_format(reader, path)
        frames = reader.getnframes()
        for start in range(0, frames, block):
            audio = _read(reader, start, block).astype(np.float64)
            total += audio.size
            s1 += float(audio.sum())
            s2 += float(audio @ audio)
    if total == 0:
        return 0.0, 0.0, 0
    mean = s1 / total
    return mean, max(s2 / total - mean * mean, 0.0) ** 0.5, total


def stream_windows(
    source: Path,
    dest: Path,
    process: Callable[[np.ndarray], np.ndarray],
    window_s: float,
    crossfade_s: float,
) -> tuple[float, int]:
    """Run ``process`` over a 16 kHz mono WAV window by window and write the result.

    Neighbouring windows overlap by ``crossfade_s``; their outputs are blended there with a
    linear crossfade, which hides the edge effects each window has on its own. Only one window
    (plus one crossfade of the previous output) is in memory at a time. The output is written
    under a temporary name and renamed when complete.

    Args:
        source: 16 kHz mono 16-bit WAV.
        dest: Where the processed WAV goes (same format and length).
        process: Maps one window of float32 audio to float32 audio of the same length.
        window_s: Window length in seconds.
        crossfade_s: Overlap between neighbouring windows in seconds.

    Returns:
        (seconds of audio written, number of windows).
    """
    window = int(round(window_s * SAMPLE_RATE))
    crossfade = int(round(crossfade_s * SAMPLE_RATE))
    written = count = 0
    with (
        atomic_file(dest) as f,
        wave.open(str(source), "rb") as reader,
        wave.open(f, "wb") as writer,
    ):
        _check_format(reader, source)
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(SAMPLE_RATE)
        total = reader.getnframes()
        tail: np.ndarray | None = None
        fade_in = np.linspace(0.0, 1.0, crossfade + 2, dtype=np.float32)[1:-1]
        for start, end in windows(total, window, crossfade):
            out = np.asarray(process(_read(reader, start, end - start)), dtype=np.float32)
            if out.shape != (end - start,):
                raise ValueError(
                    f"separation returned {out.shape} samples for a window of {end - start}"
                )
            if tail is not None:
                out[:crossfade] = tail * (1.0 - fade_in) + out[:crossfade] * fade_in
            keep = out if end == total else out[: len(out) - crossfade]
            writer.writeframes(_pcm16(keep))
            written += len(keep)
            tail = None if end == total else out[len(out) - crossfade :].copy()
            count += 1
            progress.report(end / SAMPLE_RATE, total / SAMPLE_RATE)
    return written / SAMPLE_RATE, count
