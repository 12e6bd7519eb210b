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
    EmbeddedRedisError,
    InvalidQueryError,
    LLMRouterError,
    RedisModuleMissingError,
    RedisUnavailableError,
    RouteExistsError,
    RouteNotFoundError,
    RouterExistsError,
    VectorDimensionError,
    VectorizerMismatchError,
)
from redisvl_llmrouter.router import SemanticRouter
from redisvl_llmrouter.schema import (
    DistanceAggregationMethod,
    Route,
    RouteAlternative,
    RouteMatch,
    RoutingConfig,
)
from redisvl_llmrouter.vectorizers import MiniLMVectorizer

__version__ = "0.1.0"

__all__ = [
    "AsyncSemanticRouter",
    "ConfigError",
    "DistanceAggregationMethod",
    "EmbeddedRedisError",
    "InvalidQueryError",
    "LLMRouterError",
    "MiniLMVectorizer",
    "pretrained",
    "RedisModuleMissingError",
    "RedisUnavailableError",
    "Route",
    "RouteAlternative",
    "RouteExistsError",
    "RouteMatch",
    "RouteNotFoundError",
    "RouterExistsError",
    "RoutingConfig",
    "SemanticRouter",
    "VectorDimensionError",
    "VectorizerMismatchError",
]
