#!/usr/bin/env bash
# ARM builds proven under qemu-user: builds the device for aarch64 and armv7
# and the host tool for aarch64 (dist profile), runs the device's replay scenario (enrol → granted,
# strangers → no grant, simulated lock) on x86 and on both ARM builds, asserts
# the same decisions (with the HOG and the YuNet detector), reports how far ARM embeddings are from x86 (max |Δ|),
# the binary and model sizes, then builds and checks the .deb packages.
#
# Needs: rustup targets, gcc-aarch64-linux-gnu, gcc-arm-linux-gnueabihf,
# libc6-dev-{arm64,armhf}-cross, qemu-user, cargo-deb, python3;
# LFW at ../shared/datasets/lfw (or FACEGATE_LFW_DIR). `.ci/run` installs them.
# shellcheck source=../common.sh
. "$(dirname "$0")/../common.sh"

# aarch64 as a Pi 4's Cortex-A72: qemu's default CPU ("max") has SVE, which
# the libraries then use and qemu emulates slowly (a photo took 31 s to embed
# instead of 6.5).
qemu_aarch64="qemu-aarch64 -cpu cortex-a72 -L /usr/aarch64-linux-gnu"
declare -A qemu=([aarch64-unknown-linux-gnu]=$qemu_aarch64
                 [armv7-unknown-linux-gnueabihf]="qemu-arm -L /usr/arm-linux-gnueabihf")
declare -A deb_arch=([aarch64-unknown-linux-gnu]=arm64 [armv7-unknown-linux-gnueabihf]=armhf)
targets=(aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf)

if [ ! -e "$lfw" ]; then
  echo "SKIPPED: LFW not found at $lfw_dir: the ARM replay scenario was NOT run"
  exit 1
fi

echo "== build: x86_64 reference (release), aarch64 (dist profile, as packaged: no demo/bench tools)"
# FACEGATE_PREBUILT=1 (CI): target/release/device is the workspace build's.
[ -n "${FACEGATE_PREBUILT:-}" ] || cargo build --release -p facegate-device
# The door on both targets; the laptop tool on aarch64 only (the arm64 .deb below).
cargo build --profile dist --target aarch64-unknown-linux-gnu -p facegate-device -p host-tool --no-default-features

# A few LFW photos for the embedding comparison (unpacked to a temp dir, never kept).
mkdir -p "$out/img"
if [ -d "$lfw" ]; then src=$lfw; else tar -xzf "$lfw" -C "$out" lfw/Colin_Powell lfw/Tony_Blair lfw/Gerhard_Schroeder; src=$out/lfw; fi
imgs=()
for p in Colin_Powell/Colin_Powell_0001 Colin_Powell/Colin_Powell_0012 Tony_Blair/Tony_Blair_0003 Gerhard_Schroeder/Gerhard_Schroeder_0002; do
  cp "$src/$p.jpg" "$out/img/"; imgs+=("$out/img/$(basename $p).jpg")
done

# The demo's scenario (enrolled from 3 photos, 5 other photos of them, 20
# strangers), kept so that every build replays the very same frames and gallery
# through `device run`, the loop that ships.
target/release/device demo --lfw "$lfw" --models "$ws/models" --keep "$out/demo" > /dev/null 2> "$out/demo.log"
# The same scenario on YuNet's points with each network (recognition.network
# = "sface", the default, and "dlib"): the demo's gallery holds both
# networks' templates of the same photos.
for n in sface dlib; do
  [ -f "$out/demo/demo-$n.toml" ] || { echo "the demo kept no demo-$n.toml"; exit 1; }
done
grep -q '^network = "sface"$' "$out/demo/demo.toml" || { echo "demo.toml does not run the default network, SFace"; exit 1; }
# dlib's network computed in int8 (recognition.precision = "qint8"): aarch64's
# integer kernels are not x86's, so its embeddings are compared too.
sed 's/^precision = "int8"$/precision = "qint8"/' "$out/demo/demo-dlib.toml" > "$out/demo/demo-qint8.toml"
grep -q '^precision = "qint8"$' "$out/demo/demo-qint8.toml" || { echo "demo-dlib.toml has no precision setting"; exit 1; }
run_scenario() { # name, config, runner…
  local name=$1 config=$2; shift 2
  "$@" run --config "$config" --models "$ws/models" --gallery "$out/demo/gallery.fg" \
    --source "replay:$out/demo/frames" --lock sim --until-end --events-json --log none --serial none \
    > "$out/$name.events" 2> "$out/$name.log"
  "$@" embed --config "$config" --models "$ws/models" "${imgs[@]}" > "$out/$name.embed" 2>> "$out/$name.log"
}
qemu_scenarios() { # target: the default (SFace on HOG), SFace on YuNet and dlib on YuNet under qemu
  echo "== replay scenario on $1 under qemu (SFace on HOG and on YuNet, dlib on YuNet)"
  # shellcheck disable=SC2086
  run_scenario "$1" "$out/demo/demo.toml" ${qemu[$1]} "target/$1/dist/device"
  # shellcheck disable=SC2086
  run_scenario "$1-sface" "$out/demo/demo-sface.toml" ${qemu[$1]} "target/$1/dist/device"
  # shellcheck disable=SC2086
  run_scenario "$1-dlib" "$out/demo/demo-dlib.toml" ${qemu[$1]} "target/$1/dist/device"
}

