"""Tiny translation models in their real on-disk formats, built from random weights.

Each builder trains a SentencePiece model on generated sentences, builds the family's real
tokenizer from it, and saves a randomly initialised model of the real architecture with
``save_pretrained`` (safetensors): Marian (OPUS-MT layout: source.spm, target.spm, vocab.json),
M2M100 (vocab.json + sentencepiece.bpe.model) and NLLB (an M2M100 model with NLLB's fast
tokenizer and its language codes). :func:`convert_ct2` makes the CTranslate2 int8 version.
The benchmark uses the same builders with larger sizes.
"""

from __future__ import annotations

import json
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

SOURCE_WORDS = (
    "the quick brown fox jumps over the lazy dog she sells sea shells by the sea shore "
    "please call stella and ask her to bring these things with her from the store"
).split()


@dataclass(frozen=True)
class Size:
    """Transformer dimensions; the default is as small as the architectures allow."""

    d_model: int = 16
    layers: int = 1
    heads: int = 2
    ffn: int = 32
    vocab: int = 200


TINY = Size()


def corpus(count: int = 500, seed: int = 0) -> list[str]:
    """Generated sentences: English words and made-up ones, with punctuation."""
    rng = random.Random(seed)
    syllables = "ka lo mi ne ru sa te vo zu pe da fi go hu ja bre sto pla qu xi é ü ñ".split()
    made_up = ["".join(rng.choices(syllables, k=rng.randint(1, 3))) for _ in range(300)]
    words = SOURCE_WORDS + made_up
    return [
        " ".join(rng.choices(words, k=rng.randint(3, 12))) + rng.choice(".?!,")
        for _ in range(count)
    ]


def _train_spm(prefix: Path, size: Size, **ids: int | str) -> Path:
    import sentencepiece as spm

    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus()),
        model_prefix=str(prefix),
        vocab_size=size.vocab,
        character_coverage=1.0,
        hard_vocab_limit=False,
        minloglevel=2,
        **ids,
    )
    return prefix.with_suffix(".model")


def _dims(size: Size) -> dict[str, int]:
    return {
        "d_model": size.d_model,
        "encoder_layers": size.layers,
        "decoder_layers": size.layers,
        "encoder_attention_heads": size.heads,
        "decoder_attention_heads": size.heads,
        "encoder_ffn_dim": size.ffn,
        "decoder_ffn_dim": size.ffn,
        "max_position_embeddings": 512,
    }


def build_marian(dest: Path, source: str = "en", target: str = "de", size: Size = TINY) -> Path:
    """A Marian (OPUS-MT) model: source.spm, target.spm, vocab.json (``<pad>`` last)."""
    import sentencepiece as spm
    import torch
    from transformers import MarianConfig, MarianMTModel, MarianTokenizer

    work = dest.parent / f"{dest.name}.spm"
    work.mkdir(parents=True, exist_ok=True)
    model = _train_spm(work / "marian", size, model_type="unigram", eos_id=0, unk_id=1, bos_id=-1)
    sp = spm.SentencePieceProcessor(model_file=str(model))
    vocab = {sp.id_to_piece(i): i for i in range(sp.get_piece_size())}
    vocab["<pad>"] = len(vocab)
    for name in ("source.spm", "target.spm"):
        shutil.copy(model, work / name)
    (work / "vocab.json").write_text(json.dumps(vocab))
    tokenizer = MarianTokenizer(
        str(work / "source.spm"),
        str(work / "target.spm"),
        str(work / "vocab.json"),
        source_lang=source,
        target_lang=target,
    )
    pad = vocab["<pad>"]
    config = MarianConfig(
        vocab_size=len(vocab),
        pad_token_id=pad,
        eos_token_id=0,
        decoder_start_token_id=pad,
        forced_eos_token_id=0,
        **_dims(size),
    )
    torch.manual_seed(0)
    MarianMTModel(config).save_pretrained(dest)
    tokenizer.save_pretrained(dest)
    shutil.rmtree(work)
    return dest


def build_m2m100(dest: Path, size: Size = TINY) -> Path:
    """An M2M100 model: vocab.json + sentencepiece.bpe.model, 100 ``__xx__`` languages."""
    import sentencepiece as spm
    import torch
    from transformers import M2M100Config, M2M100ForConditionalGeneration, M2M100Tokenizer

    work = dest.parent / f"{dest.name}.spm"
    work.mkdir(parents=True, exist_ok=True)
    model = _train_spm(
        work / "m2m", size, model_type="unigram", bos_id=0, pad_id=1, eos_id=2, unk_id=3
    )
    sp = spm.SentencePieceProcessor(model_file=str(model))
    shutil.copy(model, work / "sentencepiece.bpe.model")
    (work / "vocab.json").write_text(
        json.dumps({sp.id_to_piece(i): i for i in range(sp.get_piece_size())})
    )
    tokenizer = M2M100Tokenizer(
        str(work / "vocab.json"), str(work / "sentencepiece.bpe.model"), src_lang="en"
    )
    # Text pieces, then one token per language, then the "madeup" words fairseq pads with.
    vocab_size = tokenizer.vocab_size + len(tokenizer.lang_code_to_id) + tokenizer.num_madeup_words
    config = M2M100Config(
        vocab_size=vocab_size,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        decoder_start_token_id=2,
        **_dims(size),
    )
    torch.manual_seed(0)
    M2M100ForConditionalGeneration(config).save_pretrained(dest)
    tokenizer.save_pretrained(dest)
    shutil.rmtree(work)
    return dest


