#!/usr/bin/env python3
"""Build an ONNX graph that returns a recognizer's cloaking loss and its
gradient with respect to the input image -- reverse-mode differentiation
written out as ONNX ops, so onnxruntime alone (no torch/tensorflow) gives
gradients at run time.

Given a recognizer ``model`` with input ``image`` ``[N, 3, H, W]`` and output
``embedding`` ``[N, D]``, the new graph has

* inputs ``image`` ``[1, 3, H, W]`` (the model's own input units, i.e. after
  preprocessing) and ``target`` ``[1, D]`` (an L2-normalized embedding);
* outputs ``loss`` ``[1]`` = cosine similarity between the L2-normalized
  embedding of ``image`` and ``target`` (cloaking minimizes it), ``grad``
  ``[1, 3, H, W]`` = d loss / d image, and the model's ``embedding`` ``[1, D]``.

The caller chains the preprocessing: if ``image = pixel * m + o`` then
d loss / d pixel = m * grad (and undo any channel flip).

How: the forward graph is kept as is, the loss is appended as ordinary ONNX
ops, shapes are fixed to batch 1 and inferred, then the nodes are walked in
reverse topological order; each op's rule below turns the gradient of its
output into gradients of its inputs (only along paths that depend on
``image``; weights get no gradient).  Gradients reaching one tensor from
several consumers are summed.  Supported ops are exactly those
``tfjs_to_onnx.py`` emits for veil's recognizers, plus the few the loss uses:

  Conv (incl. grouped/depthwise) -> ConvTranspose with the same weights
  Relu, PRelu, Clip, Max, Min    -> masks via Where
  Abs                            -> Sign
  Add, Sub, Mul, Div             -> with ReduceSum over broadcast axes
  Sqrt, Reciprocal               -> from the forward output
  ReduceSum, ReduceMean          -> Reshape + Expand (and 1/n)
  Reshape, Squeeze, Unsqueeze, Flatten, Identity -> Reshape back
  Transpose                      -> inverse Transpose
  MatMul (x @ constant W)        -> g @ W^T
  Pad (constant)                 -> Slice

Ghost networks (Li et al., AAAI 2020), ``--ghost-dropout`` /
``--ghost-skip``: extra optional inputs ``ghost/drop<i>`` (a mask of the
shape of each activation's output, multiplied into it: dropout erosion) and
``ghost/skip<i>`` (``[1]``, scaling each residual shortcut: skip-connection
erosion), ones by default, listed as JSON in the metadata entry
``veil.ghost_inputs``. Left at ones they give the plain graph's outputs bit
for bit on veil's ensemble (tests/test_cloak_ghost.py); fed with random
values, each call differentiates another ghost network.

Usage::

    python tools/recognizers/make_gradient_graph.py model.onnx model.grad.onnx [--ghost-dropout --ghost-skip]
"""
from __future__ import annotations

import argparse
import json
from typing import Dict, List

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper, shape_inference


class _Builder:
    """Collects backward nodes/initializers with unique names."""

    def __init__(self, shapes: Dict[str, List[int]], consts: Dict[str, np.ndarray]):
        self.nodes: List[onnx.NodeProto] = []
        self.inits: List[onnx.TensorProto] = []
        self.shapes = shapes
        self.consts = consts
        self._n = 0

    def name(self, hint: str) -> str:
        self._n += 1
        return f"grad/{hint}/{self._n}"

    def const(self, value, hint: str = "c", dtype=np.float32) -> str:
        n = self.name(hint)
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), n))
        return n

    def op(self, op_type: str, inputs: List[str], hint: str = "", **attrs) -> str:
        out = self.name(hint or op_type)
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out, **attrs))
        return out

    # -- helpers -------------------------------------------------------------
    def reduce_to(self, g: str, g_shape: List[int], target: List[int]) -> str:
        """Sum ``g`` (shape ``g_shape``) over the axes that broadcasting
        expanded, giving a tensor of shape ``target``."""
        if list(g_shape) == list(target):
            return g
        padded = [1] * (len(g_shape) - len(target)) + list(target)
        axes = [i for i, (gs, ts) in enumerate(zip(g_shape, padded)) if ts == 1 and gs != 1]
        if axes:
            g = self.op("ReduceSum", [g, self.const(axes, "axes", np.int64)], "unbroadcast", keepdims=1)
        return self.op("Reshape", [g, self.const(target, "shape", np.int64)], "unbroadcast")

    def where(self, cond: str, a: str, b: str) -> str:
        return self.op("Where", [cond, a, b])


