"""What a completed request cost, and what it saved against a baseline model. Pure.

Cost comes from the provider's token usage and the catalog's prices:
``(prompt_tokens * input_price + completion_tokens * output_price) / 1e6`` USD. The saving is the
baseline model's price for the same usage minus that cost (a cache hit costs nothing and saves the
whole baseline). Without prices or usage the figures are ``None``, never guessed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from redisvl_llmrouter.policy.catalog import ModelCatalog, ModelSpec

__all__ = ["Usage", "baseline_model", "cost_of", "usage_of"]


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


def usage_of(body: dict[str, Any] | None) -> Usage:
    """The token usage in an OpenAI ``chat.completion`` body (or a final stream chunk)."""
    usage = (body or {}).get("usage") or {}
    if not isinstance(usage, dict):
        return Usage(None, None)
    return Usage(_tokens(usage.get("prompt_tokens")), _tokens(usage.get("completion_tokens")))


#: More tokens than any one call uses (context windows reach a few million): a provider's garbage,
#: which would otherwise be billed at 1e35 dollars in the log and the report.
MAX_TOKENS = 1_000_000_000


def _tokens(value: Any) -> int | None:
    """A token count a provider reported, or None when it is not one (``true`` is not 1)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_TOKENS:
        return None
    return value


def cost_of(spec: ModelSpec | None, usage: Usage) -> float | None:
    """USD for ``usage`` at ``spec``'s prices, or None when either is unknown."""
    if spec is None or not spec.priced or usage.prompt_tokens is None or usage.completion_tokens is None:
        return None
    return spec.estimate_cost(usage.prompt_tokens, usage.completion_tokens)


def baseline_model(catalog: ModelCatalog, configured: str | None) -> str | None:
    """The model savings are measured against: the configured one, else the catalog's dearest (by output price).

    A configured model must be priced in the catalog: otherwise no saving could ever be reported.
    """
    if configured:
        spec = catalog.get(configured)
        if spec is None or not spec.priced:
            from redisvl_llmrouter.errors import ConfigError

            priced = ", ".join(m.name for m in catalog if m.priced) or "none"
            raise ConfigError(
                f"baseline_model {configured!r} is not a priced model of the router's catalog (priced: {priced})"
            )
        return configured
    priced = [m for m in catalog if m.priced]
    if not priced:
        return None
    return max(priced, key=lambda m: (m.output_price, m.input_price)).name