def build_nllb(dest: Path, size: Size = TINY) -> Path:
    """An NLLB model: the M2M100 architecture with NLLB's tokenizer and its 200 language codes.

    The SentencePiece model is kept beside it as ``sentencepiece.bpe.model``, as on the hub.
    """
    import torch
    from transformers import M2M100Config, M2M100ForConditionalGeneration, NllbTokenizer
    from transformers.models.nllb.tokenization_nllb import FAIRSEQ_LANGUAGE_CODES

    work = dest.parent / f"{dest.name}.spm"
    work.mkdir(parents=True, exist_ok=True)
    model = _train_spm(
        work / "nllb", size, model_type="bpe", bos_id=0, pad_id=1, eos_id=2, unk_id=3
    )
    shutil.copy(model, work / "sentencepiece.bpe.model")
    model.unlink()
    tokenizer = NllbTokenizer.from_pretrained(
        work, src_lang="eng_Latn", extra_special_tokens=list(FAIRSEQ_LANGUAGE_CODES)
    )
    config = M2M100Config(
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.eos_token_id,
        tokenizer_class="NllbTokenizer",
        **_dims(size),
    )
    torch.manual_seed(0)
    M2M100ForConditionalGeneration(config).save_pretrained(dest)
    tokenizer.save_pretrained(dest)
    shutil.copy(work / "sentencepiece.bpe.model", dest / "sentencepiece.bpe.model")
    shutil.rmtree(work)
    return dest


TOKENIZER_FILES = (
    "sentencepiece.bpe.model",
    "source.spm",
    "target.spm",
    "tokenizer_config.json",
)


def convert_ct2(source: Path, dest: Path, quantization: str = "int8") -> Path:
    """Convert with CTranslate2's own converter; copy the tokenizer files beside the model."""
    import ctranslate2
    from ctranslate2.converters import transformers as loaders

    m2m100 = loaders._MODEL_LOADERS["M2M100Config"]
    loaders._MODEL_LOADERS["M2M100Config"] = _M2M100Vocabulary()
    try:
        ctranslate2.converters.TransformersConverter(str(source)).convert(
            str(dest), quantization=quantization, force=True
        )
    finally:
        loaders._MODEL_LOADERS["M2M100Config"] = m2m100
    for name in TOKENIZER_FILES:
        if (source / name).is_file():
            shutil.copy(source / name, dest / name)
    return dest


def _M2M100Vocabulary():  # noqa: N802 (a class made on first use: ctranslate2 imports late)
    """CTranslate2 4.x's M2M100 loader with the vocabulary transformers 5 tokenizers give.

    The loader appends a tokenizer's language tokens from
    ``special_tokens_map["additional_special_tokens"]``, which transformers 5 no longer fills:
    an M2M100 model then converts with 100 tokens missing ("Source vocabulary 0 has size 208
    but the model expected 308"). NLLB's tokenizer lists its codes in its vocabulary, so it
    converts either way. This adds the tokens that have ids but are not in ``get_vocab()``.
    """
    from ctranslate2.converters.transformers import M2M100Loader

    class Loader(M2M100Loader):
        def get_vocabulary(self, model, tokenizer):
            tokens = [t for t, _ in sorted(tokenizer.get_vocab().items(), key=lambda x: x[1])]
            if tokens[-1] == tokenizer.unk_token:  # CTranslate2 issue 1039, as the loader does
                tokens.insert(tokenizer.unk_token_id, tokens.pop())
            languages = getattr(tokenizer, "lang_code_to_token", {}).values()
            extra = sorted(set(languages) - set(tokens), key=tokenizer.convert_tokens_to_ids)
            tokens += extra
            tokens += [f"madeupword{i}" for i in range(model.config.vocab_size - len(tokens))]
            return tokens

    return Loader()


def files(folder: Path) -> list[str]:
    """The files of a model folder, as a catalog entry lists them."""
    return sorted(p.name for p in folder.iterdir() if p.is_file())


# Catalog name -> (builder folder, format). Marian's folder carries its OPUS-MT name, which is
# how a Marian model in the volume says its pair when its tokenizer config does not.
CATALOG = {
    "tiny-opus-mt-en-de": ("opus-mt-en-de", "transformers"),
    "tiny-opus-mt-en-de-ct2-int8": ("opus-mt-en-de-ct2-int8", "ctranslate2"),
    "tiny-nllb": ("nllb", "transformers"),
    "tiny-nllb-ct2-int8": ("nllb-ct2-int8", "ctranslate2"),
    "tiny-m2m100": ("m2m100", "transformers"),
    "tiny-m2m100-ct2-int8": ("m2m100-ct2-int8", "ctranslate2"),
}


def build_all(root: Path) -> dict[str, Path]:
    """Every tiny translation model under ``root`` (built once; a later call reuses them).

    Returns:
        Catalog name -> model folder.
    """
    done = root / ".complete"
    if not done.exists():
        root.mkdir(parents=True, exist_ok=True)
        build_marian(root / "opus-mt-en-de")
        convert_ct2(root / "opus-mt-en-de", root / "opus-mt-en-de-ct2-int8")
        build_nllb(root / "nllb")
        convert_ct2(root / "nllb", root / "nllb-ct2-int8")
        build_m2m100(root / "m2m100")
        convert_ct2(root / "m2m100", root / "m2m100-ct2-int8")
        done.touch()
    return {name: root / folder for name, (folder, _) in CATALOG.items()}


def catalog_yaml(models: dict[str, Path]) -> str:
    """An extra catalog ($VOXFLOW_CATALOG) serving the tiny models from file:// sources."""
    entries = []
    for name, folder in models.items():
        entries.append(
            f"{name}:\n"
            f"  source: {folder.as_uri()}\n"
            "  revision: random-seed-0\n"
            f"  files: [{', '.join(files(folder))}]\n"
            f"  format: {CATALOG[name][1]}\n"
            f"  repo_id: voxflow-test/{CATALOG[name][0]}\n"
            "  license: MIT\n"
        )
    return "".join(entries)
