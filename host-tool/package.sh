#!/usr/bin/env bash
# Builds the host tool's packages, with its models and their MANIFEST:
#   host-tool/package.sh deb [TARGET]   Debian package (default: this machine's
#                                       architecture; aarch64-unknown-linux-gnu → arm64)
#   host-tool/package.sh windows        x86_64 Windows zip: host-tool.exe + models\
# Output: target/packages/. Environment: PROFILE (cargo profile, default release),
# NO_BUILD=1 (package what was built already).
# Needs: cargo-deb (deb); rustup target x86_64-pc-windows-gnu and Debian's
# gcc-mingw-w64-x86-64 (windows); python3 (zip).
set -euo pipefail
cd "$(dirname "$0")/.."
profile=${PROFILE:-release}
version=$(sed -n '0,/^version = /s/^version = "\(.*\)"/\1/p' Cargo.toml)
mkdir -p target/packages
# The model files the MANIFEST lists: exactly what ships.
mapfile -t models < <(sed -n 's/^\[\(.*\)\]$/\1/p' models/MANIFEST)

case "${1:-}" in
  deb)
    args=(-p host-tool --profile "$profile" --output target/packages/)
    [ -n "${2:-}" ] && args+=(--target "$2")
    [ -n "${NO_BUILD:-}" ] && args+=(--no-build)
    cargo deb "${args[@]}"
    ;;
  windows)
    t=x86_64-pc-windows-gnu
    [ -n "${NO_BUILD:-}" ] || cargo build --profile "$profile" --target "$t" -p host-tool
    name=facegate-host-tool-$version-windows-x86_64
    stage=target/packages/$name
    rm -rf "$stage" "$stage.zip"; mkdir -p "$stage/models"
    x86_64-w64-mingw32-strip -o "$stage/host-tool.exe" "target/$t/$profile/host-tool.exe"
    cp models/MANIFEST "${models[@]/#/models/}" "$stage/models/"
    cp README.md "$stage/README.md"
    (cd target/packages && python3 -m zipfile -c "$name.zip" "$name")
    rm -rf "$stage"
    echo "$PWD/target/packages/$name.zip"
    ;;
  *)
    sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
