"""Stages: separate -> vad -> asr -> diarize through voxflow's backends, as the stage tasks call
them, each load and run timed and its memory measured."""

from __future__ import annotations

import dataclasses
import logging
import math
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.gpu import PROFILE, SAMPLE_RATE
from bench.gpu.memory import DeviceMemory, sampled_peak
from bench.gpu.packages import cublas12_status, stand_in_for_pyav

log = logging.getLogger("gpu_check")


@dataclass
class StageRow:
    """One stage's figures."""

    stage: str
    backend: str
    model: str
    load_s: float | None = None
    seconds: float | None = None
    rtf: float | None = None
    torch_peak_mib: float | None = None
    torch_start_mib: float | None = None
    torch_reserved_peak_mib: float | None = None
    gpu_before_mib: float | None = None
    gpu_peak_mib: float | None = None
    gpu_after_mib: float | None = None
    note: str = ""
    error: str | None = None
    traceback: str | None = None


@dataclass
class Run:
    """What the stages hand each other, as the stage tasks pass it (paths and records)."""

    media: Path
    duration: float
    audio_path: Path | None = None
    spans: list[Any] = field(default_factory=list)
    transcript: Any = None


def on_device(spec: Any, device: str) -> tuple[Any, str]:
    """The profile's stage spec for ``device``: unchanged for cuda; for another device its
    ``device`` option, and for ASR ``compute_type: int8`` (as the cpu profile has)."""
    if device == "cuda":
        return spec, ""
    options = {**spec.options, "device": device}
    changed = f"device: {device}"
    if "compute_type" in options:
        options["compute_type"] = "int8"
        changed += ", compute_type: int8"
    return dataclasses.replace(spec, options=options), changed


def measure(
    row: StageRow,
    load: Callable[[], Any],
    work: Callable[[Any], str],
    duration: float,
    memory: DeviceMemory | None,
    cuda: bool,
) -> None:
    """Load a stage's backend and run it, filling ``row`` with times, memory and a note.

    A failure is recorded in the row (``error``, ``traceback``) and does not stop the check.
    """
    import torch

    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        row.torch_start_mib = round(torch.cuda.memory_allocated() / 2**20, 1)
    with sampled_peak(memory) as figures:
        try:
            started = time.perf_counter()
            backend = load()
            row.load_s = round(time.perf_counter() - started, 2)
            started = time.perf_counter()
            note = work(backend)
            if cuda:
                torch.cuda.synchronize()
            row.seconds = round(time.perf_counter() - started, 2)
            row.rtf = round(row.seconds / duration, 4)
            row.note = "; ".join(n for n in (row.note, note) if n)
        except Exception as e:  # recorded, reported, and the exit status says so
            row.error = f"{type(e).__name__}: {e}"
            row.traceback = traceback.format_exc()[-4000:]
            log.error("%s failed: %s", row.stage, row.error)
    if cuda:
        row.torch_peak_mib = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        row.torch_reserved_peak_mib = round(torch.cuda.max_memory_reserved() / 2**20, 1)
    for key in ("before", "peak", "after"):
        value = figures[key]
        setattr(row, f"gpu_{key}_mib", None if value is None else round(value, 1))


PROMPT_TOKENS = 4
"""faster-whisper's batched prompt: <|startoftranscript|>, language, task, <|notimestamps|>."""
MAX_TOKENS_PER_WINDOW = 224
"""What CTranslate2 decodes at most per window uncapped: half of Whisper's 448 positions."""


class GenerationCap:
    """Caps and counts the tokens faster-whisper decodes per window, on one loaded backend.

    The backend's options have no decoding cap (a trained model ends each window itself), so
    the loaded pipeline's (or, with batch_size 1, the model's) ``transcribe`` is wrapped on that
    instance alone, passing faster-whisper's own ``max_new_tokens``. CTranslate2 decodes at most
    half of prompt + ``max_new_tokens`` (the same rule that makes 224 of Whisper's 448 the
    uncapped limit), so ``2 * tokens - 4`` asks for ``tokens`` per window; the tokens of the
    segments returned are counted, so the report shows what was decoded.

    Args:
        backend: The asr backend, as ``load_backend`` returned it.
        tokens: Tokens to decode per 30 s window, :data:`PROMPT_TOKENS` to
            :data:`MAX_TOKENS_PER_WINDOW`.
    """

    def __init__(self, backend: Any, tokens: int) -> None:
        self.max_new_tokens = 2 * tokens - PROMPT_TOKENS
        self.decoded = 0
        target = backend.pipeline if backend.pipeline is not None else backend.model
        self._transcribe = target.transcribe
        target.transcribe = self

    def __call__(self, *args: Any, **kwargs: Any) -> tuple[Iterator[Any], Any]:
        segments, info = self._transcribe(*args, max_new_tokens=self.max_new_tokens, **kwargs)
        return self._counted(segments), info

    def _counted(self, segments: Iterator[Any]) -> Iterator[Any]:
        for segment in segments:
            self.decoded += len(segment.tokens)
            yield segment


def fixed_windows(duration: float, window: float = 30.0) -> list[Any]:
    """Back-to-back ``window``-second spans over the whole recording."""
    from tasks.transcript import SpeechSpan

    count = math.ceil(duration / window)
    return [
        SpeechSpan(round(i * window, 3), round(min((i + 1) * window, duration), 3))
        for i in range(count)
    ]


