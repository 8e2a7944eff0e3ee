#!/usr/bin/env bash
# Create the virtual environment and install the locked dependencies into it:
#
#   scripts/install.sh .venv python3
#
# PyTorch's Linux wheels on PyPI are CUDA builds: with its NVIDIA libraries they take about
# 9 GB in the venv. The install checks the free space first and says what it needs, then
# installs the torch stack and the rest in two steps with no pip cache, so the downloaded
# wheels of one step are gone before the next (peak about 11 GB instead of 16).
set -euo pipefail
venv=${1:?usage: $0 VENV [PYTHON]}
python=${2:-python3}
lock=requirements.lock
need_gb=${VOXFLOW_INSTALL_NEED_GB:-11}

mkdir -p "$venv"
free_kb=$(df -Pk "$venv" | awk 'NR == 2 {print $4}')
free_gb=$((free_kb / 1024 / 1024))
if [ "$free_gb" -lt "$need_gb" ]; then
  echo "voxflow install: needs about $need_gb GB free where $venv lives (9 GB stay, most of" \
    "it PyTorch's CUDA build and its NVIDIA libraries; the rest is downloads, removed after);" \
    "found $free_gb GB free on $(df -P "$venv" | awk 'NR == 2 {print $6}'). Free some space" \
    "there and run the command again." >&2
  exit 2
fi

# -qq: errors only (a pip configured with extra local indexes warns once per package).
pip=("$venv/bin/pip" install -qq --no-cache-dir --disable-pip-version-check)
echo "installing the locked dependencies into $venv (a few minutes the first time)"
"$python" -m venv "$venv"
"${pip[@]}" -c "$lock" torch torchaudio torchcodec
"${pip[@]}" -r "$lock"
"${pip[@]}" --no-deps -e .
