"""asr: speech to text with word timestamps, over the speech spans VAD found."""

from __future__ import annotations

import math
from abc import abstractmethod
from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np

from profiles.catalog import repo_label
from tasks.backend import Backend, test_audio
from tasks.extract import SAMPLE_RATE
from tasks.transcript import Segment, SpeechSpan, Transcript, Word
from voxflow.errors import BadInput

__all__ = [
    "WHISPER_LANGUAGES",
    "AsrBackend",
    "Detected",
    "check_language",
    "decode_windows",
    "group_spans",
    "language_runs",
    "main_language",
    "smooth_languages",
    "absorb_unsure",
    "confident_switch",
    "speech_language",
    "split_long_spans",
    "split_sentences",
]

WHISPER_WINDOW_S = 30.0
"""The longest audio Whisper's decoder takes at once; the batched pipelines cut the rest."""


LOW_LANGUAGE_PROBABILITY = 0.5
"""Below this, a detected language is reported as uncertain (still transcribed in it)."""

MIXED_LANGUAGE_PROBABILITY = 0.8
"""A window detected with less than this, made of several speech spans, is detected again
span by span: it may hold a change of language."""


SWITCH_PENALTY = math.log(0.2)
"""Log-odds a change of language between neighbouring speech spans costs in
:func:`smooth_languages`: a lone uncertain span does not flip the language, a sentence
the model is sure of does."""


@dataclass(frozen=True)
class Detected:
    """The language a model heard in one window, and its probability (None: forced).

    Attributes:
        candidates: The model's likeliest languages with their probabilities, best first.
    """

    language: str
    probability: float | None = None
    candidates: tuple[tuple[str, float], ...] = ()


UNSURE_RUN_PROBABILITY = 0.35
"""A run of spans whose mean probability for its language is below this joins its neighbour:
a guess too weak to decode a stretch in a language of its own."""


def absorb_unsure(found: list[Detected]) -> list[Detected]:
    """The spans' languages with each unsure run (:data:`UNSURE_RUN_PROBABILITY`) given the
    language of the run before it (the first run, of the one after it); all unsure: as found.

    A short span's top language is often one nobody spoke (Thai for a few seconds of robotic
    French): such a guess must not cut a window, where several spans the model is sure of
    (a change from English to Spanish) still do.
    """
    runs = language_runs(found)
    sure = [
        sum(found[i].probability or 0.0 for i in members) / len(members) >= UNSURE_RUN_PROBABILITY
        for _, members in runs
    ]
    if not any(sure):
        return found
    out = list(found)
    for k, (_, members) in enumerate(runs):
        if sure[k]:
            continue
        before = [j for j in range(k - 1, -1, -1) if sure[j]]
        after = [j for j in range(k + 1, len(runs)) if sure[j]]
        donor = runs[(before or after)[0]][0].language
        for i in members:  # no probability of its own: the run's is its donor's
            out[i] = Detected(donor, None, found[i].candidates)
    return out


SWITCH_PROBABILITY = 0.5
"""A window is cut where its spans change language only when a run of them in another
language than the window's was heard with at least this mean probability."""


def confident_switch(spans: list[Detected], window: Detected) -> bool:
    """Whether the spans of a window show a change of language the model is sure of: a run
    in a language other than the window's, at :data:`SWITCH_PROBABILITY` or more."""
    for found, members in language_runs(spans):
        heard = [spans[i].probability for i in members if spans[i].probability is not None]
        mean = sum(heard) / len(heard) if heard else 0.0
        if found.language != window.language and mean >= SWITCH_PROBABILITY:
            return True
    return False


def smooth_languages(found: list[Detected]) -> list[Detected]:
    """The languages of consecutive speech spans, chosen together (Viterbi): each span's
    log-probability of a language, less :data:`SWITCH_PENALTY` for each change.

    A short span is detected less surely than a whole window; choosing the spans' languages
    together keeps one unsure span inside a run of another language from being decoded in a
    language nobody spoke, and still starts a new run where several spans agree.
    """
    if len(found) < 2:
        return found
    languages = sorted({code for d in found for code, _ in d.candidates or [(d.language, 1.0)]})

    def logp(d: Detected, code: str) -> float:
        probs = dict(d.candidates) or {d.language: 1.0}
        return math.log(max(probs.get(code, 0.0), 1e-3))

    score = {code: logp(found[0], code) for code in languages}
    back: list[dict[str, str]] = []
    for d in found[1:]:
        best = max(score, key=score.__getitem__)
        step: dict[str, str] = {}
        nxt: dict[str, float] = {}
        for code in languages:
            stay, switch = score[code], score[best] + SWITCH_PENALTY
            step[code] = code if stay >= switch else best
            nxt[code] = max(stay, switch) + logp(d, code)
        back.append(step)
        score = nxt
    path = [max(score, key=score.__getitem__)]
    for step in reversed(back):
        path.append(step[path[-1]])
    path.reverse()
    return [
        Detected(code, round(dict(d.candidates).get(code, 0.0), 4), d.candidates)
        for code, d in zip(path, found, strict=True)
    ]


