"""Tests for the converted face recognizers and their gradient graphs.

* Each ONNX recognizer reproduces TensorFlow.js: embeddings stored in
  ``tests/data/recognizers/<model>.npz`` by ``tools/recognizers/check_against_tfjs.py``
  (run there with @tensorflow/tfjs 4.22.0) must match within 1e-4.  No Node
  needed here.
* Sidecar json files agree with the files they describe.
* The gradient graphs (``<model>.grad.onnx``) agree with the forward models
  and with central finite differences; every backward rule of
  ``tools/recognizers/make_gradient_graph.py`` is also checked on a small
  synthetic graph that uses all of them.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys

import numpy as np
import pytest

ort = pytest.importorskip("onnxruntime")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIPPED = os.path.join(REPO, "python", "veil", "models", "recognizers")
FIXTURES = os.path.join(REPO, "tests", "data", "recognizers")
TOOLS = os.path.join(REPO, "tools", "recognizers")

MODELS = {"mobilefacenet": SHIPPED, "faceres": SHIPPED, "mobileface": SHIPPED}
# The models with a gradient graph checked here (faceres-deep has no TF.js fixture).
ENSEMBLE = ["mobilefacenet", "faceres", "mobileface"]


def _session(path_or_bytes):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    opts.log_severity_level = 3
    return ort.InferenceSession(path_or_bytes, opts, providers=["CPUExecutionProvider"])


def _fixture(name):
    with np.load(os.path.join(FIXTURES, name + ".npz")) as data:
        x = data["pixels"].astype(np.float32)
        if str(data["channels"]) == "BGR":
            x = x[:, ::-1]
        x = np.ascontiguousarray(x * data["multiplier"] + data["offset"], dtype=np.float32)
        return x, data["tfjs"], float(data["multiplier"])


@pytest.fixture(scope="module")
def sessions():
    return {name: _session(os.path.join(d, name + ".onnx")) for name, d in MODELS.items()}


@pytest.fixture(scope="module")
def grad_sessions():
    return {name: _session(os.path.join(SHIPPED, name + ".grad.onnx")) for name in ENSEMBLE}


@pytest.mark.parametrize("name", list(MODELS))
def test_matches_tfjs(name, sessions):
    x, ref, _ = _fixture(name)
    got = sessions[name].run(["embedding"], {"image": x})[0]
    assert got.shape == ref.shape
    assert np.abs(got - ref).max() <= 1e-4


@pytest.mark.parametrize("name", list(MODELS))
def test_sidecar_describes_model(name, sessions):
    d = MODELS[name]
    with open(os.path.join(d, name + ".json")) as f:
        side = json.load(f)
    with open(os.path.join(d, side["file"]), "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == side["sha256"]
    inp = sessions[name].get_inputs()[0]
    assert inp.name == "image" and inp.shape[1:] == side["input"]["shape"][1:]
    assert sessions[name].get_outputs()[0].shape[1] == side["output"]["size"]
    pre = side["preprocessing"]
    assert pre["channels"] in ("RGB", "BGR") and pre["input_size"] == side["input"]["shape"][2:]
    assert {"multiplier", "offset", "crop"} <= set(pre)
    assert "MIT" in side["source"]["licence"] and side["source"]["version"] == "3.0.4"
    if name in ENSEMBLE:
        g = side["gradient_graph"]
        with open(os.path.join(d, g["file"]), "rb") as f:
            assert hashlib.sha256(f.read()).hexdigest() == g["sha256"]


def _unit(v):
    return (v / np.linalg.norm(v)).astype(np.float32)


@pytest.mark.parametrize("name", ENSEMBLE)
def test_gradient_graph_agrees_with_forward(name, sessions, grad_sessions):
    x, _, _ = _fixture(name)
    x = x[1:2]  # the smooth generated image
    emb = sessions[name].run(["embedding"], {"image": x})[0]
    target = _unit(np.random.default_rng(3).standard_normal(emb.shape))
    loss, grad, emb2 = grad_sessions[name].run(["loss", "grad", "embedding"], {"image": x, "target": target})
    assert np.allclose(emb2, emb, atol=1e-5)
    assert loss.shape == (1,) and grad.shape == x.shape
    assert abs(float(loss[0]) - float(_unit(emb[0]) @ target[0])) < 1e-5
    assert np.isfinite(grad).all() and np.abs(grad).max() > 0


# Per-pixel step in 0..255 pixel units: small enough to rarely cross a ReLU
# kink, large enough that the loss change is well above float32 rounding
# (MobileFaceNet takes pixel/128, so its steps are 128x smaller in its input).
PIXEL_EPS = {"mobilefacenet": 1.0, "faceres": 0.05, "mobileface": 0.05}


@pytest.mark.parametrize("name", ENSEMBLE)
def test_gradient_matches_finite_differences(name, grad_sessions):
    """Central differences along the gradient direction (step 0.01 pixel
    units, relative error < 1e-2), and one-sided differences on the 6 pixels
    with the largest gradients (the gradient must lie within 5% of the range
    of the two one-sided slopes: at a ReLU kink they differ, and the network's
    gradient is one of them).  Random full-image directions are not used: on
    a ReLU network their derivative is tiny next to float32 rounding."""
    x, _, mult = _fixture(name)
    x = x[1:2]
    sess = grad_sessions[name]
    target = _unit(np.random.default_rng(4).standard_normal((1, sess.get_inputs()[1].shape[1])))
    _, grad = sess.run(["loss", "grad"], {"image": x, "target": target})

    def loss(z):
        return float(sess.run(["loss"], {"image": z.astype(np.float32), "target": target})[0][0])

    # Model input = pixel * mult + offset, so one pixel unit is `mult` input units.
    v = grad / np.abs(grad).max()
    eps = 0.01 * mult
    fd = (loss(x + eps * v) - loss(x - eps * v)) / (2 * eps)
    an = float((grad * v).sum())
    assert abs(fd - an) <= 1e-2 * abs(an)

    eps = PIXEL_EPS[name] * mult
    l0 = loss(x)
    for i in np.argsort(-np.abs(grad).ravel())[:6]:
        e = np.zeros(x.size, np.float32)
        e[i] = 1
        e = e.reshape(x.shape)
        fwd, bwd = (loss(x + eps * e) - l0) / eps, (l0 - loss(x - eps * e)) / eps
        g = float(grad.ravel()[i])
        slack = 0.05 * abs(g)
        assert min(fwd, bwd) - slack <= g <= max(fwd, bwd) + slack, (g, fwd, bwd)


def _synthetic_model():
    """A small graph with every op the backward rules cover, in the shapes the
    recognizers use them (stride-2 SAME-style asymmetric pads, depthwise,
    residual adds, PReLU, relu6 Clip, Max with a constant, the L2-norm
    spelling of MobileFaceNet, flatten + dense of MobileFace)."""
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(0)
    w = lambda *s: numpy_helper.from_array((rng.standard_normal(s) * 0.4).astype(np.float32), f"weight{len(inits)}")  # noqa: E731
    inits = []

    def const(value, dtype=np.float32):
        t = numpy_helper.from_array(np.asarray(value, dtype), f"const{len(inits)}")
        inits.append(t)
        return t.name

    def weight(*shape):
        t = w(*shape)
        inits.append(t)
        return t.name

    n = []
    mk = lambda op, ins, out, **a: n.append(helper.make_node(op, ins, [out], **a))  # noqa: E731
    mk("Mul", ["image", const(0.5)], "s0")
    mk("Pad", ["s0", const([0, 0, 1, 1, 0, 0, 1, 1], np.int64)], "p0", mode="constant")
    mk("Conv", ["p0", weight(8, 3, 3, 3), weight(8)], "c1", strides=[2, 2], pads=[0, 0, 1, 1], kernel_shape=[3, 3])
    mk("PRelu", ["c1", const(rng.uniform(0, 0.5, (8, 1, 1)))], "a1")
    mk("Conv", ["a1", weight(8, 1, 3, 3), weight(8)], "d1", strides=[2, 2], pads=[1, 1, 1, 1], group=8,
       kernel_shape=[3, 3])
    mk("Clip", ["d1", const(0.0), const(6.0)], "a2")
    mk("Conv", ["a2", weight(8, 8, 1, 1)], "c2", kernel_shape=[1, 1])
    mk("Relu", ["c2"], "a3")
    mk("Add", ["a3", "a2"], "r1")  # residual: a2 gets two gradient contributions
    mk("Mul", ["r1", const(rng.uniform(0.5, 1.5, (1, 8, 1, 1)))], "m1")
    mk("Sub", ["m1", const(0.1)], "m2")
    mk("Max", ["m2", const(-0.2)], "m3")
    mk("Abs", ["m3"], "m4")
    mk("ReduceMean", ["m4"], "gap", axes=[2, 3], keepdims=0)
    mk("Transpose", ["m3"], "t1", perm=[0, 2, 3, 1])
    mk("Reshape", ["t1", const([-1, 8 * 4 * 4], np.int64)], "f1")
    mk("MatMul", ["f1", weight(128, 8)], "fc")
    mk("Add", ["fc", "gap"], "feat")
    mk("Mul", ["feat", "feat"], "sq")
    mk("ReduceSum", ["sq", const([1], np.int64)], "ss", keepdims=1)
    mk("Max", ["ss", const(1e-10)], "ssm")
    mk("Sqrt", ["ssm"], "nrm")
    mk("Reciprocal", ["nrm"], "inv")
    mk("Mul", ["feat", "inv"], "emb")
    mk("Identity", ["emb"], "embedding")
    graph = helper.make_graph(
        n, "synthetic", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, 14, 14])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", 8])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_backward_rules_on_synthetic_graph():
    onnx = pytest.importorskip("onnx")
    sys.path.insert(0, TOOLS)
    try:
        from make_gradient_graph import make_gradient_graph
    finally:
        sys.path.remove(TOOLS)
    model = _synthetic_model()
    onnx.checker.check_model(model)
    sess = _session(make_gradient_graph(model).SerializeToString())
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 4, (1, 3, 14, 14)).astype(np.float32)
    target = _unit(rng.standard_normal((1, 8)))
    _, grad = sess.run(["loss", "grad"], {"image": x, "target": target})

    def loss(z):
        return float(sess.run(["loss"], {"image": z.astype(np.float32), "target": target})[0][0])

    eps = 1e-3  # small: random directions cross ReLU kinks at larger steps
    for _ in range(6):
        v = rng.standard_normal(x.shape).astype(np.float32)
        fd = (loss(x + eps * v) - loss(x - eps * v)) / (2 * eps)
        an = float((grad * v).sum())
        assert abs(fd - an) <= 1e-2 * max(abs(an), 1e-3), (fd, an)


def test_feature_level_graph_cuts_at_the_tensor_and_differentiates():
    """``make_gradient_graph.feature_model``: the loss on an intermediate
    tensor (flattened), for feature-level cloaking losses."""
    onnx = pytest.importorskip("onnx")
    sys.path.insert(0, TOOLS)
    try:
        from make_gradient_graph import feature_model, make_gradient_graph
    finally:
        sys.path.remove(TOOLS)
    full = _synthetic_model()
    cut = feature_model(full, "a2")
    assert all("a3" not in n.output for n in cut.graph.node)
    rng = np.random.default_rng(5)
    x = rng.uniform(0, 4, (1, 3, 14, 14)).astype(np.float32)
    # The feature equals the full model's intermediate tensor, flattened.
    probe = onnx.ModelProto()
    probe.CopyFrom(full)
    probe.graph.output.append(onnx.helper.make_tensor_value_info("a2", onnx.TensorProto.FLOAT, None))
    a2 = _session(probe.SerializeToString()).run(["a2"], {"image": x})[0]
    feat = _session(cut.SerializeToString()).run(["embedding"], {"image": x})[0]
    assert feat.shape == (1, a2.size) and np.allclose(feat, a2.reshape(1, -1), atol=1e-6)
    sess = _session(make_gradient_graph(cut).SerializeToString())
    target = _unit(rng.standard_normal((1, a2.size)))
    _, grad = sess.run(["loss", "grad"], {"image": x, "target": target})

    def loss(z):
        return float(sess.run(["loss"], {"image": z.astype(np.float32), "target": target})[0][0])

    eps = 1e-3
    for _ in range(4):
        v = rng.standard_normal(x.shape).astype(np.float32)
        fd = (loss(x + eps * v) - loss(x - eps * v)) / (2 * eps)
        an = float((grad * v).sum())
        assert abs(fd - an) <= 1e-2 * max(abs(an), 1e-3), (fd, an)
