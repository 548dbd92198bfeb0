#!/usr/bin/env bash
# Regenerates tests/reference/liveness_reference.json with onnxruntime on
# Silent-Face's own ONNX exports (pinned in liveness_requirements.txt), and
# checks that those exports carry the original PyTorch weights.
# Needs ../shared/models/antispoof (or $FACEGATE_ANTISPOOF_DIR).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
models=${FACEGATE_ANTISPOOF_DIR:-$root/../shared/models/antispoof}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

python3 -m venv "$tmp/venv"
"$tmp/venv/bin/pip" install -q -r "$here/liveness_requirements.txt"
"$tmp/venv/bin/python" "$here/check_liveness_weights.py" "$models"
printf 'image_T1.jpg\nimage_F1.jpg\nimage_F2.jpg\n' > "$tmp/list"
cargo run -q --release -p facegate-face --example decode_to_png -- "$models/samples" "$tmp/list" "$tmp/png"
"$tmp/venv/bin/python" "$here/make_liveness_reference.py" --models "$models" --decoded "$tmp/png" \
  --out "$here/liveness_reference.json"