class AsrBackend(Backend):
    """A speech recogniser.

    Attributes:
        detects_language: Whether the backend detects the language per window itself
            (``voxflow profiles`` says so for each).
        multilingual: Whether the loaded model hears more than English.
    """

    stage = "asr"
    detects_language: ClassVar[bool] = True
    multilingual: bool = True

    @abstractmethod
    def transcribe(
        self, audio: np.ndarray, spans: list[SpeechSpan], language: str | None
    ) -> Transcript:
        """Transcribe 16 kHz float32 audio, looking only at the given speech spans.

        ``audio`` may be a :class:`tasks.extract.Wav`, which reads only the slices taken of
        it: a backend slices out what it decodes, so a long recording is never read whole.
        """

    def redecode(
        self, audio: np.ndarray, pieces: list[SpeechSpan], language: str | None
    ) -> list[Segment]:
        """Decode each piece of audio on its own, for the guard's repair: segments in the
        recording's time, each inside its piece.

        Backends with a sequential decoder override this to decode with temperature fallback
        and no previous text as prompt; this default decodes each piece as a window of its own.
        """
        out: list[Segment] = []
        for piece in pieces:
            out += self.transcribe(audio, [piece], language).segments
        return out

    def self_check(self) -> str:
        transcript = self.transcribe(test_audio(), [SpeechSpan(0.0, 1.0)], None)
        return f"decoded 1 s of test audio ({len(transcript.segments)} segment(s))"


def decode_windows(
    audio: np.ndarray, spans: list[SpeechSpan], window: float = WHISPER_WINDOW_S
) -> list[SpeechSpan]:
    """The windows an ASR backend decodes: speech spans, none longer than ``window``.

    Spans longer than the window are split at their quietest points
    (:func:`split_long_spans`), then neighbours are merged up to the window
    (:func:`group_spans`). Every backend decodes exactly these, so none drops speech past its
    decoder's 30 s (faster-whisper's batched pipeline would decode a longer clip's first 30 s
    only). Spans are first clipped to the audio.
    """
    end = len(audio) / SAMPLE_RATE  # a span rounded to the millisecond may end past the audio
    inside = [SpeechSpan(s.start, min(s.end, end)) for s in spans if s.start < end]
    return group_spans(split_long_spans(audio, inside, window), window)


