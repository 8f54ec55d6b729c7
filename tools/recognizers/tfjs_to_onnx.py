#!/usr/bin/env python3
"""Convert a TensorFlow.js *graph model* into an ONNX model, without TensorFlow.

A TF.js graph model is a ``model.json`` holding a frozen TensorFlow GraphDef as
JSON (``modelTopology.node``) plus a ``weightsManifest`` that says how the
``.bin`` files (all concatenated, in manifest order) split into constant
tensors, some of them quantized.  This tool reads both with json + numpy and
writes the same computation as ONNX with the ``onnx`` package.

Layout: TF.js graphs are NHWC; ONNX's ``Conv`` is NCHW.  The converted model
takes ``image`` as float32 **NCHW** ``[N, 3, H, W]`` (the rest of veil feeds
NCHW RGB) and every rank-4 activation inside stays NCHW.  Each converted tensor
remembers whether it is ``nchw`` (a rank-4 activation whose TF meaning is NHWC)
or ``plain`` (same axis order as in TF); constants are reshaped/transposed when
they meet an NCHW tensor, and a ``Transpose`` back to NHWC is inserted only
where an op depends on memory order (``Reshape`` of a rank-4 tensor, a flatten
before a dense layer).

Only the ops used by the recognizers veil ships are supported (see
``_HANDLERS``); anything else raises with the op name, so a new model fails
loudly instead of converting wrongly.

After the literal translation a few rewrites keep the graph small and easy to
differentiate (``make_gradient_graph.py`` only has to know the resulting ops):

* constant sub-expressions are evaluated with numpy;
* per-channel ``Mul``/``Add`` after a ``Conv``/``MatMul`` (inference batch
  norm) are folded into the weights and bias;
* a zero ``Pad`` feeding a ``Conv`` becomes the ``Conv``'s ``pads``;
* the two PReLU spellings these graphs use -- ``relu(x) + m*(x-|x|)`` and
  ``max(x,0) + g*min(x,0)`` -- become one ``PRelu``;
* ``min(max(x,0),6)`` written as ``Relu``/``Minimum``/``Maximum`` becomes ``Clip``.

Usage::

    python tools/recognizers/tfjs_to_onnx.py models/mobilefacenet.json out.onnx \
        [--output embeddings] [--output-name embedding]
"""
from __future__ import annotations

import argparse
import base64
import json
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17

# --------------------------------------------------------------------------
# Reading the TF.js files
# --------------------------------------------------------------------------

_DTYPES = {
    "float32": np.float32,
    "int32": np.int32,
    "bool": np.bool_,
}
_TF_DTYPES = {"DT_FLOAT": np.float32, "DT_INT32": np.int32, "DT_BOOL": np.bool_}


def _read_weight(entry: dict, buf: memoryview, offset: int):
    """Decode one ``weightsManifest`` entry starting at ``offset`` of ``buf``.

    Returns ``(array, bytes_consumed)``.  Quantization as written by the
    tensorflowjs converter: ``uint8``/``uint16`` with ``scale`` and ``min``
    (value = q * scale + min), or a plain ``float16`` store (``dtype`` only);
    ``original_dtype`` says what to cast back to.
    """
    shape = [int(d) for d in entry["shape"]]
    count = int(np.prod(shape)) if shape else 1
    quant = entry.get("quantization")
    if quant:
        qdtype = {"uint8": np.uint8, "uint16": np.uint16, "float16": np.float16}[quant["dtype"]]
        nbytes = count * np.dtype(qdtype).itemsize
        q = np.frombuffer(buf[offset:offset + nbytes], dtype=qdtype)
        out_dtype = _DTYPES[quant.get("original_dtype", entry["dtype"])]
        if qdtype == np.float16:
            arr = q.astype(np.float32)
        else:
            # The converter stores min/scale as float32; compute in float32 like tfjs does.
            arr = q.astype(np.float32) * np.float32(quant["scale"]) + np.float32(quant["min"])
        return arr.astype(out_dtype).reshape(shape), nbytes
    dtype = _DTYPES[entry["dtype"]]
    nbytes = count * np.dtype(dtype).itemsize
    arr = np.frombuffer(buf[offset:offset + nbytes], dtype=dtype).copy()
    return arr.reshape(shape), nbytes


def load_tfjs(model_json: str):
    """Return ``(nodes, weights)`` of a TF.js graph model.

    ``nodes`` is the list of GraphDef nodes (dicts as in the JSON), ``weights``
    maps tensor name -> numpy array for every manifest entry.
    """
    with open(model_json) as f:
        model = json.load(f)
    if model.get("format") not in (None, "graph-model"):
        raise ValueError(f"{model_json}: not a TF.js graph model (format={model.get('format')!r})")
    base = os.path.dirname(os.path.abspath(model_json))
    weights: Dict[str, np.ndarray] = {}
    for group in model["weightsManifest"]:
        data = b"".join(open(os.path.join(base, p), "rb").read() for p in group["paths"])
        buf = memoryview(data)
        offset = 0
        for entry in group["weights"]:
            arr, used = _read_weight(entry, buf, offset)
            weights[entry["name"]] = arr
            offset += used
        if offset != len(data):
            raise ValueError(f"weights group {group['paths']}: used {offset} of {len(data)} bytes")
    return model["modelTopology"]["node"], weights


