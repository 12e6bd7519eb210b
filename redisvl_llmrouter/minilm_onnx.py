"""MiniLM as an ONNX graph, written from the packaged safetensors weights: numpy and ``onnx`` only, no torch.

The graph is the whole sentence-transformers pipeline of all-MiniLM-L6-v2 (a BERT encoder, mean
pooling over the attention mask, L2 normalisation), so onnxruntime returns the final vectors.
It is built op by op from the weights, the way ``transformers``' ``BertModel`` computes in eager
mode, which is why it needs neither torch nor an export: building it takes well under a second.

Two variants, both from :func:`build`:

* fp32: the weights as they are (cosine to the torch pipeline > 0.99999).
* int8: every weight matrix quantised to 8 bits in blocks of 16 rows of K, one scale per block,
  run as onnxruntime's ``MatMulNBits`` with int8 dot products (``accuracy_level=4``). Weights
  only: activations are quantised per row block at run time, so a text's vector does not depend
  on the other texts of its batch (per-tensor dynamic quantisation would make it so). Blocks of
  16 kept top-1 routing agreement with torch above 99% where 32 did not (benchmarks/LATENCY.md).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["INPUTS", "INT8_BLOCK", "build", "read_safetensors", "read_weights", "weights_from_onnx"]

#: Rows of K per int8 block (one scale each).
INT8_BLOCK = 16

#: The graph's inputs, as a BERT tokenizer names them.
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
_DTYPES = {"F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32}


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """The tensors of a ``.safetensors`` file as numpy arrays (the format is a JSON header, then raw data)."""
    data = np.memmap(path, dtype=np.uint8, mode="r")
    size = int(np.frombuffer(data[:8].tobytes(), dtype="<u8")[0])
    header = json.loads(data[8 : 8 + size].tobytes())
    header.pop("__metadata__", None)
    out = {}
    for name, info in header.items():
        if info["dtype"] not in _DTYPES:
            raise ValueError(f"{path.name}: tensor {name!r} has unsupported dtype {info['dtype']}")
        start, end = info["data_offsets"]
        raw = data[8 + size + start : 8 + size + end]
        out[name] = np.frombuffer(raw.tobytes(), dtype=np.dtype(_DTYPES[info["dtype"]]).newbyteorder("<")).reshape(
            info["shape"]
        )
    return out


#: fp32 graphs name each weight after its checkpoint tensor (``.T`` when stored transposed), so
#: the weights can be read back from a graph: a wheel carries the graph instead of the checkpoint.
_PARAM = "ckpt:"


def weights_from_onnx(path: Path) -> dict[str, np.ndarray]:
    """The checkpoint tensors of an fp32 graph built here (needs the ``onnx`` package)."""
    import onnx
    from onnx import numpy_helper

    out = {}
    for tensor in onnx.load(str(path)).graph.initializer:
        if tensor.name.startswith(_PARAM):
            key, array = tensor.name[len(_PARAM) :], numpy_helper.to_array(tensor)
            out[key.removesuffix(".T")] = array.T if key.endswith(".T") else array
    return out


def read_weights(model_dir: Path) -> dict[str, np.ndarray]:
    """The checkpoint's tensors from ``model.safetensors``, else from an fp32 ``model.onnx`` built here."""
    if (model_dir / "model.safetensors").is_file():
        return {k.removeprefix("bert."): v for k, v in read_safetensors(model_dir / "model.safetensors").items()}
    return weights_from_onnx(model_dir / "model.onnx")


