#!/usr/bin/env bash
# The README's two set-up commands cost one build: every unit the first
# (`cargo run … --bin device`) compiles, the second (`cargo test --workspace
# …`) reuses, with the same features and profile, so the second compiles
# only the workspace's test targets and what tests alone need.
#
# Reads both commands from the README's set-up block, asks cargo for their
# unit graphs (no compiling; `--unit-graph` is unstable, hence
# RUSTC_BOOTSTRAP for this query alone), and compares them. Fails, naming
# the units, when one would be compiled twice.
#   tests/one-build/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."

block=$(awk '/^## Set-up/{on=1} on&&/^```sh/{code=1; next} code&&/^```/{exit} code' README.md)
run_line=$(grep -m1 '^cargo run ' <<<"$block" || true)
test_line=$(grep -m1 '^cargo test ' <<<"$block" || true)
if [ -z "$run_line" ] || [ -z "$test_line" ]; then
  echo "one-build: the README's set-up block must hold a 'cargo run' and a 'cargo test' line" >&2
  exit 1
fi
# `cargo run ARGS -- PROGRAM-ARGS` → `cargo build ARGS`; the test line as it is.
read -r -a run_args <<<"${run_line%% -- *}"
read -r -a test_args <<<"$test_line"
first=$(mktemp); second=$(mktemp)
trap 'rm -f "$first" "$second"' EXIT
RUSTC_BOOTSTRAP=1 cargo build "${run_args[@]:2}" --unit-graph -Z unstable-options >"$first"
RUSTC_BOOTSTRAP=1 cargo test "${test_args[@]:2}" --no-run --unit-graph -Z unstable-options >"$second"

python3 - "$first" "$second" "$run_line" "$test_line" <<'PY'
import json, sys

def units(path):
    """Each unit as cargo fingerprints it: package, target, mode, features, profile, platform."""
    out = set()
    for u in json.load(open(path))["units"]:
        out.add((u["pkg_id"], u["target"]["name"], ",".join(u["target"]["kind"]), u["mode"],
                 tuple(u["features"]), json.dumps(u["profile"], sort_keys=True), u.get("platform")))
    return out

first, second = units(sys.argv[1]), units(sys.argv[2])
twice = sorted(first - second)
registry = [u for u in twice if u[0].startswith("registry+")]
print(f"one-build: {len(first)} units in `{sys.argv[3]}`, {len(second)} in `{sys.argv[4]}`;"
      f" {len(first) - len(twice)} reused, {len(twice)} compiled again ({len(registry)} from the registry)")
for u in twice:
    print(f"  compiled again: {u[0].split('#')[-1]} {u[1]} ({u[3]}) features={list(u[4])}")
sys.exit(1 if twice else 0)
PY