echo "== replay scenario on x86_64 (SFace on HOG and on YuNet, dlib on YuNet)"
run_scenario x86 "$out/demo/demo.toml" target/release/device
run_scenario x86-sface "$out/demo/demo-sface.toml" target/release/device
run_scenario x86-dlib "$out/demo/demo-dlib.toml" target/release/device
target/release/device embed --config "$out/demo/demo-qint8.toml" --models "$ws/models" "${imgs[@]}" > "$out/x86-qint8.embed"
# A qemu process is one thread: aarch64's runs go on beside the armv7 build,
# then armv7's beside them, and the script waits for both.
(
  qemu_scenarios aarch64-unknown-linux-gnu
  echo "== int8-computed embeddings on aarch64 (qemu)"
  # shellcheck disable=SC2086
  $qemu_aarch64 target/aarch64-unknown-linux-gnu/dist/device embed \
    --config "$out/demo/demo-qint8.toml" --models "$ws/models" "${imgs[@]}" > "$out/aarch64-unknown-linux-gnu-qint8.embed"
) &
aarch64_runs=$!
echo "== build: armv7 (dist profile), beside the aarch64 runs"
cargo build --profile dist --target armv7-unknown-linux-gnueabihf -p facegate-device --no-default-features
qemu_scenarios armv7-unknown-linux-gnueabihf &
armv7_runs=$!
wait "$aarch64_runs"
wait "$armv7_runs"

python3 - "$out" "${targets[@]}" <<'PY'
import json, sys
out, targets = sys.argv[1], sys.argv[2:]
def decisions(name):
    ev = [json.loads(l) for l in open(f"{out}/{name}.events") if l.strip()]
    grants = [e["person"] for e in ev if e["kind"] == "granted"]
    relay = [e["state"] for e in ev if e["kind"] == "relay"]
    # The number of stranger events depends on wall-clock cooldowns (qemu is slower); whether there are any does not.
    return {"granted": grants, "strangers_seen": any(e["kind"] == "unknown" for e in ev), "relay": relay}
ok = True
for suffix in ["", "-sface", "-dlib"]:
    ref = decisions("x86" + suffix)
    assert ref["granted"] == ["Colin_Powell"], (suffix, ref)
    assert ref["strangers_seen"] and ref["relay"] == ["locked", "unlocked", "locked", "locked"], (suffix, ref)
    emb_ref = json.load(open(f"{out}/x86{suffix}.embed"))
    for t in targets:
        d = decisions(t + suffix)
        same = d == ref
        ok &= same
        emb = json.load(open(f"{out}/{t}{suffix}.embed"))
        delta = max(abs(a - b) for r, e in zip(emb_ref, emb) for a, b in zip(r["embedding"], e["embedding"]))
        print(f"{t}{suffix or ' (sface, hog)'}: decisions {'same as x86' if same else 'DIFFER: ' + json.dumps(d)}; "
              f"embeddings of {len(emb)} faces: max |delta| vs x86 = {delta:.3g}")
        ok &= delta < 1e-2
def embeddings(name):
    return [e["embedding"] for e in json.load(open(f"{out}/{name}.embed"))]
q_x86, q_arm, int8 = embeddings("x86-qint8"), embeddings("aarch64-unknown-linux-gnu-qint8"), embeddings("x86-dlib")
assert all(e is not None for e in q_x86 + q_arm), "a face was not embedded"
delta = max(abs(a - b) for r, e in zip(q_x86, q_arm) for a, b in zip(r, e))
dist = max(sum((a - b) ** 2 for a, b in zip(r, e)) ** 0.5 for r, e in zip(q_x86, int8))
print(f"qint8 on aarch64: embeddings of {len(q_arm)} faces: max |delta| vs x86 = {delta:.3g}; "
      f"qint8 vs int8 weights on x86: largest distance {dist:.3f}")
