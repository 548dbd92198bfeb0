# Sourced by the tests/*/run.sh scripts: strict mode, the workspace as the
# working directory ($ws), the shared LFW copy ($lfw_dir; $lfw is lfw.tgz or
# an unpacked lfw/), and a scratch directory ($out) removed on exit.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ws=$PWD
lfw_dir=${FACEGATE_LFW_DIR:-$ws/../shared/datasets/lfw}
lfw=$lfw_dir/lfw.tgz
[ -e "$lfw" ] || lfw=$lfw_dir/lfw
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