def run_stages(
    run: Run,
    models: dict[str, Path],
    unbuilt: dict[str, str],
    device: str,
    tokens_per_window: int,
    memory: DeviceMemory | None,
) -> list[StageRow]:
    """separate -> vad -> asr -> diarize through voxflow's backends, as the stage tasks run them.

    Args:
        run: The recording; the stages fill in what they hand each other.
        models: Stage (and ``segmentation``, ``embedding``) -> the folder built for it.
        unbuilt: Catalog name -> why it could not be built: stages needing it are not run.
        device: Where the models run (the profile's ``cuda``, or ``cpu`` for a smoke test).
        tokens_per_window: The ASR decoding cap (:class:`GenerationCap`).
        memory: The device's memory reader, None off the GPU.

    Returns:
        One row per stage, in order, plus a ``translate`` row saying it was not run.
    """
    from profiles import load_profile
    from tasks.asr import decode_windows
    from tasks.diarize import SpeakerCount
    from tasks.diarize.assign import assign_speakers
    from tasks.extract import load_wav
    from tasks.registry import load_backend
    from tasks.transcript import Transcript

    profile = load_profile(PROFILE)
    cuda = device == "cuda"
    rows: list[StageRow] = []

    def stage_row(name: str) -> tuple[Any, StageRow]:
        spec, changed = on_device(profile.stages[name], device)
        row = StageRow(name, spec.backend, spec.model or "", note=changed)
        rows.append(row)
        return spec, row

    def measured(
        row: StageRow, spec: Any, load: Callable[[], Any], work: Callable[[Any], str]
    ) -> None:
        missing = [m for m in spec.catalog_models() if m in unbuilt]
        if missing:
            row.error = f"not run: {missing[0]} could not be built ({unbuilt[missing[0]]})"
            return
        measure(row, load, work, run.duration, memory, cuda)

    # separate: the voice stem, which every later stage reads in place of the recording
    spec, row = stage_row("separate")

    def separate(backend: Any) -> str:
        separated = backend.separate_file(run.media, run.media.with_name(f"{backend.stem}.wav"))
        run.audio_path = Path(separated.path)
        return f"{separated.windows} window(s) of {backend.options.window_s:g} s"

    measured(row, spec, lambda: load_backend(spec, models["separate"]), separate)
    if run.audio_path is None:
        run.audio_path = run.media
        row.note = "; ".join(n for n in (row.note, "later stages read the recording itself") if n)
    audio = load_wav(run.audio_path)

    # vad
    spec, row = stage_row("vad")

    def detect(backend: Any) -> str:
        run.spans = backend.speech_spans(audio, SAMPLE_RATE)
        speech = sum(s.end - s.start for s in run.spans)
        return f"{len(run.spans)} span(s), {speech:.1f} s of speech"

    measured(row, spec, lambda: load_backend(spec, models["vad"]), detect)

    # asr
    spec, row = stage_row("asr")
    if not run.spans:
        run.spans = fixed_windows(run.duration)
        row.note = "; ".join(
            n
            for n in (row.note, "VAD found no speech: fixed 30 s windows over the whole recording")
            if n
        )
    if cuda:
        problem = cublas12_status()
        if problem:
            row.note = "; ".join(n for n in (row.note, problem) if n)

    caps: list[GenerationCap] = []

    def load_asr() -> Any:
        stand_in_for_pyav()
        backend = load_backend(spec, models["asr"])
        caps.append(GenerationCap(backend, tokens_per_window))
        return backend

    def recognise(backend: Any) -> str:
        windows = len(decode_windows(audio, run.spans))
        result = backend.transcribe(audio, run.spans, None)
        run.transcript = Transcript(
            language=result.language, duration=result.duration, segments=result.segments
        )
        words = sum(len(s.words) for s in result.segments)
        return (
            f"{windows} window(s), {caps[0].decoded / windows:.0f} tokens decoded per window "
            f"(capped at {tokens_per_window}); {words} word(s), language {result.language}"
        )

    measured(row, spec, load_asr, recognise)
    if run.transcript is None:  # diarization still runs; it has no words to label
        run.transcript = Transcript(language="en", duration=run.duration)

    # diarize: speaker turns, then the transcript's words labelled, as the stage does
    spec, row = stage_row("diarize")
    submodels = {
        "segmentation_model": str(models["segmentation"]),
        "embedding_model": str(models["embedding"]),
    }

    def diarize(backend: Any) -> str:
        diarization = backend.diarize(audio, SAMPLE_RATE, SpeakerCount())
        labelled = assign_speakers(run.transcript, diarization)
        return (
            f"{len(diarization.speakers)} speaker(s), {len(diarization.turns)} turn(s), "
            f"{len(labelled.segments)} segment(s) labelled"
        )

    measured(row, spec, lambda: load_backend(spec, models["diarize"], submodels), diarize)

    translate = profile.stages.get("translate")
    if translate is not None:
        rows.append(
            StageRow(
                "translate",
                translate.backend,
                translate.model or "",
                note="not run: needs an NLLB tokenizer, which cannot be made offline",
            )
        )
    return rows