def _attrs(node) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _conv_backward(b: _Builder, node, g: str) -> str:
    """d/dx of Conv: a ConvTranspose with the same weights, strides, pads and
    groups.  ``output_padding`` restores the rows/columns a strided conv
    never reached, so the result has exactly the input's shape."""
    x, w = node.input[0], node.input[1]
    a = _attrs(node)
    xs, ys = b.shapes[x], b.shapes[node.output[0]]
    ws = b.consts[w].shape
    k = a.get("kernel_shape", list(ws[2:]))
    s = a.get("strides", [1] * len(k))
    d = a.get("dilations", [1] * len(k))
    p = a.get("pads", [0] * 2 * len(k))
    if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        raise NotImplementedError("Conv with auto_pad: convert with explicit pads")
    nd = len(k)
    out_pad = [xs[2 + i] - ((ys[2 + i] - 1) * s[i] + (k[i] - 1) * d[i] + 1 - p[i] - p[i + nd]) for i in range(nd)]
    return b.op("ConvTranspose", [g, w], "conv_t", strides=s, pads=p, dilations=d,
                group=a.get("group", 1), kernel_shape=k, output_padding=out_pad)


def backward_rules(b: _Builder, node, g: str, needs) -> Dict[str, str]:
    """Gradients for the inputs of ``node`` given ``g`` = d loss / d output.

    ``needs(name)`` says whether an input depends on ``image`` (only those get
    a gradient).  Returns {input name: gradient name}.
    """
    op = node.op_type
    ins = list(node.input)
    y = node.output[0]
    ys = b.shapes[y]
    zero = lambda: b.const(0.0, "zero")  # noqa: E731
    out: Dict[str, str] = {}

    def add(name, grad, grad_shape=None):
        if needs(name):
            out[name] = b.reduce_to(grad, grad_shape or ys, b.shapes[name]) if grad_shape is not False else grad

    if op == "Identity":
        add(ins[0], g)
    elif op == "Conv":
        if needs(ins[1]) or (len(ins) > 2 and needs(ins[2])):
            raise NotImplementedError("gradient w.r.t. conv weights")
        add(ins[0], _conv_backward(b, node, g), False)
    elif op == "Relu":
        add(ins[0], b.where(b.op("Greater", [ins[0], zero()]), g, zero()))
    elif op == "PRelu":
        pos = b.op("Greater", [ins[0], zero()])
        add(ins[0], b.where(pos, g, b.op("Mul", [g, ins[1]])))
    elif op == "Clip":
        x = ins[0]
        lo = ins[1] if len(ins) > 1 and ins[1] else None
        hi = ins[2] if len(ins) > 2 and ins[2] else None
        mask = None
        if lo:
            mask = b.op("Greater", [x, lo])
        if hi:
            m2 = b.op("Less", [x, hi])
            mask = m2 if mask is None else b.op("And", [mask, m2])
        add(x, g if mask is None else b.where(mask, g, zero()))
    elif op in ("Max", "Min"):
        if len(ins) != 2:
            raise NotImplementedError(f"{op} with {len(ins)} inputs")
        # The winner takes the gradient; ties go to the first input.
        first = b.op("GreaterOrEqual" if op == "Max" else "LessOrEqual", ins)
        add(ins[0], b.where(first, g, zero()))
        add(ins[1], b.where(first, zero(), g))
    elif op == "Abs":
        add(ins[0], b.op("Mul", [g, b.op("Sign", [ins[0]])]))
    elif op == "Add":
        add(ins[0], g)
        add(ins[1], g)
    elif op == "Sub":
        add(ins[0], g)
        add(ins[1], b.op("Neg", [g]))
    elif op == "Mul":
        if needs(ins[0]):
            out[ins[0]] = b.reduce_to(b.op("Mul", [g, ins[1]]), ys, b.shapes[ins[0]])
        if needs(ins[1]):
            g1 = b.reduce_to(b.op("Mul", [g, ins[0]]), ys, b.shapes[ins[1]])
            out[ins[1]] = b.op("Add", [out[ins[1]], g1]) if ins[1] in out else g1  # Mul(x, x)
    elif op == "Div":
        add(ins[0], b.op("Div", [g, ins[1]]))
        # d(a/b)/db = -a/b^2 = -y/b
        add(ins[1], b.op("Neg", [b.op("Div", [b.op("Mul", [g, y]), ins[1]])]))
    elif op == "Sqrt":
        add(ins[0], b.op("Div", [b.op("Mul", [g, b.const(0.5)]), y]))
    elif op == "Reciprocal":
        add(ins[0], b.op("Neg", [b.op("Mul", [g, b.op("Mul", [y, y])])]))
    elif op in ("ReduceSum", "ReduceMean"):
        xs = b.shapes[ins[0]]
        a = _attrs(node)
        if op == "ReduceSum" or len(ins) > 1:
            axes = b.consts[ins[1]].tolist() if len(ins) > 1 and ins[1] else list(range(len(xs)))
        else:
            axes = a.get("axes", list(range(len(xs))))
        axes = [ax % len(xs) for ax in axes]
        kept = [1 if i in axes else d for i, d in enumerate(xs)]
        gk = b.op("Reshape", [g, b.const(kept, "shape", np.int64)])
        if op == "ReduceMean":
            gk = b.op("Mul", [gk, b.const(1.0 / np.prod([xs[i] for i in axes]))])
        add(ins[0], b.op("Expand", [gk, b.const(xs, "shape", np.int64)]), False)
    elif op in ("Reshape", "Squeeze", "Unsqueeze", "Flatten"):
        add(ins[0], b.op("Reshape", [g, b.const(b.shapes[ins[0]], "shape", np.int64)]), False)
    elif op == "Transpose":
        perm = _attrs(node)["perm"]
        add(ins[0], b.op("Transpose", [g], perm=list(np.argsort(perm))), False)
    elif op == "MatMul":
        if needs(ins[1]) or ins[1] not in b.consts or b.consts[ins[1]].ndim != 2:
            raise NotImplementedError("MatMul gradient only for activation @ constant 2-D weight")
        wt = b.const(b.consts[ins[1]].T.copy(), "wT")
        add(ins[0], b.op("MatMul", [g, wt]), False)
    elif op == "Pad":
        pads = b.consts[ins[1]].astype(np.int64)
        if (pads < 0).any() or _attrs(node).get("mode", b"constant") not in (b"constant", "constant"):
            raise NotImplementedError("Pad gradient only for non-negative constant padding")
        xs = b.shapes[ins[0]]
        r = len(xs)
        starts = pads[:r]
        ends = starts + np.array(xs, np.int64)
        add(ins[0], b.op("Slice", [g, b.const(starts, "starts", np.int64), b.const(ends, "ends", np.int64)]), False)
    else:
        raise NotImplementedError(f"no gradient rule for {op}")
    return out


