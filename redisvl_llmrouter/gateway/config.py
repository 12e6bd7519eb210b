"""Gateway configuration: where each model is called, and the limits that keep the calls healthy.

Loaded from YAML or JSON (``llmrouter serve --config gateway.yaml``) or built in code::

    router: default                  # a shipped config, a config file, or a router already in Redis
    upstreams:
      - name: local
        api_base: http://127.0.0.1:8001/v1
        models: ["*"]                # glob patterns over model names
        strip_provider: false        # pass "openai/gpt-4.1-nano" through as it is
    retry: {attempts: 2, initial_s: 0.1, max_s: 2.0}
    breaker: {failures: 5, cooldown_s: 30, successes: 2}
    queue: {concurrency: 128, depth: 4096, wait_timeout_s: 30}
    cache: {enabled: true, distance_threshold: 0.1, ttl_s: 3600, max_temperature: 0.0}
    api_keys_env: LLMROUTER_API_KEYS  # comma-separated bearer keys clients must present

Secrets (upstream keys, the server's own API keys) are ``SecretStr``: they never appear in reprs,
logs or errors. Prefer naming an environment variable (``api_key_env``) over writing a key in a file.
"""

from __future__ import annotations

import fnmatch
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from redisvl_llmrouter.errors import ConfigError
from redisvl_llmrouter.policy.catalog import MAX_EXACT_INT, read_data_file

__all__ = [
    "PROVIDERS",
    "BreakerConfig",
    "CacheConfig",
    "GatewayConfig",
    "LogConfig",
    "QueueConfig",
    "RetryConfig",
    "Upstream",
]

#: OpenAI-compatible endpoints of well-known providers, by the provider prefix of a model name
#: (``openai/gpt-4.1-nano``), with the environment variable holding the key. Used when no
#: upstream in the config matches a model; reached only when a request is routed there.
PROVIDERS: dict[str, tuple[str, str | None]] = {
    "openai": ("https://api.openai.com/v1", "OPENAI_API_KEY"),
    "anthropic": ("https://api.anthropic.com/v1/", "ANTHROPIC_API_KEY"),
    "groq": ("https://api.groq.com/openai/v1", "GROQ_API_KEY"),
    "openrouter": ("https://openrouter.ai/api/v1", "OPENROUTER_API_KEY"),
    "mistral": ("https://api.mistral.ai/v1", "MISTRAL_API_KEY"),
    "deepseek": ("https://api.deepseek.com/v1", "DEEPSEEK_API_KEY"),
    "together_ai": ("https://api.together.xyz/v1", "TOGETHER_API_KEY"),
    "ollama": ("http://localhost:11434/v1", None),
}

PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]


def _env_name(value: str | None) -> str | None:
    """The name of an environment variable (``OPENAI_API_KEY``), refused without being repeated when it is
    not one: a key given where its variable's name belongs (``--upstream-key-env "$OPENAI_API_KEY"``)
    would otherwise be quoted back in every message about the variable."""
    if value is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value):
        raise ValueError(
            "expected the name of an environment variable (letters, digits and _), not its value; "
            "what was given is not shown, as it may be a key"
        )
    return value


def _http_url(value: str | None) -> str | None:
    """An upstream's base URL: ``http(s)://host...``, refused at start rather than failing every request."""
    from urllib.parse import urlsplit

    if value is None:
        return None
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("expected an http:// or https:// base URL such as http://127.0.0.1:8001/v1")
    if "@" in parts.netloc:  # the HTTP client cannot send them beside the key's Authorization header
        raise ValueError("credentials in the URL are not sent: give the key as api_key or api_key_env")
    try:
        port = parts.port
    except ValueError:  # the message would quote what stood for the port: maybe part of a password
        raise ValueError("its port is not a number from 1 to 65535") from None
    if not parts.hostname:
        raise ValueError("it names no host: expected a base URL such as http://127.0.0.1:8001/v1")
    if port == 0:
        raise ValueError("its port is not a number from 1 to 65535")
    if parts.query or parts.fragment or value.strip().endswith(("?", "#")):
        # The client appends each endpoint's path to the base URL: a query or fragment there is lost or
        # swallows the path (every call a 404), and a key in it would be printed where the URL is.
        raise ValueError("a base URL takes no query (?...) or fragment (#...); give a key as api_key or api_key_env")
    return value.strip()


