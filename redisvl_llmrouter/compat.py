"""What RedisVL 0.28's ``SemanticRouter`` accepts that this router only keeps for compatibility.

RedisVL users switch by changing one import; their code may still pass deprecated arguments
(``dtype=``, ``distance_threshold=``) or reach for ``router._index``. This module holds what the
sync and async routers share for that, with no I/O: RedisVL's exact deprecation warnings, the
``dtype`` shortcut for the default vectorizer, and the RedisVL index schema describing the
router's index (the layout is RedisVL's, see :mod:`redisvl_llmrouter.search`).
See ``docs/coming-from-redisvl.md`` for every difference that remains, and why.
"""

from __future__ import annotations

import warnings
from typing import Any

from redisvl.extensions.router.schema import SemanticRouterIndexSchema
from redisvl.utils.vectorize import BaseVectorizer

from redisvl_llmrouter.errors import ConfigError, InvalidVectorizerError, VectorizerMismatchError

__all__ = ["check_create_index", "index_schema", "resolve_vectorizer", "warn_deprecated"]


def warn_deprecated(argument: str, replacement: str | None = None, stacklevel: int = 3) -> None:
    """Warn exactly as RedisVL's ``deprecated_argument`` does, so filters written for it still match."""
    message = f"Argument {argument} is deprecated and will be removed in a future release."
    if replacement:
        message += f" Use {replacement} instead."
    warnings.warn(message, DeprecationWarning, stacklevel=stacklevel)


def resolve_vectorizer(vectorizer: Any, dtype: str | None) -> BaseVectorizer | None:
    """Check the ``vectorizer`` argument and apply RedisVL's deprecated ``dtype`` to it.

    A given vectorizer must be a RedisVL vectorizer (``TypeError`` otherwise, as in RedisVL) whose
    dtype equals ``dtype`` when both are given. Without a vectorizer, ``dtype`` selects the dtype
    of the default (packaged MiniLM) vectorizer; None means "use the default".
    """
    if dtype is not None:
        warn_deprecated("dtype", "vectorizer", stacklevel=4)
    if vectorizer is not None:
        if not isinstance(vectorizer, BaseVectorizer):
            raise InvalidVectorizerError(
                f"vectorizer must be a RedisVL vectorizer (redisvl.utils.vectorize), got {type(vectorizer).__name__}"
            )
        if dtype is not None and vectorizer.dtype != dtype:
            raise VectorizerMismatchError(f"Provided dtype {dtype} does not match vectorizer dtype {vectorizer.dtype}")
        return vectorizer
    if dtype is None:
        return None
    from redisvl_llmrouter.vectorizers import MiniLMVectorizer

    return MiniLMVectorizer(dtype=dtype)


def check_create_index(create_index: bool, overwrite: bool) -> None:
    """``create_index=False`` attaches to an index someone else manages; overwriting it contradicts that."""
    if not create_index and overwrite:
        raise ConfigError("create_index=False and overwrite=True contradict each other: choose one.")


def index_schema(name: str, dims: int, dtype: str) -> SemanticRouterIndexSchema:
    """RedisVL's schema of a router index: same name, prefix, fields, vector type and dimensions."""
    return SemanticRouterIndexSchema.from_params(name, dims, dtype)