class _Graph:
    """A small builder: named nodes and initializers, so the graph reads like the model's forward pass."""

    def __init__(self, weights: dict[str, np.ndarray], quantize: bool) -> None:
        self.weights = weights
        self.quantize = quantize
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._count = 0

    def const(self, value: Any, name: str | None = None, dtype: Any = np.float32) -> str:
        from onnx import numpy_helper

        self._count += 1
        name = name or f"const_{self._count}"
        self.initializers.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def op(self, op_type: str, inputs: list[str], domain: str = "", **attributes: Any) -> str:
        from onnx import helper

        self._count += 1
        output = f"{op_type.lower()}_{self._count}"
        self.nodes.append(
            helper.make_node(op_type, inputs, [output], name=f"{op_type}_{self._count}", domain=domain, **attributes)
        )
        return output

    def param(self, key: str, transpose: bool = False) -> str:
        """A checkpoint tensor as an initializer named after it."""
        value = self.weights[key]
        if transpose:
            return self.const(np.ascontiguousarray(value.T), f"{_PARAM}{key}.T")
        return self.const(value, f"{_PARAM}{key}")

    def layer_norm(self, x: str, prefix: str, epsilon: float) -> str:
        scale, bias = self.param(f"{prefix}.weight"), self.param(f"{prefix}.bias")
        return self.op("LayerNormalization", [x, scale, bias], axis=-1, epsilon=epsilon)

    def linear(self, x: str, prefix: str) -> str:
        """``x @ W.T + b``: fp32 MatMul, or the blockwise int8 ``MatMulNBits``."""
        bias = self.param(f"{prefix}.bias")
        if not self.quantize:
            return self.op("Add", [self.op("MatMul", [x, self.param(f"{prefix}.weight", transpose=True)]), bias])
        weight = np.ascontiguousarray(self.weights[f"{prefix}.weight"].T.astype(np.float32))  # (K, N)
        packed, scales = _quantize_blocks(weight)
        k, n = weight.shape
        product = self.op(
            "MatMulNBits", [x, self.const(packed, dtype=np.uint8), self.const(scales)], domain="com.microsoft",
            K=k, N=n, bits=8, block_size=INT8_BLOCK, accuracy_level=4,
        )  # fmt: skip
        return self.op("Add", [product, bias])


