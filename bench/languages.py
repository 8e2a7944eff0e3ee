"""Speech in other languages and a recording that changes language: voxflow's cpu profile
(language detected per window) against bare faster-whisper on the same model (language
detected once per file), in one run.

    .venv/bin/python bench/languages.py [--store bench/out/models]

Each language's text is spoken by espeak-ng (`-v en-us|es|it|de|fr`, 150 words a minute). For
every single-language recording the table gives WER (lower-cased, punctuation removed) and
the language each side reported; for the recording that switches language (English, Spanish,
Italian, German, English, 1 s apart) it gives WER over everything said and the share of
transcribed seconds whose language is the one spoken there (a segment is judged by its
middle). voxflow runs its own stages (Silero VAD, decode windows, per-window detection,
batched ASR), as the transcribe flow does, minus the flow; bare runs
``WhisperModel.transcribe(audio, beam_size=5)``. Times are the two sides' ASR seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import jiwer  # noqa: E402
import numpy as np  # noqa: E402

OUT = ROOT / "bench" / "out"
RATE = 16_000
TEXTS = {
    "en": "The weather today is cold and clear. A small boat sails across the quiet lake, and "
    "three children watch it from the hill. Please remember to save your work often.",
    "es": "El tiempo hoy es frío y despejado. Un pequeño barco navega por el lago tranquilo, y "
    "tres niños lo miran desde la colina. Por favor, recuerda guardar tu trabajo a menudo.",
    "it": "Il tempo oggi è freddo e sereno. Una piccola barca attraversa il lago tranquillo, e "
    "tre bambini la guardano dalla collina. Ricordati di salvare spesso il tuo lavoro.",
    "de": "Das Wetter ist heute kalt und klar. Ein kleines Boot segelt über den ruhigen See, "
    "und drei Kinder sehen es vom Hügel aus. Denk daran, deine Arbeit oft zu speichern.",
    "fr": "Le temps est froid et clair aujourd'hui. Un petit bateau traverse le lac tranquille, "
    "et trois enfants le regardent depuis la colline. Pense à enregistrer souvent ton travail.",
}
VOICES = {"en": "en-us", "es": "es", "it": "it", "de": "de", "fr": "fr"}
SWITCHES = ("en", "es", "it", "de", "en")


def normalise(text: str) -> str:
    return " ".join(re.sub(r"[^\w' ]+", " ", text.lower()).split())


def spoken(language: str, folder: Path) -> np.ndarray:
    """The language's text from espeak-ng, at 16 kHz mono float32."""
    wav = folder / f"{language}.wav"
    subprocess.run(
        ["espeak-ng", "-v", VOICES[language], "-s", "150", "-w", str(wav), TEXTS[language]],
        check=True,
    )
    with wave.open(str(wav)) as w:
        rate = w.getframerate()
        audio = np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(np.float32) / 32768
    step = rate / RATE  # espeak speaks at 22.05 kHz; linear resampling is enough here
    return np.interp(np.arange(0, len(audio), step), np.arange(len(audio)), audio).astype(
        np.float32
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", default=str(OUT / "models"), help="model volume (cpu profile)")
    parser.add_argument("--out", default=str(OUT / "languages.json"))
    args = parser.parse_args(argv)

    from faster_whisper import WhisperModel

    from blocks.volume import Volume
    from profiles import load_catalog, load_profile
    from tasks.warm.preflight import preflight

    profile = load_profile("cpu")
    volume = Volume(root=args.store)
    for name in profile.models():
        volume.warm(load_catalog()[name])
    ready = preflight(profile, volume)
    vad = ready["vad"].load(profile.stages["vad"])
    asr = ready["asr"].load(profile.stages["asr"])
    options = profile.stages["asr"].options
    bare = WhisperModel(str(ready["asr"].path), device="cpu", compute_type=options["compute_type"])

    rows: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as scratch:
        clips = {lang: spoken(lang, Path(scratch)) for lang in TEXTS}
    for language, audio in clips.items():
        rows[language] = compare(audio, [(language, 0.0, len(audio) / RATE)], vad, asr, bare)
    pause = np.zeros(RATE, np.float32)
    parts, truth, at = [], [], 0.0
    for language in SWITCHES:
        truth.append((language, at, at + len(clips[language]) / RATE))
        parts += [clips[language], pause]
        at += (len(clips[language]) + len(pause)) / RATE
    rows["switching " + "-".join(SWITCHES)] = compare(np.concatenate(parts), truth, vad, asr, bare)

    print(f"model {ready['asr'].model}, {options['compute_type']}, beam {options['beam_size']}")
    print(
        f"{'recording':26} {'WER vx':>7} {'WER bare':>8} {'lang vx':>14} {'lang bare':>10} "
        f"{'right s vx':>10} {'right s bare':>12} {'asr s vx/bare':>14}"
    )
    for name, row in rows.items():
        print(
            f"{name:26} {row['wer']['voxflow']:7.1%} {row['wer']['bare']:8.1%} "
            f"{','.join(row['languages']['voxflow']):>14} {row['languages']['bare']:>10} "
            f"{row['right_language']['voxflow']:10.0%} {row['right_language']['bare']:12.0%} "
            f"{row['seconds']['voxflow']:6.1f}/{row['seconds']['bare']:.1f}"
        )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"model": ready["asr"].model, "rows": rows}, indent=2))
    print(f"\nwritten {args.out}")
    return 0


def compare(audio: np.ndarray, truth: list[tuple[str, float, float]], vad, asr, bare) -> dict:
    """WER, languages reported and the share of seconds in the right language, both sides."""
    reference = normalise(" ".join(TEXTS[lang] for lang, _, _ in truth))

    started = time.perf_counter()
    transcript = asr.transcribe(audio, vad.speech_spans(audio, RATE), None)
    ours = time.perf_counter() - started
    mine = [(s.start, s.end, s.language or transcript.language) for s in transcript.segments]

    started = time.perf_counter()
    segments, info = bare.transcribe(audio, beam_size=5)
    segments = list(segments)
    theirs = time.perf_counter() - started

    def right(spans: list[tuple[float, float, str]]) -> float:
        total = sum(b - a for a, b, _ in spans)
        good = sum(b - a for a, b, lang in spans if lang == _truth(truth, (a + b) / 2))
        return good / total if total else 0.0

    return {
        "seconds_of_audio": round(len(audio) / RATE, 1),
        "wer": {
            "voxflow": round(jiwer.wer(reference, normalise(transcript.text)), 4),
            "bare": round(jiwer.wer(reference, normalise(" ".join(s.text for s in segments))), 4),
        },
        "languages": {"voxflow": list(transcript.languages()), "bare": info.language},
        "right_language": {
            "voxflow": round(right(mine), 3),
            "bare": round(right([(s.start, s.end, info.language) for s in segments]), 3),
        },
        "seconds": {"voxflow": round(ours, 2), "bare": round(theirs, 2)},
    }


def _truth(truth: list[tuple[str, float, float]], t: float) -> str:
    return min(truth, key=lambda p: 0 if p[1] <= t <= p[2] else min(abs(t - p[1]), abs(t - p[2])))[
        0
    ]


if __name__ == "__main__":
    raise SystemExit(main())