class Upstream(BaseModel):
    """Where calls for the models matching ``models`` go."""

    name: str = "upstream"
    models: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=lambda: ["*"], min_length=1)
    """Glob patterns over model names (``"openai/*"``, ``"*"``); at least one (an upstream serving none
    would leave its models to the others without a word)."""
    backend: Literal["openai", "litellm"] = "openai"
    """``openai``: the official client against an OpenAI-compatible ``api_base``. ``litellm``:
    ``litellm.acompletion`` with the model name as in the route (any provider LiteLLM supports)."""
    api_base: str | None = None
    api_key: SecretStr | None = None
    api_key_env: str | None = None
    """Environment variable holding the key: read when the model's backend is built (at start for the
    router's models, on first use for a passed-through one), on every call with ``backend: litellm``."""
    strip_provider: bool = True
    """Send ``gpt-4.1-nano`` for ``openai/gpt-4.1-nano`` (a provider's own API); ``False`` passes
    the name through (a LiteLLM proxy, OpenRouter, or the local test upstream)."""
    timeout_s: PositiveFloat = 60.0
    """Per attempt; a request may set a lower one."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)  # an input may be a key

    _api_key_env_is_a_name = field_validator("api_key_env")(_env_name)

    @field_validator("api_base")
    @classmethod
    def _api_base_is_http(cls, value: str | None) -> str | None:
        return _http_url(value)

    @field_validator("api_key")
    @classmethod
    def _api_key_not_blank(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().strip():
            raise ValueError("an empty API key: leave api_key out for a server that needs none")
        return value

    def serves(self, model: str) -> bool:
        return any(fnmatch.fnmatchcase(model, pattern) for pattern in self.models)

    def key(self) -> str | None:
        # Stripped: a key read from a file or a Kubernetes secret often ends in a newline, which no
        # provider's key contains and an HTTP header cannot carry.
        if self.api_key is not None:
            return self.api_key.get_secret_value().strip()
        if self.api_key_env:
            return (os.environ.get(self.api_key_env) or "").strip() or None
        return None

    def upstream_model(self, model: str) -> str:
        """The model name this upstream expects."""
        return model.split("/", 1)[1] if self.strip_provider and "/" in model else model


class RetryConfig(BaseModel):
    """Retries of one model on retryable errors (timeouts, connection errors, 429, 5xx).

    Exponential backoff from ``initial_s`` up to ``max_s``, plus up to ``jitter_s`` of random jitter.
    """

    attempts: Annotated[int, Field(ge=1, le=10)] = 2
    # Bounded: an endless wait would hold the request, its queue slot and the server's shutdown.
    initial_s: Annotated[float, Field(ge=0, le=300, allow_inf_nan=False)] = 0.1
    max_s: Annotated[float, Field(ge=0, le=300, allow_inf_nan=False)] = 2.0
    jitter_s: Annotated[float, Field(ge=0, le=300, allow_inf_nan=False)] = 0.1

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)  # an input may be a key

    @model_validator(mode="after")
    def _max_not_below_initial(self) -> RetryConfig:
        if self.max_s < self.initial_s:
            raise ValueError(f"max_s ({self.max_s:g}) is below initial_s ({self.initial_s:g})")
        return self


class BreakerConfig(BaseModel):
    """Per-model circuit breaker: open after ``failures`` consecutive failures, half-open after
    ``cooldown_s``, closed again after ``successes`` consecutive successes."""

    failures: Annotated[int, Field(ge=1, le=MAX_EXACT_INT)] = 5
    cooldown_s: Annotated[float, Field(gt=0, le=86_400)] = 30.0  # at most a day: Redis keeps the state a week
    successes: Annotated[int, Field(ge=1, le=MAX_EXACT_INT)] = 2

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)  # an input may be a key


class QueueConfig(BaseModel):
    """Per-model admission in each gateway process: ``concurrency`` calls at once (a catalog model's
    ``max_concurrency`` overrides it), at most ``depth`` waiting; the lowest priority is shed first."""

    concurrency: Annotated[int, Field(ge=1, le=MAX_EXACT_INT)] = 128
    depth: Annotated[int, Field(ge=0, le=MAX_EXACT_INT)] = 4096
    wait_timeout_s: PositiveFloat = 30.0

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)  # an input may be a key


class CacheConfig(BaseModel):
    """RedisVL ``SemanticCache`` in front of the models, for deterministic requests only.

    Off by default: it answers a request with the answer to a *similar* one, and prompts that
    differ in one number or one "not" are similar (see ``docs/gateway.md``)."""

    enabled: bool = False
    distance_threshold: Annotated[float, Field(gt=0, le=2)] = 0.1
    ttl_s: Annotated[int, Field(ge=1, le=31_536_000)] = 3600  # at most a year
    max_temperature: Annotated[float, Field(ge=0, le=2, allow_inf_nan=False)] = 0.0
    """A request is cacheable only with ``temperature`` set at or below this (and n = 1, no tools)."""
    forget_below: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] = 0.5
    """Feedback below this on a cached answer (on the request that stored it or one it served)
    removes the entry; 0 never does."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)  # an input may be a key