def _quantize_blocks(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric 8-bit blocks along K, in ``MatMulNBits``' layout: (N, blocks, 16) uint8 and (N, blocks) scales."""
    from redisvl_llmrouter.vectorizers import quiet_onnxruntime

    quiet_onnxruntime()
    from onnxruntime.capi._pybind_state import quantize_matmul_8bits

    k, n = weight.shape
    blocks = -(-k // INT8_BLOCK)
    padded = np.zeros((blocks * INT8_BLOCK, n), dtype=np.float32)
    padded[:k] = weight
    packed = np.zeros((n, blocks, INT8_BLOCK), dtype=np.uint8)
    scales = np.zeros((n, blocks), dtype=np.float32)
    zero_points = np.zeros((n, blocks), dtype=np.uint8)
    quantize_matmul_8bits(packed, padded, scales, zero_points, INT8_BLOCK, n, k, True)
    return packed, scales


def build(model_dir: Path, quantize: bool = False) -> Any:
    """The ONNX ``ModelProto`` of the sentence-transformers pipeline in ``model_dir`` (BERT + mean pool + L2 norm).

    ``model_dir`` holds ``config.json`` and the weights (``model.safetensors``, or an fp32
    ``model.onnx`` built here).

    Inputs ``input_ids``, ``attention_mask`` and ``token_type_ids`` (int64, batch x sequence);
    output ``sentence_embedding`` (float32, batch x hidden), normalised.
    """
    from onnx import TensorProto, helper

    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    if config.get("model_type") != "bert" or config.get("hidden_act") != "gelu":
        raise ValueError(f"{model_dir}: expected a BERT model with GELU, got {config.get('model_type')!r}")
    weights = read_weights(model_dir)
    hidden, heads = int(config["hidden_size"]), int(config["num_attention_heads"])
    head_size, eps = hidden // heads, float(config["layer_norm_eps"])
    g = _Graph(weights, quantize)

    # Embeddings: word + position (0..S-1) + token type, then LayerNorm.
    length = g.op("Shape", ["input_ids"], start=1, end=2)
    positions = g.op("Slice", [g.const(np.arange(config["max_position_embeddings"]), dtype=np.int64),
                               g.const([0], dtype=np.int64), length])  # fmt: skip
    x = g.op("Gather", [g.param("embeddings.word_embeddings.weight"), "input_ids"])
    x = g.op("Add", [x, g.op("Gather", [g.param("embeddings.position_embeddings.weight"), positions])])
    x = g.op("Add", [x, g.op("Gather", [g.param("embeddings.token_type_embeddings.weight"), "token_type_ids"])])
    x = g.layer_norm(x, "embeddings.LayerNorm", eps)

    # Padding is masked by a large negative bias on its attention scores (softmax weight 0, as in
    # BertModel). Written in the classic BERT export's pattern, so onnxruntime fuses the attention.
    expanded = g.op("Unsqueeze", ["attention_mask", g.const([1], dtype=np.int64)])
    expanded = g.op("Unsqueeze", [expanded, g.const([2], dtype=np.int64)])
    blocked = g.op("Sub", [g.const(1.0), g.op("Cast", [expanded], to=TensorProto.FLOAT)])
    score_bias = g.op("Mul", [blocked, g.const(-10000.0)])
    split_heads = g.const([0, 0, heads, head_size], dtype=np.int64)
    merge_heads = g.const([0, 0, hidden], dtype=np.int64)
    scale = g.const(math.sqrt(head_size))

    for layer in range(int(config["num_hidden_layers"])):
        p = f"encoder.layer.{layer}"
        q, k, v = (
            g.op("Reshape", [g.linear(x, f"{p}.attention.self.{n}"), split_heads]) for n in ("query", "key", "value")
        )
        q = g.op("Transpose", [q], perm=[0, 2, 1, 3])
        k = g.op("Transpose", [k], perm=[0, 2, 3, 1])
        v = g.op("Transpose", [v], perm=[0, 2, 1, 3])
        scores = g.op("Add", [g.op("Div", [g.op("MatMul", [q, k]), scale]), score_bias])
        context = g.op("MatMul", [g.op("Softmax", [scores], axis=-1), v])
        context = g.op("Reshape", [g.op("Transpose", [context], perm=[0, 2, 1, 3]), merge_heads])
        attended = g.linear(context, f"{p}.attention.output.dense")
        x = g.layer_norm(g.op("Add", [attended, x]), f"{p}.attention.output.LayerNorm", eps)
        inner = g.linear(x, f"{p}.intermediate.dense")  # exact (erf) GELU, as "gelu" means in transformers
        gelu = g.op("Erf", [g.op("Div", [inner, g.const(math.sqrt(2.0))])])
        inner = g.op("Mul", [g.op("Mul", [inner, g.op("Add", [gelu, g.const(1.0)])]), g.const(0.5)])
        x = g.layer_norm(g.op("Add", [g.linear(inner, f"{p}.output.dense"), x]), f"{p}.output.LayerNorm", eps)

    # sentence-transformers' Pooling(mean) and Normalize.
    mask = g.op("Cast", ["attention_mask"], to=TensorProto.FLOAT)
    weights3 = g.op("Unsqueeze", [mask, g.const([-1], dtype=np.int64)])
    summed = g.op("ReduceSum", [g.op("Mul", [x, weights3]), g.const([1], dtype=np.int64)], keepdims=0)
    counts = g.op("Max", [g.op("ReduceSum", [weights3, g.const([1], dtype=np.int64)], keepdims=0), g.const(1e-9)])
    pooled = g.op("Div", [summed, counts])
    norm = g.op("Sqrt", [g.op("ReduceSum", [g.op("Mul", [pooled, pooled]), g.const([1], dtype=np.int64)], keepdims=1)])
    g.nodes.append(
        helper.make_node("Div", [pooled, g.op("Max", [norm, g.const(1e-12)])], ["sentence_embedding"], name="Normalize")
    )

    dims = ["batch", "sequence"]
    inputs = [
        helper.make_tensor_value_info(n, TensorProto.INT64, dims)
        for n in ("input_ids", "attention_mask", "token_type_ids")
    ]
    output = helper.make_tensor_value_info("sentence_embedding", TensorProto.FLOAT, ["batch", hidden])
    graph = helper.make_graph(g.nodes, "all-MiniLM-L6-v2", inputs, [output], g.initializers)
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid("com.microsoft", 1)] if quantize else [])
    model = helper.make_model(graph, opset_imports=opsets, producer_name="redisvl-llmrouter")
    model.ir_version = 8
    return model
