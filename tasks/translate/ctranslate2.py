"""Translation with CTranslate2 on a converted model folder in the volume (int8 on the CPU).

The folder is what ``ct2-transformers-converter`` writes (``model.bin``, ``config.json``,
``shared_vocabulary.json``) plus the SentencePiece model(s) it was trained with, copied beside
it: ``sentencepiece.bpe.model`` for NLLB and M2M100, ``source.spm``/``target.spm`` for Marian
(with its ``tokenizer_config.json`` naming the pair). Tokenising with SentencePiece directly
keeps transformers (and torch) out of this backend.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass
from pathlib import Path

from profiles.catalog import repo_label
from tasks.translate import TranslateBackend, marian_pair
from tasks.translate.languages import model_languages
from voxflow.errors import BadInput, ProfileError
from voxflow.languages import Language

VOCABULARY_FILES = (
    "shared_vocabulary.json",
    "shared_vocabulary.txt",
    "source_vocabulary.json",
    "source_vocabulary.txt",
)
SENTENCEPIECE_FILES = ("sentencepiece.bpe.model", "sentencepiece.model", "spm.model")
_NOT_TEXT = re.compile(
    r"<s>|</s>|<pad>|<unk>|madeupword\d+|__[a-z]{2,3}__|[a-z]{3}_[A-Z][a-z]{3}|>>\w+<<"
)


@dataclass(frozen=True)
class Ct2TranslateOptions:
    """CTranslate2 translation options.

    Attributes:
        device: ``cpu``, ``cuda`` or ``auto``.
        compute_type: CTranslate2 compute type (``int8``, ``int8_float16``, ``float16``, ...).
        batch_size: Segments translated together.
        beam_size: Beam width.
        max_length: Longest input and output, in tokens.
        cpu_threads: Threads per translation; 0 lets CTranslate2 choose.
    """

    device: str = "cpu"
    compute_type: str = "int8"
    batch_size: int = 8
    beam_size: int = 4
    max_length: int = 256
    cpu_threads: int = 0

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.beam_size < 1 or self.max_length < 3:
            raise ProfileError(
                "batch_size and beam_size must be at least 1, max_length at least 3; found "
                f"{self.batch_size}, {self.beam_size}, {self.max_length}",
                key_path="stages.translate.options",
            )


class Ct2Translate(TranslateBackend):
    """ctranslate2.Translator with SentencePiece tokenisation."""

    name = "ctranslate2"
    Options = Ct2TranslateOptions
    requires = (("ctranslate2", "ctranslate2"), ("sentencepiece", "sentencepiece"))

    def __init__(self, model_path: Path, options: Ct2TranslateOptions) -> None:
        super().__init__(model_path, options)
        import ctranslate2
        import sentencepiece

        path = Path(str(model_path))
        name = repo_label(path)
        pair = marian_pair(path)
        self.family, self.languages = model_languages(name, _vocabulary(path), pair)
        if pair is not None:
            source_spm, target_spm = path / "source.spm", path / "target.spm"
        else:
            source_spm = target_spm = _first(path, SENTENCEPIECE_FILES, name)
        self._source = sentencepiece.SentencePieceProcessor(model_file=str(source_spm))
        self._target = sentencepiece.SentencePieceProcessor(model_file=str(target_spm))
        self.translator = ctranslate2.Translator(
            str(path),
            device=options.device,
            compute_type=options.compute_type,
            intra_threads=options.cpu_threads,
        )
        self._lock = threading.Lock()  # SentencePiece processors are not documented thread-safe

    def translate_batch(self, texts: list[str], source: Language, target: Language) -> list[str]:
        """Translate one batch (see :meth:`TranslateBackend.translate`)."""
        opts = self.options
        prefix: list[str] = []
        target_prefix: list[str] | None = None
        if self.family == "nllb":
            prefix = [self.languages.tokens[source.code]]
            target_prefix = [self.languages.tokens[target.code]]
        elif self.family == "m2m100":
            prefix = [f"__{self.languages.tokens[source.code]}__"]
            target_prefix = [f"__{self.languages.tokens[target.code]}__"]
        elif self.languages.tokens[target.code].startswith(">>"):
            prefix = [self.languages.tokens[target.code]]
        room = opts.max_length - len(prefix) - 1
        with self._lock:
            pieces = [self._source.encode(text, out_type=str)[:room] for text in texts]
        results = self.translator.translate_batch(
            [[*prefix, *p, "</s>"] for p in pieces],
            target_prefix=[target_prefix] * len(texts) if target_prefix else None,
            beam_size=opts.beam_size,
            max_decoding_length=opts.max_length,
            max_batch_size=opts.batch_size,
        )
        with self._lock:
            return [
                self._target.decode(
                    [t for t in r.hypotheses[0] if not _NOT_TEXT.fullmatch(t)]
                ).strip()
                for r in results
            ]


def _first(folder: Path, names: tuple[str, ...], model: str) -> Path:
    for name in names:
        if (folder / name).is_file():
            return folder / name
    raise BadInput(
        f"{model}: none of {', '.join(names)} in {folder}; copy the model's tokenizer files "
        "beside the converted model (and list them in the catalog entry's files)"
    )


def _vocabulary(folder: Path) -> list[str]:
    file = _first(folder, VOCABULARY_FILES, repo_label(folder))
    text = file.read_text(encoding="utf-8")
    return json.loads(text) if file.suffix == ".json" else text.splitlines()
