"""What a gateway checks as it starts: which router it serves (attached, or loaded from a config),
and whether the Redis it shares with other gateways lets it work (scripting allowed, no eviction)."""

from __future__ import annotations

import logging
import os

from redisvl_llmrouter.aio import AsyncSemanticRouter, adrive
from redisvl_llmrouter.core import SAME_ROUTER_HINT
from redisvl_llmrouter.errors import (
    ConfigError,
    LLMRouterError,
    RedisPermissionError,
    RouterExistsError,
)
from redisvl_llmrouter.gateway.config import GatewayConfig
from redisvl_llmrouter.ops import run_script
from redisvl_llmrouter.search import as_text

__all__ = ["check_scripting", "load_router", "warn_if_evicting"]

logger = logging.getLogger(__name__)


async def load_router(config: GatewayConfig, redis_url: str) -> AsyncSemanticRouter:
    """The config's router: attached if it is in Redis under that name, else loaded from the config or file.

    With ``router_name`` the stored router is served as it is (it may have changed since it was loaded,
    through the API or another gateway); a ``router`` config given beside it that no longer matches is
    said in the log, and one that cannot be read, or names a stored router, is refused (else an edited
    file, or ``--router``, was ignored without a word)."""
    from redisvl_llmrouter.search import validate_router_name

    name = config.router_name or config.router
    if config.router_name:
        validate_router_name(config.router_name)  # that cause, not what attaching under it would say
    # A config given beside the name (not the stored router named twice, unless a file of that name is there).
    given = "router" in config.model_fields_set and (
        config.router_name not in (None, config.router)
        or (config.router_name is not None and os.path.isfile(config.router))
    )
    try:
        router = await AsyncSemanticRouter.from_existing(name, redis_url=redis_url)
    except ConfigError:
        if await _config_stored(name, redis_url):  # stored, yet unreadable: that error, not "no config named"
            raise
    else:
        if given:
            await _warn_if_config_differs(router, config, redis_url)
        return router
    try:
        return await AsyncSemanticRouter.from_pretrained(config.router, name=config.router_name, redis_url=redis_url)
    except (LLMRouterError, FileNotFoundError) as exc:
        if config.router_name and await _stored(config.router, redis_url):
            raise ConfigError(_STORED_NOT_CONFIG.format(router=config.router)) from None
        if isinstance(exc, RouterExistsError):  # the library's remedies (overwrite=True...) are not the gateway's
            why = str(exc).replace(SAME_ROUTER_HINT, "").strip()
            raise ConfigError(
                f"Cannot load the gateway's router {config.router!r}: {why} Serve the stored router by its name "
                "(router: NAME, --router NAME), load the config under another router_name, or delete the stored "
                "router first (SemanticRouter.from_existing(NAME).delete())."
            ) from exc
        raise ConfigError(f"Cannot load the gateway's router {config.router!r}: {exc}") from exc


#: A script that changes nothing: run once at start to see that this Redis user may run scripts.
_SCRIPTING_PROBE = "return 1"


async def check_scripting(router: AsyncSemanticRouter) -> None:
    """Refuse to start when the Redis user may not run Lua scripts (``EVALSHA``, ``SCRIPT LOAD``).

    Routing needs none, but breakers, live statistics and calls in flight are scripts: without them a
    gateway would answer and report healthy while no breaker ever opened and nothing was counted."""
    try:
        await adrive(run_script(_SCRIPTING_PROBE, [(0,)]), router._client)
    except RedisPermissionError as exc:
        raise ConfigError(
            f"{exc} The gateway runs Lua scripts for its breakers and statistics: grant the user "
            "the scripting commands (+@scripting, or +evalsha +script|load)."
        ) from None


async def warn_if_evicting(router: AsyncSemanticRouter) -> None:
    """Warn when Redis may evict the router's keys: nothing reads a reference by key, so a least-recently-
    used policy takes them first and routing goes wrong without an error (checked and repaired every
    ``service.REFERENCES_CHECK_S``, but ``noeviction`` is what keeps them)."""
    try:
        reply = await router._client.config_get("maxmemory-policy")
    except Exception:  # CONFIG is often denied on managed Redis: nothing to say
        return
    found = {as_text(k): as_text(v) for k, v in (reply or {}).items()}
    policy = found.get("maxmemory-policy", "noeviction")
    if policy != "noeviction":
        logger.warning(
            "Redis's maxmemory-policy is %s: when it is full it may evict %s, and routing then goes wrong "
            "without an error; set it to noeviction (see docs/gateway.md, Redis).",
            policy,
            "keys with a TTL (breakers, live statistics, requests awaiting feedback)"
            if policy.startswith("volatile")
            else "the router's references, outcomes, breakers and statistics",
        )


async def _config_stored(name: str, redis_url: str) -> bool:
    """Whether Redis holds a stored config under ``name`` (valid or not)."""
    from redisvl_llmrouter.connection import async_client
    from redisvl_llmrouter.search import config_key

    client = async_client(redis_url=redis_url)
    try:
        return bool(await client.exists(config_key(name)))
    except Exception:  # not a router name at all, or Redis down: the loading that follows says which
        return False
    finally:
        await client.aclose()


async def _warn_if_config_differs(router: AsyncSemanticRouter, config: GatewayConfig, redis_url: str) -> None:
    """Log how the stored router ``router_name`` differs from the ``router`` config given beside it; refuse
    a ``router`` that is no config to read (a missing file, a stored router's name)."""
    from redisvl_llmrouter import pretrained
    from redisvl_llmrouter.stored_definition import definition_difference, normal_definition, same_definition

    try:  # the definition only: its vectors are not needed to compare it
        given = pretrained.read(config.router).definition(config.router_name).model_dump(mode="json")
    except (LLMRouterError, FileNotFoundError) as exc:
        await router.close()
        if await _stored(config.router, redis_url):
            raise ConfigError(_STORED_NOT_CONFIG.format(router=config.router)) from None
        raise ConfigError(f"Cannot load the gateway's router {config.router!r}: {exc}") from exc
    stored = router.to_dict()
    if not same_definition(stored, given):
        logger.warning(
            "gateway: serving router %r as stored in Redis, which differs from the config %r (%s); to serve the "
            "config, delete the stored router or give another router_name",
            router.name, config.router, definition_difference(normal_definition(stored), normal_definition(given)),
        )  # fmt: skip


#: Why a ``router`` beside ``router_name`` that names a stored router, not a config, is refused.
_STORED_NOT_CONFIG = (
    "{router!r} is a router stored in Redis, not a config to load: router_name names the router a config is "
    "loaded as. Drop router_name to serve {router!r}, or set router to a config."
)


async def _stored(name: str, redis_url: str) -> bool:
    try:
        router = await AsyncSemanticRouter.from_existing(name, redis_url=redis_url)
    except (LLMRouterError, FileNotFoundError):
        return False
    await router.close()
    return True
