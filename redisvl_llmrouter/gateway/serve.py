"""``llmrouter serve``: one Redis, one router, N uvicorn workers sharing them.

The command resolves Redis once (the embedded one is started by this parent process and outlives
every worker), loads the router once (the workers attach to it), then runs uvicorn. Workers get
the config through an environment variable; with several workers, Prometheus counters go through
prometheus-client's multiprocess directory so any worker's ``/metrics`` shows the total.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import tempfile
import threading
import time
from typing import Any

from redisvl_llmrouter.gateway.accounting import baseline_model
from redisvl_llmrouter.gateway.config import GatewayConfig

__all__ = ["serve", "worker_config"]

logger = logging.getLogger(__name__)


def worker_config(config: GatewayConfig) -> str:
    """The config as JSON for the workers' environment, secrets included (an environment variable of
    this process tree, never printed or logged)."""

    def reveal(value: Any) -> Any:
        if hasattr(value, "get_secret_value"):
            return value.get_secret_value()
        if isinstance(value, dict):
            return {k: reveal(v) for k, v in value.items()}
        if isinstance(value, list):
            return [reveal(v) for v in value]
        return value

    data = config.model_dump(mode="python")
    if "api_keys_env" not in config.model_fields_set:  # left at its default: an unset variable is no error
        data.pop("api_keys_env")
    return json.dumps(reveal(data))


def _keep_embedded_redis(every_s: float = 1.0) -> None:
    """Start the embedded Redis again, on the same port, whenever it has died (this parent owns it).

    A library process does this on its next router; a server makes no new routers, so without this
    one killed ``redis-server`` would leave every worker answering 503 for good. Without a data
    directory the new server starts empty, and the routers rebuild themselves on their next call."""
    from redisvl_llmrouter.embedded import get_embedded_redis

    current = get_embedded_redis()
    while True:
        time.sleep(every_s)
        try:
            server = get_embedded_redis()  # the same object while it runs; a new server if it had died
        except Exception as exc:  # keep trying: the port may be free again next time
            logger.warning("the embedded Redis is down and could not be restarted: %s", exc)
            continue
        if server is not current:
            logger.warning("the embedded Redis had stopped: started again on port %s", server.port)
            current = server


def check_listen_address(host: str, port: int) -> int:
    """Refuse, before announcing anything, an address the server could not listen on (a port out of
    range or taken, a host that does not resolve): one clear error instead of uvicorn's after the banner.

    Returns the port, a free one chosen here for ``0`` (so the banner can name it).
    """
    import socket

    from redisvl_llmrouter.errors import ConfigError

    if not 0 <= port <= 65535:
        raise ConfigError(f"--port must be between 0 and 65535, got {port}")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(f"--host {host!r} does not resolve: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind(address)
        except OSError as exc:
            raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        return int(probe.getsockname()[1])


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from redisvl_llmrouter import connection
    from redisvl_llmrouter.errors import ConfigError, redact_url
    from redisvl_llmrouter.gateway.app import CONFIG_ENV, SUPERVISOR_ENV, create_app

    config = GatewayConfig.from_file(args.config) if args.config else GatewayConfig()
    updates: dict[str, Any] = {}
    if args.router:
        updates["router"] = args.router
    if args.upstream:
        updates["upstream_url"] = args.upstream
    if args.upstream_key_env:
        updates["upstream_api_key_env"] = args.upstream_key_env
    if args.api_key_env:
        updates["api_keys_env"] = args.api_key_env
    if updates:  # validated like the file's own values
        config = GatewayConfig.parse({**config.model_dump(exclude_unset=True), **updates}, where="llmrouter serve")
    config.check_key_variables()  # a mistyped variable: refused now, not found later as the upstream's 401s
    config.check_backends()  # one line now, not a traceback from each worker's startup
    if args.workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {args.workers}")
    args.port = check_listen_address(args.host, args.port)

    embedded = not (args.redis_url or os.environ.get("REDIS_URL"))
    url = connection.resolve_url(args.redis_url)  # starts the embedded Redis here, for every worker
    os.environ["REDIS_URL"] = url
    if embedded:
        threading.Thread(target=_keep_embedded_redis, name="llmrouter-embedded-redis", daemon=True).start()
    # Load (or attach to) the router once, as the gateway does, so the workers only attach.
    config = config.model_copy(update={"router": asyncio.run(_router_checked(config, url)), "router_name": None})

    print(
        f"llmrouter gateway: http://{args.host}:{args.port}/v1 (router {config.router!r}, Redis {redact_url(url)}, "
        f"{args.workers} worker{'s' if args.workers > 1 else ''}"
        + (f", upstream {redact_url(config.upstream_url)}" if config.upstream_url else "")
        + (", API keys required" if config.server_keys() else "")
        + ")",
        flush=True,
    )
    options: dict[str, Any] = {
        "host": args.host,
        "port": args.port,
        "log_level": "warning",
        "access_log": False,
        "timeout_graceful_shutdown": config.shutdown_timeout_s,
    }
    if args.workers == 1:
        uvicorn.run(create_app(config), **options)
        return 0
    os.environ[CONFIG_ENV] = worker_config(config)
    os.environ[SUPERVISOR_ENV] = str(os.getpid())  # uvicorn's workers are this process's children
    with tempfile.TemporaryDirectory(prefix="llmrouter-metrics-") as metrics_dir:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        app = "redisvl_llmrouter.gateway.app:create_app"
        _supervise(uvicorn.Config(app, factory=True, workers=args.workers, **options))
    return 0


def _supervise(config: Any) -> None:
    """Run uvicorn's supervisor of ``--workers N``, made to stop listening as soon as it is told to stop.

    Its workers stop accepting when they begin their graceful shutdown, but the supervisor kept its
    own copy of the listening socket open until they had all exited: connections kept arriving in
    the kernel's queue, waited out the shutdown unanswered, then were reset. Closed at once, a
    client is refused and tries another gateway, as with one worker.
    """
    from uvicorn.supervisors import Multiprocess

    class Supervisor(Multiprocess):
        def _stop_listening(self) -> None:
            for sock in self.sockets:
                sock.close()

        def handle_term(self) -> None:
            self._stop_listening()
            super().handle_term()

        def handle_int(self) -> None:
            self._stop_listening()
            super().handle_int()

    Supervisor(config, sockets=[config.bind_socket()]).run()


async def _router_checked(config: GatewayConfig, redis_url: str) -> str:
    """The name of the router the gateway serves, loaded into Redis if it was a config, and its baseline
    model checked here, once, rather than by every worker as it starts (a traceback, or silence)."""
    from redisvl_llmrouter.gateway.startup import load_router

    router = await load_router(config, redis_url)
    try:
        baseline_model(router._core.catalog, config.baseline_model)
        return router.name
    finally:
        await router.close()
