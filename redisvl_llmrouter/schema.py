"""Data models: what a route is, what routing returns, and how routing is configured.

They extend RedisVL's router models (``redisvl.extensions.router``) with what model selection
needs: the model a route sends to, what that model costs, a confidence, the runner-up routes and a
cost-aware ranking. Instances of these classes are accepted wherever RedisVL's are.
"""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from redisvl.extensions.router.schema import Route as _RedisVLRoute
from redisvl.extensions.router.schema import RouteMatch as _RedisVLRouteMatch
from redisvl.extensions.router.schema import RoutingConfig as _RedisVLRoutingConfig

__all__ = [
    "MAX_STATEMENT_CHARS",
    "DistanceAggregationMethod",
    "Route",
    "RouteAlternative",
    "RouteMatch",
    "RoutingConfig",
]

#: The longest statement the router embeds. MiniLM reads 256 word pieces (about 1,000 characters
#: of English); far longer input is almost always a mistake (a whole document pasted into the
#: router), so it is refused rather than silently truncated twice over.
MAX_STATEMENT_CHARS = 16_384


class DistanceAggregationMethod(str, Enum):
    """How a route's distance is made from the distances to its references within the search radius.

    ``avg``, ``min`` and ``sum`` are RedisVL's methods (RedisVL's enum members are accepted too).
    ``topk`` averages the ``aggregation_k`` nearest references: like ``min`` it follows the
    closest examples, like ``avg`` it is not thrown by one stray reference. It is what the
    shipped configs use, because it classified held-out queries best (see the README).
    """

    avg = "avg"
    min = "min"
    sum = "sum"
    topk = "topk"


class Route(_RedisVLRoute):
    """A destination: a name, the reference phrases that describe it, and the model it sends to.

    ``distance_threshold`` is a cosine distance in (0, 2]: a query matches the route when its
    (aggregated) distance to the route's references is below it.
    """

    model: str | None = None
    """The model to call for queries on this route, e.g. ``"openai/gpt-4.1-nano"``."""
    cost: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    """What the model costs, in any unit used consistently across routes (USD per 1M tokens by
    convention). Only ratios between routes matter to the ranking."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("name")
    @classmethod
    def _name_is_clean(cls, v: str) -> str:
        # Redis tag values are trimmed and split on commas; a name that does not survive that
        # round trip would be stored as something else than what the user wrote.
        if v != v.strip():
            raise ValueError("Route name must not start or end with white space")
        return v

    @field_validator("references")
    @classmethod
    def _references_are_unique(cls, v: list[str]) -> list[str]:
        seen: set[str] = set()
        dupes = [r for r in v if r in seen or seen.add(r)]  # type: ignore[func-returns-value]
        if dupes:
            raise ValueError(f"Duplicate references: {dupes[:3]}")
        return v


class RouteAlternative(BaseModel):
    """Another route that also passed its threshold, for fallbacks and explanations."""

    name: str
    model: str | None = None
    distance: float
    cost: float | None = None
    confidence: float = 0.0


class RouteMatch(_RedisVLRouteMatch):
    """The outcome of routing one query.

    Falsy when nothing matched and there is no default route, so ``if match:`` reads naturally.
    A match produced by the default route is truthy, has ``fallback=True``, no distance and
    confidence 0.
    """

    model: str | None = None
    cost: float | None = None
    confidence: float = 0.0
    """1 at distance 0, falling linearly to 0 at the route's threshold: ``1 - distance / threshold``."""
    alternatives: list[RouteAlternative] = Field(default_factory=list)
    """The other routes that passed their thresholds, best first."""
    fallback: bool = False
    """True when no route matched and this is the configured default route."""
    score: float | None = None
    """The ranking score (lower is better): the distance, or the cost-adjusted score."""

    def __bool__(self) -> bool:
        return self.name is not None


class RoutingConfig(_RedisVLRoutingConfig):
    """How the router ranks routes.

    ``cost_optimization`` turns on the cost penalty: among the routes that pass their
    thresholds, each is scored ``(1 - cost_weight) * distance + cost_weight * cost / max_cost``
    where ``max_cost`` is the highest cost among those routes, so the penalty has no unit.
    """

    aggregation_method: DistanceAggregationMethod = DistanceAggregationMethod.avg  # type: ignore[assignment]
    aggregation_k: Annotated[int, Field(ge=1)] = 3
    """How many nearest references ``topk`` averages."""
    cost_optimization: bool = False
    cost_weight: Annotated[float, Field(ge=0.0, le=1.0)] = 0.3
    default_route: str | None = None
    """Route to return when no route passes its threshold (must be one of the router's routes)."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("aggregation_method", mode="before")
    @classmethod
    def _accept_redisvl_enum(cls, v: Any) -> Any:
        return getattr(v, "value", v)

    def to_dict(self) -> dict[str, Any]:
        return {
            "max_k": self.max_k,
            "aggregation_method": self.aggregation_method.value,
            "aggregation_k": self.aggregation_k,
            "cost_optimization": self.cost_optimization,
            "cost_weight": self.cost_weight,
            "default_route": self.default_route,
        }


class RouterDefinition(BaseModel):
    """Everything that defines a router: the shape of ``to_dict()``, YAML files and ``NAME:route_config``.

    The same shape as RedisVL's router dict, plus model and cost on routes, the vectorizer's
    dimensions and dtype, and the extended routing config.
    """

    name: str
    routes: list[Route] = Field(default_factory=list)
    vectorizer: dict[str, Any] | None = None
    routing_config: RoutingConfig = Field(default_factory=RoutingConfig)

    model_config = ConfigDict(extra="forbid")
