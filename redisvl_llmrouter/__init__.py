"""redisvl-llmrouter: a Redis-native LLM router that sends every query to the cheapest model able to answer it.

Quick start::

    from redisvl_llmrouter import SemanticRouter, Route

    router = SemanticRouter(name="my-router", routes=[
        Route(name="simple", model="openai/gpt-4.1-nano", cost=0.10, references=["hello"], distance_threshold=0.5),
    ])
    router("hi there").model
"""

from redisvl_llmrouter import pretrained
from redisvl_llmrouter.aio import AsyncSemanticRouter
from redisvl_llmrouter.errors import (
    ConfigError,
    ConflictError,
    DataDirLockedError,
    EmbeddedRedisError,
    InvalidFeedbackError,
    InvalidQueryError,
    LLMRouterError,
    NoEligibleModelError,
    RedisCommandError,
    RedisCredentialsError,
    RedisModuleMissingError,
    RedisPermissionError,
    RedisPoolTimeoutError,
    RedisUnavailableError,
    RouteExistsError,
    RouteNotFoundError,
    RouterDeletedError,
    RouterEmptyError,
    RouterExistsError,
    RouterLoopError,
    RouterNotFoundError,
    RouterRecreatedError,
    RouterStateLostError,
    UnknownModelError,
    UnknownRequestError,
    VectorDimensionError,
    VectorizerMismatchError,
)
from redisvl_llmrouter.learning.records import OutcomeRecord
from redisvl_llmrouter.policy.catalog import Capability, ModelCatalog, ModelSpec
from redisvl_llmrouter.policy.constraints import Constraints
from redisvl_llmrouter.router import SemanticRouter
from redisvl_llmrouter.schema import (
    BalanceWeights,
    Decision,
    DistanceAggregationMethod,
    Floor,
    LearningConfig,
    PromotionRule,
    Route,
    RouteAlternative,
    RouteMatch,
    RoutingConfig,
    Strategy,
    TextWindow,
)
from redisvl_llmrouter.vectorizers import MiniLMVectorizer

__version__ = "0.1.0"

__all__ = [
    "AsyncSemanticRouter",
    "BalanceWeights",
    "Capability",
    "ConfigError",
    "ConflictError",
    "Constraints",
    "DataDirLockedError",
    "Decision",
    "DistanceAggregationMethod",
    "EmbeddedRedisError",
    "Floor",
    "InvalidFeedbackError",
    "InvalidQueryError",
    "LearningConfig",
    "LLMRouterError",
    "MiniLMVectorizer",
    "ModelCatalog",
    "ModelSpec",
    "NoEligibleModelError",
    "OutcomeRecord",
    "pretrained",
    "PromotionRule",
    "RedisCommandError",
    "RedisCredentialsError",
    "RedisModuleMissingError",
    "RedisPermissionError",
    "RedisPoolTimeoutError",
    "RedisUnavailableError",
    "Route",
    "RouteAlternative",
    "RouteExistsError",
    "RouteMatch",
    "RouteNotFoundError",
    "RouterDeletedError",
    "RouterEmptyError",
    "RouterRecreatedError",
    "RouterExistsError",
    "RouterLoopError",
    "RouterNotFoundError",
    "RouterStateLostError",
    "RoutingConfig",
    "SemanticRouter",
    "Strategy",
    "TextWindow",
    "UnknownModelError",
    "UnknownRequestError",
    "VectorDimensionError",
    "VectorizerMismatchError",
]
