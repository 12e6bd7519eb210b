"""Per-request constraints: what a request demands of the model that answers it.

A request may set a budget (``max_cost``, USD for this request), a deadline (``max_latency_ms``),
a quality bar (``min_quality``), capabilities (``vision``, ``tools``, ...) and a context size
(``min_context``, tokens). Models that fall short are excluded with a reason. When nothing is
left, the router raises :class:`~redisvl_llmrouter.errors.NoEligibleModelError` naming every model
and why, unless the caller asked for ``best_effort``: then the soft limits are dropped one at a
time in :data:`RELAXATION_ORDER` until a model qualifies (and those the qualifying models meet anyway
are put back). Capabilities, context size, domain
floors and open circuit breakers are never relaxed: a model that cannot read an image or hold the
prompt would fail the call, and a floor exists to hold.

A chat request also shows some capabilities it needs (:func:`implied_capabilities`): tool
definitions or a tool conversation need ``tools``, an image part needs ``vision``, a JSON
``response_format`` needs ``json``. The gateway adds them to the request's constraints, so a model
that would refuse the call (and be blamed for it) is never chosen.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator

from redisvl_llmrouter.policy.catalog import NOT_NUMBERS, Capability, TokenCount

__all__ = ["RELAXATION_ORDER", "Constraints", "implied_capabilities"]

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


#: Content part types that carry an image (Chat Completions' ``image_url``; ``input_image`` and
#: ``image`` as other OpenAI-style APIs name it).
IMAGE_PARTS = frozenset({"image_url", "input_image", "image"})
#: ``response_format`` types that ask the model for JSON.
JSON_FORMATS = frozenset({"json_object", "json_schema"})


def implied_capabilities(
    messages: Sequence[Any], params: Mapping[str, Any], offered: Collection[Capability]
) -> list[Capability]:
    """The capabilities a chat request's body shows it needs, among those the catalog ``offered``.

    ``tools`` for tool (or legacy function) definitions, or a conversation that already holds tool
    calls or results; ``vision`` for an image content part; ``json`` for a ``response_format`` of
    type ``json_object`` or ``json_schema``. A capability no catalog model lists is left out: such
    a catalog says nothing about which models have it, and excluding them all would refuse
    requests every model may well serve.
    """
    needed: list[Capability] = []
    if params.get("tools") or params.get("functions") or any(_holds_tool_turn(m) for m in messages):
        needed.append(Capability.tools)
    if any(_holds_image(m) for m in messages):
        needed.append(Capability.vision)
    response_format = params.get("response_format")
    if isinstance(response_format, Mapping) and response_format.get("type") in JSON_FORMATS:
        needed.append(Capability.json)
    return [cap for cap in needed if cap in offered]


def _holds_tool_turn(message: Any) -> bool:
    if not isinstance(message, Mapping):
        return False
    return message.get("role") in ("tool", "function") or bool(
        message.get("tool_calls") or message.get("function_call")
    )


def _holds_image(message: Any) -> bool:
    content = message.get("content") if isinstance(message, Mapping) else None
    if isinstance(content, str) or not isinstance(content, Sequence):
        return False
    return any(isinstance(part, Mapping) and part.get("type") in IMAGE_PARTS for part in content)
