"""The gateway's response cache: RedisVL's ``SemanticCache`` on the router's Redis, safely scoped.

A request is answered from the cache when a stored request is within ``distance_threshold``
(cosine) of it **and** shares its scope. The semantic part is what the router embeds: the last
user message's text, or its head and tail window when it is longer. The scope is an exact match
on a hash of everything else that decides the answer:

* what was asked for: ``auto`` on this router, or the concrete model of a passthrough request;
* how it was to be routed: the request's ``strategy`` and ``constraints``;
* who asked: the client's API key (hashed), so tenants never read each other's answers;
* the conversation before the last user message (system prompt and history);
* what the embedding does not see of the last user message: its images and other non-text
  parts, and its whole text when only a window of it is embedded;
* the parameters that change the answer (``max_tokens``, ``stop``, ``response_format``, ...).

Off by default: a semantic match is a guess, and prompts that differ in one number or one "not"
sit well within any useful threshold. Only deterministic requests are cached: ``temperature``
set at or below ``max_temperature`` (default 0), one choice, no tools, no ``logprobs`` (the cache
keeps an answer's text, not its token probabilities). Clients can bypass it per
request. Entries expire ``ttl_s`` after they were stored (hits do not renew them). The index and
keys live under ``llmrouter:cache`` (a prefix no router can take), one index per shape of vector
(others under ``llmrouter:answers:``): an index holds vectors of one size and type, and routers
with other embedders (float16, another model) share the Redis too. A cache that fails (Redis
restarted empty, say) costs its hit rate, never the request: it is served uncached
(``x-llmrouter-cache: bypass``) and the index is created again. Feedback below ``forget_below`` on
an answer the cache holds (on the request that stored it or on one it served) removes the entry:
the next such request is answered by the model the router now picks.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from redisvl_llmrouter.errors import InvalidQueryError
from redisvl_llmrouter.gateway.config import CacheConfig
from redisvl_llmrouter.request_text import messages_text

__all__ = ["CACHE_NAME", "CachedAnswer", "ResponseCache", "cache_name", "cacheable", "scope_of"]

CACHE_NAME = "llmrouter:cache"


def cache_name(dims: int, dtype: str) -> str:
    """The index for answers whose requests are embedded as ``dims`` values of ``dtype``: ``CACHE_NAME``
    for the default embedder's (MiniLM, 384 float32), where every earlier version kept them. Others
    under a root ``CACHE_NAME`` is not a prefix of: its index (RediSearch prefixes are plain strings)
    would take their entries in too, and clearing it would delete them."""
    return CACHE_NAME if (dims, dtype) == (384, "float32") else f"llmrouter:answers:{dtype}-{dims}"


#: Parameters that never change the answer's content, so they do not split the cache.
_NEUTRAL = {"stream", "stream_options", "user", "metadata", "timeout"}
#: OpenAI's defaults: a request that sets one asks what a request without it asks.
_DEFAULTS = {"n": 1.0, "logprobs": False, "top_p": 1.0, "presence_penalty": 0.0, "frequency_penalty": 0.0}
_NO_DEFAULT = object()


def cacheable(params: Mapping[str, Any], config: CacheConfig) -> bool:
    """Whether a request's answer may be cached and served again."""
    if not config.enabled:
        return False
    temperature = params.get("temperature")
    if not isinstance(temperature, (int, float)) or temperature > config.max_temperature:
        return False
    return not (params.get("n", 1) != 1 or params.get("tools") or params.get("functions") or params.get("logprobs"))


