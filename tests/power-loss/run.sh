#!/usr/bin/env bash
# Power-loss exploration of every file facegate writes (docs/power-loss.md):
# runs the `power_loss` tests of the workspace, each of which cuts the power
# at every point of one file's writes and checks every disk the cut may
# leave with the program's own readers, then sums what they explored.
#
#   tests/power-loss/run.sh [--json]
#
# --json prints one object: {"cut_points": N, "states": N, "bad": N, "files": [NAME, ...]}.
# Exits non-zero when a state is bad or a test fails; the summary is printed either way.
set -euo pipefail
cd "$(dirname "$0")/../.."
flag=()
case "${1:-}" in
  --json) flag=(--json) ;;
  "") ;;
  *) echo "usage: tests/power-loss/run.sh [--json]" >&2; exit 2 ;;
esac
report=$(mktemp)
trap 'rm -f "$report"' EXIT
status=0
# The whole workspace's test targets, as `cargo test --workspace --release`
# builds them (the same compiled units, nothing rebuilt), filtered to the explorations.
FACEGATE_POWER_LOSS_REPORT="$report" cargo test --workspace --release --tests -- power_loss >&2 || status=$?
if [[ ! -s "$report" ]]; then
  echo "tests/power-loss/run.sh: no exploration reported (did the tests build?)" >&2
  exit 1
fi
# Built with the package's integration tests above.
summary="${CARGO_TARGET_DIR:-target}/release/power-loss-report"
[[ -x "$summary" ]] || cargo build --release --quiet -p facegate-power-loss --bin power-loss-report
"$summary" "${flag[@]}" "$report"
exit "$status"