#: Metadata key listing a gradient graph's ghost inputs (JSON, as
#: :func:`add_ghost_inputs` returns them); :func:`ghost_inputs` reads it.
GHOST_METADATA = "veil.ghost_inputs"

#: Activations whose outputs dropout erosion masks (every one veil's
#: recognizers use).
GHOST_ACTIVATIONS = ("Relu", "PRelu", "Clip")


def add_ghost_inputs(model: onnx.ModelProto, dropout: bool = True, skip: bool = True,
                     input_name: str = "image") -> List[dict]:
    """Ghost networks (Li et al., AAAI 2020), as graph inputs: edits the
    batch-1 ``model`` in place and returns the new inputs, each
    ``{"name", "kind", "shape"}``.

    * ``dropout``: the output ``a`` of every activation (Relu, PRelu, Clip)
      that depends on the image becomes ``a * mask``, ``mask`` an input of
      ``a``'s shape (dropout erosion: the caller feeds ``bernoulli(keep) /
      keep``);
    * ``skip``: every residual ``Add(x, f(x))`` (both operands depend on the
      image) becomes ``Add(x * s, f(x))``, ``s`` a ``[1]`` input (skip
      connection erosion: the caller feeds ``s ~ U[1 - l, 1 + l]``). The
      shortcut ``x`` is the operand computed first.

    Masks of ones give back the model's own function exactly (``v * 1 ==
    v`` in floating point); :func:`make_gradient_graph` then makes each of
    these inputs optional, with ones as its default.
    """
    g = model.graph
    shapes = {}
    inferred = shape_inference.infer_shapes(model, strict_mode=True)
    for vi in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        shapes[vi.name] = [d.dim_value for d in vi.type.tensor_type.shape.dim]
    live = {input_name}
    order: Dict[str, int] = {input_name: -1}
    for k, n in enumerate(g.node):
        if any(i in live for i in n.input):
            live.update(n.output)
        for o in n.output:
            order[o] = k
    added: List[dict] = []
    nodes: List[onnx.NodeProto] = []
    rename: Dict[str, str] = {}
    for n in g.node:
        for k, i in enumerate(n.input):
            if i in rename:
                n.input[k] = rename[i]
        if skip and n.op_type == "Add" and all(i in live for i in n.input):
            shortcut = min(range(2), key=lambda k: order.get(n.input[k], -1))
            name = f"ghost/skip{sum(a['kind'] == 'skip' for a in added)}"
            scaled = name + "/shortcut"
            nodes.append(helper.make_node("Mul", [n.input[shortcut], name], [scaled], name=scaled))
            n.input[shortcut] = scaled
            added.append({"name": name, "kind": "skip", "shape": [1]})
        nodes.append(n)
        if dropout and n.op_type in GHOST_ACTIVATIONS and n.output[0] in live:
            a = n.output[0]
            name = f"ghost/drop{sum(x['kind'] == 'dropout' for x in added)}"
            masked = name + "/out"
            nodes.append(helper.make_node("Mul", [a, name], [masked], name=masked))
            rename[a] = masked
            live.add(masked)
            order[masked] = order[a]
            added.append({"name": name, "kind": "dropout", "shape": shapes[a]})
    for o in g.output:
        if o.name in rename:
            raise ValueError(f"an activation is a graph output ({o.name}): nothing to erode after it")
    del g.node[:]
    g.node.extend(nodes)
    for a in added:
        g.input.append(helper.make_tensor_value_info(a["name"], TensorProto.FLOAT, a["shape"]))
    return added