def split_long_spans(
    audio: np.ndarray,
    spans: list[SpeechSpan],
    window: float = WHISPER_WINDOW_S,
    sample_rate: int = SAMPLE_RATE,
) -> list[SpeechSpan]:
    """Split each span longer than ``window`` seconds at its quietest points.

    A long span is cut at the quietest 100 ms (lowest RMS, in 20 ms steps) between half a
    window and a whole window from its start, so every piece but the last is 15 to 30 s long
    and a cut falls in a pause between words wherever the speaker took one.
    """
    out: list[SpeechSpan] = []
    frame = int(0.02 * sample_rate)
    smooth = 5  # frames: 100 ms
    for span in spans:
        start, end = span.start, span.end
        while end - start > window:
            lo = int((start + window / 2) * sample_rate)
            hi = int((start + window) * sample_rate)
            chunk = np.asarray(audio[lo:hi], dtype=np.float32)
            frames = len(chunk) // frame
            if frames < smooth:  # the audio ends before the span claims: cut at the window
                cut = start + window
            else:
                energy = np.square(chunk[: frames * frame].reshape(frames, frame)).mean(axis=1)
                energy = np.convolve(energy, np.ones(smooth) / smooth, mode="same")
                quietest = int(np.argmin(energy[: frames - smooth // 2]))
                cut = (lo + (quietest * frame + frame // 2)) / sample_rate
            cut = round(min(max(cut, start + window / 2), start + window), 3)
            out.append(SpeechSpan(start, cut))
            start = cut
        out.append(SpeechSpan(start, end))
    return out


def group_spans(spans: list[SpeechSpan], window: float = WHISPER_WINDOW_S) -> list[SpeechSpan]:
    """Merge neighbouring speech spans into windows of at most ``window`` seconds.

    Whisper decodes 30 s at a time; giving it whole windows of contiguous audio (short pauses
    included) instead of one window per VAD span keeps batches full and context intact. A span
    longer than the window is kept as it is (:func:`decode_windows` splits those first).
    """
    groups: list[SpeechSpan] = []
    for span in spans:
        if groups and span.end - groups[-1].start <= window:
            groups[-1] = SpeechSpan(groups[-1].start, span.end)
        else:
            groups.append(span)
    return groups


def language_runs(detected: list[Detected]) -> list[tuple[Detected, list[int]]]:
    """Consecutive windows heard in one language, as (language, window indices) runs: each
    run is decoded with its language's token, and a change of language starts a new run."""
    runs: list[tuple[Detected, list[int]]] = []
    for i, found in enumerate(detected):
        if runs and runs[-1][0].language == found.language:
            first, members = runs[-1]
            runs[-1] = (first, [*members, i])
        else:
            runs.append((found, [i]))
    return runs


def main_language(segments: tuple[Segment, ...] | list[Segment], default: str) -> str:
    """The language of most seconds of the segments (``default`` when none has one)."""
    seconds: dict[str, float] = {}
    for s in segments:
        if s.language and (s.words or s.text):
            seconds[s.language] = seconds.get(s.language, 0.0) + max(0.0, s.end - s.start)
    return max(seconds, key=seconds.__getitem__) if seconds else default


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
            pieces.append(_from_words(current, segment))
            current = []
    if current:
        pieces.append(_from_words(current, segment))
    return pieces


def _from_words(words: list[Word], whole: Segment) -> Segment:
    """A piece of ``whole``: its words, with the decoder's scores of the whole."""
    text = "".join(w.text for w in words).strip()
    return replace(whole, start=words[0].start, end=words[-1].end, text=text, words=tuple(words))


# The languages Whisper was trained on, by the codes its tokenizer uses (``jw`` for Javanese,
# ``haw``, ``yue`` without an ISO 639-1 code).
WHISPER_LANGUAGES = frozenset(
    "af am ar as az ba be bg bn bo br bs ca cs cy da de el en es et eu fa fi fo fr gl gu ha haw "
    "he hi hr ht hu hy id is it ja jw ka kk km kn ko la lb ln lo lt lv mg mi mk ml mn mr ms mt "
    "my ne nl nn no oc pa pl ps pt ro ru sa sd si sk sl sn so sq sr su sv sw ta te tg th tk tl "
    "tr tt uk ur uz vi yi yo yue zh".split()
)


def speech_language(language: str | None) -> str | None:
    """The Whisper code for the language a user named; None (detect it) when empty.

    Accepts what the translation stage accepts: ISO 639-1 or 639-3 codes in any case, NLLB
    codes, tags with a region, English names (``fr``, ``FRA``, ``fra_Latn``, ``fr-CA``,
    ``French``).

    Raises:
        BadInput: The text names no language, or one Whisper does not know.
    """
    from voxflow.languages import lookup

    if not (language or "").strip():
        return None
    found = lookup(language)
    base = found.code.split("-")[0]  # Whisper has one Chinese: zh-Hant is zh
    code = {"jv": "jw"}.get(base, base)
    if code not in WHISPER_LANGUAGES:
        raise BadInput(
            f"speech recognition does not know the language {language!r}: Whisper models "
            f"recognise {len(WHISPER_LANGUAGES)} languages by ISO 639-1 code, e.g. en, fr, de, "
            "es, zh; leave --language out to detect it"
        )
    return code


def check_language(model_path: object, multilingual: bool, language: str | None) -> None:
    """Refuse a language other than English for an English-only model.

    Raises:
        BadInput: ``language`` is set, not ``en``, and the model is English-only.
    """
    if language and not multilingual and language != "en":
        raise BadInput(
            f"the model {repo_label(str(model_path))} is English-only; language {language!r} "
            "was asked for (use a profile with a multilingual model, or --language en)"
        )
