"""What a gateway request's answer carries: how it was answered (:class:`Outcome`, also its response
headers), and the answer itself, whole (:class:`Completion`) or streamed (:class:`StreamedCompletion`)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from redisvl_llmrouter.gateway.accounting import Usage
from redisvl_llmrouter.schema import Decision

__all__ = ["Completion", "Outcome", "StreamedCompletion", "header_value"]


@dataclass
class Outcome:
    """How a request was answered: what the HTTP server puts in headers and the log records."""

    request_id: str
    requested: str
    priority: str = "normal"
    passthrough: bool = False
    """A concrete model was asked for (nothing routed)."""
    tenant: str = ""
    """The client's tenant label (a hash of its API key; empty without keys)."""
    excluded: list[Any] = field(default_factory=list)
    """Why each model was ruled out, when no model was eligible (no decision then carries it)."""
    query_vector: bytes = field(default=b"", repr=False)
    """A routed request's vector, kept for the feedback record written after the answer."""
    started: float = field(default_factory=time.perf_counter, repr=False)
    """``time.perf_counter()`` when the request arrived: every latency is measured from it."""
    model: str | None = None
    route: str | None = None
    strategy: str | None = None
    confidence: float | None = None
    decision: Decision | None = None
    cache: str = "bypass"
    """``hit``, ``miss``, ``bypass`` (not cacheable, asked not to, or the lookup failed) or ``off`` (the
    gateway has no cache)."""
    attempts: list[dict[str, Any]] = field(default_factory=list)
    call_id: str = field(default="", repr=False)
    """The current attempt's entry in its model's in-flight set (see :meth:`Gateway._attempt`)."""
    usage: Usage = field(default_factory=Usage)
    cost: float | None = None
    baseline_cost: float | None = None
    latency_ms: float = 0.0
    ended: bool = False
    """The request's end (an answer or an error) has been logged and counted."""

    @property
    def saving(self) -> float | None:
        if self.baseline_cost is None:
            return None
        return self.baseline_cost - self.cost if self.cost is not None else None

    @property
    def fallbacks_used(self) -> int:
        """Models tried after the first (retries of one model do not count)."""
        return max(0, len({a["model"] for a in self.attempts if a.get("model")}) - 1)

    def headers(self) -> dict[str, str]:
        # x-request-id too: the openai clients read it (completion._request_id, an error's request_id).
        out = {
            "x-llmrouter-request-id": self.request_id,
            "x-request-id": self.request_id,
            "x-llmrouter-cache": self.cache,
        }
        for name, value in (
            ("model", self.model),
            ("route", self.route),
            ("strategy", self.strategy),
            ("confidence", None if self.confidence is None else f"{self.confidence:.4f}"),
            ("cost", None if self.cost is None else f"{self.cost:.8f}"),
            ("saving", None if self.saving is None else f"{self.saving:.8f}"),
        ):
            if value is not None:
                out[f"x-llmrouter-{name}"] = header_value(str(value))
        out["x-llmrouter-fallbacks"] = str(self.fallbacks_used)
        return out


#: What a header value may hold as is: printable ASCII but ``%``, which marks an encoded value.
_HEADER_SAFE = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "%")


def header_value(value: str) -> str:
    """``value`` as an HTTP header carries it: unchanged when printable ASCII, else percent-encoded
    UTF-8 (``urllib.parse.unquote`` reads it back). A route named in Chinese or holding a newline
    must not fail an answer the provider has already given (and billed)."""
    if value.isascii() and value.isprintable() and "%" not in value:
        return value
    from urllib.parse import quote

    return quote(value, safe=_HEADER_SAFE)


@dataclass
class Completion:
    """A completed (non-streamed) request: the ``chat.completion`` body and how it was answered."""

    body: dict[str, Any]
    outcome: Outcome


class StreamedCompletion:
    """A streamed request: iterate for ``chat.completion.chunk`` bodies; ``outcome`` is final at the end.

    The stream holds its model's queue slot until it ends: iterate it to the end, or leave it early
    with ``await stream.aclose()`` (or ``async with stream:``), which frees the slot even when no chunk
    was read.
    """

    def __init__(
        self,
        outcome: Outcome,
        chunks: AsyncIterator[dict[str, Any]],
        release: Callable[[], Awaitable[Any]] | None = None,
    ) -> None:
        self.outcome = outcome
        self._chunks = chunks
        self._release = release

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        return self._chunks

    async def aclose(self) -> None:
        """Stop the stream and free what it holds (idempotent)."""
        closer = getattr(self._chunks, "aclose", None)
        if closer is not None:
            await closer()
        if self._release is not None:  # a stream never started has not run its own clean-up
            await self._release()

    async def __aenter__(self) -> StreamedCompletion:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
