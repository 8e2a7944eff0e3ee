"""Words written where nobody speaks: voxflow with its hallucination guard, without it, and
bare faster-whisper (batched and sequential), side by side on one generated recording.

    .venv/bin/python bench/hallucination.py [--minutes 6] [--gap 6]

The recording (``bench/gapped.py``) alternates spoken sentences with stretches of a melody,
sung vowels, noise, babble (speech backwards) and silence. A word whose middle falls inside
a non-speech stretch was made up or misplaced; the figure is such words per minute of
non-speech. WER is measured on everything said (lower-cased, punctuation removed). All four
use the cpu profile's faster-whisper model from the volume (``--store``, warmed if needed)
with the same beam size; voxflow runs its own stages (Silero VAD, decode windows, ASR, guard),
as the transcribe flow does, minus the flow itself.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import jiwer  # noqa: E402

from bench.gapped import KINDS, make, voxflow_asr  # noqa: E402
from tasks.extract import load_wav  # noqa: E402
from tasks.guard import guard  # noqa: E402

OUT = ROOT / "bench" / "out"


def normalise(text: str) -> str:
    """Lower case, no punctuation, single spaces."""
    return " ".join(re.sub(r"[^a-z0-9' ]+", " ", text.lower()).split())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=6.0, help="length of the recording")
    parser.add_argument("--gap", type=float, default=6.0, help="seconds of each non-speech stretch")
    parser.add_argument("--store", default=str(OUT / "models"), help="model volume (cpu profile)")
    parser.add_argument("--out", default=str(OUT / "hallucination.json"))
    args = parser.parse_args(argv)

    recording = make(OUT / "gapped.wav", args.minutes * 60, args.gap, KINDS)
    audio = load_wav(recording.wav)
    nonspeech_min = sum(s.end - s.start for s in recording.nonspeech()) / 60
    print(
        f"recording: {recording.seconds / 60:.1f} min, {nonspeech_min:.1f} min of non-speech "
        f"({', '.join(KINDS)}), {len(recording.stretches) // 2} sentences"
    )

    started = time.perf_counter()
    profile, ready, spans, raw = voxflow_asr(audio, args.store)
    asr_seconds = time.perf_counter() - started  # warm (a stat when warmed), VAD and ASR
    options = dict(profile.stages["asr"].options)
    rows = {}
    guarded, report = guard(raw, spans)
    for label, text in (("voxflow, no guard", raw), ("voxflow, guard", guarded)):
        shown = text.shown()
        words = [(w.start, w.end) for s in shown for w in s.words]
        rows[label] = _row(recording, words, " ".join(s.text for s in shown), asr_seconds)
    rows["voxflow, guard"]["guard"] = report.to_dict()

    from faster_whisper import BatchedInferencePipeline, WhisperModel

    model = WhisperModel(
        str(ready["asr"].path), device="cpu", compute_type=options.get("compute_type", "int8")
    )
    beam = int(options.get("beam_size", 5))
    bare = {
        "bare faster-whisper, batched": lambda: BatchedInferencePipeline(model).transcribe(
            audio,
            language="en",
            word_timestamps=True,
            beam_size=beam,
            batch_size=int(options.get("batch_size", 8)),
        ),
        "bare faster-whisper, sequential": lambda: model.transcribe(
            audio, language="en", word_timestamps=True, beam_size=beam
        ),
    }
    for label, run in bare.items():
        started = time.perf_counter()
        segments, _ = run()
        segments = list(segments)
        seconds = time.perf_counter() - started
        words = [(w.start, w.end) for s in segments for w in (s.words or ())]
        rows[label] = _row(recording, words, " ".join(s.text for s in segments), seconds)

    base = rows["bare faster-whisper, batched"]["nonspeech_words"]
    for row in rows.values():
        row["words_per_nonspeech_minute"] = round(row["nonspeech_words"] / nonspeech_min, 2)
        row["fewer_than_bare_batched"] = (
            round(1 - row["nonspeech_words"] / base, 3) if base else None
        )
    _print(rows)
    result = {
        "recording": {
            "seconds": round(recording.seconds, 1),
            "nonspeech_minutes": round(nonspeech_min, 2),
            "kinds": list(KINDS),
            "gap_s": args.gap,
        },
        "model": ready["asr"].model,
        "rows": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"\nwritten {args.out}")
    return 0


def _row(recording, words: list[tuple[float, float]], text: str, seconds: float) -> dict:
    by_kind = {}
    for stretch in recording.nonspeech():
        inside = [w for w in words if stretch.start + 0.2 < (w[0] + w[1]) / 2 < stretch.end - 0.2]
        by_kind[stretch.kind] = by_kind.get(stretch.kind, 0) + len(inside)
    return {
        "nonspeech_words": recording.words_in_nonspeech(words),
        "by_kind": by_kind,
        "words": len(words),
        "wer": round(jiwer.wer(normalise(recording.speech_text), normalise(text)), 4),
        "seconds": round(seconds, 2),
    }


def _print(rows: dict[str, dict]) -> None:
    print(f"\n{'':34} {'words in':>9} {'per min':>8} {'fewer than':>11} {'WER':>7}")
    print(f"{'':34} {'non-speech':>9} {'':>8} {'bare batched':>11}")
    for label, row in rows.items():
        fewer = row["fewer_than_bare_batched"]
        shown = f"{fewer:.0%}" if fewer is not None else "-"
        print(
            f"{label:34} {row['nonspeech_words']:>9} {row['words_per_nonspeech_minute']:>8} "
            f"{shown:>11} {row['wer']:>7.2%}   by kind: {row['by_kind']}"
        )


if __name__ == "__main__":
    raise SystemExit(main())