def scope_of(
    target: str,
    tenant: str,
    messages: Sequence[Mapping[str, Any]],
    params: Mapping[str, Any],
    policy: Any = None,
    embedded: str | None = None,
) -> str:
    """The exact part of a cache key (see the module docstring).

    ``policy`` is the request's strategy and constraints; ``embedded`` the text the semantic part
    compares (the routing window), so that whatever of the last user message lies outside it is
    matched exactly.
    """
    last_user = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=len(messages))
    context = [_plain(messages[i]) for i in range(len(messages)) if i != last_user]
    unseen: dict[str, Any] = {}
    if last_user < len(messages):
        last = messages[last_user]
        unseen = {k: v for k, v in last.items() if k not in ("role", "content")}  # a name, say
        content = last.get("content")
        if isinstance(content, Sequence) and not isinstance(content, str):
            parts = [p for p in content if not (isinstance(p, Mapping) and p.get("type") == "text")]
            if parts:  # text parts alone are the text a string would hold
                unseen["parts"] = parts
        try:
            text = messages_text([last])
        except InvalidQueryError:  # no text in it (an image alone): the request was routed on another message
            text = ""
        if embedded is not None and embedded != text.strip():
            unseen["text"] = hashlib.sha256(text.encode()).hexdigest()
    numbers = ((k, _number(v)) for k, v in params.items() if k not in _NEUTRAL)
    shaping = {k: v for k, v in numbers if not _default(k, v)}
    if shaping.get("temperature") == 0:  # a seed picks among sampled answers: at temperature 0 there is one
        shaping.pop("seed", None)
    blob = json.dumps([target, tenant, context, unseen, shaping, policy], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def _number(value: Any) -> Any:
    """A top-level number as a float, so ``0``, ``0.0`` and ``-0.0`` (which mean the same) share a scope."""
    return float(value) + 0.0 if isinstance(value, (int, float)) and not isinstance(value, bool) else value


def _default(name: str, value: Any) -> bool:
    """Whether a parameter (its number as :func:`_number` gives it) is OpenAI's default (``n=1``, ...)."""
    default = _DEFAULTS.get(name, _NO_DEFAULT)
    return type(value) is type(default) and value == default


def _plain(message: Mapping[str, Any]) -> Mapping[str, Any]:
    """A message whose content is one text part, with that text as its content: the same message."""
    content = message.get("content")
    if (
        isinstance(content, list)
        and len(content) == 1
        and isinstance(content[0], Mapping)
        and set(content[0]) == {"type", "text"}
        and content[0]["type"] == "text"
        and isinstance(content[0]["text"], str)
    ):
        return {**message, "content": content[0]["text"]}
    return message


@dataclass(frozen=True)
class CachedAnswer:
    """A stored ``chat.completion`` body and the id of its entry (for feedback that removes it)."""

    body: dict[str, Any]
    entry_id: str


class ResponseCache:
    """A thin, typed layer over ``redisvl.extensions.cache.llm.SemanticCache`` (async calls)."""

    def __init__(self, config: CacheConfig, vectorizer: Any, redis_url: str) -> None:
        from redisvl.extensions.cache.llm import SemanticCache

        self.config = config
        self.name = cache_name(int(vectorizer.dims), str(vectorizer.dtype).lower())
        self._cache = SemanticCache(
            name=self.name,
            distance_threshold=config.distance_threshold,
            # No cache-wide TTL: RedisVL renews that one on every hit (a round trip per hit, and a popular
            # answer would never expire). Each entry is stored with its own instead (see store).
            ttl=None,
            vectorizer=vectorizer,
            redis_url=redis_url,
            filterable_fields=[{"name": "scope", "type": "tag"}],
        )

    async def lookup(self, text: str, vector: list[float], scope: str) -> CachedAnswer | None:
        """The cached answer for this request, or None."""
        from redisvl.query.filter import Tag

        hits = await self._cache.acheck(prompt=text, vector=vector, filter_expression=Tag("scope") == scope)
        if not hits:
            return None
        # An answer's age counts from when it was stored: an older one is a miss (the fresh answer
        # replaces it), should Redis not have expired it yet.
        try:
            if time.time() - float(hits[0]["inserted_at"]) > self.config.ttl_s:
                return None
        except (KeyError, TypeError, ValueError):
            return None
        try:
            body = json.loads(hits[0]["response"])
        except (KeyError, TypeError, json.JSONDecodeError):
            return None
        entry_id = hits[0].get("entry_id")
        return CachedAnswer(body, entry_id) if isinstance(body, dict) and isinstance(entry_id, str) else None

    def entry_id(self, text: str, scope: str) -> str:
        """The id :meth:`store` gives the entry of ``text`` in ``scope`` (RedisVL derives it from both)."""
        return self._cache._make_entry_id(text, {"scope": scope})

    async def forget(self, entry_id: str) -> None:
        """Remove one entry (none if it expired or was replaced under another id)."""
        await self._cache.adrop(ids=[entry_id])

    async def store(self, text: str, vector: list[float], scope: str, body: Mapping[str, Any]) -> None:
        await self._cache.astore(
            prompt=text, response=json.dumps(body), vector=vector, filters={"scope": scope}, ttl=self.config.ttl_s
        )

    async def repair(self) -> None:
        """Create the index again if it is gone (Redis restarted empty, say); nothing if it exists."""
        await asyncio.to_thread(self._cache.index.create, overwrite=False, drop=False)

    async def clear(self) -> None:
        await self._cache.aclear()

    async def aclose(self) -> None:
        await self._cache.adisconnect()
