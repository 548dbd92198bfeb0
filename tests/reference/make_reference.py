#!/usr/bin/env python3
"""Writes dlib's own results for the LFW images in images.txt, as numbers only.

Run through make_reference.sh, which first decodes the JPEGs with facegate's
decoder into lossless PNGs in a temporary directory: JPEG decoders differ by
several grey levels (even PIL and dlib's own loader do), so dlib must see the
very pixels the Rust pipeline sees. The PNGs are deleted afterwards.

For each image: the decoded pixels' sha256, dlib's HOG detections (upsample 0
and 1, with scores), its CNN (MMOD) detections (upsample 0, with confidences), the 5 landmarks from a fixed box and from the first HOG
box, the 150x150 chip's sha256 and channel sums, and the chip's 128-d
descriptor. Synthetic images (a formula both sides compute) exercise the
chip's rotation and image-pyramid paths. No pixels are written.
"""
import argparse, hashlib, json, os
import numpy as np
import dlib
from PIL import Image

FIXED_BOX = (67, 67, 182, 182)  # an LFW-centred face box, independent of any detector
MEAN_FACE = np.array([[0.8595674595992, 0.2134981538014], [0.6460604764104, 0.2289674387677],
                      [0.1205750620789, 0.2137274526848], [0.3340850613712, 0.2290642403242],
                      [0.4901123135679, 0.6277975316475]])


def synthetic(width, height):
    """The same formula as the Rust tests."""
    y, x = np.mgrid[0:height, 0:width].astype(np.int64)
    return np.stack([(x * 7 + y * 13) % 256, (x * x + 3 * y) % 256, (x ^ y) % 256], axis=-1).astype(np.uint8)


def sha(a):
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def chip_record(img, parts):
    rect = dlib.rectangle(0, 0, img.shape[1] - 1, img.shape[0] - 1)
    shape = dlib.full_object_detection(rect, [dlib.point(int(x), int(y)) for x, y in parts])
    chip = dlib.get_face_chip(img, shape, 150, 0.25)
    return chip, {"chip_sha256": sha(chip), "chip_sums": [int(chip[:, :, c].sum()) for c in range(3)]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--decoded", required=True, help="directory of PNGs written by the Rust decoder")
    ap.add_argument("--list", required=True)
    ap.add_argument("--models", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    det = dlib.get_frontal_face_detector()
    sp = dlib.shape_predictor(os.path.join(a.models, "shape_predictor_5_face_landmarks.dat"))
    fr = dlib.face_recognition_model_v1(os.path.join(a.models, "dlib_face_recognition_resnet_model_v1.dat"))
    cnn = dlib.cnn_face_detection_model_v1(os.path.join(a.models, "mmod_human_face_detector.dat"))
    images = []
    for rel in open(a.list).read().split():
        img = np.array(Image.open(os.path.join(a.decoded, rel + ".png")).convert("RGB"))
        rec = {"image": rel, "pixels_sha256": sha(img)}
        for up in (0, 1):
            boxes, scores, idx = det.run(img, up, 0.0)
            rec[f"hog_upsample{up}"] = [
                {"box": [b.left(), b.top(), b.right(), b.bottom()], "score": s, "filter": int(i)}
                for b, s, i in zip(boxes, scores, idx)]
        rec["cnn_upsample0"] = [
            {"box": [d.rect.left(), d.rect.top(), d.rect.right(), d.rect.bottom()], "score": d.confidence}
            for d in cnn(img, 0)]
        rec["fixed_box"] = list(FIXED_BOX)
        rec["landmarks_fixed_box"] = [[p.x, p.y] for p in sp(img, dlib.rectangle(*FIXED_BOX)).parts()]
        dets = det(img, 1)
        if len(dets):
            rec["landmarks_hog"] = [[p.x, p.y] for p in sp(img, dets[0]).parts()]
        chip, c = chip_record(img, rec["landmarks_fixed_box"])
        rec.update(c)
        rec["descriptor"] = [float(v) for v in fr.compute_face_descriptor(chip)]
        images.append(rec)
    synth = []
    for (w, h, cx, cy, size, angle) in [(640, 480, 320, 240, 120, 0.0), (800, 600, 400, 300, 300, 0.3),
                                        (1200, 1000, 600, 500, 700, -0.5), (900, 700, 120, 100, 400, 1.2)]:
        img = synthetic(w, h)
        rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        parts = np.floor((MEAN_FACE - 0.5) @ rot.T * size + [cx, cy] + 0.5).astype(int).tolist()
        _, c = chip_record(img, parts)
        box = [cx - size // 2, cy - size // 2, cx + size // 2, cy + size // 2]
        lm = [[p.x, p.y] for p in sp(img, dlib.rectangle(*box)).parts()]
        synth.append({"width": w, "height": h, "landmarks": parts, "box": box, "landmarks_from_box": lm, **c})
    out = {"generator": "tests/reference/make_reference.sh", "dlib_version": dlib.__version__,
           "images": images, "synthetic_chips": synth}
    with open(a.out, "w") as f:
        json.dump(out, f, indent=1)
    print(f"wrote {len(images)} images and {len(synth)} synthetic cases to {a.out}")


if __name__ == "__main__":
    main()
