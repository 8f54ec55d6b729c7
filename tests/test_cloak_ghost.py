"""Ghost networks (Li et al. AAAI 2020) in the cloak's gradient graphs.

``make_gradient_graph.py --ghost-dropout --ghost-skip`` gives a gradient
graph optional ghost inputs (dropout masks after every activation, factors
on residual shortcuts). Left out, or fed as ones, they must give exactly the
plain graph's loss, gradient and embedding; random ones must give another,
finite gradient, the true gradient of the eroded network; and the cloak
must stay deterministic with them on (``veil.cloak.GHOST_KEEP`` /
``GHOST_SKIP``). The graphs are built here from the shipped forward models.
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest

import veil.cloak as cloak_mod

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

REPO = Path(__file__).resolve().parents[1]
RECOGNIZERS = REPO / "python" / "veil" / "models" / "recognizers"
PORTRAIT = REPO / "tests" / "fixtures" / "portrait.jpg"
sys.path.insert(0, str(REPO / "tools" / "recognizers"))

from make_gradient_graph import ghost_inputs, make_gradient_graph  # noqa: E402


def _session(data):
    o = ort.SessionOptions()
    o.intra_op_num_threads = 2
    o.log_severity_level = 3
    return ort.InferenceSession(data, o, providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def portrait():
    from PIL import Image

    return np.asarray(Image.open(PORTRAIT).convert("RGB"))


@pytest.fixture(scope="module")
def crops(portrait):
    """Per model: (the model's input for the fixture's face, a target that
    is not that face's own embedding, so the gradient is far from zero)."""
    face = cloak_mod.find_faces(portrait)[0]
    lm = np.asarray(face.landmarks, dtype=np.float64)
    out = {}
    for name in cloak_mod.ENSEMBLE:
        rec = cloak_mod._recognizer(name)
        m = cloak_mod._align(lm, rec)
        crop = cloak_mod._crop(rec, portrait.astype(np.float32), m, False)
        # The target: the embedding of a shifted, zoomed-out crop of the same photo.
        other = cloak_mod._compose(cloak_mod._about_centre((0.1, -0.05, 0.8, 0.1), rec.size), m)
        t = rec.embed(cloak_mod._crop(rec, portrait.astype(np.float32), other, False), 2)
        out[name] = (rec.to_input(crop), t[None])
    return out


@pytest.fixture(scope="module")
def graphs():
    """Per model: (plain gradient graph bytes, ghost gradient graph bytes,
    its ghost inputs), built from the shipped forward model."""
    out = {}
    for n in cloak_mod.ENSEMBLE:
        model = onnx.load(str(RECOGNIZERS / f"{n}.onnx"))
        ghost = make_gradient_graph(model, ghost_dropout=True, ghost_skip=True)
        out[n] = (make_gradient_graph(model).SerializeToString(), ghost.SerializeToString(), ghost_inputs(ghost))
    return out


@pytest.fixture(scope="module")
def ghost_recs(graphs):
    """Per model: a stand-in for ``cloak._recognizer(name)`` whose gradient
    session is the ghost graph (``ghost()`` and ``loss_and_grad`` as veil's)."""
    out = {}
    for n, (_, data, inputs) in graphs.items():
        rec = cloak_mod._Recognizer(n)
        rec.ghost_inputs = inputs
        rec._sessions[("grad", 2)] = _session(data)
        out[n] = rec
    return out


@pytest.mark.parametrize("name", cloak_mod.ENSEMBLE)
def test_shipped_gradient_graph_is_the_builders_output(name, graphs):
    side = json.loads((RECOGNIZERS / f"{name}.json").read_text())
    g = side["gradient_graph"]
    data = (RECOGNIZERS / g["file"]).read_bytes()
    assert hashlib.sha256(data).hexdigest() == g["sha256"]
    plain, ghost, inputs = graphs[name]
    assert data == (ghost if "ghost_inputs" in g else plain)
    assert g.get("ghost_inputs", inputs) == inputs
    kinds = [a["kind"] for a in inputs]
    # One mask per activation; MobileFace's four residual shortcuts get a factor.
    assert kinds.count("dropout") == {"faceres": 27, "faceres-deep": 27, "mobileface": 13}[name]
    assert kinds.count("skip") == (4 if name == "mobileface" else 0)
    # A few kilobytes more than the plain graph (the masks are inputs, not weights).
    assert len(plain) < len(ghost) < len(plain) + 20_000


@pytest.mark.parametrize("name", cloak_mod.ENSEMBLE)
def test_ghost_inputs_of_ones_give_the_plain_gradient_exactly(name, crops, graphs, ghost_recs):
    x, t = crops[name]
    rec = ghost_recs[name]
    ghost = rec.session("grad", 2)
    outs = ["loss", "grad", "embedding"]
    plain = _session(graphs[name][0]).run(outs, {"image": x, "target": t})
    assert np.abs(plain[1]).max() > 0
    ones = {a["name"]: np.ones(a["shape"], np.float32) for a in rec.ghost_inputs}
    for feeds in ({}, ones, rec.ghost(np.random.default_rng(0), 1.0, 0.0)):
        got = ghost.run(outs, {"image": x, "target": t, **feeds})
        for a, b in zip(plain, got):
            assert np.array_equal(a, b)


@pytest.mark.parametrize("name", cloak_mod.ENSEMBLE)
def test_random_ghosts_change_the_gradient_and_stay_finite(name, crops, ghost_recs):
    x, t = crops[name]
    rec = ghost_recs[name]
    plain = rec.session("grad", 2).run(["loss", "grad"], {"image": x, "target": t})[1]
    rng = np.random.default_rng(1)
    grads = []
    for keep, skip in ((0.99, 0.2), (0.99, 0.2), (1.0, 0.2)):
        feeds = rec.ghost(rng, keep, skip)
        if not feeds:  # no residual shortcuts: skip erosion leaves FaceRes alone
            assert name != "mobileface" and keep == 1.0
            continue
        g = rec.session("grad", 2).run(["grad"], {"image": x, "target": t, **feeds})[0]
        assert np.isfinite(g).all() and np.abs(g).max() > 0
        assert not np.allclose(g, plain, rtol=1e-3, atol=1e-6)
        grads.append(g)
    assert not np.array_equal(grads[0], grads[1])  # a fresh ghost per draw
    for feeds in (rec.ghost(rng, 0.99, 0.2),):
        for a in rec.ghost_inputs:
            v = feeds[a["name"]]
            if a["kind"] == "dropout":
                assert v.shape == tuple(a["shape"]) and set(np.unique(v)) <= {0.0, np.float32(1 / 0.99)}
                assert 0.985 < np.count_nonzero(v) / v.size < 0.995
            else:
                assert v.shape == (1,) and 0.8 <= v[0] <= 1.2


def test_ghost_gradient_is_the_eroded_networks_gradient(crops, ghost_recs):
    """Central differences of the loss under one fixed ghost network, along
    its gradient (see tests/test_recognizers.py for why along the gradient)."""
    x, t = crops["mobileface"]
    rec = ghost_recs["mobileface"]
    sess = rec.session("grad", 2)
    feeds = rec.ghost(np.random.default_rng(2), 0.95, 0.3)
    _, g = sess.run(["loss", "grad"], {"image": x, "target": t, **feeds})
    v = g / np.abs(g).max()
    eps = 0.01

    def loss(z):
        return float(sess.run(["loss"], {"image": z.astype(np.float32), "target": t, **feeds})[0][0])

    fd = (loss(x + eps * v) - loss(x - eps * v)) / (2 * eps)
    an = float((g.astype(np.float64) * v).sum())
    assert abs(an - fd) / max(abs(an), abs(fd)) < 1e-2


def _use_ghost_graphs(monkeypatch, ghost_recs):
    for n, rec in ghost_recs.items():
        monkeypatch.setitem(cloak_mod._recognizers, n, rec)


def test_cloak_with_ghosts_is_deterministic_and_bounded(portrait, monkeypatch, ghost_recs):
    _use_ghost_graphs(monkeypatch, ghost_recs)
    plain, _ = cloak_mod.cloak_with_report(portrait, mode="mid", steps=4, seed=3, threads=2)
    monkeypatch.setattr(cloak_mod, "GHOST_KEEP", 0.99)
    monkeypatch.setattr(cloak_mod, "GHOST_SKIP", 0.2)
    out, report = cloak_mod.cloak_with_report(portrait, mode="mid", steps=4, seed=3, threads=2)
    again, _ = cloak_mod.cloak_with_report(portrait, mode="mid", steps=4, seed=3, threads=2)
    assert out.tobytes() == again.tobytes() and out.tobytes() != plain.tobytes()
    assert np.abs(out.astype(int) - portrait).max() <= cloak_mod.MODES["mid"].linf + 1
    assert report.faces[0].ssim >= cloak_mod.MODES["mid"].ssim_floor
    assert all(np.isfinite(v) for v in report.faces[0].similarity.values())


@pytest.mark.parametrize("setting, value", [("GHOST_KEEP", 0.2), ("GHOST_KEEP", float("nan")), ("GHOST_SKIP", 0.9)])
def test_bad_ghost_settings_raise(portrait, monkeypatch, ghost_recs, setting, value):
    _use_ghost_graphs(monkeypatch, ghost_recs)
    monkeypatch.setattr(cloak_mod, setting, value)
    with pytest.raises(ValueError, match=setting):
        cloak_mod.cloak_with_report(portrait, mode="mid", steps=1, seed=3, threads=2)


def test_ghosts_need_graphs_with_ghost_inputs(portrait, monkeypatch, ghost_recs):
    _use_ghost_graphs(monkeypatch, ghost_recs)
    monkeypatch.setattr(ghost_recs["faceres"], "ghost_inputs", [])
    monkeypatch.setattr(cloak_mod, "GHOST_KEEP", 0.99)
    with pytest.raises(RuntimeError, match="faceres has no ghost inputs"):
        cloak_mod.cloak_with_report(portrait, mode="mid", steps=1, seed=3, threads=2)
