#!/usr/bin/env bash
# Coverage-guided fuzzing of every decoder that reads outside input
# (cargo-fuzz, libFuzzer with AddressSanitizer, the nightly toolchain).
#
#   tests/fuzz/run.sh [--minutes N] [--all] [--json] [TARGET ...]
#
# N minutes in all (default 1), shared by the targets. The image and
# configuration targets need the network runtime and the device built for
# fuzzing (about 15 minutes more): only with --all (or when named). Before fuzzing, each
# target replays its regressions (tests/fuzz/regressions/TARGET/: every
# crash found becomes a file there). The corpus grows in
# tests/fuzz/corpus/TARGET (not committed); crashes land in
# tests/fuzz/artifacts/TARGET. Exit status 1 when anything crashed.
# With --json: {"targets": {NAME: {"inputs": N, "crashes": N}}}.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
minutes=1
json=false
heavy=false
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --minutes) minutes="$2"; shift 2 ;;
    --json) json=true; shift ;;
    --all) heavy=true; shift ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    -*) echo "unknown option $1" >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done
light=(serial_frames serial_requests gallery access_log site_records door_state)
if [ ${#targets[@]} -eq 0 ]; then
  targets=("${light[@]}")
  ! $heavy || targets+=(images config)
fi
for t in "${targets[@]}"; do
  case "$t" in images|config) heavy=true ;; esac
done
features=()
! $heavy || features=(--features heavy)
command -v cargo-fuzz >/dev/null || { echo "cargo-fuzz is not installed: cargo install --locked cargo-fuzz" >&2; exit 2; }
cargo +nightly --version >/dev/null 2>&1 || { echo "the nightly toolchain is not installed (rustup toolchain install nightly)" >&2; exit 2; }

log() { if $json; then echo "$*" >&2; else echo "$*"; fi; }
log "building ${#targets[@]} fuzz targets (nightly, AddressSanitizer)"
(cd "$here" && cargo +nightly fuzz build --fuzz-dir "$here" -O "${features[@]}" >&2)
bin="$here/target/x86_64-unknown-linux-gnu/release"
seconds=$(( minutes * 60 / ${#targets[@]} ))
[ "$seconds" -ge 1 ] || seconds=1

results=()
failed=0
for t in "${targets[@]}"; do
  corpus="$here/corpus/$t" artifacts="$here/artifacts/$t" regressions="$here/regressions/$t"
  mkdir -p "$corpus" "$artifacts"
  crashes=0
  if [ -d "$regressions" ] && [ -n "$(ls -A "$regressions")" ]; then
    if ! "$bin/$t" -runs=1 "$regressions"/* >"$artifacts/regressions.log" 2>&1; then
      log "$t: a regression input fails again (see $artifacts/regressions.log)"
      crashes=$((crashes + 1))
    fi
  fi
  before=$(ls "$artifacts" | grep -cE '^(crash|leak|timeout|oom|slow-unit)-' || true)
  status=0
  "$bin/$t" -max_total_time="$seconds" -print_final_stats=1 -rss_limit_mb=2048 -timeout=10 \
    -artifact_prefix="$artifacts/" "$corpus" >"$artifacts/last-run.log" 2>&1 || status=$?
  after=$(ls "$artifacts" | grep -cE '^(crash|leak|timeout|oom|slow-unit)-' || true)
  inputs=$(grep -oE 'stat::number_of_executed_units: [0-9]+' "$artifacts/last-run.log" | grep -oE '[0-9]+$' | tail -1 || true)
  crashes=$((crashes + after - before))
  [ "$status" -eq 0 ] || [ "$after" -gt "$before" ] || crashes=$((crashes + 1))
  [ "$crashes" -eq 0 ] || failed=1
  log "$t: ${inputs:-0} inputs in ${seconds} s, $crashes crashes"
  results+=("\"$t\": {\"inputs\": ${inputs:-0}, \"crashes\": $crashes}")
done
if $json; then
  (IFS=,; echo "{\"targets\": {${results[*]}}}")
fi
exit $failed
