"""The recording: paragraphs of ``bench/long_text.txt`` spoken by espeak-ng (cycling voices)
until the length asked for, encoded to AAC, cached under ``bench/out/`` with its metadata."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import wave
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from bench.overhead import DECODED, MEDIA, MEDIA_META, OUT, ROOT, TEXT_FILE

# Each pass over the text uses the next voice and rate, so repeated paragraphs are not
# byte-identical audio (a decoder could otherwise benefit from exact repeats).
VARIANTS = [("en-us", 150), ("en-us+m3", 140), ("en-us+f2", 160), ("en-us+m7", 145)]

log = logging.getLogger("bench")


def paragraphs() -> list[str]:
    """The paragraphs of bench/long_text.txt, whitespace normalised."""
    blocks = re.split(r"\n\s*\n", TEXT_FILE.read_text())
    return [" ".join(b.split()) for b in blocks if b.strip()]


def _speak(text: str, voice: str, rate: int, dest: Path) -> tuple[np.ndarray, int]:
    subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(rate), "-w", str(dest), text],
        check=True,
        capture_output=True,
    )
    with wave.open(str(dest), "rb") as f:
        if f.getnchannels() != 1 or f.getsampwidth() != 2:
            raise RuntimeError(f"espeak-ng wrote an unexpected WAV format: {dest}")
        return np.frombuffer(f.readframes(f.getnframes()), dtype=np.int16), f.getframerate()


def generate_recording(minutes: float) -> dict[str, Any]:
    """Speak paragraphs (cycling voices) until ``minutes`` is reached; encode to AAC in .m4a.

    Returns:
        The recording's metadata, also written to ``long_speech.json`` beside it.
    """
    for tool in ("espeak-ng", "ffmpeg"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is missing: run scripts/system-deps.sh")
    OUT.mkdir(parents=True, exist_ok=True)
    texts = paragraphs()
    rng = random.Random(20240611)  # fixed: the same pauses every regeneration
    pieces: list[np.ndarray] = []
    spoken: list[str] = []
    target = minutes * 60
    total = 0
    rate_hz = None
    with tempfile.TemporaryDirectory(dir=OUT) as tmp:
        i = 0
        while total < target * (rate_hz or 22_050):
            voice, wpm = VARIANTS[(i // len(texts)) % len(VARIANTS)]
            samples, sr = _speak(texts[i % len(texts)], voice, wpm, Path(tmp) / f"{i}.wav")
            if rate_hz is None:
                rate_hz = sr
                # Lead-in silence, so the file does not start mid-word.
                pieces.append(np.zeros(int(0.5 * sr), dtype=np.int16))
            elif sr != rate_hz:
                raise RuntimeError(f"espeak-ng changed sample rate ({rate_hz} -> {sr})")
            pieces.append(samples)
            pause = np.zeros(int(rng.uniform(0.5, 1.5) * sr), dtype=np.int16)
            pieces.append(pause)
            total += len(samples) + len(pause)
            spoken.append(texts[i % len(texts)])
            i += 1
        wav = Path(tmp) / "all.wav"
        with wave.open(str(wav), "wb") as f:
            f.setnchannels(1)
            f.setsampwidth(2)
            f.setframerate(rate_hz)
            f.writeframes(np.concatenate(pieces).tobytes())
        tmp_media = Path(tmp) / MEDIA.name
        subprocess.run(
            [
                "ffmpeg",
                "-nostdin",
                "-loglevel",
                "error",
                "-y",
                "-i",
                str(wav),
                "-c:a",
                "aac",
                "-b:a",
                "96k",
                str(tmp_media),
            ],
            check=True,
        )
        os.replace(tmp_media, MEDIA)
    meta = {
        "minutes_requested": minutes,
        "text_sha256": hashlib.sha256(TEXT_FILE.read_bytes()).hexdigest(),
        "paragraphs": len(spoken),
        "reference": " ".join(spoken),
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    MEDIA_META.write_text(json.dumps(meta, indent=1))
    DECODED.unlink(missing_ok=True)
    return meta


def recording(minutes: float, regenerate: bool) -> dict[str, Any]:
    """The cached recording's metadata, generating it when absent, stale or asked to."""
    if not regenerate and MEDIA.is_file() and MEDIA_META.is_file():
        meta = json.loads(MEDIA_META.read_text())
        if (
            meta.get("minutes_requested") == minutes
            and meta.get("text_sha256") == hashlib.sha256(TEXT_FILE.read_bytes()).hexdigest()
        ):
            log.info("using cached %s", MEDIA.relative_to(ROOT))
            return meta
    log.info("generating %.1f min of speech with espeak-ng -> %s", minutes, MEDIA.name)
    return generate_recording(minutes)