class LogConfig(BaseModel):
    """The decisions log: a capped Redis stream per router (see ``docs/observability.md``)."""

    enabled: bool = True
    max_entries: Annotated[int, Field(ge=100, le=MAX_EXACT_INT)] = 100_000
    store_text: bool = False
    """Keep the request's text in the log; otherwise only its SHA-256 is stored."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)  # an input may be a key


_HEADER_SAFE_RULE = (
    "a key is sent in an HTTP header, so it must be printable ASCII without spaces (no key is shown here)"
)


def _header_safe(key: str) -> bool:
    """Whether a client can send ``key`` as ``Authorization: Bearer <key>`` (headers are ASCII, space-separated)."""
    return key.isascii() and key.isprintable() and " " not in key


class GatewayConfig(BaseModel):
    """Everything ``llmrouter serve`` and :class:`~redisvl_llmrouter.gateway.Gateway` need."""

    router: str = "default"
    """A router already in Redis (by name), else a shipped config or a config file to load."""
    router_name: str | None = None
    """The router's name in Redis when ``router`` is a config (default: the config's name)."""
    upstreams: list[Upstream] = Field(default_factory=list)
    upstream_url: str | None = None
    """Send every model to this OpenAI-compatible base URL, model names passed through."""
    upstream_api_key_env: str | None = None
    """Environment variable holding ``upstream_url``'s key; ``llmrouter serve`` refuses to start when it is
    unset or empty (see :meth:`check_key_variables`)."""
    retry: RetryConfig = Field(default_factory=RetryConfig)
    breaker: BreakerConfig = Field(default_factory=BreakerConfig)
    queue: QueueConfig = Field(default_factory=QueueConfig)
    cache: CacheConfig = Field(default_factory=CacheConfig)
    log: LogConfig = Field(default_factory=LogConfig)
    max_body_mb: Annotated[float, Field(gt=0, le=1024, allow_inf_nan=False)] = 32.0
    """The largest request body read, in MB (a 413 beyond it): base64 images make bodies large, and
    without a limit a few huge bodies would fill the gateway's memory."""
    max_models: Annotated[int, Field(ge=1, le=MAX_EXACT_INT)] = 3
    """Models tried per request: the chosen one and up to ``max_models - 1`` fallbacks."""
    shutdown_timeout_s: Annotated[float, Field(gt=0, le=3600, allow_inf_nan=False)] = 30.0
    """On SIGTERM, how long ``serve`` lets requests in flight finish before cutting them (then it
    writes what is pending and exits): an orchestrator's grace period (Kubernetes: 30 s) must be longer."""
    baseline_model: Annotated[str, Field(min_length=1)] | None = None
    """What savings are measured against (default: the catalog's dearest model)."""
    api_keys: list[SecretStr] = Field(default_factory=list)
    api_keys_env: str | None = "LLMROUTER_API_KEYS"
    """Environment variable with comma-separated keys, added to ``api_keys``."""
    allowed_hosts: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=list)
    """Without API keys, a request reaching the gateway on a loopback address is served only when its
    ``Host`` is this machine (``localhost``, ``127.0.0.1``, ``[::1]``) or one of these names (``"*"``:
    any), so that no web page reaches it by DNS rebinding. List the name a reverse proxy on this machine
    passes on."""
    record_requests: bool = True
    """Keep each request for ``feedback`` by its id (see the router's ``feedback_ttl_s``)."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)  # an input may be a key

    _env_are_names = field_validator("upstream_api_key_env", "api_keys_env")(_env_name)

    @field_validator("upstream_url")
    @classmethod
    def _upstream_url_is_http(cls, value: str | None) -> str | None:
        return _http_url(value)

    @field_validator("api_keys")
    @classmethod
    def _no_empty_key(cls, keys: list[SecretStr]) -> list[SecretStr]:
        if any(not k.get_secret_value().strip() for k in keys):
            raise ValueError("an empty key would let in any client that sends 'Bearer' and nothing after it")
        if not all(_header_safe(k.get_secret_value()) for k in keys):
            raise ValueError(_HEADER_SAFE_RULE)
        return keys

    def server_keys(self) -> set[str]:
        """The client keys the server accepts (none: no authentication).

        Raises ConfigError when ``api_keys_env`` is given (even as the default name), or the default
        variable is set, but holds no key (a secret that came through empty, say): the operator asked
        for keys, and a server that quietly lets everyone in is the worst reading of that."""
        keys = {k.get_secret_value() for k in self.api_keys}
        if self.api_keys_env:
            from_env = {k.strip() for k in os.environ.get(self.api_keys_env, "").split(",") if k.strip()}
            asked = "api_keys_env" in self.model_fields_set or self.api_keys_env in os.environ
            if not from_env and not keys and asked:
                raise ConfigError(
                    f"api_keys_env names ${self.api_keys_env}, which holds no key: set it to comma-separated "
                    "keys, or leave the option out (and the variable unset) to run without authentication."
                )
            if not all(_header_safe(k) for k in from_env):
                raise ConfigError(f"${self.api_keys_env}: {_HEADER_SAFE_RULE}")
            keys |= from_env
        return keys

    def check_key_variables(self) -> None:
        """Raise ConfigError when ``upstream_api_key_env`` names a variable that is unset or empty.

        The operator named a key, so the upstream most likely needs one: a typo in the name would
        otherwise surface only as the upstream's 401s, request after request. ``llmrouter serve``
        checks this as it loads its config, as it checks ``api_keys_env`` (:meth:`server_keys`); the
        library's ``Gateway`` does not, and calls without the key."""
        name = self.upstream_api_key_env
        if name is not None and not os.environ.get(name, "").strip():
            state = "is empty" if name in os.environ else "is not set"
            raise ConfigError(
                f"upstream_api_key_env (--upstream-key-env) names ${name}, which {state}: set it to the "
                "upstream's API key, or leave the option out for an upstream that needs none."
            )

    def check_backends(self) -> None:
        """Raise ConfigError when an upstream says ``backend: litellm`` and LiteLLM is not installed:
        every call to its models would fail. (``upstream_url`` sends every model elsewhere.)"""
        import importlib.util

        uses = [u.name for u in self.upstreams if u.backend == "litellm"]
        if uses and not self.upstream_url and importlib.util.find_spec("litellm") is None:
            raise ConfigError(
                f"Upstream(s) {', '.join(map(repr, uses))} use backend: litellm, which is not installed: "
                "pip install 'redisvl-llmrouter[litellm]'"
            )

    @classmethod
    def from_file(cls, path: str | Path) -> GatewayConfig:
        return cls.parse(read_data_file(path, "gateway config"), where=str(path))

    @classmethod
    def parse(cls, data: Any, where: str = "gateway config") -> GatewayConfig:
        if isinstance(data, GatewayConfig):
            return data
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5])
            raise ConfigError(f"{where}: {problems}") from None