def make_gradient_graph(model: onnx.ModelProto, input_name: str = "image",
                        output_name: str = "embedding", ghost_dropout: bool = False,
                        ghost_skip: bool = False) -> onnx.ModelProto:
    """Return the loss/gradient graph of ``model`` (see module docstring).

    ``ghost_dropout`` / ``ghost_skip``: with the inputs of
    :func:`add_ghost_inputs`, each optional (ones by default, so a caller
    that does not feed them gets the plain gradient, exactly).
    """
    model = onnx.ModelProto.FromString(model.SerializeToString())  # work on a copy
    g = model.graph
    # Batch 1: the gradient graph handles one face crop at a time and static
    # shapes let every backward op's shape be written as a constant.
    inp = next(i for i in g.input if i.name == input_name)
    inp.type.tensor_type.shape.dim[0].ClearField("dim_param")
    inp.type.tensor_type.shape.dim[0].dim_value = 1
    ghosts = add_ghost_inputs(model, ghost_dropout, ghost_skip, input_name) if ghost_dropout or ghost_skip else []
    out = next(o for o in g.output if o.name == output_name)
    emb_dim = out.type.tensor_type.shape.dim[1].dim_value
    del g.output[:]

    # Loss, appended as forward ops: loss = <e/|e|, target>.
    loss_nodes = [
        helper.make_node("Mul", [output_name, output_name], ["loss/sq"], name="loss/sq"),
        helper.make_node("ReduceSum", ["loss/sq", "loss/axis1"], ["loss/sumsq"], keepdims=1, name="loss/sumsq"),
        helper.make_node("Sqrt", ["loss/sumsq"], ["loss/norm"], name="loss/norm"),
        helper.make_node("Div", [output_name, "loss/norm"], ["loss/unit"], name="loss/unit"),
        helper.make_node("Mul", ["loss/unit", "target"], ["loss/prod"], name="loss/prod"),
        helper.make_node("ReduceSum", ["loss/prod", "loss/axis1"], ["loss"], keepdims=0, name="loss"),
    ]
    g.node.extend(loss_nodes)
    g.initializer.append(numpy_helper.from_array(np.array([1], np.int64), "loss/axis1"))
    g.input.append(helper.make_tensor_value_info("target", TensorProto.FLOAT, [1, emb_dim]))
    g.output.append(helper.make_tensor_value_info("loss", TensorProto.FLOAT, [1]))

    inferred = shape_inference.infer_shapes(model, strict_mode=True)
    shapes: Dict[str, List[int]] = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        dims = vi.type.tensor_type.shape.dim
        if all(d.HasField("dim_value") for d in dims):
            shapes[vi.name] = [d.dim_value for d in dims]
    consts = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    for name, v in consts.items():
        shapes[name] = list(v.shape)
    for n in g.node:  # Constant nodes and Casts of constants (float16-stored weights)
        if n.op_type == "Constant":
            consts[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
        elif n.op_type == "Cast" and n.input[0] in consts:
            to = helper.tensor_dtype_to_np_dtype(_attrs(n)["to"])
            consts[n.output[0]] = consts[n.input[0]].astype(to)
        else:
            continue
        shapes[n.output[0]] = list(consts[n.output[0]].shape)
    missing = [o for n in g.node for o in n.output if o not in shapes]
    if missing:
        raise ValueError(f"shape inference left these shapes unknown: {missing[:5]}")

    # Which values depend on the image (forward order = node order, ONNX
    # graphs are topologically sorted).
    live = {input_name}
    for n in g.node:
        if any(i in live for i in n.input):
            live.update(n.output)
    needs = live.__contains__

    b = _Builder(shapes, consts)
    grads: Dict[str, str] = {"loss": b.const(np.ones(1, np.float32), "seed")}
    for n in reversed(list(g.node)):
        y = n.output[0]
        if y not in grads or not any(needs(i) for i in n.input):
            continue
        if len(n.output) > 1:
            raise NotImplementedError(f"{n.op_type} with several outputs")
        for name, gr in backward_rules(b, n, grads[y], needs).items():
            # Sum the contributions of all consumers of ``name``.
            grads[name] = b.op("Add", [grads[name], gr], "accumulate") if name in grads else gr
    if input_name not in grads:
        raise ValueError("the loss does not depend on the image")

    g.node.extend(b.nodes)
    g.initializer.extend(b.inits)
    g.node.append(helper.make_node("Identity", [grads[input_name]], ["grad"], name="grad"))
    g.output.append(helper.make_tensor_value_info("grad", TensorProto.FLOAT, shapes[input_name]))
    # The embedding comes for free; the cloaking loop can log or reuse it.
    g.output.append(helper.make_tensor_value_info(output_name, TensorProto.FLOAT, [1, emb_dim]))
    del g.value_info[:]
    # Ghost inputs become optional: an initializer of ones, one element per
    # axis (it broadcasts; the backward pass only multiplies by it), is what
    # onnxruntime uses when the input is not fed. Their declared shapes turn
    # symbolic so that both the default and a full mask are accepted.
    for a in ghosts:
        vi = next(i for i in g.input if i.name == a["name"])
        for k, d in enumerate(vi.type.tensor_type.shape.dim):
            d.ClearField("dim_value")
            d.dim_param = f"{a['name']}/d{k}"
        g.initializer.append(numpy_helper.from_array(np.ones([1] * len(a["shape"]), np.float32), a["name"]))
    if ghosts:
        model.metadata_props.add(key=GHOST_METADATA, value=json.dumps(ghosts))
    model.producer_name = "veil-make_gradient_graph"
    onnx.checker.check_model(model)
    return model


def ghost_inputs(grad: onnx.ModelProto) -> List[dict]:
    """The ghost inputs of a gradient graph (empty for a plain one)."""
    for p in grad.metadata_props:
        if p.key == GHOST_METADATA:
            return json.loads(p.value)
    return []


def feature_model(model: onnx.ModelProto, tensor: str, input_name: str = "image",
                  output_name: str = "embedding") -> onnx.ModelProto:
    """The part of ``model`` that computes the intermediate ``tensor``, with
    that tensor flattened as its output ``output_name``: a feature-level
    "recognizer" whose cloaking loss is the cosine between the flattened
    feature maps (the feature-level losses of ILA, Huang et al. ICCV 2019, and
    FIA, Wang et al. ICCV 2021, act on such a layer)."""
    g = model.graph
    keep, need = [], {tensor}
    for n in reversed(list(g.node)):
        if any(o in need for o in n.output):
            keep.append(n)
            need.update(n.input)
    if not any(tensor in n.output for n in keep):
        raise ValueError(f"no node computes {tensor!r}")
    keep.reverse()
    used = {i for n in keep for i in n.input}
    inits = [t for t in g.initializer if t.name in used]
    flat = helper.make_node("Flatten", [tensor], [output_name], axis=1, name="feature/flatten")
    m = model.graph.input[0]
    graph = helper.make_graph(keep + [flat], g.name + "-feature", [m],
                              [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, ["N", "D"])], initializer=inits)
    out = helper.make_model(graph, opset_imports=model.opset_import, ir_version=model.ir_version)
    # Fix the feature size so the gradient graph knows it.
    inferred = shape_inference.infer_shapes(_batch1(out))
    dims = inferred.graph.output[0].type.tensor_type.shape.dim
    out.graph.output[0].type.tensor_type.shape.dim[1].dim_value = dims[1].dim_value
    return out


def _batch1(model: onnx.ModelProto) -> onnx.ModelProto:
    m = onnx.ModelProto()
    m.CopyFrom(model)
    m.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1
    return m


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model")
    ap.add_argument("out")
    ap.add_argument("--input", default="image")
    ap.add_argument("--output", default="embedding")
    ap.add_argument("--feature", default=None, metavar="TENSOR",
                    help="the loss on this intermediate tensor (flattened) instead of the embedding")
    ap.add_argument("--ghost-dropout", action="store_true",
                    help="a mask input after every activation (ghost networks' dropout erosion)")
    ap.add_argument("--ghost-skip", action="store_true",
                    help="a scalar input on every residual shortcut (ghost networks' skip erosion)")
    args = ap.parse_args(argv)
    model = onnx.load(args.model)
    if args.feature:
        model = feature_model(model, args.feature, args.input, args.output)
    grad = make_gradient_graph(model, args.input, args.output, args.ghost_dropout, args.ghost_skip)
    onnx.save(grad, args.out)
    print(f"{args.out}: {len(grad.graph.node)} nodes")


if __name__ == "__main__":
    main()
