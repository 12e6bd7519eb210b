"""The gateway's response cache: RedisVL's ``SemanticCache`` on the router's Redis, safely scoped.

A request is answered from the cache when a stored request is within ``distance_threshold``
(cosine) of it **and** shares its scope. The semantic part is the request's routing text (its
last user message); the scope is an exact match on a hash of everything else that decides the
answer:

* what was asked for: ``auto`` on this router, or the concrete model of a passthrough request;
* who asked: the client's API key (hashed), so tenants never read each other's answers;
* the conversation before the last user message (system prompt and history);
* the parameters that change the answer (``max_tokens``, ``stop``, ``response_format``, ...).

Only deterministic requests are cached: ``temperature`` set at or below ``max_temperature``
(default 0), one choice, no tools. Clients can bypass it per request. Entries expire after
``ttl_s``. The index and keys live under ``llmrouter:cache`` (a prefix no router can take).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from redisvl_llmrouter.gateway.config import CacheConfig

__all__ = ["CACHE_NAME", "ResponseCache", "cacheable", "scope_of"]

CACHE_NAME = "llmrouter:cache"
#: Parameters that never change the answer's content, so they do not split the cache.
_NEUTRAL = {"stream", "stream_options", "user", "metadata", "timeout", "seed"}


def cacheable(params: Mapping[str, Any], config: CacheConfig) -> bool:
    """Whether a request's answer may be cached and served again."""
    if not config.enabled:
        return False
    temperature = params.get("temperature")
    if not isinstance(temperature, (int, float)) or temperature > config.max_temperature:
        return False
    return not (params.get("n", 1) != 1 or params.get("tools") or params.get("functions"))


def scope_of(target: str, tenant: str, messages: Sequence[Mapping[str, Any]], params: Mapping[str, Any]) -> str:
    """The exact part of a cache key: target, tenant, conversation before the last user message, parameters."""
    last_user = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=len(messages))
    context = [messages[i] for i in range(len(messages)) if i != last_user]
    shaping = {k: v for k, v in params.items() if k not in _NEUTRAL}
    blob = json.dumps([target, tenant, context, shaping], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


class ResponseCache:
    """A thin, typed layer over ``redisvl.extensions.cache.llm.SemanticCache`` (async calls)."""

    def __init__(self, config: CacheConfig, vectorizer: Any, redis_url: str) -> None:
        from redisvl.extensions.cache.llm import SemanticCache

        self.config = config
        self._cache = SemanticCache(
            name=CACHE_NAME,
            distance_threshold=config.distance_threshold,
            ttl=config.ttl_s,
            vectorizer=vectorizer,
            redis_url=redis_url,
            filterable_fields=[{"name": "scope", "type": "tag"}],
        )

    async def lookup(self, text: str, vector: list[float], scope: str) -> dict[str, Any] | None:
        """The cached ``chat.completion`` body for this request, or None."""
        from redisvl.query.filter import Tag

        hits = await self._cache.acheck(prompt=text, vector=vector, filter_expression=Tag("scope") == scope)
        if not hits:
            return None
        try:
            body = json.loads(hits[0]["response"])
        except (KeyError, TypeError, json.JSONDecodeError):
            return None
        return body if isinstance(body, dict) else None

    async def store(self, text: str, vector: list[float], scope: str, body: Mapping[str, Any]) -> None:
        await self._cache.astore(prompt=text, response=json.dumps(body), vector=vector, filters={"scope": scope})

    async def clear(self) -> None:
        await self._cache.aclear()

    async def aclose(self) -> None:
        await self._cache.adisconnect()
