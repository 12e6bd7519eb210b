"""The gateway: call the chosen model with fallbacks, retries, circuit breakers, priority queues and a
semantic cache, behind an OpenAI-compatible HTTP server (``llmrouter serve``).

    from redisvl_llmrouter.gateway import Gateway

    gateway = await Gateway.create({"upstream_url": "http://127.0.0.1:8001/v1"})
    answer = await gateway.complete([{"role": "user", "content": "hello!"}])
    answer.body["choices"][0]["message"]["content"], answer.outcome.model, answer.outcome.cost

Needs the ``gateway`` extra (FastAPI, uvicorn, openai, tenacity, prometheus-client).
"""

from redisvl_llmrouter.gateway.backends import Backend, Call, LiteLLMBackend, OpenAIBackend
from redisvl_llmrouter.gateway.config import (
    BreakerConfig,
    CacheConfig,
    GatewayConfig,
    LogConfig,
    QueueConfig,
    RetryConfig,
    Upstream,
)
from redisvl_llmrouter.gateway.outcome import Completion, Outcome, StreamedCompletion
from redisvl_llmrouter.gateway.service import Gateway
from redisvl_llmrouter.gateway.sync import SyncGateway

__all__ = [
    "Backend",
    "BreakerConfig",
    "CacheConfig",
    "Call",
    "Completion",
    "Gateway",
    "GatewayConfig",
    "LiteLLMBackend",
    "LogConfig",
    "OpenAIBackend",
    "Outcome",
    "QueueConfig",
    "RetryConfig",
    "StreamedCompletion",
    "SyncGateway",
    "Upstream",
]
