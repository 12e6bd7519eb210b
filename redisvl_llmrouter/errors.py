"""Typed errors: every failure a user can cause or meet has its own class and a readable message.

They derive from ``ValueError`` or ``ConnectionError`` where the standard meaning fits, so code
written against RedisVL's router (which raises bare ``ValueError``) keeps working.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ConfigError",
    "EmbeddedRedisError",
    "InvalidQueryError",
    "InvalidFeedbackError",
    "LLMRouterError",
    "NoEligibleModelError",
    "RedisModuleMissingError",
    "RedisUnavailableError",
    "RouteExistsError",
    "RouteNotFoundError",
    "RouterExistsError",
    "UnknownModelError",
    "UnknownRequestError",
    "VectorDimensionError",
    "VectorizerMismatchError",
]


class LLMRouterError(Exception):
    """Base class of every error this package raises on purpose."""


class InvalidQueryError(LLMRouterError, ValueError):
    """The statement or vector given to the router cannot be routed (empty, too long, wrong type)."""


class VectorDimensionError(InvalidQueryError):
    """A vector's length differs from the router's embedding dimensions."""


class RouteNotFoundError(LLMRouterError, KeyError, ValueError):
    """A route name that the router does not have."""

    def __str__(self) -> str:  # KeyError would otherwise quote the whole message
        return str(self.args[0]) if self.args else ""


class RouteExistsError(LLMRouterError, ValueError):
    """Adding a route under a name the router already has."""


class ConfigError(LLMRouterError, ValueError):
    """A router definition or config file is malformed or inconsistent."""


class RouterExistsError(ConfigError):
    """A different router already lives under this name in Redis; pass ``overwrite=True`` to replace it."""


class VectorizerMismatchError(ConfigError):
    """Stored vectors were made by another embedding model, or have other dimensions."""


class RedisUnavailableError(LLMRouterError, ConnectionError):
    """No Redis could be reached, or it went away mid-call."""


class RedisModuleMissingError(LLMRouterError, RuntimeError):
    """The Redis reached lacks the search (RediSearch) or JSON module."""


class EmbeddedRedisError(RedisUnavailableError):
    """The embedded Redis could not be started."""


class UnknownModelError(LLMRouterError, KeyError, ValueError):
    """A model the router's catalog and routes do not know."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class UnknownRequestError(LLMRouterError, KeyError):
    """Feedback for a request id the router never issued, or whose feedback window has passed."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class InvalidFeedbackError(LLMRouterError, ValueError):
    """An outcome that cannot be recorded: a quality outside [0, 1], a negative cost, no text or vector."""


class NoEligibleModelError(LLMRouterError, ValueError):
    """No model satisfies the request's constraints; ``excluded`` says why for each model."""

    def __init__(self, message: str, excluded: list[Any] | None = None) -> None:
        super().__init__(message)
        self.excluded = list(excluded or [])