def _attr(node: dict, key: str, default=None):
    """Read a GraphDef attribute in its JSON form (strings are base64)."""
    a = node.get("attr", {}).get(key)
    if a is None:
        return default
    if "s" in a:
        return base64.b64decode(a["s"]).decode()
    if "i" in a:
        return int(a["i"])
    if "f" in a:
        return float(a["f"])
    if "b" in a:
        return bool(a["b"])
    if "list" in a:
        lst = a["list"]
        if "s" in lst:
            return [base64.b64decode(s).decode() for s in lst["s"]]
        if "i" in lst:
            return [int(i) for i in lst["i"]]
        if "f" in lst:
            return [float(x) for x in lst["f"]]
        return []
    if "type" in a:
        return a["type"]
    if "shape" in a:
        return [int(d.get("size", -1)) for d in a["shape"].get("dim", [])]
    return a


def _inline_const(node: dict) -> Optional[np.ndarray]:
    """Value of a ``Const`` whose data sits in the JSON itself (rare in TF.js)."""
    t = node["attr"]["value"]["tensor"]
    dtype = _TF_DTYPES[t["dtype"]]
    shape = [int(d.get("size", 1)) for d in t.get("tensorShape", {}).get("dim", [])]
    if "tensorContent" in t:
        return np.frombuffer(base64.b64decode(t["tensorContent"]), dtype=dtype).reshape(shape).copy()
    for key in ("floatVal", "intVal", "boolVal"):
        if key in t:
            vals = np.array(t[key], dtype=dtype)
            return np.broadcast_to(vals, shape).copy() if shape else vals.reshape(())
    return None


# --------------------------------------------------------------------------
# Translation
# --------------------------------------------------------------------------

# Where each NHWC axis lives in NCHW.
_NHWC_TO_NCHW_AXIS = {0: 0, 1: 2, 2: 3, 3: 1}


@dataclass
class _T:
    """A converted tensor: either a numpy constant or a named ONNX value.

    ``shape`` is the TF (NHWC) shape with ``-1`` for the batch; ``layout`` is
    ``"nchw"`` for rank-4 activations kept NCHW in ONNX, else ``"plain"``.
    """
    const: Optional[np.ndarray] = None
    name: str = ""
    shape: List[int] = field(default_factory=list)
    layout: str = "plain"


