"""translate: a transcript's segments into other languages, keeping their timing.

Backends: ``transformers`` (seq2seq models: NLLB, M2M100, Marian; any torch device) and
``ctranslate2`` (the same models converted to CTranslate2; int8 on the CPU). ``openvino`` is
declared in the profiles but not implemented: optimum-intel, the usual way to run these models
on OpenVINO, pins transformers below the 5.x the other stages need, and a hand-written
OpenVINO seq2seq decoder (export, KV cache, beam search) is far from cheap; profiles that want
translation on OpenVINO hardware can pick ``ctranslate2`` (int8 on the same CPUs).
"""

from __future__ import annotations

import json
import re
from abc import abstractmethod
from collections.abc import Sequence
from pathlib import Path

from profiles.catalog import repo_label
from tasks.backend import Backend
from tasks.translate.languages import ModelLanguages
from voxflow.languages import Language, lookup

__all__ = [
    "Language",
    "ModelLanguages",
    "TranslateBackend",
    "lookup",
    "marian_pair",
]


class TranslateBackend(Backend):
    """A machine translation model.

    Subclasses set ``self.languages`` while loading and implement :meth:`translate_batch`;
    their options carry ``batch_size``.
    """

    stage = "translate"
    languages: ModelLanguages

    def supported_pairs(self) -> list[tuple[str, str]]:
        """(source, target) language codes this model translates."""
        return self.languages.supported_pairs()

    def self_check(self) -> str:
        source, target = self.supported_pairs()[0]
        text = self.translate(["Hello, world."], source, target)[0]
        return f"translated a test sentence {source}->{target} ({len(text)} characters)"

    def translate(self, texts: Sequence[str], source: str, target: str) -> list[str]:
        """Translate texts, batched, in their order; empty texts stay empty.

        Args:
            texts: Sentences or subtitle segments.
            source: Their language (any code :func:`lookup` accepts).
            target: The language wanted.

        Returns:
            One translation per text. When source and target are the same language the texts
            come back unchanged.

        Raises:
            BadInput: A code is not a language, or the model does not translate the pair.
        """
        src, tgt = self.languages.pair(source, target)
        if src.code == tgt.code:
            return list(texts)
        out = [""] * len(texts)
        todo = [i for i, text in enumerate(texts) if text.strip()]
        # Similar lengths batch together: less padding, and beam search ends together.
        todo.sort(key=lambda i: len(texts[i]))
        size = max(1, self.options.batch_size)
        for start in range(0, len(todo), size):
            batch = todo[start : start + size]
            results = self.translate_batch([texts[i].strip() for i in batch], src, tgt)
            for i, result in zip(batch, results, strict=True):
                out[i] = result.strip()
        return out

    @abstractmethod
    def translate_batch(self, texts: list[str], source: Language, target: Language) -> list[str]:
        """Translate one batch of non-empty texts between a pair already checked."""


_OPUS_MT = re.compile(r"opus-mt-(?:tc-big-)?([A-Za-z]{2,3})-([A-Za-z]{2,3})")


def marian_pair(folder: Path) -> tuple[str, str] | None:
    """(source, target) of a Marian model folder, or None when it is not one.

    The pair comes from ``source_lang``/``target_lang`` in ``tokenizer_config.json`` (what
    MarianTokenizer saves), else from an ``opus-mt-<src>-<tgt>`` model name.
    """
    folder = Path(folder)
    if not (folder / "source.spm").is_file():
        return None
    config_file = folder / "tokenizer_config.json"
    if config_file.is_file():
        config = json.loads(config_file.read_text(encoding="utf-8"))
        if config.get("source_lang") and config.get("target_lang"):
            return str(config["source_lang"]), str(config["target_lang"])
    match = _OPUS_MT.search(repo_label(folder))
    return (match.group(1), match.group(2)) if match else None
