#!/usr/bin/env bash
# Lays out spoof-dev's frames as clips for `host-tool bench liveness --sequences`:
# symbolic links, one folder per clip, nothing copied.
#   nuaa/{real,attack-print}/SESSION/   NUAA's frames grouped by the session in
#                                        their names (subject_subject_glasses_place_session)
#   replay-attack/real/VIDEO/            Replay-Attack's three frames of each live video
#                                        (its attacks are one frame a video: no clips)
# Usage: tests/liveness/spoof-clips.sh [SPOOF_DEV_DIR] OUT_DIR
set -euo pipefail
if [ $# -eq 1 ]; then src="$(dirname "$0")/../../../shared/datasets/spoof-dev"; out=$1; else src=$1; out=$2; fi
src=$(cd "$src" && pwd)
[ -d "$src/nuaa-dev" ] || { echo "no nuaa-dev in $src" >&2; exit 1; }
rm -rf "$out/nuaa" "$out/replay-attack"
link() { # link FILE CLIP_DIR
  mkdir -p "$2" && ln -s "$1" "$2/$(basename "$1")"
}
for kind in real attack; do
  dest=$kind; [ "$kind" = attack ] && dest=attack-print
  for f in "$src/nuaa-dev/$kind"/*.jpg; do
    name=$(basename "$f" .jpg)
    link "$f" "$out/nuaa/$dest/${name%_*}"
  done
done
if [ -d "$src/replay-attack-dev/real" ]; then
  for f in "$src/replay-attack-dev/real"/*.jpg; do
    name=$(basename "$f" .jpg)
    link "$f" "$out/replay-attack/real/${name%_frame_*}"
  done
fi
echo "clips in $out: nuaa $(ls "$out/nuaa/real" | wc -l) real, $(ls "$out/nuaa/attack-print" | wc -l) print; replay-attack $(ls "$out/replay-attack/real" 2>/dev/null | wc -l) real"
