#!/usr/bin/env bash
# The host tool as users install it, proven: builds the amd64 .deb and the
# Windows zip with host-tool/package.sh, checks the .deb (dpkg-deb -I/-c) and
# unpacks it into a scratch root, unzips the Windows build and runs it under
# wine; on both, offline (--gallery): enrol one person from 3 LFW photos, then
# identify 5 other photos of them and 5 strangers. The Windows answers must be
# the Linux ones: same names, distances within 1e-4. Each finds its models
# "beside the program" (no --models, no FACEGATE_MODELS).
#
# Needs: cargo-deb, dpkg, rustup target x86_64-pc-windows-gnu,
# gcc-mingw-w64-x86-64, wine64, python3; LFW at ../shared/datasets/lfw (or
# FACEGATE_LFW_DIR). `.ci/run` installs them.
# shellcheck source=../common.sh
. "$(dirname "$0")/../common.sh"
unset FACEGATE_MODELS FACEGATE_PORT

echo "== packages: amd64 .deb and Windows zip (host-tool/package.sh)"
# FACEGATE_PREBUILT=1 (CI): package the workspace build's host-tool.
NO_BUILD=${FACEGATE_PREBUILT:-} host-tool/package.sh deb > "$out/deb.log" 2>&1 || { cat "$out/deb.log"; exit 1; }
host-tool/package.sh windows > "$out/zip.log" 2>&1 || { cat "$out/zip.log"; exit 1; }
version=$(sed -n '0,/^version = /s/^version = "\(.*\)"/\1/p' Cargo.toml)
deb=target/packages/facegate-host-tool_${version}-1_amd64.deb
zip=target/packages/facegate-host-tool-$version-windows-x86_64.zip

echo "== .deb: control and contents"
dpkg-deb -I "$deb" > "$out/info"; dpkg-deb -c "$deb" > "$out/contents"
grep -q "^ Package: facegate-host-tool$" "$out/info"
grep -q "^ Architecture: amd64$" "$out/info"
grep -q " ./usr/bin/host-tool -> ../lib/facegate-host-tool/host-tool$" "$out/contents" \
  || { echo "no /usr/bin/host-tool link in $deb"; cat "$out/contents"; exit 1; }
for f in $(sed -n 's/^\[\(.*\)\]$/\1/p' models/MANIFEST) MANIFEST; do
  grep -q " ./usr/lib/facegate-host-tool/models/$f\$" "$out/contents" || { echo "missing model $f in $deb"; exit 1; }
done
mkdir "$out/root"; dpkg -x "$deb" "$out/root"
linux=("$out/root/usr/bin/host-tool")
"${linux[@]}" --version
"${linux[@]}" models > "$out/models.log" || { cat "$out/models.log"; exit 1; }
grep -q "^models: $out/root/usr/lib/facegate-host-tool/models$" "$out/models.log"
echo "$(basename "$deb"): $(du -h "$deb" | cut -f1); installed into a scratch root, finds and verifies its models"

if [ ! -e "$lfw" ]; then
  echo "SKIPPED: LFW not found at $lfw_dir: the Linux/Windows identify comparison was NOT run"
  exit 1
fi
echo "== photos: Colin Powell (3 to enrol, 5 to identify), 5 strangers"
enrol=(Colin_Powell/Colin_Powell_0001 Colin_Powell/Colin_Powell_0002 Colin_Powell/Colin_Powell_0003)
probes=(Colin_Powell/Colin_Powell_0004 Colin_Powell/Colin_Powell_0005 Colin_Powell/Colin_Powell_0006
        Colin_Powell/Colin_Powell_0007 Colin_Powell/Colin_Powell_0008
        Tony_Blair/Tony_Blair_0001 Gerhard_Schroeder/Gerhard_Schroeder_0001 Donald_Rumsfeld/Donald_Rumsfeld_0001
        Ariel_Sharon/Ariel_Sharon_0001 Hugo_Chavez/Hugo_Chavez_0001)
mkdir -p "$out/work/photos"
all=("${enrol[@]}" "${probes[@]}")
if [ -d "$lfw" ]; then
  src=$lfw
else
  mapfile -t members < <(printf 'lfw/%s.jpg\n' "${all[@]}")
  tar -xzf "$lfw" -C "$out" "${members[@]}"; src=$out/lfw
fi
for p in "${all[@]}"; do cp "$src/$p.jpg" "$out/work/photos/"; done
rel() { for p in "$@"; do printf 'photos/%s.jpg\n' "$(basename "$p")"; done; }
mapfile -t enrol_files < <(rel "${enrol[@]}")
mapfile -t probe_files < <(rel "${probes[@]}")

# Relative paths: the same arguments mean the same files to both programs.
session() { # name, program…
  local name=$1; shift
  (cd "$out/work" && "$@" --gallery "$name.fg" enroll Colin_Powell "${enrol_files[@]}" > "$name.enroll" 2>&1 \
    && "$@" --gallery "$name.fg" --json identify "${probe_files[@]}" > "$name.json" 2> "$name.err") \
    || { cat "$out/work/$name.enroll" "$out/work/$name.err" 2>/dev/null; echo "$name: host-tool failed"; exit 1; }
}

echo "== Linux (.deb)"
session linux "${linux[@]}"

echo "== Windows (zip) under wine"
mkdir "$out/win"; (cd "$out/win" && python3 -m zipfile -e "$ws/$zip" .)
win=$(ls -d "$out"/win/facegate-host-tool-*)
# Wine < 9 (Debian 12 has 8.0) lacks bcryptprimitives.dll, which Rust's std
# imports on Windows 10+; a test-only stand-in goes beside the exe, never in the zip.
x86_64-w64-mingw32-gcc -shared -O2 -o "$win/bcryptprimitives.dll" tests/host-tool/bcryptprimitives_shim.c -ladvapi32
export WINEPREFIX=$out/wineprefix WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml=" DISPLAY=
wine "$win/host-tool.exe" --version > "$out/win.version" 2> "$out/wine.log" || { cat "$out/wine.log"; exit 1; }
cat "$out/win.version"
session windows wine "$win/host-tool.exe"

python3 - "$out/work" <<'PY'
import json, sys
work = sys.argv[1]
def answers(name):
    return [json.loads(l) for l in open(f"{work}/{name}.json") if l.strip()]
lin, win = answers("linux"), answers("windows")
assert len(lin) == 10 and len(win) == 10, (len(lin), len(win))
worst = 0.0
for a, b in zip(lin, win):
    photo = a["photo"]
    assert a["photo"].replace("\\", "/") == b["photo"].replace("\\", "/"), (a, b)
    assert a["person"] == b["person"] and a["accepted"] == b["accepted"], f"{photo}: linux {a['person']} windows {b['person']}"
    worst = max(worst, abs(a["distance"] - b["distance"]))
for a in lin[:5]:
    assert a["person"] == "Colin_Powell", f"{a['photo']}: expected Colin_Powell, got {a['person']}"
for a in lin[5:]:
    assert a["person"] is None, f"{a['photo']}: a stranger identified as {a['person']}"
assert worst <= 1e-4, f"distances differ by up to {worst:.3g}"
print(f"Linux and Windows agree on all 10 photos (5 Colin_Powell, 5 not enrolled); max |distance delta| = {worst:.2g}")
PY
echo "host-tool packages: all checks passed"
