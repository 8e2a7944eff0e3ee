"""What each translation model family wants for a language: NLLB ``fra_Latn``, M2M100
``__fr__``, Marian a fixed pair (or ``>>fra<<`` target tokens in its multi-target models).
:class:`ModelLanguages` holds what one loaded model supports and refuses an unsupported pair,
listing what it does support. What users type is :mod:`voxflow.languages`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from voxflow.errors import BadInput
from voxflow.languages import NLLB_CODE, Language, lookup

__all__ = [
    "ModelLanguages",
    "m2m100_languages",
    "model_languages",
    "marian_languages",
    "nllb_languages",
]


@dataclass(frozen=True)
class ModelLanguages:
    """What one translation model supports, and the token it wants for each language.

    Attributes:
        model: The model's name, for messages.
        tokens: Language code -> the model's token or code for it (NLLB ``fra_Latn``, M2M100
            ``fr``, Marian ``fr`` or ``>>fra<<``).
        pairs: The (source, target) code pairs it translates; empty means any two different
            languages of ``tokens`` (many-to-many models).
    """

    model: str
    tokens: dict[str, str] = field(hash=False)
    pairs: frozenset[tuple[str, str]] = frozenset()

    @property
    def codes(self) -> list[str]:
        """Language codes the model knows, sorted."""
        return sorted(self.tokens)

    def supported_pairs(self) -> list[tuple[str, str]]:
        """Every (source, target) pair, sorted (n·(n-1) of them for a many-to-many model)."""
        if self.pairs:
            return sorted(self.pairs)
        return [(s, t) for s in self.codes for t in self.codes if s != t]

    def describe(self) -> str:
        """The supported pairs in a line fit for an error message."""
        if self.pairs:
            return ", ".join(f"{s}->{t}" for s, t in sorted(self.pairs))
        return f"any two of {', '.join(self.codes)}"

    def target(self, code: str) -> Language:
        """The target language a code names, if the model can translate into it.

        Raises:
            BadInput: Not a language code, or the model cannot produce that language.
        """
        lang = lookup(code)
        targets = {t for _, t in self.pairs} if self.pairs else set(self.tokens)
        if lang.code not in targets:
            raise BadInput(
                f"{self.model} cannot translate into {lang.name} ({lang.code}); it supports "
                f"{self.describe()}"
            )
        return lang

    def pair(self, source: str, target: str) -> tuple[Language, Language]:
        """The languages of a (source, target) pair, checked against the model.

        Raises:
            BadInput: A code is not a language code, or the model does not translate the pair.
        """
        src, tgt = lookup(source), lookup(target)
        ok = (
            (src.code, tgt.code) in self.pairs
            if self.pairs
            else src.code in self.tokens and tgt.code in self.tokens
        )
        if not ok and src.code != tgt.code:
            raise BadInput(
                f"{self.model} does not translate {src.name} ({src.code}) to {tgt.name} "
                f"({tgt.code}); supported: {self.describe()}"
            )
        return src, tgt


def nllb_languages(model: str, vocabulary: Iterable[str]) -> ModelLanguages:
    """An NLLB model's languages, from the language tokens (``fra_Latn``) in its vocabulary."""
    tokens = {}
    for token in vocabulary:
        if NLLB_CODE.fullmatch(token):
            tokens.setdefault(lookup(token).code, token)
    return ModelLanguages(model, tokens)


def m2m100_languages(model: str, vocabulary: Iterable[str]) -> ModelLanguages:
    """An M2M100 model's languages, from the ``__fr__`` tokens in its vocabulary."""
    tokens = {}
    for token in vocabulary:
        match = re.fullmatch(r"__([a-z]{2,3})__", token)
        if match:
            tokens.setdefault(lookup(match.group(1)).code, match.group(1))
    return ModelLanguages(model, tokens)


def marian_languages(
    model: str, source: str, target: str, vocabulary: Iterable[str] = ()
) -> ModelLanguages:
    """A Marian (OPUS-MT) model's pairs: one source, and one target or its ``>>xx<<`` tokens.

    Args:
        model: The model's name, for messages.
        source: The source language code (``source_lang`` of its tokenizer, or from its name).
        target: The target language code; ignored when the vocabulary has ``>>xx<<`` tokens
            (a multi-target model, which needs one of them at the start of each input).
        vocabulary: The model's source vocabulary.
    """
    src = lookup(source).code
    tokens = {src: source}
    targets = {}
    for token in vocabulary:
        match = re.fullmatch(r">>([a-z]{2,3}(?:_[A-Z][a-z]{3})?)<<", token)
        if match:
            targets.setdefault(lookup(match.group(1)).code, token)
    if not targets:
        targets = {lookup(target).code: target}
    tokens.update(targets)
    return ModelLanguages(model, tokens, frozenset((src, t) for t in targets if t != src))


def model_languages(
    model: str, vocabulary: Iterable[str], marian_pair: tuple[str, str] | None = None
) -> tuple[str, ModelLanguages]:
    """Which family a model is, and its languages, from its vocabulary.

    Args:
        model: The model's name, for messages.
        vocabulary: Every token of the model (source side).
        marian_pair: (source, target) of a Marian model; None for other families.

    Returns:
        ``("nllb" | "m2m100" | "marian", languages)``.

    Raises:
        BadInput: Neither language tokens nor a Marian pair tell what the model translates.
    """
    vocabulary = list(vocabulary)
    if marian_pair is not None:
        return "marian", marian_languages(model, *marian_pair, vocabulary)
    nllb = nllb_languages(model, vocabulary)
    if nllb.tokens:
        return "nllb", nllb
    m2m = m2m100_languages(model, vocabulary)
    if m2m.tokens:
        return "m2m100", m2m
    raise BadInput(
        f"cannot tell which languages {model} translates: its vocabulary has no NLLB "
        "(fra_Latn) or M2M100 (__fr__) language tokens, and it is not a Marian model with "
        "source_lang/target_lang in tokenizer_config.json or opus-mt-<src>-<tgt> in its name"
    )
