"""Per-request constraints: what a request demands of the model that answers it.

A request may set a budget (``max_cost``, USD for this request), a deadline (``max_latency_ms``),
a quality bar (``min_quality``), capabilities (``vision``, ``tools``, ...) and a context size
(``min_context``, tokens). Models that fall short are excluded with a reason. When nothing is
left, the router raises :class:`~redisvl_llmrouter.errors.NoEligibleModelError` naming every model
and why, unless the caller asked for ``best_effort``: then the soft limits are dropped one at a
time in :data:`RELAXATION_ORDER` until a model qualifies. Capabilities, context size, domain
floors and open circuit breakers are never relaxed: a model that cannot read an image or hold the
prompt would fail the call, and a floor exists to hold.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator

from redisvl_llmrouter.policy.catalog import NOT_NUMBERS, Capability, TokenCount

__all__ = ["RELAXATION_ORDER", "Constraints"]

#: The constraints ``best_effort`` may drop, first to last: speed is given up before money,
#: money before quality.
RELAXATION_ORDER: tuple[str, ...] = ("max_latency_ms", "max_cost", "min_quality")


class Constraints(BaseModel):
    """Limits one request puts on the model that answers it. Every field is optional."""

    max_cost: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    """Most USD this request may cost, estimated from its prompt tokens and ``output_tokens``
    with the catalog's prices. Models without prices are excluded (their cost is unknown)."""
    max_latency_ms: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None
    """Slowest acceptable expected latency: the live average when measured, else the catalog's."""
    min_quality: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] | None = None
    """Lowest acceptable expected quality: the learned prediction where the outcome memory has
    evidence for this request, else the catalog's prior. Unknown quality is excluded."""
    capabilities: list[Capability] = Field(default_factory=list)
    """Capabilities the model must list in the catalog (``code``, ``vision``, ``tools``, ``json``,
    ``reasoning``, ``long_context``)."""
    min_context: TokenCount | None = None
    """Tokens the model must accept. Default: the request's estimated prompt tokens plus
    ``output_tokens``; models with a smaller ``context_window`` are excluded."""
    output_tokens: TokenCount | None = None
    """Expected answer length in tokens (the request's ``max_tokens``); default: the routing
    config's ``expected_output_tokens``."""
    best_effort: StrictBool = False
    """Relax soft limits in :data:`RELAXATION_ORDER` instead of failing when nothing qualifies."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("max_cost", "max_latency_ms", "min_quality", "min_context", "output_tokens", mode="before")
    @classmethod
    def _a_number(cls, v: Any) -> Any:
        # Lax validation reads True as 1 and "5" as 5: a limit nobody meant to set. Numbers only
        # (numpy's included, but not numpy's bools), as feedback takes them.
        if isinstance(v, NOT_NUMBERS):
            raise ValueError(f"must be a number, got {v!r}")
        return v

    def without(self, field: str) -> Constraints:
        """A copy with one constraint dropped (for relaxation)."""
        return self.model_copy(update={field: None})

    @property
    def active(self) -> dict[str, object]:
        """The constraints actually set, for explanations."""
        return {
            k: v
            for k, v in self.model_dump(mode="json", exclude={"best_effort"}).items()
            if v is not None and v != [] and k != "output_tokens"
        }
