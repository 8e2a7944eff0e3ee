"""Seq2seq translation with transformers (NLLB, M2M100, Marian), loaded from a local snapshot.

The model family decides how languages are passed: NLLB sets the tokenizer's ``src_lang`` and
forces the target code (``fra_Latn``) as the first generated token; M2M100 does the same with
``get_lang_id``; Marian is a fixed pair, or prefixes ``>>fra<<`` in its multi-target models.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from profiles.catalog import repo_label
from tasks.translate import TranslateBackend, marian_pair
from tasks.translate.languages import model_languages
from voxflow.errors import ProfileError
from voxflow.languages import Language

DTYPES = ("float32", "float16", "bfloat16")


@dataclass(frozen=True)
class TransformersTranslateOptions:
    """transformers translation options.

    Attributes:
        device: A torch device: ``cpu``, ``cuda``, ``cuda:1``, ``mps``.
        dtype: Weights and compute dtype: ``float32``, ``float16`` or ``bfloat16``.
        batch_size: Segments translated together.
        beam_size: Beam width.
        max_length: Longest input and output, in tokens.
    """

    device: str = "cpu"
    dtype: str = "float32"
    batch_size: int = 8
    beam_size: int = 4
    max_length: int = 256

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ProfileError(
                f"unknown dtype {self.dtype!r}",
                key_path="stages.translate.options.dtype",
                allowed=DTYPES,
            )
        if self.batch_size < 1 or self.beam_size < 1 or self.max_length < 2:
            raise ProfileError(
                "batch_size and beam_size must be at least 1, max_length at least 2; found "
                f"{self.batch_size}, {self.beam_size}, {self.max_length}",
                key_path="stages.translate.options",
            )


class TransformersTranslate(TranslateBackend):
    """AutoModelForSeq2SeqLM + AutoTokenizer from the model volume."""

    name = "transformers"
    Options = TransformersTranslateOptions
    requires = (
        ("torch", "torch"),
        ("transformers", "transformers"),
        ("sentencepiece", "sentencepiece"),
    )

    def __init__(self, model_path: Path, options: TransformersTranslateOptions) -> None:
        super().__init__(model_path, options)
        import torch
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

        path = Path(str(model_path))
        self._torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.model = AutoModelForSeq2SeqLM.from_pretrained(
            path, local_files_only=True, dtype=getattr(torch, options.dtype)
        )
        self.model.to(options.device).eval()
        tokenizer = self.tokenizer
        vocabulary = list(tokenizer.get_vocab())
        # transformers 5 no longer registers M2M100's language tokens as special tokens, so
        # they are neither in get_vocab() nor skipped when decoding: take them from the table.
        lang_codes = getattr(tokenizer, "lang_code_to_id", None)
        if lang_codes and type(tokenizer).__name__.startswith("M2M100"):
            vocabulary += [tokenizer.get_lang_token(code) for code in lang_codes]
        pair = marian_pair(path) if self.model.config.model_type == "marian" else None
        self.family, self.languages = model_languages(repo_label(path), vocabulary, pair)
        self._skip = set(tokenizer.all_special_ids)
        if self.family == "m2m100":
            # Language tokens and the "madeup" padding words sit above the text vocabulary.
            self._skip |= set(range(tokenizer.vocab_size, self.model.config.vocab_size))
        elif self.family == "nllb":
            self._skip |= set(tokenizer.convert_tokens_to_ids(list(self.languages.tokens.values())))
        self._lock = threading.Lock()  # the tokenizer's src_lang is state shared by callers

    def translate_batch(self, texts: list[str], source: Language, target: Language) -> list[str]:
        """Translate one batch (see :meth:`TranslateBackend.translate`)."""
        tokenizer, opts = self.tokenizer, self.options
        forced: dict[str, int] = {}
        if self.family == "nllb":
            tokenizer.src_lang = self.languages.tokens[source.code]
            forced["forced_bos_token_id"] = tokenizer.convert_tokens_to_ids(
                self.languages.tokens[target.code]
            )
        elif self.family == "m2m100":
            tokenizer.src_lang = self.languages.tokens[source.code]
            forced["forced_bos_token_id"] = tokenizer.get_lang_id(
                self.languages.tokens[target.code]
            )
        else:
            prefix = self.languages.tokens[target.code]
            if prefix.startswith(">>"):
                texts = [f"{prefix} {text}" for text in texts]
        with self._lock, self._torch.inference_mode():
            batch = tokenizer(
                texts,
                return_tensors="pt",
                padding=True,
                truncation=True,
                max_length=opts.max_length,
            ).to(opts.device)
            generated = self.model.generate(
                **batch, num_beams=opts.beam_size, max_length=opts.max_length, **forced
            )
        return [
            tokenizer.decode([t for t in ids.tolist() if t not in self._skip]).strip()
            for ids in generated
        ]
