"""The recording: a 16 kHz mono WAV of speech-like audio, spoken by espeak-ng from
``bench/long_text.txt`` where it is installed, else synthetic syllables."""

from __future__ import annotations

import shutil
import subprocess
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.gpu import BENCH, SAMPLE_RATE

VOICES = ("en-us", "en-gb+f3", "en-gb-scotland", "en-us+f4")


def make_recording(path: Path, seconds: float, seed: int = 7) -> str:
    """A 16 kHz mono 16-bit WAV of ``seconds`` of speech-like audio.

    Returns:
        How it was made: ``espeak-ng`` or ``synthetic``.
    """
    total = int(round(seconds * SAMPLE_RATE))
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        pieces = _espeak_pieces(path.parent) if shutil.which("espeak-ng") else None
        how = "espeak-ng" if pieces is not None else "synthetic"
        if pieces is None:
            pieces = _synthetic_pieces(seed)
        written = 0
        for piece in pieces:
            piece = piece[: total - written]
            out.writeframes(_pcm16(piece))
            written += len(piece)
            if written >= total:
                break
    return how


def _pcm16(audio: Any) -> bytes:
    import numpy as np

    return (np.clip(audio, -1.0, 1.0) * 32767.0).round().astype("<i2").tobytes()


def _espeak_pieces(work: Path) -> Iterator[Any] | None:
    """Paragraphs of bench/long_text.txt in turn, each in the next voice, with pauses between."""
    import numpy as np
    import torch
    import torchaudio

    paragraphs = [p for p in (BENCH / "long_text.txt").read_text().split("\n\n") if p.strip()]
    rng = np.random.default_rng(7)
    probe = work / "espeak-probe.wav"
    try:
        subprocess.run(["espeak-ng", "-w", str(probe), "test"], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError):
        return None

    def pieces() -> Iterator[Any]:
        turn = 0
        while True:
            voice = VOICES[turn % len(VOICES)]
            text = paragraphs[turn % len(paragraphs)]
            dest = work / "espeak.wav"
            subprocess.run(
                ["espeak-ng", "-v", voice, "-s", str(150 + 10 * (turn % 3)), "-w", str(dest), text],
                check=True,
                capture_output=True,
            )
            with wave.open(str(dest), "rb") as f:
                rate = f.getframerate()
                pcm = np.frombuffer(f.readframes(f.getnframes()), dtype=np.int16)
            speech = torch.from_numpy(pcm.astype(np.float32) / 32768.0)
            yield torchaudio.functional.resample(speech, rate, SAMPLE_RATE).numpy()
            yield np.zeros(int(rng.uniform(0.4, 1.5) * SAMPLE_RATE), dtype=np.float32)
            turn += 1

    return pieces()


def _synthetic_pieces(seed: int) -> Iterator[Any]:
    """Phrases of 3-12 syllables (harmonic bursts with a noise band, Hann envelopes) at two
    alternating pitches, 0.3-1.2 s pauses between phrases."""
    import numpy as np

    rng = np.random.default_rng(seed)
    phrase = 0
    while True:
        f0 = (110.0, 210.0)[phrase % 2] * rng.uniform(0.9, 1.1)
        for _ in range(int(rng.integers(3, 13))):
            n = int(rng.uniform(0.12, 0.3) * SAMPLE_RATE)
            t = np.arange(n) / SAMPLE_RATE
            pitch = f0 * (1 + 0.05 * np.sin(2 * np.pi * rng.uniform(2, 5) * t))
            phase = 2 * np.pi * np.cumsum(pitch) / SAMPLE_RATE
            voiced = sum(np.sin(k * phase) / k for k in range(1, 9))
            noise = np.convolve(rng.standard_normal(n), np.ones(8) / 8, mode="same")
            syllable = (0.15 * voiced + 0.05 * noise) * np.hanning(n)
            gap = np.zeros(int(rng.uniform(0.03, 0.08) * SAMPLE_RATE))
            yield np.concatenate([syllable, gap]).astype(np.float32)
        yield np.zeros(int(rng.uniform(0.3, 1.2) * SAMPLE_RATE), dtype=np.float32)
        phrase += 1
