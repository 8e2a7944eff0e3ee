#!/usr/bin/env bash
# System packages the tests need: espeak-ng speaks the test sentences, ffmpeg's CLI regenerates
# the bundled sample. PyAV ships its own ffmpeg libraries, so running voxflow needs neither.
# The deployment tests start Debian's PostgreSQL server (initdb/pg_ctl) and drive Debian's
# headless chromium through chromium-driver; neither browser nor driver is ever downloaded.
set -euo pipefail
missing=()
command -v espeak-ng >/dev/null || missing+=(espeak-ng)
command -v ffmpeg >/dev/null || missing+=(ffmpeg)
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
# The model-volume tests: unshare/mount (util-linux) for the no-network and read-only-mount
# tests, ip (iproute2) to bring up loopback inside the namespace.
command -v unshare >/dev/null || missing+=(util-linux)
command -v ip >/dev/null || missing+=(iproute2)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "missing system packages: ${missing[*]}; install them with: sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "installing system packages: ${missing[*]}"
apt-get update -q >/dev/null
DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null
