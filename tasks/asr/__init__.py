"""asr: speech to text with word timestamps, over the speech spans VAD found."""

from __future__ import annotations

from abc import abstractmethod
from pathlib import Path

import numpy as np

from tasks.backend import Backend
from tasks.transcript import Segment, SpeechSpan, Transcript, Word
from voxflow.errors import BadInput

__all__ = ["AsrBackend", "check_language", "group_spans", "split_sentences"]


class AsrBackend(Backend):
    """A speech recogniser."""

    stage = "asr"

    @abstractmethod
    def transcribe(
        self, audio: np.ndarray, spans: list[SpeechSpan], language: str | None
    ) -> Transcript:
        """Transcribe 16 kHz float32 audio, looking only at the given speech spans."""


def group_spans(spans: list[SpeechSpan], window: float = 30.0) -> list[SpeechSpan]:
    """Merge neighbouring speech spans into windows of at most ``window`` seconds.

    Whisper decodes 30 s at a time; giving it whole windows of contiguous audio (short pauses
    included) instead of one window per VAD span keeps batches full and context intact. A span
    longer than the window is kept as it is.
    """
    groups: list[SpeechSpan] = []
    for span in spans:
        if groups and span.end - groups[-1].start <= window:
            groups[-1] = SpeechSpan(groups[-1].start, span.end)
        else:
            groups.append(span)
    return groups


_SENTENCE_END = (".", "?", "!", "…", "。", "？", "！")


def split_sentences(segment: Segment) -> list[Segment]:
    """Split a segment after each word that ends a sentence.

    Batched decoding returns one segment per 30 s window; sentences read better in transcripts
    and JSON. Segments without word timings are returned as they are.
    """
    if not segment.words:
        return [segment]
    pieces: list[Segment] = []
    current: list[Word] = []
    for word in segment.words:
        current.append(word)
        if word.text.strip().endswith(_SENTENCE_END):
            pieces.append(_from_words(current, segment.speaker))
            current = []
    if current:
        pieces.append(_from_words(current, segment.speaker))
    return pieces


def _from_words(words: list[Word], speaker: str | None) -> Segment:
    text = "".join(w.text for w in words).strip()
    return Segment(
        start=words[0].start, end=words[-1].end, text=text, words=tuple(words), speaker=speaker
    )


def check_language(model_path: object, multilingual: bool, language: str | None) -> None:
    """Refuse a language other than English for an English-only model.

    Raises:
        BadInput: ``language`` is set, not ``en``, and the model is English-only.
    """
    if language and not multilingual and language != "en":
        raise BadInput(
            f"the model {Path(str(model_path)).name} is English-only; language {language!r} "
            "was asked for (use a multilingual model or --language en)"
        )
