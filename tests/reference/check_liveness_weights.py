#!/usr/bin/env python3
"""Proves that Silent-Face's ONNX exports carry the original PyTorch weights:
every convolution of each export equals the .pth checkpoint's convolution with
its batch norm folded in (w·γ/√(σ²+ε), β − μ·γ/√(σ²+ε)), compared in the
order the layers are registered. Prints the largest difference per network and
exits non-zero above 1e-5. Run by make_liveness_reference.sh."""
import sys

import numpy as np
import onnx
from onnx import numpy_helper

from pth_weights import load_state_dict

PAIRS = [("2.7_80x80_MiniFASNetV2.pth", "MiniFASNetV2.onnx"), ("4_0_0_80x80_MiniFASNetV1SE.pth", "MiniFASNetV1SE.onnx")]
EPS = 1e-5


def batch_norm_of(state, conv):
    """The batch norm that follows a convolution in MiniFASNet's modules."""
    parent, leaf = conv.rsplit(".", 1)
    bn = f"{parent}.bn" if leaf == "conv" else f"{parent}.bn{leaf[-1]}" if leaf.startswith("fc") else None
    return bn if bn and f"{bn}.weight" in state else None


def main(directory):
    ok = True
    for pth, export in PAIRS:
        state = load_state_dict(f"{directory}/{pth}")
        model = onnx.load(f"{directory}/{export}")
        inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
        convs = [n for n in model.graph.node if n.op_type == "Conv"]
        names = [k[: -len(".weight")] for k in state if k.endswith(".weight") and state[k].ndim == 4]
        if len(names) != len(convs):
            print(f"{export}: {len(convs)} convolutions, the checkpoint has {len(names)}")
            ok = False
            continue
        worst = 0.0
        for name, node in zip(names, convs):
            w = state[f"{name}.weight"].astype(np.float64)
            b = state.get(f"{name}.bias", np.zeros(w.shape[0])).astype(np.float64)
            bn = batch_norm_of(state, name)
            if bn:
                g, beta, mu, var = (state[f"{bn}.{s}"].astype(np.float64) for s in ("weight", "bias", "running_mean", "running_var"))
                k = g / np.sqrt(var + EPS)
                w, b = w * k[:, None, None, None], (b - mu) * k + beta
            got_w = inits[node.input[1]]
            got_b = inits[node.input[2]] if len(node.input) > 2 else np.zeros(w.shape[0])
            worst = max(worst, float(np.abs(got_w - w).max()), float(np.abs(got_b - b).max()))
        print(f"{export}: {len(convs)} convolutions equal {pth} with batch norm folded, max |diff| {worst:.2e}")
        ok &= worst <= 1e-5
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
