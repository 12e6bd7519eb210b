"""Data models: what a route is, what routing returns, and how routing is configured.

They extend RedisVL's router models (``redisvl.extensions.router``) with what model selection
needs: the model a route sends to, what that model costs, a confidence, the runner-up routes and a
cost-aware ranking. Instances of these classes are accepted wherever RedisVL's are.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import Enum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticSerializationError, to_jsonable_python
from redisvl.extensions.router.schema import Route as _RedisVLRoute
from redisvl.extensions.router.schema import RouteMatch as _RedisVLRouteMatch
from redisvl.extensions.router.schema import RoutingConfig as _RedisVLRoutingConfig

from redisvl_llmrouter.policy.catalog import (
    DEFAULT_OUTPUT_TOKENS,
    MAX_EXACT_INT,
    ModelCatalog,
    TokenCount,
    refuse_non_number,
)
from redisvl_llmrouter.policy.constraints import Constraints

__all__ = [
    "MAX_STATEMENT_CHARS",
    "text_problem",
    "BalanceWeights",
    "ConfidenceCalibration",
    "Decision",
    "DistanceAggregationMethod",
    "Exclusion",
    "Floor",
    "LearningConfig",
    "ModelChoice",
    "PromotionRule",
    "Route",
    "RouteAlternative",
    "RouteMatch",
    "RoutingConfig",
    "Strategy",
    "TextWindow",
]

#: The longest statement the router accepts: a sanity bound (about 250,000 tokens, beyond any
#: model's context window), not what is embedded: long texts are embedded as their head and tail
#: (see :class:`TextWindow`), so chat requests with long pasted context route on what they ask.
MAX_STATEMENT_CHARS = 1_000_000


def text_problem(text: str) -> str | None:
    """Why a text is not valid Unicode (an unpaired surrogate, e.g. from a bad decode), or None.

    Such text cannot be encoded as UTF-8, so the tokenizer and Redis would fail on it with
    errors that name neither the text nor the cause.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return (
            f"contains an unpaired surrogate {text[exc.start]!r} at position {exc.start}, which is not valid "
            "Unicode; decode the input with errors='replace' first"
        )
    return None


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


class Floor(BaseModel):
    """A minimum that holds whenever its route matches, whatever the tier routes say.

    ``min_route`` names a tier route: only models of that route or of routes listed after it
    (tier routes are ordered cheapest first, as in the config) may answer. ``min_quality``
    admits only models whose catalog quality prior is at least this value (a number: ``True`` is
    refused, not read as 1). A floor route has references (what high-stakes requests look like)
    but no model of its own.
    """

    min_route: str | None = None
    min_quality: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] | None = None

    model_config = ConfigDict(extra="forbid")

    @field_validator("min_quality", mode="before")
    @classmethod
    def _a_number(cls, v: Any, info: ValidationInfo) -> Any:
        return refuse_non_number(v, f"floor.{info.field_name}")

    @model_validator(mode="after")
    def _says_something(self) -> Floor:
        if self.min_route is None and self.min_quality is None:
            raise ValueError("A floor needs min_route, min_quality or both")
        return self


