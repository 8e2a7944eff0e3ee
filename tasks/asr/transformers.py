"""Whisper through Hugging Face transformers, batched over VAD windows, from a local snapshot.

The snapshot is a ``save_pretrained`` folder (``config.json``, ``generation_config.json``,
safetensors weights, tokenizer and feature-extractor files). Word timings come from the ASR
pipeline's ``return_timestamps="word"`` (cross-attention alignment heads + DTW, so the
model's ``generation_config.json`` must list ``alignment_heads``, as the openai/whisper-*
snapshots do).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tasks.asr import AsrBackend, check_language, group_spans, split_sentences
from tasks.backend import require_positive
from tasks.transcript import Segment, SpeechSpan, Transcript, Word
from voxflow.errors import BackendUnavailable, BadInput, ProfileError

log = logging.getLogger(__name__)

SAMPLE_RATE = 16_000
MAX_WINDOW_S = 30.0  # Whisper's receptive field: longer windows are cut into pieces
DTYPES = ("float32", "float16", "bfloat16")


@dataclass(frozen=True)
class TransformersWhisperOptions:
    """transformers Whisper options.

    Attributes:
        device: torch device: ``cpu``, ``cuda``, ``cuda:1``, ``mps``.
        dtype: Weights and activations: ``float32``, ``float16`` or ``bfloat16``.
        batch_size: VAD windows decoded together.
        beam_size: Beam width (1 is greedy).
        word_timestamps: Time each word (needed for exact subtitle cues); off gives segment
            timings only.
    """

    device: str = "cpu"
    dtype: str = "float32"
    batch_size: int = 8
    beam_size: int = 5
    word_timestamps: bool = True

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ProfileError(
                f"unknown dtype {self.dtype!r}", key_path="stages.asr.options.dtype", allowed=DTYPES
            )
        require_positive(self, ("batch_size", "beam_size"), "stages.asr.options")


class TransformersWhisperAsr(AsrBackend):
    """``WhisperForConditionalGeneration`` behind the transformers ASR pipeline."""

    name = "transformers"
    Options = TransformersWhisperOptions
    requires = (("transformers", "transformers"), ("torch", "torch"))

    def __init__(self, model_path: Path | None, options: TransformersWhisperOptions) -> None:
        super().__init__(model_path, options)
        try:
            import torch
            from transformers import (
                WhisperForConditionalGeneration,
                WhisperProcessor,
                pipeline,
            )
        except ImportError as e:
            raise BackendUnavailable(
                "asr", self.name, "transformers", "install it with `pip install transformers torch`"
            ) from e

        dtype = getattr(torch, options.dtype)
        path = str(model_path)
        self.processor = WhisperProcessor.from_pretrained(path, local_files_only=True)
        self.model = WhisperForConditionalGeneration.from_pretrained(
            path, local_files_only=True, dtype=dtype
        )
        self.model.to(options.device).eval()
        generation = self.model.generation_config
        self.multilingual = bool(getattr(generation, "is_multilingual", False))
        self._id_to_language = {
            token_id: token.strip("<|>")
            for token, token_id in (getattr(generation, "lang_to_id", None) or {}).items()
        }
        if options.word_timestamps and not getattr(generation, "alignment_heads", None):
            raise BadInput(
                f"the model in {path} has no alignment_heads in generation_config.json, so "
                "words cannot be timed; add them or set word_timestamps: false"
            )
        self.pipeline = pipeline(
            "automatic-speech-recognition",
            model=self.model,
            tokenizer=self.processor.tokenizer,
            feature_extractor=self.processor.feature_extractor,
            device=options.device,
            dtype=dtype,
        )

    def transcribe(
        self, audio: np.ndarray, spans: list[SpeechSpan], language: str | None
    ) -> Transcript:
        """Transcribe the speech windows of 16 kHz audio.

        Raises:
            BadInput: A language other than English was asked of an English-only model.
        """
        duration = len(audio) / SAMPLE_RATE
        check_language(self.model_path, self.multilingual, language)
        windows = [
            piece
            for window in group_spans(spans, MAX_WINDOW_S)
            for piece in _pieces(window, duration)
        ]
        if not windows:
            return Transcript(language=language or "en", duration=duration)
        clips = [
            np.ascontiguousarray(
                audio[int(w.start * SAMPLE_RATE) : int(w.end * SAMPLE_RATE)], dtype=np.float32
            )
            for w in windows
        ]
        if self.multilingual and not language:
            language = self._detect_language(clips[0])
        language = language or "en"

        opts = self.options
        generate: dict[str, Any] = {"num_beams": opts.beam_size}
        if self.multilingual:
            generate.update(language=language, task="transcribe")
        results = self.pipeline(
            clips,
            batch_size=opts.batch_size,
            return_timestamps="word" if opts.word_timestamps else True,
            generate_kwargs=generate,
        )
        segments: list[Segment] = []
        for window, result in zip(windows, results, strict=True):
            segments.extend(_segments(window, result, opts.word_timestamps))
            log.info("asr: %.0f / %.0f s", window.end, duration)
        segments.sort(key=lambda s: s.start)
        return Transcript(language=language, duration=duration, segments=tuple(segments))

    def _detect_language(self, clip: np.ndarray) -> str:
        import torch

        features = self.processor.feature_extractor(
            clip, sampling_rate=SAMPLE_RATE, return_tensors="pt"
        ).input_features
        features = features.to(self.model.device, dtype=self.model.dtype)
        with torch.inference_mode():
            token_id = int(self.model.detect_language(features)[0])
        return self._id_to_language.get(token_id, "en")


def _pieces(window: SpeechSpan, duration: float) -> list[SpeechSpan]:
    """The window clipped to the audio, cut into pieces Whisper can see at once."""
    start, end = max(0.0, window.start), min(window.end, duration)
    pieces = []
    while end - start > 0.0:
        stop = min(end, start + MAX_WINDOW_S)
        pieces.append(SpeechSpan(start, stop))
        start = stop
    return pieces


def _segments(window: SpeechSpan, result: dict[str, Any], word_level: bool) -> list[Segment]:
    """Segments of one window's pipeline result, timed from the start of the audio.

    The pipeline times chunks from the window's start, and may leave an end open or (for an
    untrained or confused model) run past the window, so times are clamped into it.
    """

    def clamp(t: float | None, fallback: float) -> float:
        value = fallback if t is None else window.start + float(t)
        return round(min(max(value, window.start), window.end), 3)

    chunks = result.get("chunks") or []
    if not word_level:
        out = []
        for chunk in chunks:
            start, end = chunk["timestamp"]
            text = chunk["text"].strip()
            if text:
                out.append(
                    Segment(
                        start=clamp(start, window.start),
                        end=clamp(end, window.end),
                        text=text,
                    )
                )
        if not chunks and result.get("text", "").strip():
            out.append(Segment(window.start, window.end, result["text"].strip()))
        return out

    words = []
    for chunk in chunks:
        if not chunk["text"].strip():
            continue
        start, end = chunk["timestamp"]
        begin = clamp(start, window.start)
        words.append(Word(start=begin, end=max(begin, clamp(end, window.end)), text=chunk["text"]))
    if not words:
        return []
    # One segment per window, split after each sentence, as the faster-whisper backend does.
    text = "".join(w.text for w in words).strip()
    whole = Segment(start=words[0].start, end=words[-1].end, text=text, words=tuple(words))
    return split_sentences(whole)
