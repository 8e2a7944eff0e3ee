"""Recordings of sentences with stretches of non-speech between them, for the hallucination
guard's benchmark and its end-to-end test.

Sentences of ``bench/long_text.txt`` are spoken by espeak-ng (cycling voices); between them go
stretches of what Whisper writes words over: a melody with vibrato and voice-like harmonics,
sung vowels (formant-filtered pulses), white noise, babble (speech played backwards, which the
VAD takes for speech) and silence. What was said and where nobody spoke are known exactly, so
any word whose middle falls inside a non-speech stretch was made up or misplaced.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
import wave
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

RATE = 16_000
TEXT = Path(__file__).resolve().parent / "long_text.txt"
VOICES = (("en-us", 150), ("en-gb", 145), ("en-us+m3", 140), ("en-us+f2", 155))
KINDS = ("melody", "sung", "noise", "babble", "silence")


@dataclass(frozen=True)
class Stretch:
    """A stretch of the recording: speech (its ``text``) or non-speech (``kind``)."""

    start: float
    end: float
    kind: str
    text: str = ""


@dataclass(frozen=True)
class Gapped:
    """A generated recording and what is where in it."""

    wav: Path
    seconds: float
    stretches: tuple[Stretch, ...]

    @property
    def speech_text(self) -> str:
        """Everything said, in order."""
        return " ".join(s.text for s in self.stretches if s.kind == "speech")

    def nonspeech(self) -> list[Stretch]:
        """The stretches where nobody speaks."""
        return [s for s in self.stretches if s.kind != "speech"]

    def words_in_nonspeech(self, words: Sequence[tuple[float, float]], margin: float = 0.2) -> int:
        """How many of ``words`` (start, end) have their middle inside a non-speech stretch."""
        gaps = [(s.start + margin, s.end - margin) for s in self.nonspeech()]
        return sum(any(a < (w0 + w1) / 2 < b for a, b in gaps) for w0, w1 in words)


def sentences() -> list[str]:
    """The sentences of ``bench/long_text.txt``."""
    text = " ".join(TEXT.read_text().split())
    return [s for s in re.split(r"(?<=[.!?])\s+", text) if len(s.split()) >= 4]


def make(
    dest: Path,
    seconds: float,
    gap: float = 6.0,
    kinds: Sequence[str] = KINDS,
    seed: int = 11,
    voices: Sequence[tuple[str, int]] = VOICES,
) -> Gapped:
    """Write a 16 kHz mono WAV of about ``seconds``: a sentence, then a non-speech stretch of
    ``gap`` seconds (cycling through ``kinds``), and so on; ``voices`` are (espeak-ng voice,
    words per minute) pairs, one sentence each in turn.
    """
    rng = np.random.default_rng(seed)
    pieces: list[np.ndarray] = []
    stretches: list[Stretch] = []
    clock = 0.0
    spoken = sentences()
    with tempfile.TemporaryDirectory() as work:
        for index in range(10_000):
            if clock >= seconds:
                break
            text = spoken[index % len(spoken)]
            voice, speed = voices[index % len(voices)]
            audio = speak(text, voice, speed, Path(work) / "s.wav")
            stretches.append(Stretch(clock, clock + len(audio) / RATE, "speech", text))
            pieces.append(audio)
            clock += len(audio) / RATE
            kind = kinds[index % len(kinds)]
            filler = MAKERS[kind](gap, rng, Path(work))
            stretches.append(Stretch(clock, clock + gap, kind))
            pieces.append(filler)
            clock += gap
    audio = np.concatenate(pieces)
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2")
    dest.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(dest), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(RATE)
        f.writeframes(pcm.tobytes())
    return Gapped(dest, len(audio) / RATE, tuple(stretches))


def speak(text: str, voice: str, speed: int, wav: Path) -> np.ndarray:
    """``text`` spoken by espeak-ng, as float32 at 16 kHz."""
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(wav), text], check=True)
    with wave.open(str(wav), "rb") as f:
        rate = f.getframerate()
        data = np.frombuffer(f.readframes(f.getnframes()), "<i2").astype(np.float32) / 32768
    at = np.arange(0, len(data), rate / RATE)
    return np.interp(at, np.arange(len(data)), data).astype(np.float32)


def melody(seconds: float, rng: np.random.Generator, work: Path) -> np.ndarray:
    """A tune with vibrato and seven harmonics over a soft open fifth."""
    t = np.arange(int(seconds * RATE)) / RATE
    notes = np.array([220, 247, 262, 294, 330, 294, 262, 247]) * rng.choice([1.0, 1.5])
    f0 = notes[(t * 3).astype(int) % len(notes)] * (1 + 0.01 * np.sin(2 * np.pi * 5.5 * t))
    phase = 2 * np.pi * np.cumsum(f0) / RATE
    out = sum(0.15 / h * np.sin(h * phase) for h in range(1, 8))
    out += 0.05 * (np.sin(2 * np.pi * 110 * t) + np.sin(2 * np.pi * 165 * t))
    return out.astype(np.float32)


def sung(seconds: float, rng: np.random.Generator, work: Path) -> np.ndarray:
    """An "aah" sung to a tune: glottal pulses through three formant resonators."""
    from scipy.signal import lfilter

    t = np.arange(int(seconds * RATE)) / RATE
    notes = np.array([196, 220, 247, 262, 294, 262, 247, 220]) * rng.choice([1.0, 1.25])
    f0 = notes[(t * 2).astype(int) % len(notes)] * (1 + 0.02 * np.sin(2 * np.pi * 5 * t))
    pulses = (np.diff(np.floor(np.cumsum(f0) / RATE), prepend=0) > 0).astype(float)
    out = pulses
    for formant, width in ((700, 130), (1220, 70), (2600, 160)):
        r = np.exp(-np.pi * width / RATE)
        theta = 2 * np.pi * formant / RATE
        out = lfilter([1 - r], [1, -2 * r * np.cos(theta), r * r], out)
    return (out / np.max(np.abs(out)) * 0.3).astype(np.float32)


def noise(seconds: float, rng: np.random.Generator, work: Path) -> np.ndarray:
    """White noise at about -22 dBFS."""
    return (0.08 * rng.standard_normal(int(seconds * RATE))).astype(np.float32)


def babble(seconds: float, rng: np.random.Generator, work: Path) -> np.ndarray:
    """Two voices speaking backwards over each other: speech-like, with no words in it."""
    out = np.zeros(int(seconds * RATE), np.float32)
    for k, text in enumerate(rng.choice(sentences(), size=2, replace=False)):
        voice, speed = VOICES[k % len(VOICES)]
        backwards = speak(str(text), voice, speed, work / "b.wav")[::-1]
        n = min(len(backwards), len(out))
        out[:n] += 0.5 * backwards[:n]
    return out


def silence(seconds: float, rng: np.random.Generator, work: Path) -> np.ndarray:
    """Digital silence."""
    return np.zeros(int(seconds * RATE), np.float32)


def voxflow_asr(audio: np.ndarray, store: str):
    """What voxflow's cpu profile makes of 16 kHz ``audio`` (warming ``store`` if needed): the
    VAD's speech spans and ASR's transcript, by the stages' own backends, and what preflight
    found (``ready``) for the bare libraries to load the same model files."""
    from blocks.volume import Volume
    from profiles import load_catalog, load_profile
    from tasks.warm.preflight import preflight

    profile = load_profile("cpu")
    volume = Volume(root=store)
    catalog = load_catalog()
    for name in profile.models():
        volume.warm(catalog[name])
    ready = preflight(profile, volume)
    spans = ready["vad"].load(profile.stages["vad"]).speech_spans(audio, RATE)
    transcript = ready["asr"].load(profile.stages["asr"]).transcribe(audio, spans, "en")
    return profile, ready, spans, transcript


MAKERS: dict[str, Callable[[float, np.random.Generator, Path], np.ndarray]] = {
    "melody": melody,
    "sung": sung,
    "noise": noise,
    "babble": babble,
    "silence": silence,
}
