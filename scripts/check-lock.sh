#!/usr/bin/env bash
# Check, without installing anything, that requirements.lock resolves for every machine voxflow
# is installed on: Linux x86-64 and macOS on Apple silicon (14 or later, which MLX needs), each
# with Python 3.11, 3.12 and 3.13. uv resolves the pinned set for each target from the package
# index and fails when a pin has no wheel or source for it (as torchcodec has none for Linux
# aarch64). Needs the index (CI runs it; `make install` puts uv in .venv).
#
#   scripts/check-lock.sh [UV]
set -euo pipefail
uv=${1:-.venv/bin/uv}
lock=requirements.lock
failed=0
for target in x86_64-unknown-linux-gnu aarch64-apple-darwin; do
  for python in 3.11 3.12 3.13; do
    if MACOSX_DEPLOYMENT_TARGET=14.0 "$uv" pip compile "$lock" --python-platform "$target" \
      --python-version "$python" --no-header --no-annotate --quiet --output-file /dev/null; then
      echo "check-lock: $lock resolves for $target, Python $python"
    else
      echo "check-lock: $lock does not resolve for $target, Python $python (see above);" \
        "re-resolve it with: make lock" >&2
      failed=1
    fi
  done
done
exit $failed
