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
from tasks.guard import GuardOptions, guard  # noqa: E402
from tasks.guard.repair import repair  # noqa: E402

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
    started = time.perf_counter()
    backend = ready["asr"].load(profile.stages["asr"])
    repaired, mended = repair(guarded, audio, spans, backend, GuardOptions())
    repair_seconds = time.perf_counter() - started
    for label, text, seconds in (
        ("voxflow, no guard", raw, asr_seconds),
        ("voxflow, guard (flags only)", guarded, asr_seconds),
        ("voxflow, guard and repair", repaired, asr_seconds + repair_seconds),
    ):
        shown = text.shown()
        words = [(w.start, w.end, w.text) for s in shown for w in s.words]
        rows[label] = _row(recording, words, seconds)
    rows["voxflow, guard (flags only)"]["guard"] = report.to_dict()
    rows["voxflow, guard and repair"]["repair"] = mended.to_dict()

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
        words = [(w.start, w.end, w.word) for s in segments for w in (s.words or ())]
        rows[label] = _row(recording, words, seconds)

    base = rows["bare faster-whisper, batched"]
    for row in rows.values():
        row["words_per_nonspeech_minute"] = round(row["nonspeech_words"] / nonspeech_min, 2)
        for key, of in (
            ("fewer_than_bare_batched", "nonspeech_words"),
            ("fewer_made_up", "made_up_in_nonspeech"),
        ):
            row[key] = round(1 - row[of] / base[of], 3) if base[of] else None
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


def _row(recording, words: list[tuple[float, float, str]], seconds: float) -> dict:
    """Words in non-speech, by kind, and how many of them are not what was said there or
    nearby: the alignment against the spoken text calls a word in non-speech *made up* when it
    is inserted or substituted, *misplaced* when it matches a spoken word."""
    tokens = [(a, b, t) for a, b, text in words for t in normalise(text).split()]
    reference = normalise(recording.speech_text)
    hypothesis = " ".join(t for _, _, t in tokens)
    kinds = ["insert"] * len(tokens)
    if tokens:
        for chunk in jiwer.process_words(reference, hypothesis).alignments[0]:
            for k in range(chunk.hyp_start_idx, chunk.hyp_end_idx):
                kinds[k] = chunk.type
    by_kind: dict[str, int] = {}
    made_up = 0
    for (a, b, _), op in zip(tokens, kinds, strict=True):
        middle = (a + b) / 2
        where = next(
            (s.kind for s in recording.nonspeech() if s.start + 0.2 < middle < s.end - 0.2), None
        )
        if where:
            by_kind[where] = by_kind.get(where, 0) + 1
            made_up += op != "equal"
    return {
        "nonspeech_words": sum(by_kind.values()),
        "made_up_in_nonspeech": made_up,
        "by_kind": by_kind,
        "words": len(tokens),
        "wer": round(jiwer.wer(reference, hypothesis), 4) if tokens else 1.0,
        "seconds": round(seconds, 2),
    }


def _print(rows: dict[str, dict]) -> None:
    print(
        f"\n{'':32} {'words in':>10} {'per min':>8} {'fewer than':>10} {'made up':>8} "
        f"{'fewer':>6} {'WER':>7}"
    )
    print(f"{'':32} {'non-speech':>10} {'':>8} {'bare batch':>10} {'there':>8} {'':>6}")
    for label, row in rows.items():
        fewer, fewer_made = (
            f"{row[k]:.0%}" if row[k] is not None else "-"
            for k in ("fewer_than_bare_batched", "fewer_made_up")
        )
        print(
            f"{label:32} {row['nonspeech_words']:>10} {row['words_per_nonspeech_minute']:>8} "
            f"{fewer:>10} {row['made_up_in_nonspeech']:>8} {fewer_made:>6} {row['wer']:>7.2%}"
            f"   {row['by_kind']}"
        )


if __name__ == "__main__":
    raise SystemExit(main())
