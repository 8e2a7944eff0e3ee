#!/usr/bin/env bash
# Regenerates examples/sample.mp4: generated English speech (espeak-ng), AAC audio in an MP4
# with a plain video track. Needs espeak-ng and ffmpeg (apt-get install espeak-ng ffmpeg).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
espeak-ng -v en-us -s 150 -w "$tmp/speech.wav" -f "$here/sample.txt"
ffmpeg -loglevel error -y -f lavfi -i "color=c=0x203040:s=320x180:r=10" -i "$tmp/speech.wav" \
  -shortest -c:v libx264 -preset veryslow -crf 40 -pix_fmt yuv420p -c:a aac -b:a 64k -ar 24000 \
  "$here/sample.mp4"