ok &= delta < 1e-2 and dist < 0.1
sys.exit(0 if ok else 1)
PY

echo "== sizes (dist profile, stripped${CARGO_PROFILE_DIST_LTO:+; LTO=$CARGO_PROFILE_DIST_LTO})"
mb() { awk -v b="$(stat -c %s "$1")" 'BEGIN { printf "%.1f MB", b / 1048576 }'; }
echo "aarch64-unknown-linux-gnu: device $(mb target/aarch64-unknown-linux-gnu/dist/device), host-tool $(mb target/aarch64-unknown-linux-gnu/dist/host-tool)"
echo "armv7-unknown-linux-gnueabihf: device $(mb target/armv7-unknown-linux-gnueabihf/dist/device)"
for m in models/*.onnx models/*.fgsp models/*.fghd; do echo "$m: $(mb $m)"; done

echo "== packages"
for t in "${targets[@]}"; do
  cargo deb -p facegate-device --target "$t" --profile dist --no-build --no-strip --output "$out/" >/dev/null
  deb=$(ls "$out"/facegate-device_*_"${deb_arch[$t]}".deb)
  dpkg-deb -I "$deb" > "$out/info"; dpkg-deb -c "$deb" > "$out/contents"
  grep -q "Architecture: ${deb_arch[$t]}" "$out/info"
  for f in ./usr/bin/facegate-device ./etc/facegate/facegate.toml ./usr/share/facegate/models/face_sface_f32.onnx \
           ./usr/share/facegate/models/face_resnet_int8.onnx \
           ./usr/share/facegate/models/landmarks_5.fgsp ./usr/share/facegate/models/face_detector_hog.fghd \
           ./usr/share/facegate/models/face_detector_yunet.onnx \
           ./usr/share/facegate/models/liveness_minifasnet_v2.onnx ./usr/share/facegate/models/liveness_minifasnet_v1se.onnx \
           ./usr/lib/systemd/system/facegate-device.service; do
    grep -q " $f\$" "$out/contents" || { echo "missing $f in $deb"; cat "$out/contents"; exit 1; }
  done
  dpkg-deb -e "$deb" "$out/ctl-$t"
  grep -qx /etc/facegate/facegate.toml "$out/ctl-$t/conffiles"
  grep -q "adduser --system" "$out/ctl-$t/postinst"
  grep -q "deb-systemd-helper enable facegate-device.service" "$out/ctl-$t/postinst"
  echo "$(basename "$deb"): $(du -h "$deb" | cut -f1), contents and control checked"
done
# The laptop tool for arm64 (a Pi 400, an ARM laptop): the build above, packaged with its models.
NO_BUILD=1 PROFILE=dist host-tool/package.sh deb aarch64-unknown-linux-gnu > "$out/host-deb.log" 2>&1 \
  || { cat "$out/host-deb.log"; exit 1; }
deb=$(ls target/packages/facegate-host-tool_*_arm64.deb)
# To files first: under pipefail, `dpkg-deb | grep -q` dies of SIGPIPE when grep stops early.
dpkg-deb -I "$deb" > "$out/info"; dpkg-deb -c "$deb" > "$out/contents"
grep -q "Architecture: arm64" "$out/info"
for f in ./usr/lib/facegate-host-tool/host-tool ./usr/lib/facegate-host-tool/models/MANIFEST \
         ./usr/lib/facegate-host-tool/models/face_sface_f32.onnx ./usr/lib/facegate-host-tool/models/face_resnet_int8.onnx; do
  grep -q " $f\$" "$out/contents" || { echo "missing $f in $deb"; exit 1; }
done
mkdir "$out/host-root"; dpkg -x "$deb" "$out/host-root"
# shellcheck disable=SC2086
$qemu_aarch64 "$out/host-root/usr/lib/facegate-host-tool/host-tool" models > "$out/host-models.log" \
  || { cat "$out/host-models.log"; exit 1; }
echo "$(basename "$deb"): $(du -h "$deb" | cut -f1), contents checked; finds and verifies its models under qemu"
if command -v systemd-analyze >/dev/null; then
  # verify resolves ExecStart binaries: point it at a stand-in with the same path layout.
  mkdir -p "$out/root/usr/bin"; cp target/release/device "$out/root/usr/bin/facegate-device"
  sed "s|/usr/bin/facegate-device|$out/root/usr/bin/facegate-device|g" device/debian/facegate-device.service > "$out/facegate-device.service"
  systemd-analyze verify "$out/facegate-device.service"
  echo "systemd-analyze verify: ok"
fi
echo "ARM: all checks passed (both targets: same decisions as x86, embeddings within 1e-2, packages checked)"
