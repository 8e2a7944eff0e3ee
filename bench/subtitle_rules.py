"""Subtitle rule violations per 100 cues: voxflow's compiler, faster-whisper's own segments
written as cues (what most tools do), and stable-ts's regrouping, on one generated recording.

    .venv/bin/python bench/subtitle_rules.py [--minutes 6] [--stable-ts-path DIR]

The recording (``bench/gapped.py``) is sentences read by four voices at 150 to 230 words a
minute (a fast speaker among them) with pauses of 0.3 to 1.5 s. One transcription (voxflow's
stages: Silero VAD, decode windows, faster-whisper, the guard) gives the words every layout
uses, so only the layout differs:

- voxflow: the subtitle compiler under ``netflix-en``;
- faster-whisper segments: bare batched faster-whisper's segments, one cue each, wrapped at
  42 characters (as faster-whisper's examples and most tools write SRT);
- stable-ts: ``WhisperResult.regroup()`` then ``split_by_length(max_chars=42)`` on the same
  faster-whisper words, when stable-ts imports (``pip install stable-ts``, or
  ``--stable-ts-path`` to a folder it was installed into with ``pip install --target``).

Every file is written to ``bench/out/`` and linted by ``voxflow check`` (netflix-en).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.gapped import make, voxflow_asr  # noqa: E402
from tasks.extract import load_wav  # noqa: E402
from tasks.guard import guard  # noqa: E402
from tasks.subtitles import format_timestamp, layout, to_srt  # noqa: E402
from tasks.subtitles.check import RULES, lint, read_subtitles  # noqa: E402
from tasks.subtitles.lines import break_lines, width  # noqa: E402
from tasks.subtitles.rules import rule_set  # noqa: E402

OUT = ROOT / "bench" / "out"
VOICES = (("en-us", 150), ("en-gb", 175), ("en-us+m3", 230), ("en-us+f2", 160))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=6.0, help="length of the recording")
    parser.add_argument("--store", default=str(OUT / "models"), help="model volume (cpu profile)")
    parser.add_argument("--stable-ts-path", default=None, help="a folder stable-ts is in")
    parser.add_argument("--out", default=str(OUT / "subtitle_rules.json"))
    args = parser.parse_args(argv)
    rules = rule_set("netflix-en")

    recording = make(OUT / "speech.wav", args.minutes * 60, 0.8, ("silence",), voices=VOICES)
    audio = load_wav(recording.wav)
    print(f"recording: {recording.seconds / 60:.1f} min, {len(recording.stretches) // 2} sentences")

    profile, ready, spans, raw = voxflow_asr(audio, args.store)
    transcript, _ = guard(raw, spans)

    files = {"voxflow": OUT / "rules-voxflow.srt"}
    files["voxflow"].write_text(to_srt(transcript, rules))

    from faster_whisper import BatchedInferencePipeline, WhisperModel

    options = profile.stages["asr"].options
    model = WhisperModel(str(ready["asr"].path), device="cpu", compute_type=options["compute_type"])
    segments, _ = BatchedInferencePipeline(model).transcribe(
        audio,
        language="en",
        word_timestamps=True,
        beam_size=int(options["beam_size"]),
        batch_size=int(options["batch_size"]),
    )
    segments = list(segments)
    files["faster-whisper segments"] = OUT / "rules-faster-whisper.srt"
    files["faster-whisper segments"].write_text(
        _srt([(s.start, s.end, textwrap.wrap(s.text.strip(), 42)) for s in segments])
    )
    stable = _stable_ts(segments, args.stable_ts_path)
    if stable:
        files["stable-ts regroup"] = OUT / "rules-stable-ts.srt"
        files["stable-ts regroup"].write_text(stable)

    fewest = fewest_timing_violations(transcript, rules)
    rows = {}
    for label, path in files.items():
        cues = read_subtitles(path)
        found = lint(cues, rules)
        by_rule = {rule: sum(v.rule == rule for v in found) for rule in RULES}
        rows[label] = {
            "file": str(path),
            "cues": len(cues),
            "violations": len(found),
            "per_100_cues": round(100 * len(found) / len(cues), 1) if cues else 0.0,
            "by_rule": {k: v for k, v in by_rule.items() if v},
        }
    if not stable:
        rows["stable-ts regroup"] = {"skipped": "stable-ts does not import here"}
    _print(rows)
    timing = sum(rows["voxflow"]["by_rule"].get(r, 0) for r in ("reading-speed", "min-duration"))
    avoidable = rows["voxflow"]["violations"] - min(fewest, timing)
    print(
        f"\nvoxflow: {rows['voxflow']['violations']} violations; at least {fewest} of its "
        f"reading-speed and min-duration ones no layout of these words avoids, so {avoidable} "
        "could have been avoided"
    )
    result = {"rules": rules.name, "rows": rows, "fewest_unavoidable": fewest}
    result["voxflow_avoidable"] = avoidable
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"\nwritten {args.out}")
    return 0


def fewest_timing_violations(transcript, rules) -> int:
    """The fewest cues any layout of these words must leave too fast to read or too short.

    A shortest path like the compiler's, counting only violations: each cue holds one
    speaker's words that fit the lines and span at most the longest duration, starts at its
    first word and can last until the next cue starts (less the minimum gap). A cue whose
    characters need more time than that at the rule set's reading speed, or that cannot
    last the shortest duration, counts one. So ``voxflow's violations - this`` is what a
    rule-respecting layout could have avoided.
    """
    tokens = layout._tokens(transcript)
    n = len(tokens)
    best = [0] + [n + 1] * n
    for i in range(n):
        prefix = len(layout.speaker_prefix(tokens[i].speaker))
        for j in range(i + 1, n + 1):
            group = tokens[i:j]
            if group[-1].speaker != group[0].speaker:
                break
            if j - i > 1 and group[-1].end - group[0].start > rules.max_duration:
                break
            lines = break_lines([t.text for t in group], rules, prefix)
            if lines is None:
                break
            room = max(rules.max_duration, group[-1].end - group[0].start)
            if j < n:
                room = min(room, tokens[j].start - rules.min_gap - group[0].start)
            chars = prefix + sum(width(line, rules) for line in lines)
            bad = chars / rules.max_cps > room + 1e-9 or room + 1e-9 < rules.min_duration
            best[j] = min(best[j], best[i] + int(bad))
    return best[n]


def _stable_ts(segments: list, path: str | None) -> str | None:
    """The same words regrouped by stable-ts, as SRT; None when stable-ts does not import."""
    if path:
        sys.path.insert(0, path)
    try:
        from stable_whisper import WhisperResult
    except ImportError:
        return None
    result = WhisperResult(
        {
            "language": "en",
            "segments": [
                {
                    "start": s.start,
                    "end": s.end,
                    "text": s.text,
                    "words": [
                        {
                            "start": w.start,
                            "end": w.end,
                            "word": w.word,
                            "probability": w.probability,
                        }
                        for w in s.words or ()
                    ],
                }
                for s in segments
                if s.words
            ],
        }
    )
    result.regroup()
    result.split_by_length(max_chars=42)
    return result.to_srt_vtt(word_level=False)


def _srt(cues: list[tuple[float, float, list[str]]]) -> str:
    blocks = [
        f"{n}\n{format_timestamp(a)} --> {format_timestamp(b)}\n" + "\n".join(lines) + "\n"
        for n, (a, b, lines) in enumerate(cues, 1)
        if lines
    ]
    return "\n".join(blocks)


def _print(rows: dict[str, dict]) -> None:
    print(f"\n{'layout':26} {'cues':>5} {'violations':>10} {'per 100 cues':>12}  by rule")
    for label, row in rows.items():
        if "skipped" in row:
            print(f"{label:26} skipped: {row['skipped']}")
            continue
        print(
            f"{label:26} {row['cues']:>5} {row['violations']:>10} {row['per_100_cues']:>12}  "
            + ", ".join(f"{k} {v}" for k, v in row["by_rule"].items())
        )


if __name__ == "__main__":
    raise SystemExit(main())
