"""Whisper on OpenVINO through openvino-genai's ``WhisperPipeline``, from a local IR folder.

The folder is an optimum-intel export (``optimum-cli export openvino``), as published in the
OpenVINO/whisper-*-ov repositories: encoder and stateful decoder IR, the tokenizer and
detokenizer IR that openvino-tokenizers made, and the Hugging Face config files. The pipeline
decodes one VAD window at a time (it has no batch API for Whisper); word timings come from its
``word_timestamps`` mode, which must be chosen when the pipeline is built.

Exporting needs optimum-intel, which pins transformers below what the other stages use, so
voxflow never exports: the warm flow copies a published export into the volume.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from tasks.asr import (
    AsrBackend,
    check_language,
    decode_windows,
    main_language,
    split_sentences,
)
from tasks.backend import require_positive
from tasks.extract import SAMPLE_RATE
from tasks.transcript import Segment, SpeechSpan, Transcript, Word
from voxflow.errors import BackendUnavailable, ModelNotWarmed

log = logging.getLogger(__name__)

REQUIRED_FILES = (
    "openvino_encoder_model.xml",
    "openvino_decoder_model.xml",
    "openvino_tokenizer.xml",
    "openvino_detokenizer.xml",
    "generation_config.json",
)
"""What WhisperPipeline opens; a folder without them fails here, naming them."""


@dataclass(frozen=True)
class OpenVinoWhisperOptions:
    """openvino-genai Whisper options.

    Attributes:
        device: OpenVINO device: ``CPU``, ``GPU``, ``GPU.1``, ``NPU`` or ``AUTO``.
        beam_size: Beam width (1 is greedy, the fastest on CPU).
        word_timestamps: Time each word (needed for exact subtitle cues).
        max_new_tokens: Tokens decoded per 30 s window at most.
    """

    device: str = "CPU"
    beam_size: int = 1
    word_timestamps: bool = True
    max_new_tokens: int = 440

    def __post_init__(self) -> None:
        require_positive(self, ("beam_size", "max_new_tokens"), "stages.asr.options")


class OpenVinoWhisperAsr(AsrBackend):
    """``openvino_genai.WhisperPipeline`` over the VAD windows."""

    name = "openvino"
    Options = OpenVinoWhisperOptions
    requires = (("openvino_genai", "openvino-genai"), ("openvino", "openvino"))

    def __init__(self, model_path: Path, options: OpenVinoWhisperOptions) -> None:
        super().__init__(model_path, options)
        folder = Path(str(model_path))
        missing = [name for name in REQUIRED_FILES if not (folder / name).is_file()]
        if missing:
            raise ModelNotWarmed(
                folder.name,
                str(folder),
                "not an OpenVINO Whisper export (from `optimum-cli export openvino`); missing "
                + ", ".join(missing),
                "voxflow warm --profile openvino",
            )
        try:
            import openvino_genai
        except ImportError as e:
            raise BackendUnavailable(
                "asr", self.name, "openvino-genai", "install it with `pip install openvino-genai`"
            ) from e
        properties: dict[str, Any] = {}
        if options.word_timestamps:
            properties["word_timestamps"] = True
        self.pipeline = openvino_genai.WhisperPipeline(str(folder), options.device, **properties)
        self.multilingual = bool(self.pipeline.get_generation_config().is_multilingual)

    def transcribe(
        self, audio: np.ndarray, spans: list[SpeechSpan], language: str | None
    ) -> Transcript:
        """Transcribe the speech windows of 16 kHz audio.

        Raises:
            BadInput: A language other than English was asked of an English-only model.
        """
        duration = len(audio) / SAMPLE_RATE
        check_language(self.model_path, self.multilingual, language)
        opts = self.options
        config: dict[str, Any] = {
            "num_beams": opts.beam_size,
            "max_new_tokens": opts.max_new_tokens,
            "return_timestamps": True,
            "word_timestamps": opts.word_timestamps,
        }
        if self.multilingual:
            config["task"] = "transcribe"
            if language:
                config["language"] = f"<|{language}|>"
        segments: list[Segment] = []
        detected: str | None = None
        for window in decode_windows(audio, spans):
            start, end = max(0.0, window.start), min(window.end, duration)
            if end <= start:
                continue
            clip = np.ascontiguousarray(
                audio[int(start * SAMPLE_RATE) : int(end * SAMPLE_RATE)], dtype=np.float32
            )
            result = self.pipeline.generate(clip, **config)
            # Without a language, the pipeline detects one per call: per window.
            heard = language or _language(result) or "en"
            detected = detected or heard
            segments.extend(
                replace(s, language=heard)
                for s in _segments(SpeechSpan(start, end), result, opts.word_timestamps)
            )
            log.info("asr: %.0f / %.0f s", end, duration)
        segments.sort(key=lambda s: s.start)
        return Transcript(
            language=language or main_language(segments, detected or "en"),
            duration=duration,
            segments=tuple(segments),
        )


def _language(result: Any) -> str | None:
    languages = getattr(result, "languages", None) or []
    return languages[0].strip("<|>") if languages and languages[0] else None


def _segments(window: SpeechSpan, result: Any, word_level: bool) -> list[Segment]:
    """Segments of one window, timed from the start of the audio and clamped into the window."""

    def at(t: float) -> float:
        return round(min(max(window.start + float(t), window.start), window.end), 3)

    # Words carry their leading space, as faster-whisper's do, so joining them gives the text.
    words = [
        Word(
            start=at(w.start_ts),
            end=max(at(w.start_ts), at(w.end_ts)),
            text=w.word if w.word[:1].isspace() else " " + w.word,
        )
        for w in (getattr(result, "words", None) or [])
        if w.word.strip()
    ]
    if word_level and words:
        text = "".join(w.text for w in words).strip()
        return split_sentences(
            Segment(start=words[0].start, end=words[-1].end, text=text, words=tuple(words))
        )
    chunks = getattr(result, "chunks", None) or []
    out = [
        Segment(start=at(c.start_ts), end=max(at(c.start_ts), at(c.end_ts)), text=c.text.strip())
        for c in chunks
        if c.text.strip()
    ]
    if not out and result.texts and result.texts[0].strip():
        out.append(Segment(window.start, window.end, result.texts[0].strip()))
    return out