class Route(_RedisVLRoute):
    """A destination: a name, the reference phrases that describe it, and the models it sends to.

    ``distance_threshold`` is a cosine distance in (0, 2]: a query matches the route when its
    (aggregated) distance to the route's references is below it. ``models`` lists candidate
    models in order of preference; ``model`` is the first of them (give either). A route with
    a ``floor`` names no model: it raises the minimum for every request it matches.
    """

    model: str | None = None
    """The (first) model to call for queries on this route, e.g. ``"openai/gpt-4.1-nano"``."""
    models: list[str] = Field(default_factory=list)
    """Candidate models in order of preference; ``models[0] == model``."""
    cost: Annotated[float, Field(strict=True, ge=0, allow_inf_nan=False)] | None = None
    """What the model costs, in any unit used consistently across routes (USD per 1M tokens by
    convention). Only ratios between routes matter to the ranking. A number: strict, as RedisVL's
    ``distance_threshold`` is, so ``True``, ``np.True_`` or ``"1"`` is refused rather than stored as 1.0."""
    floor: Floor | None = None
    """Makes this a floor route (see :class:`Floor`)."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("cost", mode="before")
    @classmethod
    def _cost_is_a_number(cls, v: Any, info: ValidationInfo) -> Any:
        # Strict float validation refuses True and "1" but reads numpy's bool as 1.0.
        return refuse_non_number(v, info.field_name or "cost")

    @field_validator("model")
    @classmethod
    def _model_is_clean(cls, v: str | None) -> str | None:
        # Checked here too: ``models`` is made from ``model`` after its own validator ran.
        if v is not None and (not v.strip() or v != v.strip()):
            raise ValueError("Model name must be a non-empty string without surrounding white space")
        return v

    @field_validator("models")
    @classmethod
    def _models_are_clean(cls, v: list[str]) -> list[str]:
        if any(not isinstance(m, str) or not m.strip() or m != m.strip() for m in v):
            raise ValueError("Model names must be non-empty strings without surrounding white space")
        if len(set(v)) != len(v):
            raise ValueError(f"Duplicate candidate models: {v}")
        return v

    @model_validator(mode="after")
    def _model_is_first_candidate(self) -> Route:
        if self.floor is not None:
            if self.model is not None or self.models:
                raise ValueError("A floor route names no model; it raises the minimum for the tier that matches")
            return self
        if self.models and self.model is None:
            self.model = self.models[0]
        elif self.model is not None and not self.models:
            self.models = [self.model]
        elif self.models and self.model != self.models[0]:
            raise ValueError(f"model {self.model!r} must be the first of models {self.models}")
        return self

    @property
    def is_floor(self) -> bool:
        return self.floor is not None

    @field_validator("name")
    @classmethod
    def _name_is_clean(cls, v: str) -> str:
        # Redis tag values are trimmed and split on commas; a name that does not survive that
        # round trip would be stored as something else than what the user wrote.
        if v != v.strip():
            raise ValueError("Route name must not start or end with white space")
        if "\x00" in v:  # Redis tag values end at NUL: the name would be stored as another one
            raise ValueError("Route name must not contain the NUL character")
        problem = text_problem(v)
        if problem:
            raise ValueError(f"Route name {problem}")
        return v

    @field_validator("metadata")
    @classmethod
    def _metadata_is_json(cls, v: dict[str, Any]) -> dict[str, Any]:
        # The route is stored as JSON in Redis: refuse here what could not be saved later.
        # Checked as it is stored (to_dict: JSON mode), so a YAML date becomes its ISO text, as before.
        try:
            json.dumps(to_jsonable_python(v), allow_nan=False)
        except (TypeError, ValueError, PydanticSerializationError) as exc:
            raise ValueError(
                f"metadata must hold JSON values only (strings, finite numbers, booleans, None, lists, dicts): {exc}"
            ) from None
        return v

    @field_validator("references")
    @classmethod
    def _references_are_unique(cls, v: list[str]) -> list[str]:
        seen: set[str] = set()
        dupes = [r for r in v if r in seen or seen.add(r)]  # type: ignore[func-returns-value]
        if dupes:
            raise ValueError(f"Duplicate references: {dupes[:3]}")
        for reference in v:
            problem = text_problem(reference) if isinstance(reference, str) else None
            if problem:
                raise ValueError(f"Reference {reference[:40]!r} {problem}")
        return v


class RouteAlternative(BaseModel):
    """Another route that also passed its threshold, for fallbacks and explanations."""

    name: str
    model: str | None = None
    distance: float
    cost: float | None = None
    confidence: float = 0.0


class Strategy(str, Enum):
    """How the policy picks one model among the candidates (formulas in ``docs/policy.md``).

    ``semantic``: the matched route's models in their listed order (the tier router).
    ``learned``: the utility ``(1 - w) * q - w * cost / max_cost`` over every model, with ``q``
    predicted from similar past outcomes; the tier routes decide where the memory has no
    similar requests (cold start). ``cost``, ``latency``, ``quality``, ``balanced``,
    ``round_robin`` and ``least_loaded`` choose among the matched route's candidates.
    """

    semantic = "semantic"
    learned = "learned"
    cost = "cost"
    latency = "latency"
    quality = "quality"
    balanced = "balanced"
    round_robin = "round_robin"
    least_loaded = "least_loaded"


class BalanceWeights(BaseModel):
    """Weights of the ``balanced`` score ``wq * quality - wc * cost / max_cost - wl * latency / max_latency``.

    Numbers: ``True`` or ``"0.9"`` is refused, not read as 1.0 or 0.9.
    """

    quality: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0.5
    cost: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0.3
    latency: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0.2

    model_config = ConfigDict(extra="forbid")

    @field_validator("quality", "cost", "latency", mode="before")
    @classmethod
    def _a_number(cls, v: Any, info: ValidationInfo) -> Any:
        return refuse_non_number(v, f"balance.{info.field_name}")

    @model_validator(mode="after")
    def _not_all_zero(self) -> BalanceWeights:
        if self.quality + self.cost + self.latency <= 0:
            raise ValueError("At least one balance weight must be positive")
        return self


class TextWindow(BaseModel):
    """What the embedder sees of a long text: its head and its tail.

    MiniLM reads at most 256 word pieces (about 1,000 characters of English). Texts up to
    ``max_chars`` are embedded whole; longer ones as their first ``head_chars`` characters and
    their last ``max_chars - head_chars``, joined by `` … ``: the head carries the task framing
    (a system prompt, the start of a few-shot block), the tail the actual question, which in
    chat traffic and few-shot prompts comes last. Chosen by cross-validation on the training
    outcome sets against whole-text, tail-only and last-paragraph embeddings (see
    ``benchmarks/RESULTS.md``); applied alike when routing, learning and evaluating.
    """

    max_chars: Annotated[int, Field(ge=16, le=MAX_EXACT_INT)] = 1000
    head_chars: Annotated[int, Field(ge=0, le=MAX_EXACT_INT)] = 250

    model_config = ConfigDict(extra="forbid")

    @field_validator("max_chars", "head_chars", mode="before")
    @classmethod
    def _a_number(cls, v: Any, info: ValidationInfo) -> Any:
        return refuse_non_number(v, f"text.{info.field_name}")

    @model_validator(mode="after")
    def _head_fits(self) -> TextWindow:
        if self.head_chars >= self.max_chars:
            raise ValueError("head_chars must be smaller than max_chars")
        return self


@dataclass(slots=True)
class ModelChoice:
    """One eligible model as the policy saw it (a plain dataclass: the policy builds many per request)."""

    model: str
    route: str | None = None
    """The route that proposes this model (None: a catalog model on no route)."""
    quality: float | None = None
    """Expected quality: learned from similar outcomes where ``support > 0``, else the prior."""
    support: float = 0.0
    """Weight of the similar past outcomes behind ``quality`` (0: prior only)."""
    cost: float | None = None
    """Estimated USD for this request (catalog prices, else what similar requests cost)."""
    latency_ms: float | None = None
    load: float | None = None
    """In-flight requests (divided by ``max_concurrency`` when the catalog gives it)."""
    score: float | None = None
    """The strategy's score; higher is better."""