def _same_pads(size: int, k: int, stride: int, dilation: int = 1):
    """TF 'SAME' padding: output ceil(size/stride), extra pixel at the end."""
    eff = (k - 1) * dilation + 1
    out = -(-size // stride)
    total = max((out - 1) * stride + eff - size, 0)
    return total // 2, total - total // 2


def _conv_out(size: int, k: int, stride: int, pb: int, pe: int, dilation: int = 1) -> int:
    return (size + pb + pe - ((k - 1) * dilation + 1)) // stride + 1


class Converter:
    """Translate TF.js GraphDef nodes into ONNX nodes and initializers."""

    def __init__(self, nodes: Sequence[dict], weights: Dict[str, np.ndarray]):
        self.nodes = list(nodes)
        self.weights = weights
        self.t: Dict[str, _T] = {}
        self.onnx_nodes: List[onnx.NodeProto] = []
        self.inits: Dict[str, np.ndarray] = {}
        self.inputs: List[onnx.ValueInfoProto] = []
        self._uid = 0

    # -- small helpers -----------------------------------------------------
    def _name(self, hint: str) -> str:
        self._uid += 1
        return f"{hint.replace(':', '_')}__{self._uid}"

    def _const_name(self, value: np.ndarray, hint: str) -> str:
        name = self._name(hint)
        self.inits[name] = np.ascontiguousarray(value)
        return name

    def _emit(self, op: str, inputs: List[str], hint: str, **attrs) -> str:
        out = self._name(hint)
        self.onnx_nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    def _get(self, ref: str) -> _T:
        name = ref.split(":")[0].lstrip("^")
        if ref.count(":") and not ref.endswith(":0"):
            raise NotImplementedError(f"multi-output reference {ref}")
        return self.t[name]

    def _as_input(self, t: _T, like: Optional[_T], hint: str) -> str:
        """ONNX name for ``t``; a constant is first laid out to broadcast
        against ``like`` (an NCHW activation needs NHWC constants moved)."""
        if t.const is None:
            return t.name
        value = t.const
        if like is not None and like.layout == "nchw" and value.ndim > 0:
            value = value.reshape((1,) * (4 - value.ndim) + value.shape).transpose(0, 3, 1, 2)
        if value.dtype == np.float64:
            value = value.astype(np.float32)
        return self._const_name(value, hint)

    def _to_plain(self, t: _T, hint: str) -> _T:
        """Make an NCHW activation NHWC again (for order-dependent ops)."""
        if t.layout != "nchw":
            return t
        name = self._emit("Transpose", [t.name], hint + "_nhwc", perm=[0, 2, 3, 1])
        return _T(name=name, shape=t.shape, layout="plain")

    # -- driver ------------------------------------------------------------
    def convert(self, outputs: Sequence[str], output_names: Sequence[str],
                repair_prelu: bool = False) -> onnx.ModelProto:
        for node in self.nodes:
            handler = _HANDLERS.get(node["op"])
            if handler is None:
                raise NotImplementedError(f"TF op {node['op']} (node {node['name']}) is not supported")
            self.t[node["name"]] = handler(self, node)

        graph_outputs = []
        for ref, oname in zip(outputs, output_names):
            t = self._to_plain(self._get(ref), oname)
            if t.const is not None:
                raise ValueError(f"output {ref} is constant")
            self.onnx_nodes.append(helper.make_node("Identity", [t.name], [oname], name=oname))
            shape = ["N"] + [int(d) for d in t.shape[1:]]
            graph_outputs.append(helper.make_tensor_value_info(oname, TensorProto.FLOAT, shape))

        nodes, inits = optimize(self.onnx_nodes, self.inits, [o.name for o in graph_outputs], repair_prelu)
        graph = helper.make_graph(
            nodes, "recognizer", self.inputs, graph_outputs,
            initializer=[numpy_helper.from_array(v, k) for k, v in inits.items()])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                                  producer_name="veil-tfjs_to_onnx")
        model.ir_version = 8  # readable by onnxruntime >= 1.14
        onnx.checker.check_model(model)
        return model

    # -- op handlers -------------------------------------------------------
    def placeholder(self, node):
        shape = _attr(node, "shape")
        if len(shape) != 4:
            raise NotImplementedError("only NHWC image inputs are supported")
        _, h, w, c = shape
        self.inputs.append(helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", c, h, w]))
        return _T(name="image", shape=[-1, h, w, c], layout="nchw")

    def const(self, node):
        if node["name"] in self.weights:
            return _T(const=self.weights[node["name"]])
        value = _inline_const(node)
        if value is None:
            raise ValueError(f"constant {node['name']} has no data")
        return _T(const=value)

    def identity(self, node):
        return self._get(node["input"][0])

    def conv(self, node):
        op = node["op"]
        depthwise = "Depthwise" in op
        x = self._get(node["input"][0])
        kernel = self._get(node["input"][1]).const
        if x.layout != "nchw" or kernel is None:
            raise NotImplementedError(f"{node['name']}: conv needs an NHWC activation and constant kernel")
        if _attr(node, "data_format", "NHWC") != "NHWC":
            raise NotImplementedError("only NHWC convolutions")
        strides = _attr(node, "strides")[1:3]
        dil = _attr(node, "dilations", [1, 1, 1, 1])[1:3]
        kh, kw = kernel.shape[:2]
        _, h, w, c = x.shape
        if _attr(node, "padding") == "SAME":
            ph, pw = _same_pads(h, kh, strides[0], dil[0]), _same_pads(w, kw, strides[1], dil[1])
        elif _attr(node, "padding") == "VALID":
            ph = pw = (0, 0)
        else:
            raise NotImplementedError(f"padding {_attr(node, 'padding')}")
        if depthwise:
            # TF depthwise kernel [kh, kw, C, mult]; output channel index c*mult + m.
            mult = kernel.shape[3]
            wt = kernel.reshape(kh, kw, c * mult).transpose(2, 0, 1)[:, None]
            group, cout = c, c * mult
        else:
            wt = kernel.transpose(3, 2, 0, 1)  # HWIO -> OIHW
            group, cout = 1, kernel.shape[3]
        inputs = [x.name, self._const_name(wt.astype(np.float32), node["name"] + "_W")]
        fused = _attr(node, "fused_ops", []) if op.startswith(("_Fused", "Fused")) else []
        extra = [self._get(r) for r in node["input"][2:]]
        if fused and fused[0] == "BiasAdd":
            inputs.append(self._const_name(extra[0].const.astype(np.float32).reshape(-1), node["name"] + "_B"))
            extra, fused = extra[1:], fused[1:]
        elif fused and fused[0] != "BiasAdd":
            raise NotImplementedError(f"{node['name']}: fused ops {fused}")
        out = self._emit("Conv", inputs, node["name"], group=group, kernel_shape=[kh, kw],
                         strides=list(strides), dilations=list(dil),
                         pads=[ph[0], pw[0], ph[1], pw[1]])
        oh = _conv_out(h, kh, strides[0], *ph, dil[0])
        ow = _conv_out(w, kw, strides[1], *pw, dil[1])
        res = _T(name=out, shape=[-1, oh, ow, cout], layout="nchw")
        return self._activation(res, fused, extra, node["name"])

    def _activation(self, res: _T, fused: List[str], extra: List[_T], hint: str) -> _T:
        """Apply the activations of a fused conv/matmul (after its BiasAdd)."""
        for act in fused:
            if act == "Relu":
                res = _T(name=self._emit("Relu", [res.name], hint + "_relu"), shape=res.shape, layout=res.layout)
            elif act == "Relu6":
                res = self._clip(res, 0.0, 6.0, hint)
            elif act == "Prelu":
                alpha = self._as_input(extra[0], res, hint + "_alpha")
                res = _T(name=self._emit("PRelu", [res.name, alpha], hint + "_prelu"), shape=res.shape,
                         layout=res.layout)
            else:
                raise NotImplementedError(f"fused activation {act}")
        return res

    def _clip(self, x: _T, lo: float, hi: float, hint: str) -> _T:
        lo_n = self._const_name(np.array(lo, np.float32), hint + "_lo")
        hi_n = self._const_name(np.array(hi, np.float32), hint + "_hi")
        return _T(name=self._emit("Clip", [x.name, lo_n, hi_n], hint), shape=x.shape, layout=x.layout)

    def matmul(self, node):
        a, b = self._get(node["input"][0]), self._get(node["input"][1])
        if _attr(node, "transpose_a", False) or a.const is not None or b.const is None:
            raise NotImplementedError(f"{node['name']}: only activation @ constant matmul")
        a = self._to_plain(a, node["name"])
        kernel = b.const.T if _attr(node, "transpose_b", False) else b.const
        out = self._emit("MatMul", [a.name, self._const_name(kernel.astype(np.float32), node["name"] + "_W")],
                         node["name"])
        res = _T(name=out, shape=[a.shape[0], kernel.shape[1]])
        fused = _attr(node, "fused_ops", []) if node["op"] == "_FusedMatMul" else []
        extra = [self._get(r) for r in node["input"][2:]]
        if fused and fused[0] == "BiasAdd":
            bias = self._const_name(extra[0].const.astype(np.float32), node["name"] + "_B")
            res = _T(name=self._emit("Add", [res.name, bias], node["name"] + "_bias"), shape=res.shape)
            extra, fused = extra[1:], fused[1:]
        return self._activation(res, fused, extra, node["name"])

    _BINARY = {"Add": ("Add", np.add), "AddV2": ("Add", np.add), "BiasAdd": ("Add", np.add),
               "Sub": ("Sub", np.subtract), "Mul": ("Mul", np.multiply), "RealDiv": ("Div", np.divide),
               "Maximum": ("Max", np.maximum), "Minimum": ("Min", np.minimum)}

    def binary(self, node):
        onnx_op, fn = self._BINARY[node["op"]]
        a, b = self._get(node["input"][0]), self._get(node["input"][1])
        if a.const is not None and b.const is not None:
            return _T(const=fn(a.const, b.const))
        var = a if a.const is None else b
        other = b if var is a else a
        if other.const is None and a.layout != b.layout:
            a, b = self._to_plain(a, node["name"]), self._to_plain(b, node["name"])
            var = a
        if onnx_op == "Sub" and b.const is not None:
            # x - c == x + (-c): a plain Add folds into a preceding conv bias.
            onnx_op, b = "Add", _T(const=-b.const)
        out = self._emit(onnx_op, [self._as_input(a, var, node["name"] + "_a"),
                                   self._as_input(b, var, node["name"] + "_b")], node["name"])
        # Constants here broadcast into the activation, so its shape is the result's.
        if other.const is not None:
            shape = var.shape
        else:  # -1 marks the dynamic batch; broadcast with it as 1, then restore it
            shape = list(np.broadcast_shapes(*(tuple(max(d, 1) for d in t.shape) for t in (a, b))))
            if -1 in (a.shape[:1] + b.shape[:1]) and len(shape) == max(len(a.shape), len(b.shape)):
                shape[0] = -1
        return _T(name=out, shape=list(shape), layout=var.layout)

    _UNARY = {"Relu": "Relu", "Abs": "Abs", "Sigmoid": "Sigmoid", "Sqrt": "Sqrt", "Neg": "Neg",
              "Exp": "Exp", "Tanh": "Tanh"}

    def unary(self, node):
        x = self._get(node["input"][0])
        if x.const is not None:
            raise NotImplementedError(f"{node['name']}: constant unary op")
        out = self._emit(self._UNARY[node["op"]], [x.name], node["name"])
        return _T(name=out, shape=x.shape, layout=x.layout)

    def relu6(self, node):
        return self._clip(self._get(node["input"][0]), 0.0, 6.0, node["name"])

    def square(self, node):
        x = self._get(node["input"][0])
        return _T(name=self._emit("Mul", [x.name, x.name], node["name"]), shape=x.shape, layout=x.layout)

    def rsqrt(self, node):
        x = self._get(node["input"][0])
        s = self._emit("Sqrt", [x.name], node["name"] + "_sqrt")
        return _T(name=self._emit("Reciprocal", [s], node["name"]), shape=x.shape, layout=x.layout)

    def softmax(self, node):
        x = self._get(node["input"][0])
        if len(x.shape) != 2:
            raise NotImplementedError("softmax over rank != 2")
        return _T(name=self._emit("Softmax", [x.name], node["name"], axis=-1), shape=x.shape)

    def reduce(self, node):
        x = self._get(node["input"][0])
        axes = np.atleast_1d(self._get(node["input"][1]).const).astype(int).tolist()
        rank = len(x.shape)
        axes = sorted(a % rank for a in axes)
        keep = _attr(node, "keep_dims", False)
        if x.layout == "nchw" and not keep and axes != [1, 2]:
            # Dropping axes other than exactly H,W would leave NCHW-ordered dims.
            x = self._to_plain(x, node["name"])
        onnx_axes = [_NHWC_TO_NCHW_AXIS[a] for a in axes] if x.layout == "nchw" else axes
        onnx_op = {"Sum": "ReduceSum", "Mean": "ReduceMean"}[node["op"]]
        if onnx_op == "ReduceSum":
            out = self._emit(onnx_op, [x.name, self._const_name(np.array(onnx_axes, np.int64), node["name"] + "_axes")],
                             node["name"], keepdims=int(keep))
        else:
            out = self._emit(onnx_op, [x.name], node["name"], axes=onnx_axes, keepdims=int(keep))
        shape = [1 if i in axes else d for i, d in enumerate(x.shape)] if keep else \
            [d for i, d in enumerate(x.shape) if i not in axes]
        layout = x.layout if keep else "plain"
        return _T(name=out, shape=shape, layout=layout)

    def squeeze(self, node):
        x = self._get(node["input"][0])
        dims = _attr(node, "squeeze_dims", []) or [i for i, d in enumerate(x.shape) if d == 1]
        dims = sorted(d % len(x.shape) for d in dims)
        if x.layout == "nchw" and dims != [1, 2]:
            x = self._to_plain(x, node["name"])
        onnx_dims = [_NHWC_TO_NCHW_AXIS[d] for d in dims] if x.layout == "nchw" else dims
        out = self._emit("Squeeze", [x.name, self._const_name(np.array(onnx_dims, np.int64), node["name"] + "_axes")],
                         node["name"])
        return _T(name=out, shape=[d for i, d in enumerate(x.shape) if i not in dims])

    def reshape(self, node):
        x = self._to_plain(self._get(node["input"][0]), node["name"])
        shape = self._get(node["input"][1]).const.astype(np.int64).copy()
        if x.shape[0] == -1 and shape[0] not in (-1, 0):
            shape[0] = -1  # keep the batch dynamic
        out = self._emit("Reshape", [x.name, self._const_name(shape, node["name"] + "_shape")], node["name"])
        known = int(np.prod([d for d in x.shape[1:]]))
        new = [int(d) for d in shape]
        new = [known // int(np.prod([d for d in new[1:] if d != -1])) if (i > 0 and d == -1) else d
               for i, d in enumerate(new)]
        return _T(name=out, shape=new)

    def pad(self, node):
        x = self._get(node["input"][0])
        pads = self._get(node["input"][1]).const.astype(np.int64)
        if len(node["input"]) > 2:
            raise NotImplementedError("PadV2 with a non-zero value")
        if x.layout == "nchw":
            pads = pads[[0, 3, 1, 2]]
        onnx_pads = np.concatenate([pads[:, 0], pads[:, 1]])
        out = self._emit("Pad", [x.name, self._const_name(onnx_pads, node["name"] + "_pads")], node["name"],
                         mode="constant")
        shape = [d if d == -1 else d + int(p[0] + p[1]) for d, p in zip(x.shape, self._get(node["input"][1]).const)]
        return _T(name=out, shape=shape, layout=x.layout)


_HANDLERS = {
    "Placeholder": Converter.placeholder, "Const": Converter.const, "Identity": Converter.identity,
    "Conv2D": Converter.conv, "_FusedConv2D": Converter.conv,
    "DepthwiseConv2dNative": Converter.conv, "FusedDepthwiseConv2dNative": Converter.conv,
    "MatMul": Converter.matmul, "_FusedMatMul": Converter.matmul,
    "Relu6": Converter.relu6, "Square": Converter.square, "Rsqrt": Converter.rsqrt,
    "Softmax": Converter.softmax, "Sum": Converter.reduce, "Mean": Converter.reduce,
    "Squeeze": Converter.squeeze, "Reshape": Converter.reshape, "Pad": Converter.pad,
    **{op: Converter.binary for op in Converter._BINARY},
    **{op: Converter.unary for op in Converter._UNARY},
}


# --------------------------------------------------------------------------
# Graph rewrites (on the ONNX node list)
# --------------------------------------------------------------------------

class _Graph:
    """Mutable view of a node list + numpy initializers for the rewrites."""

    def __init__(self, nodes, inits, outputs, repair_prelu=False):
        self.repair_prelu = repair_prelu
        self.nodes = list(nodes)
        self.inits = dict(inits)
        self.outputs = set(outputs)

    def producer(self, name):
        for n in self.nodes:
            if name in n.output:
                return n
        return None

    def consumers(self, name):
        return [n for n in self.nodes if name in n.input]

    def single_use(self, name):
        return name not in self.outputs and len(self.consumers(name)) == 1

    def const(self, name):
        return self.inits.get(name)

    def replace_uses(self, old, new):
        for n in self.nodes:
            for i, v in enumerate(n.input):
                if v == old:
                    n.input[i] = new
        if old in self.outputs:
            raise ValueError("cannot rename a graph output")

    def remove(self, node):
        self.nodes.remove(node)

    def prune(self):
        """Drop nodes and initializers that no output depends on."""
        live = set(self.outputs)
        keep = []
        for n in reversed(self.nodes):
            if any(o in live for o in n.output):
                keep.append(n)
                live.update(i for i in n.input if i)
        self.nodes = keep[::-1]
        self.inits = {k: v for k, v in self.inits.items() if k in live}


def _per_channel(value: np.ndarray, channels: int, rank: int) -> Optional[np.ndarray]:
    """``value`` as a length-``channels`` vector if it broadcasts only along the
    channel axis of a rank-``rank`` tensor (axis 1 for NCHW, last for 2-D)."""
    if value.size == 1:
        return np.full(channels, float(value.reshape(-1)[0]), np.float32)
    shape = (1,) * (rank - value.ndim) + value.shape
    ch_axis = 1 if rank == 4 else rank - 1
    if shape[ch_axis] == channels and all(d == 1 for i, d in enumerate(shape) if i != ch_axis):
        return value.reshape(channels).astype(np.float32)
    return None


def _fold_affine(g: _Graph) -> bool:
    """Fold ``Mul``/``Add`` by a per-channel constant into the Conv before it."""
    for n in g.nodes:
        if n.op_type not in ("Mul", "Add"):
            continue
        var = [i for i in n.input if g.const(i) is None]
        consts = [i for i in n.input if g.const(i) is not None]
        if len(var) != 1 or len(consts) != 1:
            continue
        p = g.producer(var[0])
        if p is None or p.op_type != "Conv" or not g.single_use(var[0]):
            continue  # MatMul scales: see _matmul_affine_to_bias
        w = g.const(p.input[1])
        cout = w.shape[0]
        vec = _per_channel(g.const(consts[0]), cout, 4)
        if vec is None:
            continue
        bias = g.const(p.input[2]) if len(p.input) > 2 else np.zeros(cout, np.float32)
        if n.op_type == "Mul":
            g.inits[p.input[1]] = (w * vec[:, None, None, None]).astype(np.float32)
            bias = bias * vec
        else:
            bias = bias + vec
        bname = p.input[2] if len(p.input) > 2 else p.output[0] + "_B"
        g.inits[bname] = bias.astype(np.float32)
        if len(p.input) < 3:
            p.input.append(bname)
        if n.output[0] in g.outputs:
            # Keep the graph output name: move it onto the conv.
            p.output[0] = n.output[0]
        else:
            g.replace_uses(n.output[0], var[0])
        g.remove(n)
        return True
    return False


def _fold_bias_add_chain(g: _Graph) -> bool:
    """Fold ``Add(const)`` after ``Add(const)`` (MatMul bias then BN shift) and
    ``Mul(const)`` after a MatMul bias Add."""
    for n in g.nodes:
        if n.op_type not in ("Mul", "Add") or len(n.input) != 2:
            continue
        var = [i for i in n.input if g.const(i) is None]
        consts = [i for i in n.input if g.const(i) is not None]
        if len(var) != 1 or len(consts) != 1:
            continue
        p = g.producer(var[0])
        if p is None or p.op_type != "Add" or not g.single_use(var[0]):
            continue
        pv = [i for i in p.input if g.const(i) is None]
        pc = [i for i in p.input if g.const(i) is not None]
        if len(pv) != 1 or len(pc) != 1:
            continue
        pp = g.producer(pv[0])
        if pp is None or pp.op_type != "MatMul" or not g.single_use(pv[0]):
            continue
        c, b = g.const(consts[0]), g.const(pc[0])
        if n.op_type == "Mul":
            w = g.const(pp.input[1])
            vec = _per_channel(c, w.shape[1], 2)
            if vec is None:
                continue
            g.inits[pp.input[1]] = (w * vec[None, :]).astype(np.float32)
            g.inits[pc[0]] = (b * vec).astype(np.float32)
        else:
            g.inits[pc[0]] = (b + c).astype(np.float32)
        if n.output[0] in g.outputs:
            p.output[0] = n.output[0]
        else:
            g.replace_uses(n.output[0], p.output[0])
        g.remove(n)
        return True
    return False


def _matmul_affine_to_bias(g: _Graph) -> bool:
    """``MatMul`` followed by ``Mul(const)``: fold the scale into the kernel even
    when the Mul is the graph output (keeps output names)."""
    for n in g.nodes:
        if n.op_type != "Mul":
            continue
        var = [i for i in n.input if g.const(i) is None]
        consts = [i for i in n.input if g.const(i) is not None]
        if len(var) != 1 or len(consts) != 1:
            continue
        p = g.producer(var[0])
        if p is None or p.op_type != "MatMul" or not g.single_use(var[0]):
            continue
        w = g.const(p.input[1])
        vec = _per_channel(g.const(consts[0]), w.shape[1], 2)
        if vec is None:
            continue
        g.inits[p.input[1]] = (w * vec[None, :]).astype(np.float32)
        p.output[0] = n.output[0]
        g.remove(n)
        return True
    return False


def _fold_pad(g: _Graph) -> bool:
    """A constant-zero spatial ``Pad`` feeding only a ``Conv`` joins its pads."""
    for n in g.nodes:
        if n.op_type != "Pad":
            continue
        pads = g.const(n.input[1])
        if pads is None or len(n.input) > 2 and n.input[2] or pads[[0, 1, 4, 5]].any():
            continue
        cons = g.consumers(n.output[0])
        if len(cons) != 1 or cons[0].op_type != "Conv" or n.output[0] in g.outputs:
            continue
        conv = cons[0]
        attr = {a.name: a for a in conv.attribute}
        cp = list(attr["pads"].ints)
        new = [cp[0] + int(pads[2]), cp[1] + int(pads[3]), cp[2] + int(pads[6]), cp[3] + int(pads[7])]
        del attr["pads"].ints[:]
        attr["pads"].ints.extend(new)
        conv.input[0] = n.input[0]
        g.remove(n)
        return True
    return False


def _is_zero(g: _Graph, name: str) -> bool:
    v = g.const(name)
    return v is not None and v.size == 1 and float(v.reshape(-1)[0]) == 0.0


def _other(n, name):
    return n.input[1] if n.input[0] == name else n.input[0]


def _fuse_prelu(g: _Graph) -> bool:
    """Rewrite the PReLU idioms of these graphs into ``PRelu``.

    * MobileFaceNet_TF: ``relu(x) + m * (x - |x|)``; for x<0 that is
      ``2*m*x``, so slope = 2m.
    * MobileFace (MXNet export): ``max(x, 0) + g * min(x, 0)``; slope = g.
    """
    for n in g.nodes:
        if n.op_type != "Add" or len(n.input) != 2:
            continue
        a, b = g.producer(n.input[0]), g.producer(n.input[1])
        if a is None or b is None:
            continue
        for pos, neg in ((a, b), (b, a)):
            if neg.op_type != "Mul":
                continue
            slope_in = [i for i in neg.input if g.const(i) is not None]
            var_in = [i for i in neg.input if g.const(i) is None]
            if len(slope_in) != 1 or len(var_in) != 1:
                continue
            inner = g.producer(var_in[0])
            if inner is None:
                continue
            x = None
            y = pos.output[0]
            if inner.op_type == "Sub" and inner.input[0] == y and pos.op_type == "Relu":
                absn = g.producer(inner.input[1])
                if absn is not None and absn.op_type == "Abs" and absn.input[0] == y \
                        and g.single_use(inner.output[0]) and g.single_use(neg.output[0]) \
                        and g.single_use(absn.output[0]) \
                        and n.output[0] not in g.outputs:
                    # The tfjs converter fused a ReLU into some depthwise convs
                    # whose pre-ReLU output fed this PReLU idiom, rewiring the
                    # idiom to read the post-ReLU value: y >= 0, so
                    # y + m*(y - |y|) == y and the PReLU became a ReLU.
                    if g.repair_prelu and len(g.consumers(y)) == 3 and y not in g.outputs:
                        # Restore what the original network computed: PReLU
                        # on the conv output (see --repair-prelu).
                        slope = (g.const(slope_in[0]) * 2.0).astype(np.float32)
                        g.inits[slope_in[0] + "_prelu"] = slope
                        g.nodes[g.nodes.index(n)] = helper.make_node(
                            "PRelu", [pos.input[0], slope_in[0] + "_prelu"], [n.output[0]], name=n.name)
                        for d in (pos, neg, inner, absn):
                            g.remove(d)
                        return True
                    # Reproduce TF.js exactly: the idiom is the identity.
                    g.replace_uses(n.output[0], y)
                    for d in (n, neg, inner, absn):
                        g.remove(d)
                    return True
            if pos.op_type == "Relu" and inner.op_type == "Sub":
                absn = g.producer(inner.input[1])
                if absn is not None and absn.op_type == "Abs" and absn.input[0] == inner.input[0] == pos.input[0]:
                    x, scale, dead = pos.input[0], 2.0, [pos, neg, inner, absn]
            elif pos.op_type == "Max" and inner.op_type == "Min":
                xp = [i for i in pos.input if not _is_zero(g, i)]
                xn = [i for i in inner.input if not _is_zero(g, i)]
                if len(xp) == 1 and len(xn) == 1 and xp[0] == xn[0] and len(pos.input) == 2:
                    x, scale, dead = xp[0], 1.0, [pos, neg, inner]
            if x is None:
                continue
            # Every intermediate must be private to the idiom before deleting it.
            if any(not g.single_use(d.output[0]) for d in dead[1:]):
                continue
            if not g.single_use(dead[0].output[0]):
                continue
            slope = (g.const(slope_in[0]) * scale).astype(np.float32)
            sname = slope_in[0] + "_prelu"
            g.inits[sname] = slope
            node = helper.make_node("PRelu", [x, sname], [n.output[0]], name=n.name)
            idx = g.nodes.index(n)
            g.nodes[idx] = node
            for d in dead:
                g.remove(d)
            return True
    return False


def _fuse_clip(g: _Graph) -> bool:
    """``Max(Min(Relu(x), 6), 0)`` (Keras relu6 as exported) -> ``Clip(x, 0, 6)``."""
    for n in g.nodes:
        if n.op_type != "Max":
            continue
        lo_in = [i for i in n.input if g.const(i) is not None]
        mn = g.producer(next((i for i in n.input if g.const(i) is None), ""))
        if len(lo_in) != 1 or mn is None or mn.op_type != "Min":
            continue
        hi_in = [i for i in mn.input if g.const(i) is not None]
        r = g.producer(next((i for i in mn.input if g.const(i) is None), ""))
        if len(hi_in) != 1 or r is None or not g.single_use(mn.output[0]):
            continue
        lo = float(g.const(lo_in[0]).reshape(-1)[0])
        hi = float(g.const(hi_in[0]).reshape(-1)[0])
        if g.const(lo_in[0]).size != 1 or g.const(hi_in[0]).size != 1:
            continue
        x = mn.input[0] if g.const(mn.input[0]) is None else mn.input[1]
        if r.op_type == "Relu" and g.single_use(r.output[0]) and lo >= 0:
            x = r.input[0]
            g.remove(r)
        lo_n, hi_n = n.output[0] + "_lo", n.output[0] + "_hi"
        g.inits[lo_n] = np.array(max(lo, 0.0) if r.op_type == "Relu" else lo, np.float32)
        g.inits[hi_n] = np.array(hi, np.float32)
        g.nodes[g.nodes.index(n)] = helper.make_node("Clip", [x, lo_n, hi_n], [n.output[0]], name=n.name)
        g.remove(mn)
        return True
    return False


def optimize(nodes, inits, outputs, repair_prelu=False):
    """Run the rewrites to a fixed point, then drop dead code."""
    g = _Graph(nodes, inits, outputs, repair_prelu)
    g.prune()
    passes = (_fuse_prelu, _fuse_clip, _fold_pad, _fold_affine, _fold_bias_add_chain, _matmul_affine_to_bias)
    changed = True
    while changed:
        changed = False
        for p in passes:
            while p(g):
                changed = True
        g.prune()
    return g.nodes, g.inits


def store_exact_float16(model: onnx.ModelProto, min_size: int = 1024) -> int:
    """Store large float32 weights as float16 + ``Cast`` where that is lossless.

    The TF.js file of faceres keeps its weights in float16, so most of them
    (all but those that absorbed a batch-norm scale) round-trip exactly:
    storing them as float16 halves the file without changing a single value
    the model computes with.  onnxruntime folds the ``Cast`` at load time.
    Returns the number of bytes saved.
    """
    g = model.graph
    saved = 0
    casts = []
    for i, t in enumerate(list(g.initializer)):
        if t.data_type != TensorProto.FLOAT:
            continue
        v = numpy_helper.to_array(t)
        if v.size < min_size or not np.array_equal(v.astype(np.float16).astype(np.float32), v):
            continue
        name = t.name  # t is the message being replaced: keep its name first
        half = name + "_fp16"
        g.initializer[i].CopyFrom(numpy_helper.from_array(v.astype(np.float16), half))
        casts.append(helper.make_node("Cast", [half], [name], name=name + "_cast", to=TensorProto.FLOAT))
        saved += v.size * 2
    # Casts first, so the node list stays topologically sorted.
    nodes = casts + list(g.node)
    del g.node[:]
    g.node.extend(nodes)
    onnx.checker.check_model(model)
    return saved


def convert(model_json: str, outputs: Sequence[str], output_names: Sequence[str] = ("embedding",),
            repair_prelu: bool = False) -> onnx.ModelProto:
    """Convert ``model_json`` keeping only ``outputs`` (TF tensor names).

    ``repair_prelu`` undoes a TF.js converter fusion that turned some PReLUs
    of MobileFaceNet into ReLUs (see ``_fuse_prelu``); the result then no
    longer matches TF.js but computes what the trained network did.
    """
    nodes, weights = load_tfjs(model_json)
    return Converter(nodes, weights).convert(outputs, output_names, repair_prelu)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model_json")
    ap.add_argument("out_onnx")
    ap.add_argument("--output", action="append", help="TF output tensor (repeatable); default: last node")
    ap.add_argument("--output-name", action="append", help="ONNX name for each output (default: embedding)")
    ap.add_argument("--fp16-weights", action="store_true",
                    help="store weights that are exactly float16 as float16 (+ Cast): smaller, same numbers")
    ap.add_argument("--repair-prelu", action="store_true",
                    help="restore PReLUs that the TF.js converter fused into ReLUs (MobileFaceNet)")
    args = ap.parse_args(argv)
    outs = args.output
    if not outs:
        nodes, _ = load_tfjs(args.model_json)
        outs = [nodes[-1]["name"]]
    names = args.output_name or (["embedding"] if len(outs) == 1 else [o.replace("/", "_") for o in outs])
    model = convert(args.model_json, outs, names, args.repair_prelu)
    if args.fp16_weights:
        store_exact_float16(model)
    onnx.save(model, args.out_onnx)
    ops = {}
    for n in model.graph.node:
        ops[n.op_type] = ops.get(n.op_type, 0) + 1
    print(f"{args.out_onnx}: {os.path.getsize(args.out_onnx)} bytes, ops {ops}")


if __name__ == "__main__":
    main()
