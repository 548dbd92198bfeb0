#!/usr/bin/env python3
"""Writes the liveness reference: Silent-Face-Anti-Spoofing's own ONNX exports
run by onnxruntime, as numbers only.

- synthetic: 1x3x80x80 inputs from a formula both sides compute, and each
  network's class probabilities (softmax of its logits);
- samples: the three Apache-2.0 sample images, decoded by facegate (PNGs made
  by make_liveness_reference.sh, so both sides see the same pixels), cropped
  with the reference's geometry (CropImage._get_new_box) and cv2.resize at
  fixed face boxes: the crop bounds, the crop's channel means, and the live
  probabilities of each network and of the ensemble.
"""
import argparse
import json

import cv2
import numpy as np
import onnxruntime as ort

NETS = [("MiniFASNetV2.onnx", 2.7), ("MiniFASNetV1SE.onnx", 4.0)]
# (x, y, w, h) face boxes for the samples: the door detector's boxes through
# facegate's default box map, rounded (independent of any detector here).
BOXES = {"image_T1": [116, 127, 216, 216], "image_F1": [136, 127, 216, 216], "image_F2": [82, 212, 311, 311]}


def synthetic(k):
    """The same formula as crates/face/tests/liveness_reference.rs."""
    c, y, x = np.mgrid[0:3, 0:80, 0:80].astype(np.int64)
    return (((x * (7 + k) + y * 13 + c * 29 + k * k) % 256).astype(np.float32))[None]


def new_box(src_w, src_h, bbox, scale):
    """The reference's CropImage._get_new_box, as written there."""
    x, y, box_w, box_h = bbox
    scale = min((src_h - 1) / box_h, min((src_w - 1) / box_w, scale))
    new_width, new_height = box_w * scale, box_h * scale
    center_x, center_y = box_w / 2 + x, box_h / 2 + y
    left, top = center_x - new_width / 2, center_y - new_height / 2
    right, bottom = center_x + new_width / 2, center_y + new_height / 2
    if left < 0:
        right -= left
        left = 0
    if top < 0:
        bottom -= top
        top = 0
    if right > src_w - 1:
        left -= right - src_w + 1
        right = src_w - 1
    if bottom > src_h - 1:
        top -= bottom - src_h + 1
        bottom = src_h - 1
    return int(left), int(top), int(right), int(bottom)


def softmax(v):
    e = np.exp(v - v.max())
    return e / e.sum()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", required=True)
    ap.add_argument("--decoded", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    sessions = [(ort.InferenceSession(f"{a.models}/{f}", providers=["CPUExecutionProvider"]), s) for f, s in NETS]
    run = lambda sess, x: softmax(sess.run(None, {sess.get_inputs()[0].name: x})[0][0]).tolist()
    out = {"nets": [f for f, _ in NETS], "synthetic": [], "samples": {}}
    for k in range(3):
        out["synthetic"].append({"k": k, "probabilities": [run(s, synthetic(k)) for s, _ in sessions]})
    for name, box in BOXES.items():
        bgr = cv2.imread(f"{a.decoded}/{name}.jpg.png", cv2.IMREAD_COLOR)
        h, w = bgr.shape[:2]
        case = {"box": box, "size": [w, h], "crops": []}
        for sess, scale in sessions:
            l, t, r, b = new_box(w, h, box, scale)
            crop = cv2.resize(bgr[t:b + 1, l:r + 1], (80, 80))
            x = crop.transpose(2, 0, 1)[None].astype(np.float32)
            case["crops"].append({"bounds": [l, t, r, b], "bgr_means": x[0].mean(axis=(1, 2)).tolist(),
                                  "live": run(sess, x)[1]})
        case["ensemble_live"] = float(np.mean([c["live"] for c in case["crops"]]))
        out["samples"][name] = case
    with open(a.out, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