@dataclass(frozen=True, slots=True)
class Exclusion:
    """A model the policy could not use, and why."""

    model: str
    reason: str


class Decision(BaseModel):
    """Why this model: the strategy, the constraints, what was excluded and what comes next."""

    model: str | None = None
    strategy: Strategy
    route: str | None = None
    """The route whose candidates the model came from (None for a catalog-only model)."""
    constraints: Constraints = Field(default_factory=Constraints)
    candidates: list[ModelChoice] = Field(default_factory=list)
    """Every eligible model, in the strategy's order: the chosen one first."""
    fallbacks: list[str] = Field(default_factory=list)
    """What to call, in order, if the chosen model fails."""
    excluded: list[Exclusion] = Field(default_factory=list)
    floors: list[str] = Field(default_factory=list)
    """Floor routes that matched the request."""
    relaxed: list[str] = Field(default_factory=list)
    """Constraints dropped under ``best_effort``."""
    estimated_cost: float | None = None
    """Estimated USD of the chosen model for this request (None without prices)."""
    prompt_tokens: int = 0
    learned: bool = False
    """True when the outcome memory had similar requests and the learned prediction decided."""
    support: float = 0.0
    """Weight of the similar outcomes found for this request."""


class RouteMatch(_RedisVLRouteMatch):
    """The outcome of routing one query.

    Falsy when nothing matched and there is no default route, so ``if match:`` reads naturally.
    A match produced by the default route is truthy, has ``fallback=True``, no distance and a
    confidence of 0 (uncalibrated) or the default route's probability (calibrated). ``name``,
    ``distance``, ``confidence`` and ``alternatives`` describe the route (tier) the request matched;
    ``model`` is the model the policy chose, explained by ``decision``.
    """

    model: str | None = None
    cost: float | None = None
    """The matched route's cost (the unit-free ranking cost); USD estimates are in ``decision``."""
    confidence: float = 0.0
    """With a calibrated config (``routing_config.confidence``, as shipped): the probability that this
    route is the right one for the query. Uncalibrated: ``1 - distance / threshold``. Alternatives
    never show more confidence than the match (see ``docs/confidence.md``)."""
    alternatives: list[RouteAlternative] = Field(default_factory=list)
    """The other routes that passed their thresholds, best first."""
    fallback: bool = False
    """True when no tier route passed its threshold and the configured default route answers, or the tier a
    matched floor route requires (``floor.min_route``)."""
    score: float | None = None
    """The ranking score (lower is better): the distance, or the cost-adjusted score."""
    request_id: str | None = None
    """Identifies this request for :meth:`~redisvl_llmrouter.SemanticRouter.feedback`: set when it was
    routed with ``record=True``, None otherwise (nothing was recorded to give feedback on)."""
    decision: Decision | None = None

    def __bool__(self) -> bool:
        return self.name is not None or (self.decision is not None and self.decision.model is not None)


