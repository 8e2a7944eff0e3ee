"""Whisper through Hugging Face transformers, batched over VAD windows, from a local snapshot.

The snapshot is a ``save_pretrained`` folder (``config.json``, ``generation_config.json``,
safetensors weights, tokenizer and feature-extractor files). Word timings come from the ASR
pipeline's ``return_timestamps="word"`` (cross-attention alignment heads + DTW, so the
model's ``generation_config.json`` must list ``alignment_heads``, as the openai/whisper-*
snapshots do); word probabilities from one teacher-forced pass over each window's text.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from tasks.asr import (
    AsrBackend,
    Detected,
    check_language,
    decode_windows,
    language_runs,
    main_language,
    split_sentences,
)
from tasks.backend import require_positive
from tasks.extract import SAMPLE_RATE
from tasks.transcript import Segment, SpeechSpan, Transcript, Word
from voxflow.errors import BackendUnavailable, BadInput, ProfileError

log = logging.getLogger(__name__)

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

    def __init__(self, model_path: Path, options: TransformersWhisperOptions) -> None:
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
            for window in decode_windows(audio, spans, MAX_WINDOW_S)
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
            detected = self._detect_languages(clips)  # per window, so a change is heard
        else:
            detected = [Detected(language or "en")] * len(clips)

        opts = self.options
        segments: list[Segment] = []
        for found, members in language_runs(detected):
            run = [windows[i] for i in members]
            run_clips = [clips[i] for i in members]
            generate: dict[str, Any] = {"num_beams": opts.beam_size}
            if self.multilingual:
                generate.update(language=found.language, task="transcribe")
            results = self.pipeline(
                run_clips,
                batch_size=opts.batch_size,
                return_timestamps="word" if opts.word_timestamps else True,
                generate_kwargs=generate,
            )
            per_window = [
                _words(w, r) if opts.word_timestamps else []
                for w, r in zip(run, results, strict=True)
            ]
            if any(per_window):
                per_window = self._with_probabilities(run_clips, per_window, found.language)
            for window, result, words in zip(run, results, per_window, strict=True):
                segments.extend(
                    replace(s, language=found.language, language_probability=found.probability)
                    for s in _segments(window, result, words, opts.word_timestamps)
                )
                log.info("asr: %.0f / %.0f s", window.end, duration)
        segments.sort(key=lambda s: s.start)
        return Transcript(
            language=main_language(segments, detected[0].language),
            duration=duration,
            segments=tuple(segments),
        )

    def _with_probabilities(
        self, clips: list[np.ndarray], per_window: list[list[Word]], language: str
    ) -> list[list[Word]]:
        """Each word's probability: the mean probability of its tokens, as Whisper reports it.

        The pipeline returns no scores, so each window's transcript is scored again in one
        teacher-forced pass (encoder plus one decoder step for the whole text, batched): the
        probability of every token given the audio and the tokens before it.
        """
        import torch

        tokenizer = self.processor.tokenizer
        prefix = self._prompt(language)
        out: list[list[Word]] = []
        for first in range(0, len(clips), self.options.batch_size):
            batch = range(first, min(first + self.options.batch_size, len(clips)))
            pieces = [
                [tokenizer.encode(w.text, add_special_tokens=False) for w in per_window[i]]
                for i in batch
            ]
            rows = [prefix + [t for ids in word_ids for t in ids] for word_ids in pieces]
            width = max(len(r) for r in rows)
            pad = self.model.generation_config.eos_token_id
            decoder = torch.tensor([r + [pad] * (width - len(r)) for r in rows])
            features = self.processor.feature_extractor(
                [clips[i] for i in batch], sampling_rate=SAMPLE_RATE, return_tensors="pt"
            ).input_features
            with torch.inference_mode():
                logits = self.model(
                    input_features=features.to(self.model.device, dtype=self.model.dtype),
                    decoder_input_ids=decoder.to(self.model.device),
                ).logits.float()
            # logits at position t predict the token at t + 1
            chosen = (
                logits[:, :-1].log_softmax(-1).gather(-1, decoder[:, 1:, None].to(logits.device))
            )
            probs = chosen[..., 0].exp().cpu().numpy()
            for row, i, word_ids in zip(range(len(rows)), batch, pieces, strict=True):
                at = len(prefix) - 1
                words = []
                for word, ids in zip(per_window[i], word_ids, strict=True):
                    p = float(probs[row, at : at + len(ids)].mean()) if ids else 0.0
                    words.append(replace(word, probability=round(p, 4)))
                    at += len(ids)
                out.append(words)
        return out

    def _prompt(self, language: str) -> list[int]:
        """The decoder prompt of a transcription without timestamps, as token ids."""
        generation = self.model.generation_config
        ids = [generation.decoder_start_token_id]
        if self.multilingual:
            ids += [generation.lang_to_id[f"<|{language}|>"], generation.task_to_id["transcribe"]]
        return ids + [generation.no_timestamps_token_id]

    def _detect_languages(self, clips: list[np.ndarray]) -> list[Detected]:
        """The model's language detection on each clip, with its probability: the decoder's
        first step after the start token, over the language tokens only, a batch at a time."""
        import torch

        generation = self.model.generation_config
        ids = sorted(self._id_to_language)
        found: list[Detected] = []
        for first in range(0, len(clips), self.options.batch_size):
            batch = clips[first : first + self.options.batch_size]
            features = self.processor.feature_extractor(
                batch, sampling_rate=SAMPLE_RATE, return_tensors="pt"
            ).input_features
            features = features.to(self.model.device, dtype=self.model.dtype)
            start = torch.full((len(batch), 1), generation.decoder_start_token_id)
            with torch.inference_mode():
                logits = self.model(
                    input_features=features, decoder_input_ids=start.to(self.model.device)
                ).logits[:, -1, ids]
            probs = logits.float().softmax(-1).cpu().numpy()
            for row in probs:
                order = np.argsort(row)[::-1][:5]
                top = tuple((self._id_to_language[ids[k]], round(float(row[k]), 4)) for k in order)
                found.append(Detected(top[0][0], top[0][1], top))
        return found


def _pieces(window: SpeechSpan, duration: float) -> list[SpeechSpan]:
    """The window clipped to the audio, cut into pieces Whisper can see at once."""
    start, end = max(0.0, window.start), min(window.end, duration)
    pieces = []
    while end - start > 0.0:
        stop = min(end, start + MAX_WINDOW_S)
        pieces.append(SpeechSpan(start, stop))
        start = stop
    return pieces


def _clamp(window: SpeechSpan, t: float | None, fallback: float) -> float:
    """A pipeline time (from the window's start, maybe open or past the window) in the audio.

    The pipeline times chunks from the window's start, and may leave an end open or (for an
    untrained or confused model) run past the window, so times are clamped into it.
    """
    value = fallback if t is None else window.start + float(t)
    return round(min(max(value, window.start), window.end), 3)


def _words(window: SpeechSpan, result: dict[str, Any]) -> list[Word]:
    """The words of one window's word-level pipeline result, timed from the start of the audio."""
    words = []
    for chunk in result.get("chunks") or []:
        if not chunk["text"].strip():
            continue
        start, end = chunk["timestamp"]
        begin = _clamp(window, start, window.start)
        end = max(begin, _clamp(window, end, window.end))
        words.append(Word(start=begin, end=end, text=chunk["text"]))
    return words


def _segments(
    window: SpeechSpan, result: dict[str, Any], words: list[Word], word_level: bool
) -> list[Segment]:
    """Segments of one window: its words split into sentences, or the pipeline's chunks."""
    if not word_level:
        out = []
        chunks = result.get("chunks") or []
        for chunk in chunks:
            start, end = chunk["timestamp"]
            text = chunk["text"].strip()
            if text:
                out.append(
                    Segment(
                        start=_clamp(window, start, window.start),
                        end=_clamp(window, end, window.end),
                        text=text,
                    )
                )
        if not chunks and result.get("text", "").strip():
            out.append(Segment(window.start, window.end, result["text"].strip()))
        return out
    if not words:
        return []
    # One segment per window, split after each sentence, as the faster-whisper backend does.
    text = "".join(w.text for w in words).strip()
    whole = Segment(start=words[0].start, end=words[-1].end, text=text, words=tuple(words))
    return split_sentences(whole)
