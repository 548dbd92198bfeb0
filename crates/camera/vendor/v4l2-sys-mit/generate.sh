#!/usr/bin/env bash
# Regenerates src/bindings/<arch>.rs: builds the registry crate
# v4l2-sys-mit 0.3.0 (bindgen 0.65.1 on <linux/videodev2.h>) for each target
# in a scratch project outside the workspace, and keeps what its build
# script wrote. Needs libclang (apt-get install libclang-dev) and, for the
# ARM targets, Debian's cross headers (libc6-dev-arm64-cross,
# libc6-dev-armhf-cross, linux-libc-dev-*-cross).
#   crates/camera/vendor/v4l2-sys-mit/generate.sh [TARGET…]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(x86_64-unknown-linux-gnu aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf)
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
mkdir -p "$scratch/src"
: > "$scratch/src/lib.rs"
cat > "$scratch/Cargo.toml" <<'TOML'
[package]
name = "v4l2-bindings-scratch"
version = "0.0.0"
edition = "2021"
[dependencies]
v4l2-sys-mit = "=0.3.0"
[workspace]
TOML
for t in "${targets[@]}"; do
  case $t in
    x86_64-*) arch=x86_64 ;;
    aarch64-*) arch=aarch64; export BINDGEN_EXTRA_CLANG_ARGS_aarch64_unknown_linux_gnu="--sysroot=/usr/aarch64-linux-gnu" ;;
    armv7-*|arm-*) arch=arm; export BINDGEN_EXTRA_CLANG_ARGS_armv7_unknown_linux_gnueabihf="--sysroot=/usr/arm-linux-gnueabihf" ;;
    *) echo "unknown target $t" >&2; exit 2 ;;
  esac
  # Only the build script matters: the library itself may fail to build
  # when the target's standard library is not installed.
  (cd "$scratch" && cargo build -q --release --target "$t" -p v4l2-sys-mit) || true
  out=$(find "$scratch/target/$t/release/build" -name v4l2_bindings.rs | head -1)
  [ -n "$out" ] || { echo "bindgen wrote nothing for $t (libclang installed?)" >&2; exit 1; }
  cp "$out" "$here/src/bindings/$arch.rs"
  echo "$t → src/bindings/$arch.rs ($(wc -c < "$out") bytes)"
done