class ConfidenceCalibration(BaseModel):
    """The fitted parameter that makes ``RouteMatch.confidence`` a probability (see ``docs/confidence.md``).

    ``sharpness`` β turns aggregated distances into the probability that each route is right:
    ``exp(-β·d_r) / Σ exp(-β·d_j)`` over the routes that passed their thresholds (over every
    route, for the default route's share, when none passed). It is fitted by maximum likelihood
    on labelled queries (:func:`redisvl_llmrouter.confidence.fit_sharpness`); ``fitted_on`` says
    which, so a config records where its probabilities come from.
    """

    sharpness: Annotated[float, Field(gt=0, allow_inf_nan=False)]
    fitted_on: str = ""

    model_config = ConfigDict(extra="forbid")

    @field_validator("sharpness", mode="before")
    @classmethod
    def _a_number(cls, v: Any, info: ValidationInfo) -> Any:
        return refuse_non_number(v, f"confidence.{info.field_name}")


class RoutingConfig(_RedisVLRoutingConfig):
    """How the router ranks routes and picks a model.

    ``cost_optimization`` turns on the cost penalty of the route ranking: among the routes that
    pass their thresholds, each is scored ``(1 - cost_weight) * distance + cost_weight * cost /
    max_cost`` where ``max_cost`` is the highest cost among those routes, so the penalty has no
    unit. ``cost_weight`` is also the knob of the ``learned`` strategy (see :class:`Strategy`).
    Numeric settings are numbers: ``True`` or ``"0.5"`` is refused, not read as 1 or 0.5.
    """

    aggregation_method: DistanceAggregationMethod = DistanceAggregationMethod.avg  # type: ignore[assignment]
    aggregation_k: Annotated[int, Field(ge=1, le=MAX_EXACT_INT)] = 3
    """How many nearest references ``topk`` averages."""
    max_k: Annotated[int, Field(strict=True, gt=0, le=MAX_EXACT_INT)] = 1
    """How many matches ``route_many`` returns (bounded: a stored config must read back as written)."""
    cost_optimization: bool = False
    cost_weight: Annotated[float, Field(ge=0.0, le=1.0)] = 0.3
    default_route: str | None = None
    """Route to return when no route passes its threshold (one of the router's tier routes, not a floor)."""
    strategy: Strategy = Strategy.learned
    """How a model is picked; ``learned`` behaves as ``semantic`` until the memory has outcomes."""
    balance: BalanceWeights = Field(default_factory=BalanceWeights)
    expected_output_tokens: TokenCount = DEFAULT_OUTPUT_TOKENS
    """Answer length assumed for cost estimates when a request does not give ``max_tokens``."""
    text: TextWindow = Field(default_factory=TextWindow)
    """What the embedder sees of long texts."""
    confidence: ConfidenceCalibration | None = None
    """How confidences become probabilities. Without it (configs written before calibration, or
    routers never calibrated) confidence is the uncalibrated ``1 - distance / threshold``: a
    relative signal, not a probability."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("aggregation_k", "cost_weight", "expected_output_tokens", mode="before")
    @classmethod
    def _a_number(cls, v: Any, info: ValidationInfo) -> Any:
        # Lax validation reads True as 1 and "0.5" as 0.5; a config stored as JSON gives numbers
        # (1 for 1.0, which float fields take), never text.
        return refuse_non_number(v, info.field_name or "value")

    @field_validator("aggregation_method", mode="before")
    @classmethod
    def _accept_redisvl_enum(cls, v: Any) -> Any:
        return getattr(v, "value", v)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class PromotionRule(BaseModel):
    """When feedback shows a tier failing for a region of queries, promote that region.

    On feedback with quality below ``fail_below`` for a model of tier route T, the router looks
    at the outcome memory within cosine distance ``radius`` of the request: if at least
    ``min_failures`` of T's models' outcomes there failed, and they make at least ``min_share``
    of T's outcomes there, the request's text becomes a reference of the next tier route (marked
    in the route's metadata under ``promoted``), so similar requests match the next tier.
    :meth:`~redisvl_llmrouter.SemanticRouter.revert_promotions` removes every promoted reference.
    """

    fail_below: Annotated[float, Field(gt=0, le=1)] = 0.5
    min_failures: Annotated[int, Field(ge=1, le=MAX_EXACT_INT)] = 3
    min_share: Annotated[float, Field(gt=0, le=1)] = 0.5
    radius: Annotated[float, Field(gt=0, le=2)] = 0.35

    model_config = ConfigDict(extra="forbid")

    @field_validator("fail_below", "min_failures", "min_share", "radius", mode="before")
    @classmethod
    def _a_number(cls, v: Any, info: ValidationInfo) -> Any:
        return refuse_non_number(v, info.field_name or "value")  # True is no count, "3" no number


class LearningConfig(BaseModel):
    """How the outcome memory predicts each model's quality (see ``docs/learning.md``).

    A request's ``neighbours`` nearest outcome rows within cosine distance ``radius`` are
    weighted by rank (the nearest 1, falling linearly); a model's predicted quality is the
    weighted mean of its observed qualities shrunk toward its mean over the whole memory with
    the weight of ``shrinkage`` pseudo-observations. Where the rows found weigh less than
    ``min_support``, the tier routes decide (cold start).
    """

    neighbours: Annotated[int, Field(ge=1, le=1000)] = 64
    radius: Annotated[float, Field(gt=0, le=2)] = 0.75
    shrinkage: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 16.0
    min_support: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 1.0
    max_rows: Annotated[int, Field(ge=1, le=MAX_EXACT_INT)] = 100_000
    """Size cap: past it, the oldest rows (by first write) are evicted."""
    feedback_ttl_s: Annotated[int, Field(ge=1, le=MAX_EXACT_INT)] = 86_400
    """How long a routed request can receive feedback by its ``request_id``."""
    store_text: bool = True
    """Keep the text of learned and routed requests (needed for promotion and export)."""
    promote: PromotionRule | None = None
    """Tier promotion from feedback; off (None) by default."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("neighbours", "radius", "shrinkage", "min_support", "max_rows", "feedback_ttl_s", mode="before")
    @classmethod
    def _a_number(cls, v: Any, info: ValidationInfo) -> Any:
        # max_rows=True was read as 1, and the next learn() evicted all but one row.
        return refuse_non_number(v, info.field_name or "value")


class RouterDefinition(BaseModel):
    """Everything that defines a router: the shape of ``to_dict()``, YAML files and ``NAME:route_config``.

    The same shape as RedisVL's router dict, plus model and cost on routes, the vectorizer's
    dimensions and dtype, the extended routing config, the model catalog and the learning settings.
    """

    name: str
    routes: list[Route] = Field(default_factory=list)
    vectorizer: dict[str, Any] | None = None
    routing_config: RoutingConfig = Field(default_factory=RoutingConfig)
    catalog: ModelCatalog = Field(default_factory=ModelCatalog)
    learning: LearningConfig = Field(default_factory=LearningConfig)

    model_config = ConfigDict(extra="forbid")
